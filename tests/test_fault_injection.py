"""Fault injection: does the suite notice a wrong constraint table?

For every constraint row of both standards, two faulty copies of the standard's YAML are written
(the row removed; its cycles reduced by one, ` - 1` appended to the expression), a copy of the
hardware config points at each (`dram.standard` relative to the config file), and the engine runs
a short stream that exercises the row. The independent checker, reading the ORIGINAL standard,
must reject the faulty engine's schedule, naming the row, and accept the correct engine's.

The stream for a row is found without the engine: the checker's `earliest_cycles`, used as an
in-order reference scheduler, with the original and with the faulty standards, must move the
row's later command. The stream is two commands of the row, A then B, at banks that meet at the
row's scope only (bank: the same bank; bankgroup: two banks of one group; channel: two groups),
plus whatever makes them legal (mode change, precharge, activate); where the preset hides the row
behind another (a tie), one timing parameter of the row is raised by 50 cycles.
"""
from __future__ import annotations

import copy
import itertools
import re

import numpy as np
import pytest
import yaml

from hw_configs.isa import ALL_BANKS, SCHEDULE_DTYPE, STANDARDS_DIR, program, raw
from sim.checker import check_schedule, device, earliest_cycles
from sim.config import HW_CONFIG_DIR, ConfigError, load_config
from sim.engine import Engine

PRESET = {"gddr6-aim": "pim-gpt", "gddr6": "gddr6-14gbps"}
BOOST = 50


# --------------------------------------------------------------------------- faulty copies


def _faulty(data: dict, k: int, kind: str) -> dict:
    out = copy.deepcopy(data)  # command order (the ids) unchanged
    if kind == "removed":
        del out["constraints"][k]
    else:
        row = out["constraints"][k]
        row["cycles"] = f"{row['cycles']} - 1"
    return out


DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(data) -> str:
    """Flow style: the engine's loader reads it a little faster than block style."""
    return yaml.dump(data, Dumper=DUMPER, sort_keys=False, default_flow_style=True, width=120)


class Setup:
    """The original standard and, per row and fault, a faulty copy with a config file beside it
    that names it by a relative path (`dram.standard: <copy>.yaml`)."""

    def __init__(self, standard: str, tmp):
        self.standard = standard
        self.tmp = tmp
        self.data = yaml.safe_load((STANDARDS_DIR / f"{standard}.yaml").read_text())
        self.hw = yaml.safe_load((HW_CONFIG_DIR / f"{PRESET[standard]}.yaml").read_text())
        self.hw["dram"]["channels"] = 1
        self.paths, self.configs = {}, {}

    def standard_path(self, k: int | None, kind: str | None):
        key = (k, kind)
        if key not in self.paths:
            data = self.data if k is None else _faulty(self.data, k, kind)
            path = self.tmp / f"{self.standard}-{k}-{kind}.yaml"
            path.write_text(_dump(data))
            self.paths[key] = path
        return self.paths[key]

    def config(self, timing: dict, k: int | None = None, kind: str | None = None):
        """A copy of the hardware config at these timing values whose `dram.standard` names the
        copy of the standard by a path relative to the config file (validated when an Engine is
        built). The copy is written once and derived in memory for each standard copy."""
        if "base" not in self.configs:
            path = self.tmp / "hw.yaml"
            path.write_text(_dump(self.hw))
            self.configs["base"] = load_config(path)
        cfg = self.configs["base"]
        dram = cfg.dram.model_copy(update={"timing": dict(timing), "standard": self.standard_path(k, kind).name})
        return cfg.model_copy(update={"dram": dram})

    def device(self, timing: dict, k: int | None = None, kind: str | None = None):
        return device(self.standard_path(k, kind), timing=timing, banks_per_channel=self.hw["dram"]["banks_per_channel"],
                      bank_groups=self.hw["dram"]["bank_groups"], channels=1, refresh=False)


# --------------------------------------------------------------------------- streams


def _helpers(dev):
    """Command ids by role, found by flags: (mode change, bank PRE, all-bank PRE, bank ACT, all-bank ACT)."""
    def first(pred):
        hits = [c for c in range(len(dev.commands)) if pred(c)]
        return hits[0] if hits else None
    return (first(lambda c: dev.mode_change[c]),
            first(lambda c: dev.is_precharge(c) and not dev.target_all[c]),
            first(lambda c: dev.is_precharge(c) and dev.target_all[c]),
            first(lambda c: dev.is_activate(c) and not dev.target_all[c]),
            first(lambda c: dev.is_activate(c) and dev.target_all[c]))


