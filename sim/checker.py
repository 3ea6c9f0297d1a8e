"""Independent schedule checker: the oracle for the timing engine's recorded command schedules.

It knows only the constraint table (`CompiledStandard.table`, the YAML rows with groups expanded
and cycles evaluated), the command flags and the bank organisation. It shares no code and no
derived tables with the engine, so an engine bug cannot hide behind the same bug here.

Per channel, in issue order, it verifies:
- format:  command ids, bank fields that match the command's target, rows of row/column commands;
- bus:     cycles non-decreasing and consecutive commands at least `issue_gap` apart;
- release: no command issues before its release cycle;
- timing:  every non-window row "A then B needs `cycles`" for every earlier A whose target banks
           overlap B's at the row's scope (bank / bankgroup / channel; bank -1 = all banks);
- window:  every windowed row (tFAW style), see `_window_bound`;
- state:   the bank state machine and the register/memory mode, simulated from the schedule;
- late:    (tight=True) each command issued exactly at the largest of its bounds, i.e. it could
           not have issued one cycle earlier; an engine that is legal but wasteful fails this.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sim.dram_spec import MODE_ANY, MODE_MEM, MODE_REG, CompiledStandard, load_standard

MODE_IDS = {"mem": MODE_MEM, "reg": MODE_REG}
MODE_NAMES = {MODE_MEM: "mem", MODE_REG: "reg", MODE_ANY: "any"}
MAX_LISTED = 10


@dataclass(frozen=True)
class Violation:
    """One broken rule; `index` is the entry's position in the schedule array as given."""

    index: int
    channel: int
    cycle: int
    command: str
    kind: str  # format | bus | release | timing | window | state | late
    rule: str

    def __str__(self) -> str:
        return f"[{self.kind}] #{self.index} ch{self.channel} {self.command}@{self.cycle}: {self.rule}"


@dataclass(frozen=True)
class _Rule:
    """One constraint row of the table, with its `after` set as a mask over command ids."""

    label: str
    after: np.ndarray  # bool [n_cmd]
    before: np.ndarray  # bool [n_cmd]
    scope: str
    cycles: int
    window: int | None


class _Bound(NamedTuple):
    """An earliest legal cycle for one command and where it comes from."""

    earliest_cycle: int
    kind: str  # release | bus | timing | window
    source_pos: int  # channel-local position of the binding earlier command, -1 for release
    rule: _Rule | None


@dataclass(frozen=True)
class _Channel:
    """One channel's entries in issue order (channel-local positions 0..n-1)."""

    channel: int
    index: np.ndarray  # position of each entry in the schedule array as given
    cmd: np.ndarray
    bank: np.ndarray
    row: np.ndarray
    cycle: np.ndarray
    release: np.ndarray


# --------------------------------------------------------------------------- the rule table


def _row_labels(std: CompiledStandard) -> list[str]:
    """Human labels from the YAML rows as written (group names, cycle expressions)."""
    n = len(std.table)
    try:
        spec = load_standard(std.source)
        raw = spec.constraints
    except Exception:  # a standard built without its YAML still gets numbered labels
        raw = []
    if len(raw) != n:
        return [f"constraints[{k}]" for k in range(n)]
    labels = []
    for k, r in enumerate(raw):
        win = f", window {r.window}" if r.window else ""
        labels.append(f"constraints[{k}] {_show(r.after)} -> {_show(r.before)}: {r.cycles}{win}, scope {r.scope}")
    return labels


def _show(names: str | list[str]) -> str:
    return names if isinstance(names, str) else "[" + ", ".join(names) + "]"


def _rules(std: CompiledStandard) -> list[_Rule]:
    names = std.command_names
    labels = _row_labels(std)
    rules = []
    for k, (after, before, scope, cycles, window) in enumerate(std.table):
        a = np.array([n in after for n in names], dtype=bool)
        b = np.array([n in before for n in names], dtype=bool)
        rules.append(_Rule(labels[k], a, b, scope, int(cycles), window))
    return rules


