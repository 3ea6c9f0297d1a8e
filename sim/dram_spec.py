"""DRAM standards as data: a YAML command set plus constraint rows, compiled to numeric tables.

Compiling once turns "ACT16 then MAC16 needs nRCDRDMAC" into integer arrays indexed by command
id, so the numba engine and the independent checker read the same table and nothing about a
standard lives in code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hw_configs.isa import standard_file
from sim.config import STANDARDS_DIR, ConfigError, HardwareConfig, read_yaml

SCOPE_BANK, SCOPE_BANKGROUP, SCOPE_CHANNEL = 0, 1, 2
SCOPES = {"bank": SCOPE_BANK, "bankgroup": SCOPE_BANKGROUP, "channel": SCOPE_CHANNEL}
MODE_ANY, MODE_MEM, MODE_REG = 0, 1, 2
MODES = {"any": MODE_ANY, "mem": MODE_MEM, "reg": MODE_REG}
NO_CMD = -1


class CommandSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    target: Literal["bank", "all"]
    opens_row: bool = False
    closes_row: bool = False
    column: bool = False
    refresh: bool = False
    mode_change: bool = False  # toggles the channel between memory and register mode (AiM's TMOD)
    mode: Literal["any", "mem", "reg"] = "any"
    done: str | int = "0"


class ConstraintRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    after: str | list[str]
    before: str | list[str]
    scope: Literal["bank", "bankgroup", "channel"]
    cycles: str | int
    window: int | None = Field(default=None, ge=1)


class StandardSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    command_issue_cycles: int = Field(default=1, ge=1)
    timing_parameters: dict[str, str]
    commands: dict[str, CommandSpec]
    groups: dict[str, list[str]] = {}
    constraints: list[ConstraintRow]


def standard_path(name: str, config_source: str = "") -> Path:
    """A standard's file: a name in hw_configs/standards/, or a YAML path relative to the config."""
    return standard_file(name, config_source)