class _Builder:
    """Raw steps (cmd, bank, row) from an idle channel, adding what each command needs first."""

    ROW = 0

    def __init__(self, dev):
        self.dev = dev
        self.mode_cmd, self.pre, self.prea, self.act, self.act16 = _helpers(dev)
        self.rows = [-1] * dev.banks_per_channel
        self.mode = "mem"
        self.steps: list[tuple[int, int, int]] = []

    def _emit(self, c: int, bank: int) -> None:
        d = self.dev
        targets = range(len(self.rows)) if bank < 0 else [bank]
        row = self.ROW if (d.opens_row[c] or d.column[c]) else -1
        self.steps.append((c, bank, row))
        if d.opens_row[c] and not d.column[c]:
            for b in targets:
                self.rows[b] = self.ROW
        elif d.closes_row[c]:
            for b in targets:
                self.rows[b] = -1
        if d.mode_change[c]:
            self.mode = "reg" if self.mode == "mem" else "mem"

    def _close(self, bank: int) -> None:
        if bank < 0 or self.pre is None:
            self._emit(self.prea, ALL_BANKS)
        else:
            self._emit(self.pre, bank)

    def prepare(self, c: int, bank: int) -> None:
        """Emit the mode change / precharge / activate that make command c at `bank` legal."""
        d = self.dev
        targets = range(len(self.rows)) if bank < 0 else [bank]
        if d.mode[c] != "any" and d.mode[c] != self.mode:
            self._emit(self.mode_cmd, ALL_BANKS)
        if d.refresh[c] and any(r >= 0 for r in self.rows):
            self._emit(self.prea, ALL_BANKS)
        if d.is_activate(c) and any(self.rows[b] >= 0 for b in targets):
            self._close(bank)
        if d.column[c] and not all(self.rows[b] == self.ROW for b in targets):
            if bank < 0:
                if any(r >= 0 for r in self.rows):
                    self._emit(self.prea, ALL_BANKS)
                self._emit(self.act16, ALL_BANKS)
            else:
                self._emit(self.act, bank)

    def issue(self, c: int, bank: int) -> int:
        self.prepare(c, bank)
        self._emit(c, bank)
        return len(self.steps) - 1


def _banks(dev, scope: str, a: int, b: int) -> tuple[int, int]:
    """Banks of A and B that meet at `scope` and at no narrower scope (-1 for all-bank commands)."""
    ba, bb = {"bank": (0, 0), "bankgroup": (0, 1), "channel": (0, dev.banks_per_group)}[scope]
    return (ALL_BANKS if dev.target_all[a] else ba), (ALL_BANKS if dev.target_all[b] else bb)


