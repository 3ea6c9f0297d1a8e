"""Independent schedule checker: the oracle for the timing engine's recorded command schedules.

Independent of the engine in three ways, so that an engine bug cannot hide behind the same bug here:
- it reads the standard's YAML file itself, with its own cycle-expression evaluator, its own
  expansion of command groups and its own reading of the command flags; it shares no code and no
  derived table with `sim/dram_spec.py` or `sim/engine.py`;
- it derives every program command's release time from the PROGRAM (per-channel front ends:
  start cycle, blocking instructions, barriers), never from the schedule's `release` field;
- it derives what each instruction must issue from the program (COUNT commands at the given
  bank, row and columns, plus only the mode change / precharge / activate the open-row policy
  needs), so a dropped or an extra command is an error.

Per channel, in issue order (array order), it verifies:
- format:  command ids, channels, bank fields matching the target, rows of row/column commands,
           instruction and op tags;
- bus:     consecutive commands at least `command_issue_cycles` apart (and in cycle order);
- release: no program command before its instruction's release on that channel;
- timing:  every pairwise row "A then B needs `cycles`" for every earlier A whose target banks
           meet B's at the row's scope (bank / bankgroup / channel; bank -1 = every bank);
- window:  every windowed row (tFAW style): B no earlier than the W-th most recent A + cycles;
- state:   bank state and register/memory mode replayed from the schedule (no ACT of an open
           bank, column commands to the open row, refresh only with every bank closed);
- late:    (tight) each program command issued exactly at the largest of its bounds;
- order, extra, missing: per instruction and channel, its commands in program order, exactly
           COUNT of its own commands, helpers only when needed;
- refresh: with refresh on, every REFab meets the next obligation (the k-th of a channel is due
           at k * nREFI; the controller's are never early), never more than 8 owed when a
           non-refresh command issues, and an owed refresh issued before the next request that
           could only start after it fell due (see `_refresh_violations`).
Refresh-owned commands (instr -1 during the run, -2 in the idle gap before it: REFab, the PREA
before it and, inside a raw stream, the activates re-opening the rows it closed) may be postponed,
so they are checked for legality and these obligations, not for tightness.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from hw_configs.isa import (
    F_BANK, F_CHMASK, F_CMD, F_COL, F_COUNT, F_FLAGS, F_OP, F_OPID, F_ROW, FLAG_BLOCKING, MAX_CHANNELS, N_FIELDS,
    OP_BARRIER, OP_COLUMN, OP_NAMES, OP_PRECHARGE, OP_RAW, OP_SIMPLE, standard_file,
)

MAX_LISTED = 10
REFRESH_RUN, REFRESH_IDLE = -1, -2  # `instr` of refresh-owned commands: during the run, in the idle gap
MAX_POSTPONED_REFRESHES = 8  # JEDEC: up to 8 REFab may be postponed
NEG = np.iinfo(np.int64).min // 4  # "no bound"; far from overflow when cycles are added
SCOPES = ("bank", "bankgroup", "channel")
MODES = ("any", "mem", "reg")
COMMAND_KEYS = {"target", "opens_row", "closes_row", "column", "refresh", "mode_change", "mode", "done"}
FLAG_KEYS = ("opens_row", "closes_row", "column", "refresh", "mode_change")


class StandardFileError(ValueError):
    """A standard YAML the checker cannot read; names the file and the key."""

    def __init__(self, path: str, key: str, message: str):
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


@dataclass(frozen=True)
class Violation:
    """One broken rule; `index` is the entry's position in the schedule array (-1: no entry)."""

    index: int
    channel: int
    cycle: int
    command: str
    kind: str  # format | bus | release | timing | window | state | late | order | extra | missing | refresh
    rule: str

    def __str__(self) -> str:
        where = f"#{self.index} " if self.index >= 0 else ""
        at = f"@{self.cycle}" if self.index >= 0 else ""
        return f"[{self.kind}] {where}ch{self.channel} {self.command}{at}: {self.rule}"


# --------------------------------------------------------------------------- reading the standard


def cycles_of(expr, timing: dict[str, int], where: str) -> int:
    """`nCL + nBL + 3 - nCWL` -> integer: integers and timing names joined by + and -."""
    if isinstance(expr, bool) or not isinstance(expr, (int, str)):
        raise ValueError(f"{where}: a cycles expression is an integer or a string, got {expr!r}")
    if isinstance(expr, int):
        return expr
    tokens = re.findall(r"\d+|[A-Za-z_][A-Za-z0-9_]*|\S", expr)
    if not tokens:
        raise ValueError(f"{where}: empty cycles expression")
    total, sign, expect_term = 0, 1, True
    for pos, tok in enumerate(tokens):
        if expect_term:
            if pos == 0 and tok in ("+", "-"):
                sign = -1 if tok == "-" else 1  # a leading sign
                continue
            if tok.isdigit():
                value = int(tok)
            elif tok in timing:
                value = int(timing[tok])
            elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok):
                raise ValueError(f"{where}: '{expr}' uses '{tok}', which has no timing value")
            else:
                raise ValueError(f"{where}: cannot read '{expr}': expected a name or an integer at '{tok}'")
            total += sign * value
            expect_term = False
        else:
            if tok not in ("+", "-"):
                raise ValueError(f"{where}: cannot read '{expr}': expected + or - at '{tok}'")
            sign = -1 if tok == "-" else 1
            expect_term = True
    if expect_term:
        raise ValueError(f"{where}: cannot read '{expr}': it ends with an operator")
    return total


@dataclass(frozen=True)
class Rule:
    """One constraint row of the YAML, groups expanded and cycles evaluated."""

    index: int  # position in the YAML `constraints:` list
    label: str
    after: np.ndarray  # bool [n_cmd]
    before: np.ndarray  # bool [n_cmd]
    scope: str
    cycles: int
    window: int | None


@dataclass(frozen=True, eq=False)
class Device:
    """What the checker knows of one standard at one set of timing values and one organisation."""

    name: str
    path: str
    commands: tuple[str, ...]
    target_all: np.ndarray  # bool [n_cmd]
    opens_row: np.ndarray
    closes_row: np.ndarray
    column: np.ndarray
    refresh: np.ndarray
    mode_change: np.ndarray
    mode: tuple[str, ...]  # any | mem | reg, per command
    done: np.ndarray  # int64 [n_cmd] cycles from issue to completion
    issue_gap: int
    rules: tuple[Rule, ...]
    timing: dict
    banks_per_channel: int
    bank_groups: int
    channels: int
    refresh_on: bool

    @property
    def banks_per_group(self) -> int:
        return self.banks_per_channel // self.bank_groups

    @property
    def n_refi(self) -> int | None:
        return self.timing.get("nREFI")

    def cmd(self, name: str) -> int:
        try:
            return self.commands.index(name)
        except ValueError:
            raise KeyError(f"command '{name}' is not in standard '{self.name}' ({', '.join(self.commands)})") from None

    # the helpers the controller may add for an instruction, by flags (never by name)
    def is_precharge(self, c: int) -> bool:
        return bool(self.closes_row[c] and not self.column[c] and not self.opens_row[c])

    def is_activate(self, c: int) -> bool:
        return bool(self.opens_row[c] and not self.column[c])


