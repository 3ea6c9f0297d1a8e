"""Fault injection: does the suite notice a wrong constraint table?

For every constraint row of both standards, two faulty copies of the standard's YAML are written
(the row's line removed; its cycles reduced by one, ` - 1` appended to the expression), a copy of
the hardware config points at each (`dram.standard` relative to the config file), and the engine
runs a short stream that exercises the row. The independent checker, reading the ORIGINAL
standard, must reject the faulty engine's schedule, naming the row, and accept the correct one's.

The stream for a row is chosen without the engine: an in-order reference schedule built from the
checker's bounds (`earliest_cycles`), in which the row alone sets some command's cycle, strictly
above every other bound (`bound_table`). Then a faulty table must move that command (or an
earlier one, also bound by the row) and the checker sees the row broken. Streams are two commands
of the row, A then B, at banks that meet at the row's scope only (bank: the same bank;
bankgroup: two banks of one group; channel: two groups), plus whatever makes them legal (mode
change, precharge, activate); where the preset hides the row behind another (a tie), one timing
parameter of the row is raised by 50 cycles.
"""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import yaml

from hw_configs.isa import ALL_BANKS, SCHEDULE_DTYPE, STANDARDS_DIR, program, raw
from sim.checker import bound_table, check_schedule, device, earliest_cycles
from sim.config import HW_CONFIG_DIR, ConfigError, load_config
from sim.engine import Engine

PRESET = {"gddr6-aim": "pim-gpt", "gddr6": "gddr6-14gbps"}
BOOST = 50


# --------------------------------------------------------------------------- faulty copies


def _row_lines(lines: list[str]) -> list[int]:
    """Line index of each constraint row: both standards write one flow mapping per line."""
    start = next(i for i, line in enumerate(lines) if line.startswith("constraints:"))
    return [i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("- {")]


def _faulty_text(text: str, k: int, kind: str) -> str:
    lines = text.splitlines(keepends=True)
    i = _row_lines(lines)[k]
    if kind == "removed":
        del lines[i]
    else:
        lines[i], n = re.subn(r"cycles: ([^,}]+)", lambda m: f"cycles: {m.group(1).strip()} - 1", lines[i])
        assert n == 1, lines[i]
    return "".join(lines)


class Setup:
    """The original standard and, per row and fault, a faulty copy with a config that names it by a
    path relative to the config file (`dram.standard: <copy>.yaml`)."""

    def __init__(self, standard: str, tmp):
        self.standard = standard
        self.tmp = tmp
        self.text = (STANDARDS_DIR / f"{standard}.yaml").read_text()
        self.data = yaml.safe_load(self.text)
        lines = self.text.splitlines()
        for k, i in enumerate(_row_lines(lines)):  # the lines are the rows, in order
            assert yaml.safe_load(lines[i].lstrip()[2:]) == self.data["constraints"][k], lines[i]
        assert len(_row_lines(lines)) == len(self.data["constraints"])
        self.hw = yaml.safe_load((HW_CONFIG_DIR / f"{PRESET[standard]}.yaml").read_text())
        self.hw["dram"]["channels"] = 1
        self.base = None

    def config(self, timing: dict, standard_copy=None):
        """The config at these timing values, on the original standard or on a copy in tmp (named
        relative to the config file, which lives there too); validated when an Engine is built."""
        if self.base is None:
            path = self.tmp / "hw.yaml"
            path.write_text(yaml.safe_dump(self.hw, sort_keys=False))
            self.base = load_config(path)
        std = str(STANDARDS_DIR / f"{self.standard}.yaml") if standard_copy is None else standard_copy.name
        dram = self.base.dram.model_copy(update={"timing": dict(timing), "standard": std})
        return self.base.model_copy(update={"dram": dram})

    def copy(self, k: int, kind: str):
        """The standard with row k removed or reduced by one, written once."""
        path = self.tmp / f"{self.standard}-{k}-{kind}.yaml"
        if not path.exists():
            path.write_text(_faulty_text(self.text, k, kind))
        return path

    def device(self, timing: dict):
        """The checker's view of the ORIGINAL standard at these timing values."""
        return device(self.config(timing), refresh=False)


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