def _streams(dev, row_index: int):
    """Candidate (steps, index of B, index of A) for one row, simplest first."""
    rule = dev.rules[row_index]
    after = np.flatnonzero(rule.after).tolist()
    before = np.flatnonzero(rule.before).tolist()
    if rule.window:  # W + 1 members, each to a bank of another group where possible
        for a in after:
            if a not in before:
                continue
            bld = _Builder(dev)
            for j in range(rule.window + 1):
                bank = ALL_BANKS if dev.target_all[a] else (j * dev.banks_per_group + j // dev.bank_groups) % \
                    dev.banks_per_channel
                last = bld.issue(a, bank)
            yield bld.steps, last, 0
        return
    for a, b in itertools.product(after, before):
        bank_a, bank_b = _banks(dev, rule.scope, a, b)
        for early_prep in (False, True):
            bld = _Builder(dev)
            if early_prep:  # open B's bank (and so on) before A where A allows it
                bld.prepare(b, bank_b)
            first = bld.issue(a, bank_a)
            yield bld.steps, bld.issue(b, bank_b), first


def _program(steps) -> np.ndarray:
    return program([raw(1, c, bank=bank, row=row) for c, bank, row in steps])


def _reference(dev, steps) -> np.ndarray:
    """Issue cycles of the raw steps by the checker's bounds, one command at a time."""
    prog = _program(steps)
    s = np.zeros(len(steps), SCHEDULE_DTYPE)
    for k, (c, bank, row) in enumerate(steps):
        s[k] = (c, 0, bank, row, 0 if dev.column[c] else -1, 0, 0, k, 0)
        s["cycle"][k] = max(0, int(earliest_cycles(s[:k + 1], dev, prog[:k + 1])[k]))
    return s["cycle"]


def _repair(t: dict) -> dict:
    """Keep a raised value a valid config (the consistency rules of the config loader)."""
    t = dict(t)
    if {"nRAS", "nRCDRD"} <= t.keys():
        t["nRAS"] = max(t["nRAS"], t["nRCDRD"])
    if {"nRC", "nRAS", "nRP"} <= t.keys():
        t["nRC"] = max(t["nRC"], t["nRAS"] + t["nRP"])
    if {"nCCDL", "nCCDS"} <= t.keys():
        t["nCCDL"] = max(t["nCCDL"], t["nCCDS"])
    if {"nRRDL", "nRRDS"} <= t.keys():
        t["nRRDL"] = max(t["nRRDL"], t["nRRDS"])
    if {"nREFI", "nRFC", "nRC"} <= t.keys():
        t["nREFI"] = max(t["nREFI"], t["nRFC"] + t["nRC"], 2 * t["nRFC"])
    return t


def _timings(setup: Setup, k: int):
    """The preset, then the preset with one parameter of row k (positive term) raised by BOOST."""
    preset = dict(setup.hw["dram"]["timing"])
    yield preset
    expr = str(setup.data["constraints"][k]["cycles"])
    positive = [m.group(2) for m in re.finditer(r"(^|\+)\s*([A-Za-z_]\w*)", expr.replace(" ", ""))]
    for p in positive:
        timing = _repair({**preset, p: preset[p] + BOOST})
        try:
            Engine(setup.config(timing), refresh=False)
        except ConfigError:  # e.g. a read-to-write turnaround below zero
            continue
        yield timing


def find_stream(setup: Setup, k: int):
    """(timing, steps, index of A, index of B) for row k, where the reference scheduler with either
    faulty copy issues B earlier than with the original; None if no candidate does."""
    for timing in _timings(setup, k):
        orig = setup.device(timing)
        faults = [setup.device(timing, k, kind) for kind in ("removed", "minus1")]
        for steps, b, a in _streams(orig, k):
            ref = _reference(orig, steps)
            if all(_reference(f, steps)[b] < ref[b] for f in faults):
                return timing, steps, a, b
    return None


# --------------------------------------------------------------------------- the test


def _engine_schedule(cfg, steps):
    prog = _program(steps)
    return Engine(cfg, refresh=False).run(prog, record=True, close_rows=False).schedule, prog


def _row_label(row: dict) -> str:
    return f"{row['after']} -> {row['before']}: {row['cycles']}, scope {row['scope']}"


@pytest.mark.parametrize("standard", sorted(PRESET))
def test_every_row_fault_is_caught(standard, tmp_path):
    setup = Setup(standard, tmp_path)
    rows = setup.data["constraints"]
    caught, uncovered = [], []
    for k, row in enumerate(rows):
        found = find_stream(setup, k)
        if found is None:
            uncovered.append(f"constraints[{k}] {_row_label(row)}")
            continue
        timing, steps, a, b = found
        orig_cfg = setup.config(timing)
        good, prog = _engine_schedule(orig_cfg, steps)
        assert check_schedule(good, orig_cfg, prog, refresh=False) == [], f"row {k}: correct engine rejected"
        for kind in ("removed", "minus1"):
            bad, _ = _engine_schedule(setup.config(timing, k, kind), steps)
            found_v = check_schedule(bad, orig_cfg, prog, refresh=False)
            named = [v for v in found_v if v.kind in ("timing", "window") and f"constraints[{k}] " in v.rule]
            assert named, (f"{standard} constraints[{k}] {_row_label(row)} {kind}: not caught; steps {steps}, "
                           f"cycles {bad['cycle'].tolist()}, violations {[str(v) for v in found_v]}")
        caught.append(k)
    fraction = len(caught) / len(rows)
    print(f"fault injection {standard}: {len(caught)}/{len(rows)} rows caught ({100 * fraction:.0f} %), "
          f"2 faults each")
    assert not uncovered, "rows no stream exercises:\n  " + "\n  ".join(uncovered)
    assert fraction == 1.0


@pytest.mark.parametrize("standard, match, edit", [
    # the three faults a review found surviving the old suite
    ("gddr6-aim", "[RD]", "remove"),                                   # ACT -> RD nRCDRD deleted
    ("gddr6-aim", "nCWL + nBL + nWR", "nCWL + nWR"),                   # WR -> PRE loses nBL
    ("gddr6", "nCWL + nBL + nWTRL", "remove"),                         # WR -> RD nWTRL deleted
])
def test_the_faults_that_survived_the_old_suite(standard, match, edit, tmp_path):
    setup = Setup(standard, tmp_path)
    rows = setup.data["constraints"]
    if match == "[RD]":
        (k,) = [i for i, r in enumerate(rows) if r["before"] == ["RD"] and r["cycles"] == "nRCDRD"]
    else:
        (k,) = [i for i, r in enumerate(rows) if r["cycles"] == match and r["before"] in ("PRES", ["RD"])]
    data = copy.deepcopy(setup.data)
    if edit == "remove":
        del data["constraints"][k]
    else:
        data["constraints"][k]["cycles"] = edit
    (tmp_path / "fault.yaml").write_text(_dump(data))
    hw = copy.deepcopy(setup.hw)
    hw["dram"]["standard"] = "fault.yaml"
    (tmp_path / "hw.yaml").write_text(_dump(hw))
    timing, steps, a, b = find_stream(setup, k)
    bad_cfg = load_config(tmp_path / "hw.yaml")
    bad_cfg = bad_cfg.model_copy(update={"dram": bad_cfg.dram.model_copy(update={"timing": timing})})
    bad, prog = _engine_schedule(bad_cfg, steps)
    orig_cfg = setup.config(timing)
    assert any(f"constraints[{k}] " in v.rule for v in check_schedule(bad, orig_cfg, prog, refresh=False))