def _expand(names, groups: dict, commands: dict, path: str, key: str) -> list[str]:
    items = [names] if isinstance(names, str) else names
    if not isinstance(items, list) or not items:
        raise StandardFileError(path, key, f"expected a command, a group or a list of them, got {names!r}")
    out: list[str] = []
    for item in items:
        if item in commands and item in groups:
            raise StandardFileError(path, key, f"'{item}' is both a command and a group")
        if item in commands:
            out.append(item)
        elif item in groups:
            for member in groups[item]:
                if member not in commands:
                    raise StandardFileError(path, f"groups.{item}", f"member '{member}' is not a command")
                out.append(member)
        else:
            raise StandardFileError(path, key, f"'{item}' is neither a command nor a group")
    return out


def _show(names) -> str:
    return names if isinstance(names, str) else "[" + ", ".join(map(str, names)) + "]"


@lru_cache(maxsize=64)
def _parse(path: str, text: str) -> dict:
    """The standard's YAML (the text is part of the key: a rewritten file is read again)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise StandardFileError(path, "", f"malformed YAML: {exc}") from None


@lru_cache(maxsize=256)
def _device(path: str, text: str, timing_items: tuple, banks: int, n_groups: int, channels: int,
            refresh_on: bool) -> Device:
    """The standard evaluated at one set of timing values and one organisation."""
    data = _parse(path, text)
    if not isinstance(data, dict):
        raise StandardFileError(path, "", "a standard is a YAML mapping")
    for key in ("name", "commands", "constraints"):
        if key not in data:
            raise StandardFileError(path, key, "missing")
    timing = dict(timing_items)
    commands = data["commands"]
    if not isinstance(commands, dict) or not commands:
        raise StandardFileError(path, "commands", "expected a mapping of command names to flags")
    names = tuple(commands)
    flags = {k: np.zeros(len(names), bool) for k in ("all", *FLAG_KEYS)}
    modes, done = [], np.zeros(len(names), np.int64)
    for i, n in enumerate(names):
        spec = commands[n]
        key = f"commands.{n}"
        if not isinstance(spec, dict):
            raise StandardFileError(path, key, "expected a mapping of flags")
        unknown = set(spec) - COMMAND_KEYS
        if unknown:
            raise StandardFileError(path, key, f"unknown key(s) {sorted(unknown)}; known: {sorted(COMMAND_KEYS)}")
        if spec.get("target") not in ("bank", "all"):
            raise StandardFileError(path, key + ".target", f"expected bank or all, got {spec.get('target')!r}")
        flags["all"][i] = spec["target"] == "all"
        for f in FLAG_KEYS:
            v = spec.get(f, False)
            if not isinstance(v, bool):
                raise StandardFileError(path, f"{key}.{f}", f"expected true or false, got {v!r}")
            flags[f][i] = v
        m = spec.get("mode", "any")
        if m not in MODES:
            raise StandardFileError(path, key + ".mode", f"expected one of {MODES}, got {m!r}")
        modes.append(m)
        done[i] = cycles_of(spec.get("done", 0), timing, f"{path}: {key}.done")
    groups = data.get("groups") or {}
    if not isinstance(groups, dict):
        raise StandardFileError(path, "groups", "expected a mapping of group names to command lists")
    rules = []
    for k, row in enumerate(data["constraints"] or []):
        key = f"constraints[{k}]"
        if not isinstance(row, dict):
            raise StandardFileError(path, key, "expected a mapping")
        extra = set(row) - {"after", "before", "scope", "cycles", "window"}
        if extra or not {"after", "before", "scope", "cycles"} <= set(row):
            raise StandardFileError(path, key, "a row has after, before, scope, cycles and optionally window")
        if row["scope"] not in SCOPES:
            raise StandardFileError(path, key + ".scope", f"expected one of {SCOPES}, got {row['scope']!r}")
        window = row.get("window")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise StandardFileError(path, key + ".window", f"expected an integer >= 1, got {window!r}")
        after = _expand(row["after"], groups, commands, path, key + ".after")
        before = _expand(row["before"], groups, commands, path, key + ".before")
        win = f", window {window}" if window else ""
        label = f"{key} {_show(row['after'])} -> {_show(row['before'])}: {row['cycles']}{win}, scope {row['scope']}"
        rules.append(Rule(k, label, np.isin(names, after), np.isin(names, before), row["scope"],
                          cycles_of(row["cycles"], timing, f"{path}: {key}.cycles"), window))
    gap = data.get("command_issue_cycles", 1)
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
        raise StandardFileError(path, "command_issue_cycles", f"expected an integer >= 1, got {gap!r}")
    return Device(str(data["name"]), path, names, flags["all"], flags["opens_row"], flags["closes_row"],
                  flags["column"], flags["refresh"], flags["mode_change"], tuple(modes), done, gap,
                  tuple(rules), timing, banks, n_groups, channels, refresh_on)


def device(hw, *, timing: dict[str, int] | None = None, banks_per_channel: int | None = None,
           bank_groups: int | None = None, channels: int | None = None, refresh: bool | None = None) -> Device:
    """The checker's view of a device: from a hardware config (its `dram.standard` YAML, timing
    values, banks, bank groups, channels, refresh) or from a standard YAML path plus those values.
    Keyword values override the config's."""
    if isinstance(hw, Device):
        return hw
    if hasattr(hw, "dram"):
        d = hw.dram
        path = standard_file(d.standard, getattr(hw, "source", ""))
        timing = dict(d.timing) if timing is None else timing
        banks_per_channel = d.banks_per_channel if banks_per_channel is None else banks_per_channel
        bank_groups = d.bank_groups if bank_groups is None else bank_groups
        channels = d.channels if channels is None else channels
        refresh = d.refresh if refresh is None else refresh
    else:
        path = Path(hw)
        missing = [n for n, v in (("timing", timing), ("banks_per_channel", banks_per_channel),
                                  ("bank_groups", bank_groups)) if v is None]
        if missing:
            raise ValueError(f"device({path}): a standard path needs {', '.join(missing)}")
    if banks_per_channel % bank_groups:
        raise ValueError(f"banks_per_channel ({banks_per_channel}) is not a multiple of bank_groups ({bank_groups})")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise StandardFileError(str(path), "", f"cannot read the standard: {exc.strerror}") from None
    return _device(str(path), text, tuple(sorted(timing.items())), int(banks_per_channel), int(bank_groups),
                   int(channels if channels is not None else MAX_CHANNELS), bool(refresh))