def _schedule(dev, steps, cycles) -> np.ndarray:
    s = np.zeros(len(steps), SCHEDULE_DTYPE)
    for k, (c, bank, row) in enumerate(steps):
        s[k] = (c, 0, bank, row, 0 if dev.column[c] else -1, cycles[k], 0, k, 0)
    return s


def _reference(dev, steps) -> np.ndarray:
    """The raw steps issued in order, each at the largest of the checker's bounds on it."""
    prog = _program(steps)
    cycles = np.zeros(len(steps), np.int64)
    for k in range(len(steps)):
        ear = earliest_cycles(_schedule(dev, steps[:k + 1], cycles[:k + 1]), dev, prog[:k + 1])
        cycles[k] = max(0, int(ear[k]))
    return cycles


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
    """(timing, steps, j) for row k: in the reference schedule of `steps` at `timing`, row k alone
    sets command j's cycle, strictly above every other bound; None if no candidate does."""
    for timing in _timings(setup, k):
        dev = setup.device(timing)
        for steps, _, _ in _streams(dev, k):
            cycles = _reference(dev, steps)
            table = bound_table(_schedule(dev, steps, cycles), dev, _program(steps))
            row = table[:, 2 + k]
            alone = (row == cycles) & (row > np.delete(table, 2 + k, axis=1).max(axis=1))
            if alone.any():
                return timing, steps, int(np.flatnonzero(alone)[0])
    return None


# --------------------------------------------------------------------------- the test


def _engine_schedule(cfg, steps):
    prog = _program(steps)
    return Engine(cfg, refresh=False).run(prog, record=True, close_rows=False).schedule, prog


def _row_label(row: dict) -> str:
    return f"{row['after']} -> {row['before']}: {row['cycles']}, scope {row['scope']}"


def _caught(setup: Setup, k: int, timing: dict, steps, faulty_std) -> list[str]:
    """The checker's verdict (ORIGINAL standard) on the faulty engine's schedule: violations of row k."""
    orig_cfg = setup.config(timing)
    bad, prog = _engine_schedule(setup.config(timing, faulty_std), steps)
    return [str(v) for v in check_schedule(bad, orig_cfg, prog, refresh=False)
            if v.kind in ("timing", "window") and f"constraints[{k}] " in v.rule]


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
        timing, steps, _ = found
        orig_cfg = setup.config(timing)
        good, prog = _engine_schedule(orig_cfg, steps)
        assert check_schedule(good, orig_cfg, prog, refresh=False) == [], f"row {k}: correct engine rejected"
        for kind in ("removed", "minus1"):
            assert _caught(setup, k, timing, steps, setup.copy(k, kind)), \
                f"{standard} constraints[{k}] {_row_label(row)} {kind}: not caught; steps {steps}"
        caught.append(k)
    fraction = len(caught) / len(rows)
    print(f"fault injection {standard}: {len(caught)}/{len(rows)} rows caught ({100 * fraction:.0f} %), "
          f"2 faults each")
    assert not uncovered, "rows no stream exercises:\n  " + "\n  ".join(uncovered)
    assert fraction == 1.0


@pytest.mark.parametrize("standard, old, new", [
    # the three faults a review found surviving the old suite
    ("gddr6-aim", "{after: ACTS, before: [RD], scope: bank, cycles: nRCDRD}", None),
    ("gddr6-aim", "before: PRES, scope: bank, cycles: nCWL + nBL + nWR}", "before: PRES, scope: bank, cycles: nCWL + nWR}"),
    ("gddr6", "{after: [WR], before: [RD], scope: bankgroup, cycles: nCWL + nBL + nWTRL}", None),
])
def test_the_faults_that_survived_the_old_suite(standard, old, new, tmp_path):
    setup = Setup(standard, tmp_path)
    lines = setup.text.splitlines(keepends=True)
    rows = _row_lines(lines)
    (k,) = [j for j, i in enumerate(rows) if old in lines[rows[j]]]
    i = rows[k]
    if new is None:
        del lines[i]
    else:
        lines[i] = lines[i].replace(old, new)
    fault = tmp_path / "fault.yaml"
    fault.write_text("".join(lines))
    timing, steps, _ = find_stream(setup, k)
    assert _caught(setup, k, timing, steps, fault)