def _rules_by_before(rules: list[_Rule], n_cmd: int) -> list[list[_Rule]]:
    """For each command id, the rows that can hold it back."""
    return [[r for r in rules if r.before[c]] for c in range(n_cmd)]


# --------------------------------------------------------------------------- helpers


def _fmt_cmd(std: CompiledStandard, ch: _Channel, pos: int) -> str:
    bank = int(ch.bank[pos])
    where = "" if bank < 0 else f"[b{bank}]"
    return f"{std.command_names[int(ch.cmd[pos])]}{where}@{int(ch.cycle[pos])}"


def _overlap(scope: str, bank_b: int, banks_a: np.ndarray, banks_per_group: int) -> np.ndarray:
    """Whether each earlier command's target banks meet B's at `scope` (bank -1 = all banks)."""
    if scope == "channel" or bank_b < 0:
        return np.ones(len(banks_a), dtype=bool)
    if scope == "bank":
        return (banks_a < 0) | (banks_a == bank_b)
    if scope == "bankgroup":
        return (banks_a < 0) | (banks_a // banks_per_group == bank_b // banks_per_group)
    raise ValueError(f"unknown scope '{scope}'")


def _split_channels(schedule: np.ndarray) -> list[_Channel]:
    """Per channel, entries in array order (the array may interleave channels)."""
    out = []
    for c in np.unique(schedule["channel"]):
        idx = np.flatnonzero(schedule["channel"] == c)
        e = schedule[idx]
        out.append(_Channel(int(c), idx, e["cmd"].astype(np.int64), e["bank"].astype(np.int64),
                            e["row"].astype(np.int64), e["cycle"].astype(np.int64),
                            e["release"].astype(np.int64)))
    return out


# --------------------------------------------------------------------------- format


def _format_violations(schedule: np.ndarray, std: CompiledStandard, banks_per_channel: int) -> list[Violation]:
    """Entries the other checks cannot interpret: bad ids, bank fields contradicting the target."""
    n_cmd = len(std.command_names)
    out = []
    for i, e in enumerate(schedule):
        c, bank, row = int(e["cmd"]), int(e["bank"]), int(e["row"])
        name = std.command_names[c] if 0 <= c < n_cmd else f"cmd#{c}"
        problem = None
        if not 0 <= c < n_cmd:
            problem = f"command id {c} is not in standard '{std.name}'"
        elif int(e["channel"]) < 0:
            problem = f"channel {int(e['channel'])} < 0"
        elif std.target_all[c] and bank != -1:
            problem = f"all-bank command with bank {bank} (expected -1)"
        elif not std.target_all[c] and not 0 <= bank < banks_per_channel:
            problem = f"bank {bank} outside 0..{banks_per_channel - 1}"
        elif (std.opens_row[c] or std.is_column[c]) and row < 0:
            problem = f"row/column command with row {row}"
        if problem:
            out.append(Violation(i, int(e["channel"]), int(e["cycle"]), name, "format", problem))
    return out


# --------------------------------------------------------------------------- timing bounds


def _window_bound(rule: _Rule, ch: _Channel, members: np.ndarray) -> _Bound | None:
    """Windowed row (tFAW): B issues no earlier than the W-th most recent `after` issue + cycles.

    This is the usual form of "at most W issues of the `after` set in any `cycles`-long window":
    when B is itself in the set, B at t >= (W-th most recent) + cycles means no half-open window
    [t0, t0 + cycles) holds W + 1 of them. "Most recent" ranks by cycle (equal to issue order in
    a schedule that passes the bus check). `members`: channel-local positions of earlier members.
    """
    if len(members) < rule.window:
        return None
    order = np.argsort(ch.cycle[members], kind="stable")
    src = int(members[order[-rule.window]])
    return _Bound(int(ch.cycle[src]) + rule.cycles, "window", src, rule)


def _bounds(pos: int, ch: _Channel, rules_for: list[list[_Rule]], banks_per_group: int,
            issue_gap: int, max_rule_cycles: int, running_max: np.ndarray | None) -> list[_Bound]:
    """Every earliest-cycle bound on the command at channel-local `pos`.

    Pruning (when `running_max`, the running maximum of the channel's cycles, is given): let
    thr = min(own cycle, bus bound). An earlier command whose running-maximum cycle is below
    thr - max_rule_cycles yields bounds below thr, so it can neither be violated nor be the
    largest bound (the bus bound is larger); it is skipped. Without pruning the check is
    O(n^2) per channel; with it, O(n * commands within max_rule_cycles).
    """
    cyc = int(ch.cycle[pos])
    out = [_Bound(int(ch.release[pos]), "release", -1, None)]
    if pos == 0:
        return out
    out.append(_Bound(int(ch.cycle[pos - 1]) + issue_gap, "bus", pos - 1, None))
    start = 0
    if running_max is not None:
        thr = min(cyc, int(ch.cycle[pos - 1]) + issue_gap)
        start = int(np.searchsorted(running_max[:pos], thr - max_rule_cycles, side="left"))
    earlier = np.arange(start, pos)
    cmds_a, banks_a, cycles_a = ch.cmd[start:pos], ch.bank[start:pos], ch.cycle[start:pos]
    bank_b = int(ch.bank[pos])
    for rule in rules_for[int(ch.cmd[pos])]:
        hit = rule.after[cmds_a] & _overlap(rule.scope, bank_b, banks_a, banks_per_group)
        if not hit.any():
            continue
        if rule.window:
            b = _window_bound(rule, ch, earlier[hit])
            if b is not None:
                out.append(b)
            continue
        k = int(np.argmax(np.where(hit, cycles_a, np.iinfo(np.int64).min)))
        out.append(_Bound(int(cycles_a[k]) + rule.cycles, "timing", start + k, rule))
    return out


def _describe(b: _Bound, pos: int, ch: _Channel, std: CompiledStandard) -> str:
    me = _fmt_cmd(std, ch, pos)
    if b.kind == "release":
        return f"released at {b.earliest_cycle}"
    src = _fmt_cmd(std, ch, b.source_pos)
    if b.kind == "bus":
        return f"{src} -> {me}: command bus needs {std.issue_gap} cycle(s) between commands"
    if b.kind == "window":
        return (f"{b.rule.window}th most recent window member before {me} is {src}; needs {b.rule.cycles} "
                f"cycles ({b.rule.label})")
    return f"{src} -> {me} needs {b.rule.cycles} cycles ({b.rule.label})"


def _timing_violations(ch: _Channel, std: CompiledStandard, rules_for: list[list[_Rule]],
                       banks_per_group: int, tight: bool, exhaustive: bool) -> list[Violation]:
    max_rule_cycles = max([r.cycles for rules in rules_for for r in rules], default=0)
    running_max = None if exhaustive else np.maximum.accumulate(ch.cycle)
    out = []
    for pos in range(len(ch.cmd)):
        cyc = int(ch.cycle[pos])
        name = std.command_names[int(ch.cmd[pos])]
        bounds = _bounds(pos, ch, rules_for, banks_per_group, std.issue_gap, max_rule_cycles, running_max)
        for b in bounds:
            if cyc < b.earliest_cycle:
                short = f", has {cyc - int(ch.cycle[b.source_pos])}" if b.source_pos >= 0 else ""
                if b.kind == "bus" and cyc < int(ch.cycle[pos - 1]):
                    short += " (out of order)"
                out.append(Violation(int(ch.index[pos]), ch.channel, cyc, name, b.kind,
                                     _describe(b, pos, ch, std) + short))
        best = max(bounds, key=lambda b: b.earliest_cycle)
        if tight and cyc > best.earliest_cycle:
            out.append(Violation(int(ch.index[pos]), ch.channel, cyc, name, "late",
                                 f"could issue at {best.earliest_cycle}, {cyc - best.earliest_cycle} "
                                 f"cycle(s) earlier; largest bound: {_describe(best, pos, ch, std)}"))
    return out


# --------------------------------------------------------------------------- bank state machine


def _state_violations(ch: _Channel, std: CompiledStandard, banks_per_channel: int,
                      initial_mode: str) -> list[Violation]:
    """Replay the schedule on banks that start closed and a channel in `initial_mode`."""
    open_row = np.full(banks_per_channel, -1, np.int64)  # -1 = closed
    mode = MODE_IDS[initial_mode]
    out = []
    for pos in range(len(ch.cmd)):
        c, bank, row = int(ch.cmd[pos]), int(ch.bank[pos]), int(ch.row[pos])
        banks = np.arange(banks_per_channel) if bank < 0 else np.array([bank])
        problems = []
        need = int(std.mode[c])
        if need != MODE_ANY and need != mode:
            problems.append(f"needs {MODE_NAMES[need]} mode, channel is in {MODE_NAMES[mode]} mode")
        if c == std.cmd_mode:
            mode = MODE_REG if mode == MODE_MEM else MODE_MEM
        is_open = open_row[banks] >= 0
        if std.opens_row[c]:
            if is_open.any():
                problems.append(f"activates open bank(s) {banks[is_open].tolist()}")
            open_row[banks] = row
        elif std.is_column[c]:
            if not is_open.all():
                problems.append(f"column command to closed bank(s) {banks[~is_open].tolist()}")
            wrong = is_open & (open_row[banks] != row)
            if wrong.any():
                held = sorted(set(open_row[banks[wrong]].tolist()))
                problems.append(f"addresses row {row} but bank(s) {banks[wrong].tolist()} hold row(s) {held}")
            if std.closes_row[c]:
                open_row[banks] = -1
        elif std.closes_row[c]:
            open_row[banks] = -1  # closing a closed bank is harmless
        if std.is_refresh[c] and is_open.any():
            problems.append(f"refresh with open bank(s) {banks[is_open].tolist()}")
        for p in problems:
            out.append(Violation(int(ch.index[pos]), ch.channel, int(ch.cycle[pos]),
                                 std.command_names[c], "state", p))
    return out


# --------------------------------------------------------------------------- public API


def check_schedule(schedule: np.ndarray, std: CompiledStandard, banks_per_channel: int, bank_groups: int,
                   *, tight: bool = True, initial_mode: str = "mem", exhaustive: bool = False) -> list[Violation]:
    """All violations of a recorded schedule (SCHEDULE_DTYPE), grouped by channel, in issue order.

    `exhaustive=True` compares every earlier command instead of pruning those too old to matter
    (slower; it exists to validate the pruning). Malformed entries are reported alone, since the
    other checks cannot interpret them.
    """
    if banks_per_channel % bank_groups:
        raise ValueError(f"banks_per_channel ({banks_per_channel}) is not a multiple of bank_groups ({bank_groups})")
    if initial_mode not in MODE_IDS:
        raise ValueError(f"initial_mode must be one of {sorted(MODE_IDS)}, got '{initial_mode}'")
    schedule = np.asarray(schedule)
    bad = _format_violations(schedule, std, banks_per_channel)
    if bad:
        return bad
    rules_for = _rules_by_before(_rules(std), len(std.command_names))
    banks_per_group = banks_per_channel // bank_groups
    out: list[Violation] = []
    for ch in _split_channels(schedule):
        found = _timing_violations(ch, std, rules_for, banks_per_group, tight, exhaustive)
        found += _state_violations(ch, std, banks_per_channel, initial_mode)
        out += sorted(found, key=lambda v: v.index)  # array order is issue order within a channel
    return out


def assert_schedule_ok(schedule: np.ndarray, std: CompiledStandard, banks_per_channel: int, bank_groups: int,
                       *, tight: bool = True, initial_mode: str = "mem") -> None:
    """Raise AssertionError listing the first violations, if any."""
    found = check_schedule(schedule, std, banks_per_channel, bank_groups, tight=tight, initial_mode=initial_mode)
    if found:
        listed = "\n  ".join(str(v) for v in found[:MAX_LISTED])
        more = f"\n  ... and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
        raise AssertionError(f"{len(found)} schedule violation(s) in {len(schedule)} commands:\n  {listed}{more}")


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