# --------------------------------------------------------------------------- the schedule per channel


@dataclass(frozen=True)
class _Channel:
    """One channel's entries in issue order (channel-local positions 0..n-1)."""

    channel: int
    index: np.ndarray  # position of each entry in the schedule array as given
    cmd: np.ndarray
    bank: np.ndarray
    row: np.ndarray
    col: np.ndarray
    cycle: np.ndarray
    instr: np.ndarray
    release: np.ndarray  # derived from the program; NEG where unknown (refresh-owned, no program)


def _prev_max(values: np.ndarray) -> np.ndarray:
    """out[k] = max(values[:k]) (NEG for k = 0): the latest earlier issue, in issue order."""
    out = np.empty_like(values)
    out[0] = NEG
    if len(values) > 1:
        out[1:] = np.maximum.accumulate(values[:-1])
    return out


def _rule_bound(rule: Rule, ch: _Channel, bpg: int) -> np.ndarray | None:
    """[n] earliest cycle `rule` allows each entry (NEG where it does not apply); None if never.

    Pairwise rows: for B at k, the latest earlier A whose target banks meet B's at the scope (an
    all-bank command meets every bank). Computed with running maxima per bank / bank group."""
    is_a, is_b = rule.after[ch.cmd], rule.before[ch.cmd]
    if not is_a.any() or not is_b.any():
        return None
    vals = np.where(is_a, ch.cycle, NEG)
    if rule.window:
        return _window_bound(rule, ch, is_a, is_b)
    if rule.scope == "channel":
        prev = _prev_max(vals)
    else:
        key = ch.bank if rule.scope == "bank" else np.where(ch.bank < 0, -1, ch.bank // bpg)
        prev = np.full(len(vals), NEG)
        b_all = is_b & (ch.bank < 0)
        if b_all.any():
            prev[b_all] = _prev_max(vals)[b_all]
        from_all = _prev_max(np.where(ch.bank < 0, vals, NEG))
        for k in np.unique(key[is_b & (ch.bank >= 0)]):
            sel = is_b & (key == k)
            prev[sel] = np.maximum(_prev_max(np.where(key == k, vals, NEG))[sel], from_all[sel])
    return np.where(is_b & (prev > NEG), prev + rule.cycles, NEG)


def _window_bound(rule: Rule, ch: _Channel, is_a: np.ndarray, is_b: np.ndarray) -> np.ndarray:
    """At most W issues of the `after` set in any `cycles`-long window (tFAW): B no earlier than
    the W-th most recent earlier member + cycles ("most recent" by cycle; equal to issue order in
    a schedule whose cycles are in order)."""
    w = rule.window
    members = np.flatnonzero(is_a)
    mc = ch.cycle[members]
    out = np.full(len(ch.cmd), NEG)
    for k in np.flatnonzero(is_b):
        n_before = int(np.searchsorted(members, k))  # members at positions < k
        if n_before < w:
            continue
        prior = mc[:n_before]
        in_order = n_before < 2 or bool(np.all(prior[1:] >= prior[:-1]))
        nth = prior[n_before - w] if in_order else np.sort(prior)[-w]
        out[k] = int(nth) + rule.cycles
    return out


def _rule_bound_pairwise(rule: Rule, ch: _Channel, bpg: int) -> np.ndarray | None:
    """The same bound as `_rule_bound` by a different method: each entry against every earlier
    entry directly (O(n^2)); `exhaustive=True` uses it so tests can compare the two."""
    is_a, is_b = rule.after[ch.cmd], rule.before[ch.cmd]
    if not is_a.any() or not is_b.any():
        return None
    if rule.window:
        return _window_bound(rule, ch, is_a, is_b)
    out = np.full(len(ch.cmd), NEG)
    for k in np.flatnonzero(is_b):
        bj, bk = ch.bank[:k], int(ch.bank[k])
        if rule.scope == "channel" or bk < 0:
            meet = np.ones(k, bool)
        elif rule.scope == "bank":
            meet = (bj == bk) | (bj < 0)
        else:
            meet = (bj // bpg == bk // bpg) | (bj < 0)
        hit = is_a[:k] & meet
        if hit.any():
            out[k] = int(ch.cycle[:k][hit].max()) + rule.cycles
    return out


def _source(rule: Rule, ch: _Channel, k: int, bpg: int) -> int:
    """Channel-local position of the earlier command that sets `rule`'s bound on entry k."""
    if rule.window:
        members = np.flatnonzero(rule.after[ch.cmd[:k]])
        order = members[np.argsort(ch.cycle[members], kind="stable")]
        return int(order[-rule.window])
    j = np.arange(k)
    bj, bk = ch.bank[:k], int(ch.bank[k])
    if rule.scope == "channel" or bk < 0:
        meet = np.ones(k, bool)
    elif rule.scope == "bank":
        meet = (bj < 0) | (bj == bk)
    else:
        meet = (bj < 0) | (bj // bpg == bk // bpg)
    cand = j[rule.after[ch.cmd[:k]] & meet]
    return int(cand[np.argmax(ch.cycle[cand])])


# --------------------------------------------------------------------------- release times


def _touched(program: np.ndarray, channels: int) -> np.ndarray:
    mask = int(np.bitwise_or.reduce(program[:, F_CHMASK])) if len(program) else 0
    return np.array([(mask >> c) & 1 == 1 for c in range(channels)])


def _masks(program: np.ndarray, channels: int) -> np.ndarray:
    """[n_instr, channels] bool: instruction i runs on channel c."""
    bits = np.arange(channels, dtype=np.int64)
    return ((program[:, F_CHMASK][:, None] >> bits[None, :]) & 1).astype(bool)


def _run_starts(runs, start_cycle: int, n_instr: int) -> list[tuple[int, int]]:
    """[(first instruction, start cycle)] of consecutive runs, validated."""
    if runs is None:
        return [(0, int(start_cycle))]
    out = [(int(i), int(s)) for i, s in runs]
    firsts = [i for i, _ in out]
    if not out or firsts[0] != 0 or any(b <= a for a, b in zip(firsts, firsts[1:])) or firsts[-1] > n_instr:
        raise ValueError(f"runs must start at instruction 0 and increase within 0..{n_instr}, got {out}")
    return out


def _release_table(program: np.ndarray, masks: np.ndarray, schedule: np.ndarray, dev: Device,
                   starts: list[tuple[int, int]]) -> np.ndarray:
    """[n_instr, channels] release of instruction i on channel c (NEG where it does not run there).

    Per channel, front[c] is held until a run's start cycle when the run (instructions from its
    first up to the next run's) touches c. Instruction i releases at front[c] (the value before i
    updates it). After a blocking instruction on mask M, every c in M waits for the latest
    completion (issue + done) of the instruction's own commands on any channel of M; after a
    barrier on M, for the latest completion of every non-refresh command issued on M so far.
    Completions are read from the schedule (issue cycles) and this checker's own `done` values."""
    n, n_ch = masks.shape
    own = (schedule["instr"] >= 0) & (schedule["instr"] < n)
    comp = np.full((n, n_ch), NEG)
    e = schedule[own]
    np.maximum.at(comp, (e["instr"].astype(np.int64), e["channel"].astype(np.int64)),
                  e["cycle"].astype(np.int64) + dev.done[e["cmd"].astype(np.int64)])
    front = np.zeros(n_ch, np.int64)
    so_far = np.full(n_ch, NEG)
    release = np.full((n, n_ch), NEG)
    bounds = [i for i, _ in starts] + [n]
    run_at = {i: (s, bounds[r + 1]) for r, (i, s) in enumerate(starts)}
    for i in range(n):
        if i in run_at:
            s, end = run_at[i]
            touched = masks[i:end].any(axis=0)
            front[touched] = np.maximum(front[touched], s)
        m = masks[i]
        release[i, m] = front[m]
        if program[i, F_OP] == OP_BARRIER:
            front[m] = np.maximum(front[m], so_far[m].max(initial=NEG))
        if program[i, F_FLAGS] & FLAG_BLOCKING:
            front[m] = np.maximum(front[m], comp[i, m].max(initial=NEG))
        so_far = np.maximum(so_far, comp[i])
    return release


# --------------------------------------------------------------------------- format


def _format_violations(schedule: np.ndarray, dev: Device, program: np.ndarray | None) -> list[Violation]:
    """Entries the other checks cannot interpret: bad ids, channels, banks, rows, tags."""
    n_cmd = len(dev.commands)
    n_instr = len(program) if program is not None else None
    out = []
    cmd, chan = schedule["cmd"].astype(np.int64), schedule["channel"].astype(np.int64)
    bank, row, ins = (schedule[f].astype(np.int64) for f in ("bank", "row", "instr"))
    known = (cmd >= 0) & (cmd < n_cmd)
    c_ = np.where(known, cmd, 0)
    suspect = (~known | (chan < 0) | (chan >= dev.channels) | (ins < REFRESH_IDLE)
               | np.where(dev.target_all[c_], bank != -1, (bank < 0) | (bank >= dev.banks_per_channel))
               | ((dev.opens_row[c_] | dev.column[c_]) & (row < 0))
               | ((ins < 0) & (schedule["opid"] != -1)))
    if n_instr is not None:
        i_ = np.clip(ins, 0, max(n_instr - 1, 0))
        if n_instr:
            on = ((program[i_, F_CHMASK] >> np.clip(chan, 0, 62)) & 1) == 1
            opid_bad = (program[i_, F_OPID] >= 0) & (schedule["opid"] != program[i_, F_OPID])
            suspect |= (ins >= 0) & (~on | opid_bad)
        suspect |= ins >= n_instr
    for i in np.flatnonzero(suspect):
        e = schedule[i]
        c, ch, bank, row, ins = int(e["cmd"]), int(e["channel"]), int(e["bank"]), int(e["row"]), int(e["instr"])
        name = dev.commands[c] if 0 <= c < n_cmd else f"cmd#{c}"
        problem = None
        if not 0 <= c < n_cmd:
            problem = f"command id {c} is not in standard '{dev.name}'"
        elif not 0 <= ch < dev.channels:
            problem = f"channel {ch} outside 0..{dev.channels - 1}"
        elif dev.target_all[c] and bank != -1:
            problem = f"all-bank command with bank {bank} (expected -1)"
        elif not dev.target_all[c] and not 0 <= bank < dev.banks_per_channel:
            problem = f"bank {bank} outside 0..{dev.banks_per_channel - 1}"
        elif (dev.opens_row[c] or dev.column[c]) and row < 0:
            problem = f"row/column command with row {row}"
        elif ins < REFRESH_IDLE:
            problem = f"instruction index {ins} (expected an instruction index, or -1 / -2 for refresh)"
        elif ins < 0 and int(e["opid"]) != -1:
            problem = f"refresh-owned command with op id {int(e['opid'])} (expected -1)"
        elif n_instr is not None and ins >= n_instr:
            problem = f"instruction index {ins} but the program has {n_instr} instruction(s)"
        elif n_instr is not None and ins >= 0 and not (int(program[ins, F_CHMASK]) >> ch) & 1:
            problem = f"instruction {ins} does not run on channel {ch} (mask {int(program[ins, F_CHMASK]):#x})"
        elif n_instr is not None and ins >= 0 and program[ins, F_OPID] >= 0 and int(e["opid"]) != int(program[ins, F_OPID]):
            problem = f"op id {int(e['opid'])} but instruction {ins} has op id {int(program[ins, F_OPID])}"
        if problem:
            out.append(Violation(int(i), ch, int(e["cycle"]), name, "format", problem))
    return out


def _split_channels(schedule: np.ndarray, release_of: np.ndarray | None) -> list[_Channel]:
    out = []
    for c in np.unique(schedule["channel"]):
        idx = np.flatnonzero(schedule["channel"] == c)
        e = schedule[idx]
        ins = e["instr"].astype(np.int64)
        rel = np.full(len(idx), NEG)
        if release_of is not None:
            own = ins >= 0
            rel[own] = release_of[ins[own], int(c)]
        out.append(_Channel(int(c), idx, e["cmd"].astype(np.int64), e["bank"].astype(np.int64),
                            e["row"].astype(np.int64), e["col"].astype(np.int64), e["cycle"].astype(np.int64),
                            ins, rel))
    return out


# --------------------------------------------------------------------------- timing and tightness


def _fmt(dev: Device, ch: _Channel, k: int) -> str:
    bank = int(ch.bank[k])
    return f"{dev.commands[int(ch.cmd[k])]}{'' if bank < 0 else f'[b{bank}]'}@{int(ch.cycle[k])}"


def _bounds(ch: _Channel, dev: Device, exhaustive: bool):
    """Every entry's bounds: command bus, each rule's, and the largest of all with its source.

    Returns (bus [n], [(rule index, bound [n])], best [n], best_src [n]); best_src is -1 for the
    release, -2 for the bus, else the rule index."""
    n = len(ch.cmd)
    bus = np.full(n, NEG)
    bus[1:] = ch.cycle[:-1] + dev.issue_gap
    best = np.maximum(ch.release, bus)
    best_src = np.where(bus > ch.release, -2, -1)
    per_rule = []
    bound_of = _rule_bound_pairwise if exhaustive else _rule_bound
    for r, rule in enumerate(dev.rules):
        bound = bound_of(rule, ch, dev.banks_per_group)
        if bound is None:
            continue
        per_rule.append((r, bound))
        better = bound > best
        best = np.where(better, bound, best)
        best_src = np.where(better, r, best_src)
    return bus, per_rule, best, best_src


def _timing_violations(ch: _Channel, dev: Device, tight: bool, exhaustive: bool) -> list[Violation]:
    bpg = dev.banks_per_group
    cyc = ch.cycle
    bus, per_rule, best, best_src = _bounds(ch, dev, exhaustive)
    out: list[tuple[int, Violation]] = []

    def add(k: int, kind: str, text: str) -> None:
        out.append((k, Violation(int(ch.index[k]), ch.channel, int(cyc[k]), dev.commands[int(ch.cmd[k])], kind, text)))

    for k in np.flatnonzero(cyc < ch.release):
        add(k, "release", f"released at {int(ch.release[k])} (derived from the program)")
    for k in np.flatnonzero(cyc < bus):
        order = " (out of order)" if cyc[k] < cyc[k - 1] else ""
        add(k, "bus", f"{_fmt(dev, ch, k - 1)} -> {_fmt(dev, ch, k)}: command bus needs {dev.issue_gap} "
                      f"cycle(s) between commands{order}")
    for r, bound in per_rule:
        rule = dev.rules[r]
        for k in np.flatnonzero(cyc < bound):
            src = _source(rule, ch, int(k), bpg)
            if rule.window:
                text = (f"{rule.window}th most recent window member before {_fmt(dev, ch, k)} is "
                        f"{_fmt(dev, ch, src)}; needs {rule.cycles} cycles ({rule.label})")
            else:
                text = (f"{_fmt(dev, ch, src)} -> {_fmt(dev, ch, k)} needs {rule.cycles} cycles ({rule.label}), "
                        f"has {int(cyc[k] - cyc[src])}")
            add(k, "window" if rule.window else "timing", text)
    if tight:
        for k in np.flatnonzero((ch.instr >= 0) & (cyc > best)):
            s = int(best_src[k])
            if s == -1:
                why = f"released at {int(ch.release[k])}"
            elif s == -2:
                why = f"command bus after {_fmt(dev, ch, k - 1)}"
            else:
                rule = dev.rules[s]
                why = f"{_fmt(dev, ch, _source(rule, ch, int(k), bpg))} + {rule.cycles} ({rule.label})"
            add(k, "late", f"could issue at {int(best[k])}, {int(cyc[k] - best[k])} cycle(s) earlier; "
                           f"largest bound: {why}")
    return [v for _, v in out]


# --------------------------------------------------------------------------- state, instructions, refresh


class _Replay:
    """Bank rows and channel mode of one channel, replayed entry by entry (plain lists: this
    loop runs once per command)."""

    def __init__(self, dev: Device, initial_mode: str):
        self.nb = dev.banks_per_channel
        self.rows = [-1] * self.nb  # open row per bank, -1 = closed
        self.mode = initial_mode
        self.need = dev.mode
        self.activates = (dev.opens_row & ~dev.column).tolist()
        self.columns = dev.column.tolist()
        self.closes = dev.closes_row.tolist()
        self.refreshes = dev.refresh.tolist()
        self.toggles = dev.mode_change.tolist()

    def open_banks(self) -> list[int]:
        return [b for b, r in enumerate(self.rows) if r >= 0]

    def apply(self, c: int, bank: int, row: int) -> list[str]:
        """Issue command c; the state problems it has (before its effect)."""
        rows = self.rows
        targets = range(self.nb) if bank < 0 else (bank,)
        problems = []
        need = self.need[c]
        if need != "any" and need != self.mode:
            problems.append(f"needs {need} mode, channel is in {self.mode} mode")
        if self.refreshes[c] or self.activates[c]:
            is_open = [b for b in targets if rows[b] >= 0]
            if is_open:
                what = "refresh with" if self.refreshes[c] else "activates"
                problems.append(f"{what} open bank(s) {is_open}")
        if self.activates[c]:
            for b in targets:
                rows[b] = row
        elif self.columns[c]:
            closed = [b for b in targets if rows[b] < 0]
            if closed:
                problems.append(f"column command to closed bank(s) {closed}")
            wrong = [b for b in targets if rows[b] >= 0 and rows[b] != row]
            if wrong:
                held = sorted({rows[b] for b in wrong})
                problems.append(f"addresses row {row} but bank(s) {wrong} hold row(s) {held}")
            if self.closes[c]:
                for b in targets:
                    rows[b] = -1
        elif self.closes[c]:
            for b in targets:  # closing a closed bank is harmless
                rows[b] = -1
        if self.toggles[c]:
            self.mode = "reg" if self.mode == "mem" else "mem"
        return problems


# a helper's place in a request: mode change, then precharge, then activate, then the command
RANK_MODE, RANK_CLOSE, RANK_OPEN, RANK_OWN = range(4)


def _helper_problem(dev: Device, st: _Replay, ins: list[int], c: int, bank: int, row: int) -> tuple[int, str | None]:
    """For a command of instruction `ins` that is not its own command: its rank and, if the
    controller would not issue it now (open-row policy, mode), why."""
    op, want, wbank, wrow = ins[F_OP], ins[F_CMD], ins[F_BANK], ins[F_ROW]
    what = f"{OP_NAMES.get(op, op)} {dev.commands[want]}"
    if dev.mode_change[c] and op in (OP_COLUMN, OP_SIMPLE):
        need = dev.mode[want]
        if need == "any" or need == st.mode:
            return RANK_MODE, f"mode change not needed by {what} (channel already in {st.mode} mode)"
        return RANK_MODE, None
    if op != OP_COLUMN:
        return RANK_OWN, f"{what} issues only {dev.commands[want]} and mode changes"
    all_bank = bool(dev.target_all[want])
    if bool(dev.target_all[c]) != all_bank or (not all_bank and bank != wbank):
        return RANK_OWN, f"{what} at bank {wbank} does not issue {dev.commands[c]} at bank {bank}"
    rows = st.rows if all_bank else [st.rows[wbank]]
    if dev.is_precharge(c):
        if all(r == wrow for r in rows) or all(r < 0 for r in rows):
            return RANK_CLOSE, f"precharge not needed by {what} row {wrow} (open rows {sorted(set(rows))})"
        return RANK_CLOSE, None
    if dev.is_activate(c):
        if row != wrow:
            return RANK_OPEN, f"activates row {row}, {what} needs row {wrow}"
        return RANK_OPEN, None  # activating an open bank is a state violation already
    return RANK_OWN, f"{what} does not issue {dev.commands[c]}"


def _own_address(dev: Device, ins: list[int], k: int) -> tuple[int, int, int]:
    """(bank, row, col) the k-th own command of an instruction must address, as recorded."""
    op, c = ins[F_OP], ins[F_CMD]
    bank = -1 if dev.target_all[c] else ins[F_BANK]
    if op == OP_SIMPLE:
        return bank, -1, -1
    row = ins[F_ROW] if (dev.opens_row[c] or dev.column[c]) else -1
    return bank, row, (ins[F_COL] + k if dev.column[c] else -1)


def _instruction_violations(ch: _Channel, dev: Device, program: np.ndarray, masks: np.ndarray,
                            initial_mode: str) -> tuple[list[Violation], np.ndarray]:
    """State replay plus, per instruction, order, own commands (count and addresses) and helpers.

    Returns the violations and `unit_start` [n] bool: the entry opens a request the controller
    times as one step (the helpers it needs, then one own command)."""
    prog = program.tolist()
    n_instr = len(prog)
    runs_here = masks[:, ch.channel].tolist() if n_instr else []
    st = _Replay(dev, initial_mode)
    out: list[Violation] = []
    n = len(ch.cmd)
    unit_start = np.zeros(n, bool)
    starts = [False] * n
    own_count = [0] * n_instr
    cur = -1  # instruction whose commands are being issued
    next_open = 0  # instructions below this one are finished on this channel
    rank = RANK_OWN  # rank of the previous entry of the current request
    trailing = -1  # position of a helper not yet followed by its own command
    cmds, banks, rows, cols, instrs = (a.tolist() for a in (ch.cmd, ch.bank, ch.row, ch.col, ch.instr))

    def v(k: int, kind: str, text: str) -> None:
        out.append(Violation(int(ch.index[k]), ch.channel, int(ch.cycle[k]), dev.commands[cmds[k]], kind, text))

    def finish(upto: int) -> None:
        """Instructions next_open..upto-1 are over on this channel: all their commands issued."""
        nonlocal next_open, trailing
        if trailing >= 0:
            v(trailing, "extra", f"helper of instruction {cur} not followed by its own command")
            trailing = -1
        for i in range(next_open, upto):
            if not runs_here[i]:
                continue
            ins, op = prog[i], prog[i][F_OP]
            if op in (OP_COLUMN, OP_SIMPLE, OP_RAW) and own_count[i] < ins[F_COUNT]:
                name = dev.commands[ins[F_CMD]]
                out.append(Violation(-1, ch.channel, -1, name, "missing",
                                     f"instruction {i} ({OP_NAMES[op]} {name} x {ins[F_COUNT]}) issued "
                                     f"{own_count[i]} of its {ins[F_COUNT]} {name} on channel {ch.channel}"))
            if op == OP_PRECHARGE and st.open_banks():
                out.append(Violation(-1, ch.channel, -1, "-", "missing",
                                     f"instruction {i} (precharge) left bank(s) {st.open_banks()} open on "
                                     f"channel {ch.channel}"))
        next_open = max(next_open, upto)

    for k in range(n):
        c, bank, row, col, i = cmds[k], banks[k], rows[k], cols[k], instrs[k]
        if i >= 0:
            if i < cur:
                v(k, "order", f"instruction {i} after instruction {cur} on this channel (program order)")
            elif i > cur:
                finish(i)
                cur, rank = i, RANK_OWN
            ins = prog[i]
            op = ins[F_OP]
            starts[k] = rank == RANK_OWN
            if op == OP_BARRIER:
                v(k, "extra", f"instruction {i} is a barrier and issues no command")
            elif op == OP_PRECHARGE:
                if not (dev.is_precharge(c) and dev.target_all[c]):
                    v(k, "extra", f"instruction {i} (precharge) issues only all-bank precharges")
                elif not st.open_banks():
                    v(k, "extra", f"instruction {i} (precharge): no bank is open")
                rank = RANK_OWN
            elif c == ins[F_CMD]:
                if own_count[i] >= ins[F_COUNT]:
                    v(k, "extra", f"instruction {i} issues {ins[F_COUNT]} {dev.commands[c]}; this is one more")
                else:
                    want = _own_address(dev, ins, own_count[i])
                    if (bank, row, col) != want:
                        v(k, "extra", f"instruction {i}: command {own_count[i]} of the instruction addresses "
                                      f"(bank, row, col) {(bank, row, col)}, expected {want}")
                own_count[i] += 1
                rank, trailing = RANK_OWN, -1
            else:
                r, p = _helper_problem(dev, st, ins, c, bank, row)
                if p:
                    v(k, "extra", f"instruction {i}: {p}")
                else:
                    if rank != RANK_OWN and r < rank:
                        v(k, "order", f"instruction {i}: {dev.commands[c]} after a later step of the same "
                                      "request (order: mode change, precharge, activate, command)")
                    trailing = k
                rank = r
        for p in st.apply(c, bank, row):
            v(k, "state", p)
    finish(n_instr)
    unit_start[:] = starts
    return out, unit_start


def _refresh_owned_violations(ch: _Channel, dev: Device, refresh_on: bool) -> list[str | None]:
    """Per entry, why a refresh-owned entry (instr < 0) is not one (None when it is, or not owned).

    A refresh is [PREA] REFab [ACT...]: the all-bank precharge when a row is open, the refresh, and
    (after a refresh inside a raw stream) activates that re-open exactly the rows the precharge
    closed, so the user's stream stays legal."""
    n = len(ch.cmd)
    why: list[str | None] = [None] * n
    cmds, banks, rows, instrs = ch.cmd.tolist(), ch.bank.tolist(), ch.row.tolist(), ch.instr.tolist()
    st = _Replay(dev, "mem")
    closed: list[int] | None = None  # rows open before the current refresh's precharge
    after_ref = False  # inside a refresh, past its REFab
    for k in range(n):
        c, owned = cmds[k], instrs[k] < 0
        if not owned:
            closed, after_ref = None, False
        elif not refresh_on:
            why[k] = "refresh is off, but the controller issued a refresh-owned command"
        elif dev.refresh[c]:
            after_ref = True
            if closed is None:
                closed = list(st.rows)
        elif dev.is_precharge(c) and dev.target_all[c]:
            nxt = k + 1
            if nxt >= n or instrs[nxt] != instrs[k] or not dev.refresh[cmds[nxt]]:
                why[k] = "refresh-owned precharge not immediately followed by the refresh"
            closed, after_ref = list(st.rows), False
        elif dev.is_activate(c):
            targets = range(dev.banks_per_channel) if banks[k] < 0 else [banks[k]]
            if not after_ref or closed is None or any(closed[b] != rows[k] for b in targets):
                why[k] = "refresh-owned activate that does not re-open a row the refresh closed"
        else:
            why[k] = "refresh control issues only a refresh, the all-bank precharge before it and activates " \
                     "re-opening the rows it closed"
        st.apply(c, banks[k], rows[k])
    return why


def _refresh_violations(ch: _Channel, dev: Device, refresh_on: bool, program: np.ndarray | None,
                        unit_start: np.ndarray | None) -> list[Violation]:
    """Refresh-owned commands (instr < 0) and the controller's refresh obligations on one channel.

    - refresh-owned: see `_refresh_owned_violations`; none at all with refresh off;
    - every REFab (the controller's or a raw one) meets the next obligation: the k-th of the
      channel is due at k * nREFI, and the controller's are never issued before they are due;
    - when a non-refresh command issues at t, at most 8 refreshes are owed (due by t, not issued);
    - (with the program) a request that starts at entry H, after the previous non-refresh entry P,
      could not issue before L = max(P + command_issue_cycles, release of H); every refresh due by
      L must have issued before H. The controller refreshes when the next command would issue at
      or after the due cycle, so a refresh may be postponed only past a request that was already
      ready before it fell due; raw streams (OP_RAW) are exempt from this one.
    """
    out = []
    n = len(ch.cmd)

    def v(k: int, text: str) -> None:
        out.append(Violation(int(ch.index[k]), ch.channel, int(ch.cycle[k]), dev.commands[int(ch.cmd[k])],
                             "refresh", text))

    for k, why in enumerate(_refresh_owned_violations(ch, dev, refresh_on)):
        if why:
            v(k, why)
    if not refresh_on:
        return out
    n_refi = dev.n_refi
    if n_refi is None or n_refi <= 0:
        raise ValueError(f"standard '{dev.name}': refresh checks need a timing value nREFI > 0")
    owned = ch.instr < 0
    is_ref = dev.refresh[ch.cmd]
    done_before = np.concatenate([[0], np.cumsum(is_ref)[:-1]])  # refreshes issued before entry k
    for k in np.flatnonzero(is_ref & owned):
        j = int(done_before[k]) + 1
        if ch.cycle[k] < j * n_refi:
            v(k, f"refresh {j} of the channel is due at {j * n_refi} ({j} x nREFI)")
    program_entry = (ch.instr >= 0) & ~is_ref
    owed = ch.cycle // n_refi - done_before
    for k in np.flatnonzero(program_entry & (owed > MAX_POSTPONED_REFRESHES)):
        v(k, f"{int(owed[k])} refreshes owed (due by cycle {int(ch.cycle[k])}, not issued); at most "
             f"{MAX_POSTPONED_REFRESHES} may be postponed")
    if program is None or unit_start is None:
        return out
    last_prog = NEG
    raw_op = (program[:, F_OP] == OP_RAW).tolist()
    cycles, instrs, rels, starts = ch.cycle.tolist(), ch.instr.tolist(), ch.release.tolist(), unit_start.tolist()
    done_list = done_before.tolist()
    for k in range(n):
        i = instrs[k]
        if i < 0:
            continue
        if starts[k] and not raw_op[i]:
            ready = max(last_prog + dev.issue_gap, rels[k])
            due_by_ready = ready // n_refi if ready > 0 else 0
            if done_list[k] < due_by_ready:
                first = done_list[k] + 1
                v(k, f"refresh {first} (due at {first * n_refi}) not issued before this request, which could "
                     f"not start before cycle {ready} (the controller refreshes when a request would issue "
                     "at or after the due cycle)")
        last_prog = cycles[k]
    return out


# --------------------------------------------------------------------------- public API


def _check_program(program, dev: Device) -> np.ndarray:
    prog = np.asarray(program, dtype=np.int64)
    if prog.ndim != 2 or prog.shape[1] != N_FIELDS:
        raise ValueError(f"a program is an [n, {N_FIELDS}] int64 array, got shape {prog.shape}")
    for i, ins in enumerate(prog):
        op = int(ins[F_OP])
        if op not in OP_NAMES:
            raise ValueError(f"program instruction {i} {ins.tolist()}: unknown opcode {op}")
        if op in (OP_COLUMN, OP_SIMPLE, OP_RAW) and not 0 <= ins[F_CMD] < len(dev.commands):
            raise ValueError(f"program instruction {i} {ins.tolist()}: command id {int(ins[F_CMD])} is not in "
                             f"standard '{dev.name}'")
        if ins[F_CHMASK] <= 0 or ins[F_CHMASK] >> dev.channels:
            raise ValueError(f"program instruction {i} {ins.tolist()}: channel mask outside 0..{dev.channels - 1}")
    return prog


def _with_tail(prog: np.ndarray, dev: Device, close_rows: bool) -> np.ndarray:
    """The program plus, with close_rows, the final precharge of the channels it touched (as the
    engine appends it; instruction len(program), any op id)."""
    if not close_rows:
        return prog
    mask = sum(1 << int(c) for c in np.flatnonzero(_touched(prog, dev.channels)))
    if not mask:
        return prog
    return np.concatenate([prog, np.array([[OP_PRECHARGE, mask, -1, -1, -1, 0, 1, 0, -1]], np.int64)])


def check_schedule(schedule: np.ndarray, hw, program: np.ndarray | None = None, *, start_cycle: int = 0,
                   refresh: bool | None = None, close_rows: bool = False, tight: bool = True,
                   initial_mode: str = "mem", exhaustive: bool = False,
                   runs: list[tuple[int, int]] | None = None) -> list[Violation]:
    """All violations of a recorded schedule (SCHEDULE_DTYPE) of `program`, run on an idle device.

    hw: a hardware config or a `Device` (see `device`). program: the [n, 9] instruction array the
    schedule was recorded from; entries name their instruction in `instr` (-1: refresh-owned, -2:
    refresh in the idle gap before the run).
    start_cycle: the front end of every channel the program touches starts there. runs: instead,
    [(first instruction, start cycle), ...] for a schedule of consecutive runs of the program (the
    first from instruction 0; instr numbered over the whole program): each run holds the channels
    it touches until its start. refresh: whether the controller refreshes (default: the
    config's). close_rows: the (last) run ended with a precharge of the channels the program
    touched (recorded as instruction len(program)). Without a program only legality is checked
    (bus, rows, windows, state, refresh), and `tight=False` must say so.
    `exhaustive=True` computes the row bounds by comparing every pair of entries (slow), a second
    method for the tests of this checker. Malformed entries are reported alone.
    """
    dev = device(hw)
    refresh_on = dev.refresh_on if refresh is None else bool(refresh)
    if initial_mode not in ("mem", "reg"):
        raise ValueError(f"initial_mode must be 'mem' or 'reg', got '{initial_mode}'")
    if program is None and tight:
        raise ValueError("tightness needs the program (release times); pass program= or tight=False")
    schedule = np.asarray(schedule)
    prog = None
    if program is not None:
        prog = _with_tail(_check_program(program, dev), dev, close_rows)
    bad = _format_violations(schedule, dev, prog)
    if bad:
        return bad
    masks = release_of = None
    if prog is not None:
        masks = _masks(prog, dev.channels)
        release_of = _release_table(prog, masks, schedule, dev, _run_starts(runs, start_cycle, len(program)))
    out: list[Violation] = []
    present = set()
    for ch in _split_channels(schedule, release_of):
        present.add(ch.channel)
        found = _timing_violations(ch, dev, tight and prog is not None, exhaustive)
        unit_start = None
        if prog is not None:
            more, unit_start = _instruction_violations(ch, dev, prog, masks, initial_mode)
        else:
            more = _state_only(ch, dev, initial_mode)
        found += more
        found += _refresh_violations(ch, dev, refresh_on, prog, unit_start)
        out += sorted(found, key=lambda v: (v.index < 0, v.index))
    if prog is not None:  # channels the program uses but the schedule never mentions
        for c in np.flatnonzero(masks.any(axis=0)):
            if int(c) not in present:
                empty = _Channel(int(c), *(np.zeros(0, np.int64) for _ in range(8)))
                out += _instruction_violations(empty, dev, prog, masks, initial_mode)[0]
    return out


def _state_only(ch: _Channel, dev: Device, initial_mode: str) -> list[Violation]:
    st = _Replay(dev, initial_mode)
    out = []
    for k, (c, bank, row) in enumerate(zip(ch.cmd.tolist(), ch.bank.tolist(), ch.row.tolist())):
        for p in st.apply(c, bank, row):
            out.append(Violation(int(ch.index[k]), ch.channel, int(ch.cycle[k]), dev.commands[c], "state", p))
    return out


def earliest_cycles(schedule: np.ndarray, hw, program: np.ndarray | None = None, *, start_cycle: int = 0,
                    close_rows: bool = False, runs: list[tuple[int, int]] | None = None) -> np.ndarray:
    """[n] for each entry (schedule order), the earliest cycle it could have issued given the
    entries before it on its channel: the largest of its release (derived from the program; none
    for refresh-owned entries or without a program), the command bus and every constraint row.

    The tightness check compares program commands with this; an in-order reference scheduler is
    "issue each command at this cycle", one command at a time."""
    dev = device(hw)
    schedule = np.asarray(schedule)
    release_of = None
    if program is not None:
        prog = _with_tail(_check_program(program, dev), dev, close_rows)
        release_of = _release_table(prog, _masks(prog, dev.channels), schedule, dev,
                                    _run_starts(runs, start_cycle, len(program)))
    out = np.full(len(schedule), NEG)
    for ch in _split_channels(schedule, release_of):
        out[ch.index] = _bounds(ch, dev, False)[2]
    return out


def bound_table(schedule: np.ndarray, hw, program: np.ndarray | None = None, *, start_cycle: int = 0,
                close_rows: bool = False, runs: list[tuple[int, int]] | None = None) -> np.ndarray:
    """[n, 2 + n_rules] every bound on each entry (schedule order) from the entries before it on its
    channel: column 0 the release (derived from the program), 1 the command bus, 2 + r constraint
    row r of the standard (its `constraints:` index); NEG where a bound does not apply. Which rows
    set a command's cycle, and by how much the next one trails: for diagnosis and for tests."""
    dev = device(hw)
    schedule = np.asarray(schedule)
    release_of = None
    if program is not None:
        prog = _with_tail(_check_program(program, dev), dev, close_rows)
        release_of = _release_table(prog, _masks(prog, dev.channels), schedule, dev,
                                    _run_starts(runs, start_cycle, len(program)))
    out = np.full((len(schedule), 2 + len(dev.rules)), NEG)
    for ch in _split_channels(schedule, release_of):
        bus, per_rule, _, _ = _bounds(ch, dev, False)
        out[ch.index, 0] = ch.release
        out[ch.index, 1] = bus
        for r, bound in per_rule:
            out[ch.index, 2 + r] = bound
    return out


def assert_schedule_ok(schedule: np.ndarray, hw, program: np.ndarray | None = None, **kw) -> None:
    """Raise AssertionError listing the first violations, if any (arguments as `check_schedule`)."""
    found = check_schedule(schedule, hw, program, **kw)
    if found:
        listed = "\n  ".join(str(v) for v in found[:MAX_LISTED])
        more = f"\n  ... and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
        raise AssertionError(f"{len(found)} schedule violation(s) in {len(schedule)} commands:\n  {listed}{more}")


def finish_cycle(schedule: np.ndarray, hw, start_cycle: int = 0) -> int:
    """Latest completion (issue + done) over the non-refresh entries; `start_cycle` if none."""
    dev = device(hw)
    own = np.asarray(schedule)[np.asarray(schedule)["instr"] >= 0]
    if not len(own):
        return int(start_cycle)
    return int((own["cycle"].astype(np.int64) + dev.done[own["cmd"].astype(np.int64)]).max())


def schedule_counts(schedule: np.ndarray, n_channels: int, n_cmd: int) -> np.ndarray:
    """[n_channels, n_cmd] number of entries per channel and command id."""
    counts = np.zeros((n_channels, n_cmd), np.int64)
    np.add.at(counts, (schedule["channel"].astype(np.int64), schedule["cmd"].astype(np.int64)), 1)
    return counts


def check_counts(schedule: np.ndarray, counts_per_channel_per_cmd: np.ndarray,
                 command_names: tuple[str, ...] | None = None) -> list[str]:
    """Mismatches between reported per-channel command counts and the schedule's own entries."""
    reported = np.asarray(counts_per_channel_per_cmd)
    n_ch, n_cmd = reported.shape
    ch, cmd = schedule["channel"].astype(np.int64), schedule["cmd"].astype(np.int64)
    outside = (ch < 0) | (ch >= n_ch) | (cmd < 0) | (cmd >= n_cmd)
    if outside.any():
        return [f"{int(outside.sum())} schedule entries outside the counts' shape {reported.shape}"]
    actual = schedule_counts(schedule, n_ch, n_cmd)
    out = []
    for c, k in zip(*np.nonzero(actual != reported)):
        name = command_names[k] if command_names else f"cmd#{k}"
        out.append(f"channel {c} {name}: reported {int(reported[c, k])}, schedule has {int(actual[c, k])}")
    return out