@lru_cache(maxsize=16)
def load_standard(path_text: str) -> StandardSpec:
    path = Path(path_text)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in STANDARDS_DIR.glob("*.yaml")))
        raise ConfigError(str(path), "", f"DRAM standard '{path.stem}' not found; known standards: {known}")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "", "a DRAM standard is a YAML mapping (name, timing_parameters, commands, constraints)")
    try:
        return StandardSpec(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(str(path), ".".join(map(str, err["loc"])), msg) from None


_TERM = re.compile(r"\s*([+-])?\s*([A-Za-z_][A-Za-z0-9_]*|\d+)\s*")


def eval_cycles(expr: str | int, timing: dict[str, int], source: str, key: str) -> int:
    """Evaluate `nCL + nBL + 3 - nCWL` against the timing values; names must exist."""
    if isinstance(expr, int):
        return expr
    text, pos, total, first = expr.strip(), 0, 0, True
    if not text:
        raise ConfigError(source, key, "empty cycles expression")
    while pos < len(text):
        m = _TERM.match(text, pos)
        if not m or m.end() == pos or (m.group(1) is None and not first):
            raise ConfigError(source, key, f"cannot parse cycles expression '{expr}' at '{text[pos:]}'")
        sign = -1 if m.group(1) == "-" else 1
        tok = m.group(2)
        if tok.isdigit():
            val = int(tok)
        elif tok in timing:
            val = timing[tok]
        else:
            raise ConfigError(source, key, f"expression '{expr}' uses '{tok}', which is not a timing parameter")
        total += sign * val
        pos, first = m.end(), False
    return total


@dataclass(frozen=True)
class CompiledStandard:
    """Integer tables of one standard at one set of timing values."""

    name: str
    command_names: tuple[str, ...]
    timing: dict[str, int]
    issue_gap: int
    target_all: np.ndarray  # [n_cmd] bool
    opens_row: np.ndarray
    closes_row: np.ndarray
    is_column: np.ndarray
    is_refresh: np.ndarray
    mode: np.ndarray  # [n_cmd] int8: MODE_*
    done: np.ndarray  # [n_cmd] int64 cycles
    # pairwise rows, CSR by the later ("before") command
    row_ptr: np.ndarray  # [n_cmd + 1]
    row_after: np.ndarray  # [n_rows]
    row_scope: np.ndarray
    row_cycles: np.ndarray
    # windowed rows (tFAW style), scope channel
    win_member: np.ndarray  # [n_win, n_cmd] bool: counts toward the window
    win_applies: np.ndarray  # [n_win, n_cmd] bool: is limited by the window
    win_size: np.ndarray  # [n_win]
    win_cycles: np.ndarray  # [n_win]
    cmd_act: int = NO_CMD
    cmd_act_all: int = NO_CMD
    cmd_pre: int = NO_CMD
    cmd_pre_all: int = NO_CMD
    cmd_ref: int = NO_CMD
    cmd_mode: int = NO_CMD
    source: str = ""
    table: tuple = field(default=(), repr=False)  # (after, before, scope, cycles, window) rows, for the checker

    def self_gap(self, cmd: int) -> int:
        """Cycles between back-to-back `cmd` to the same target: its widest self row, or the bus gap."""
        lo, hi = self.row_ptr[cmd], self.row_ptr[cmd + 1]
        own = self.row_cycles[lo:hi][self.row_after[lo:hi] == cmd]
        return int(max(self.issue_gap, own.max(initial=0)))

    def cmd(self, name: str) -> int:
        try:
            return self.command_names.index(name)
        except ValueError:
            raise KeyError(f"command '{name}' is not in standard '{self.name}' ({', '.join(self.command_names)})") from None


def _expand(names: str | list[str], spec: StandardSpec, source: str, key: str) -> list[str]:
    items = [names] if isinstance(names, str) else names
    out: list[str] = []
    for item in items:
        if item in spec.groups:
            out.extend(spec.groups[item])
        elif item in spec.commands:
            out.append(item)
        else:
            raise ConfigError(source, key, f"'{item}' is neither a command nor a group")
    for name in out:
        if name not in spec.commands:
            raise ConfigError(source, key, f"group member '{name}' is not a command")
    return out


MAX_TIMING_CYCLES = 2**31 - 1  # keeps every sum far from the engine's "never issued" sentinel


def _check_timing_values(cfg: HardwareConfig, spec: StandardSpec) -> dict[str, int]:
    timing = dict(cfg.dram.timing)
    src = cfg.source
    for name in spec.timing_parameters:
        if name not in timing:
            raise ConfigError(src, f"dram.timing.{name}", f"missing timing ({spec.timing_parameters[name]}) required by standard '{spec.name}'")
    for name, value in timing.items():
        if name not in spec.timing_parameters:
            raise ConfigError(src, f"dram.timing.{name}", f"unknown timing for standard '{spec.name}'; known: {', '.join(spec.timing_parameters)}")
        if value < 0:
            raise ConfigError(src, f"dram.timing.{name}", f"negative value {value}; timings are cycles >= 0")
        if value > MAX_TIMING_CYCLES:
            raise ConfigError(src, f"dram.timing.{name}", f"{value} cycles is beyond {MAX_TIMING_CYCLES}")
    t = timing

    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ConfigError(src, f"dram.timing.{key}", f"inconsistent timing: {msg}")

    if {"nRC", "nRAS", "nRP"} <= t.keys():
        need(t["nRC"] >= t["nRAS"] + t["nRP"], "nRC", f"nRC ({t['nRC']}) < nRAS + nRP ({t['nRAS']} + {t['nRP']})")
    if {"nRAS", "nRCDRD"} <= t.keys():
        need(t["nRAS"] >= t["nRCDRD"], "nRAS", f"nRAS ({t['nRAS']}) < nRCDRD ({t['nRCDRD']})")
    if {"nCCDL", "nCCDS"} <= t.keys():
        need(t["nCCDL"] >= t["nCCDS"], "nCCDL", f"nCCDL ({t['nCCDL']}) < nCCDS ({t['nCCDS']})")
    if {"nRRDL", "nRRDS"} <= t.keys():
        need(t["nRRDL"] >= t["nRRDS"], "nRRDL", f"nRRDL ({t['nRRDL']}) < nRRDS ({t['nRRDS']})")
    if {"nREFI", "nRFC"} <= t.keys():
        need(t["nREFI"] > t["nRFC"], "nREFI", f"nREFI ({t['nREFI']}) <= nRFC ({t['nRFC']}): refresh would never end")
    if {"nREFI", "nRFC", "nRC"} <= t.keys():
        # Between two refreshes a channel must fit at least one full row cycle, and refresh may not
        # take most of the time: otherwise nearly every cycle is refresh and results mean little.
        need(t["nREFI"] >= t["nRFC"] + t["nRC"], "nREFI",
             f"nREFI ({t['nREFI']}) < nRFC + nRC ({t['nRFC']} + {t['nRC']}): refresh would leave no room for "
             f"one row cycle between refreshes")
        need(2 * t["nRFC"] <= t["nREFI"], "nREFI",
             f"refresh would occupy {t['nRFC'] / t['nREFI']:.0%} of the time (nRFC {t['nRFC']} / nREFI "
             f"{t['nREFI']}); at most 50 % is accepted, so the device still has time for work")
    for key in ("nBL", "nCCDS", "nCCDL", "nRP", "nREFI"):
        if key in t:
            need(t[key] > 0, key, f"{key} must be at least one cycle")
    return timing


def compile_standard(cfg: HardwareConfig) -> CompiledStandard:
    path = str(standard_path(cfg.dram.standard, cfg.source))
    spec = load_standard(path)
    timing = _check_timing_values(cfg, spec)
    try:
        return _compile(path, tuple(sorted(timing.items())))
    except ConfigError as exc:
        if exc.source == "<config>":  # a timing-dependent error: it belongs to this config file
            raise ConfigError(cfg.source, exc.key, exc.message) from None
        raise


@lru_cache(maxsize=64)
def _compile(path: str, timing_items: tuple) -> CompiledStandard:
    spec, ssrc = load_standard(path), path
    cfg_source = "<config>"
    timing = dict(timing_items)
    names = tuple(spec.commands)
    idx = {n: i for i, n in enumerate(names)}
    n = len(names)
    cmds = [spec.commands[x] for x in names]

    done = np.zeros(n, np.int64)
    for i, c in enumerate(cmds):
        done[i] = eval_cycles(c.done, timing, ssrc, f"commands.{names[i]}.done")
        if done[i] < 0:
            raise ConfigError(cfg_source, "dram.timing", f"command {names[i]}: done = {c.done} = {done[i]} < 0 (impossible timing)")

    pair: dict[tuple[int, int, int], int] = {}
    windows: list[tuple[list[int], list[int], int, int]] = []
    table = []
    for k, row in enumerate(spec.constraints):
        key = f"constraints[{k}]"
        after = _expand(row.after, spec, ssrc, key + ".after")
        before = _expand(row.before, spec, ssrc, key + ".before")
        cyc = eval_cycles(row.cycles, timing, ssrc, key + ".cycles")
        if cyc < 0:
            raise ConfigError(cfg_source, "dram.timing", f"{key} ({row.after} -> {row.before}): cycles {row.cycles} = {cyc} < 0 (impossible timing)")
        table.append((tuple(after), tuple(before), row.scope, cyc, row.window))
        if row.window:
            if row.scope != "channel":
                raise ConfigError(ssrc, key + ".scope", "windowed rows must have scope channel")
            windows.append(([idx[a] for a in after], [idx[b] for b in before], row.window, cyc))
            continue
        for a in after:
            for b in before:
                k3 = (idx[b], idx[a], SCOPES[row.scope])
                pair[k3] = max(pair.get(k3, 0), cyc)

    # Drop rows dominated by a wider-scope row of at least as many cycles.
    for (b, a, s), c in list(pair.items()):
        for wider in range(s + 1, 3):
            if pair.get((b, a, wider), -1) >= c:
                del pair[(b, a, s)]
                break
    rows = sorted(pair.items())
    row_ptr = np.zeros(n + 1, np.int64)
    for (b, _, _), _ in rows:
        row_ptr[b + 1] += 1
    row_ptr = np.cumsum(row_ptr)
    row_after = np.array([a for (_, a, _), _ in rows], np.int64)
    row_scope = np.array([s for (_, _, s), _ in rows], np.int64)
    row_cycles = np.array([c for _, c in rows], np.int64)

    nw = len(windows)
    win_member = np.zeros((max(nw, 1), n), np.bool_)
    win_applies = np.zeros((max(nw, 1), n), np.bool_)
    win_size = np.ones(max(nw, 1), np.int64)
    win_cycles = np.zeros(max(nw, 1), np.int64)
    for w, (aft, bef, size, cyc) in enumerate(windows):
        win_member[w, aft] = True
        win_applies[w, bef] = True
        win_size[w], win_cycles[w] = size, cyc

    def pick(pred) -> int:
        hits = [i for i, c in enumerate(cmds) if pred(c)]
        return hits[0] if hits else NO_CMD

    mode_cmd = pick(lambda c: c.mode_change)
    if any(c.mode != "any" for c in cmds) and mode_cmd == NO_CMD:
        raise ConfigError(ssrc, "commands", "commands declare a mode but no command has mode_change: true")
    return CompiledStandard(
        name=spec.name,
        command_names=names,
        timing=timing,
        issue_gap=spec.command_issue_cycles,
        target_all=np.array([c.target == "all" for c in cmds]),
        opens_row=np.array([c.opens_row for c in cmds]),
        closes_row=np.array([c.closes_row for c in cmds]),
        is_column=np.array([c.column for c in cmds]),
        is_refresh=np.array([c.refresh for c in cmds]),
        mode=np.array([MODES[c.mode] for c in cmds], np.int8),
        done=done,
        row_ptr=row_ptr,
        row_after=row_after,
        row_scope=row_scope,
        row_cycles=row_cycles,
        win_member=win_member,
        win_applies=win_applies,
        win_size=win_size,
        win_cycles=win_cycles,
        cmd_act=pick(lambda c: c.opens_row and c.target == "bank"),
        cmd_act_all=pick(lambda c: c.opens_row and c.target == "all"),
        cmd_pre=pick(lambda c: c.closes_row and not c.column and c.target == "bank"),
        cmd_pre_all=pick(lambda c: c.closes_row and not c.column and c.target == "all"),
        cmd_ref=pick(lambda c: c.refresh),
        cmd_mode=mode_cmd,
        source=ssrc,
        table=tuple(table),
    )
