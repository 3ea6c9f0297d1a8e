"""The schedule checker against hand-built schedules; expected cycles are derived by hand from the
presets' timing tables (pim-gpt: nRCDRDMAC 56, nCCDS = nCCDL 2, nRTP 12, nRP 32, nRAS 54, nRRDS 11,
nMODCH 32; gddr6-14gbps: nRCDRD 30, nCCDS 2, nCCDL 4, nBL 2, nRRDS = nRRDL 11, nFAW 43)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from sim.checker import assert_schedule_ok, check_counts, check_schedule, schedule_counts
from sim.commands import SCHEDULE_DTYPE
from sim.config import load_config
from sim.dram_spec import compile_standard

N_MAC = 64


def _setup(name: str, overrides: dict | None = None):
    cfg = load_config(name, overrides)
    return compile_standard(cfg), cfg.dram.banks_per_channel, cfg.dram.bank_groups


@pytest.fixture(scope="module")
def pim():
    return _setup("pim-gpt")


@pytest.fixture(scope="module")
def gddr6():
    return _setup("gddr6-14gbps")


def sched(std, entries) -> np.ndarray:
    """entries: (name, cycle) or (name, cycle, bank, row[, release[, channel]]); bank -1 = all."""
    out = np.zeros(len(entries), SCHEDULE_DTYPE)
    for i, e in enumerate(entries):
        name, cycle, bank, row, release, channel = (tuple(e) + (-1, -1, 0, 0)[len(e) - 2:])[:6]
        c = std.cmd(name)
        out[i] = (c, channel, bank, row, 0 if std.is_column[c] else -1, cycle, release, 0, 0)
    return out


def check(setup, schedule, **kw):
    std, banks, groups = setup
    return check_schedule(schedule, std, banks, groups, **kw)


def rules(violations, kind=None) -> list[tuple[str, str]]:
    """(cycles expression, scope) of each violated table row, e.g. ("nRCDRDMAC", "bank")."""
    out = []
    for v in violations:
        if kind is None or v.kind == kind:
            m = re.search(r"\(constraints\[\d+\] .*?: (.+?)(?:, window \d+)?, scope (\w+)\)", v.rule)
            out.append((m.group(1), m.group(2)) if m else (v.kind, ""))
    return sorted(out)


def without_late(violations):
    return [v for v in violations if v.kind != "late"]


def row_pass_entries(row: int = 0, start: int = 0) -> list[tuple]:
    """ACT16, 64 MAC16 at nCCD spacing, PREA at the last MAC16 + nRTP (pim-gpt, all tight)."""
    macs = [("MAC16", start + 56 + 2 * k, -1, row) for k in range(N_MAC)]
    return [("ACT16", start, -1, row), *macs, ("PREA", start + 56 + 2 * (N_MAC - 1) + 12)]


def base_entries() -> list[tuple]:
    """Row pass plus the next ACT16 at PREA + nRP: ACT16@0, MAC16@56..182, PREA@194, ACT16@226."""
    return [*row_pass_entries(0), ("ACT16", 226, -1, 1)]


# --------------------------------------------------------------------------- the row pass


def test_row_pass_is_legal_and_tight(pim):
    s = sched(pim[0], base_entries())
    assert s["cycle"][-2:].tolist() == [194, 226] and s["cycle"][N_MAC] == 182
    assert check(pim, s) == []
    assert_schedule_ok(s, *pim)


@pytest.mark.parametrize("pos, expected", [
    (1, [("nRCDRDMAC", "bank")]),                       # first MAC16 at 55
    (2, [("nCCDL", "bankgroup"), ("nCCDS", "channel")]),  # MAC16 after MAC16 by 1
    (40, [("nCCDL", "bankgroup"), ("nCCDS", "channel")]),
    (N_MAC, [("nCCDL", "bankgroup"), ("nCCDS", "channel")]),
    (N_MAC + 1, [("nRTP", "bank")]),                    # PREA at 193
    (N_MAC + 2, [("nRP", "bank")]),                     # ACT16 at 225
])
def test_one_cycle_early_is_reported_with_its_rule(pim, pos, expected):
    s = sched(pim[0], base_entries())
    s["cycle"][pos] -= 1
    found = without_late(check(pim, s))
    assert {v.index for v in found} == {pos}
    assert all(v.kind == "timing" for v in found)
    assert rules(found) == sorted(expected)
    assert f"@{s['cycle'][pos]} needs" in found[0].rule


def test_early_message_names_both_commands(pim):
    s = sched(pim[0], base_entries())
    s["cycle"][1] = 55
    (v,) = without_late(check(pim, s))
    assert v.command == "MAC16" and v.cycle == 55 and v.channel == 0
    assert v.rule.startswith("ACT16@0 -> MAC16@55 needs 56 cycles") and "has 55" in v.rule


@pytest.mark.parametrize("pos", [0, 1, 30, N_MAC + 1, N_MAC + 2])
def test_one_cycle_late_is_reported_by_tightness_only(pim, pos):
    s = sched(pim[0], base_entries())
    s["cycle"][pos:] += 1  # the suffix moves with it, so nothing after becomes early or late
    found = check(pim, s)
    assert [(v.index, v.kind) for v in found] == [(pos, "late")]
    assert "1 cycle(s) earlier" in found[0].rule
    assert check(pim, s, tight=False) == []


def test_late_message_names_the_binding_rule(pim):
    s = sched(pim[0], base_entries())
    s["cycle"][-1] += 5
    (v,) = check(pim, s)
    assert v.kind == "late" and "could issue at 226" in v.rule and "nRP" in v.rule


def test_several_row_passes_in_sequence(pim):
    entries = []
    for k in range(3):
        entries += row_pass_entries(row=k, start=226 * k)
    assert check(pim, sched(pim[0], entries)) == []


# --------------------------------------------------------------------------- release


def test_release_later_than_constraints_makes_later_cycle_tight(pim):
    s = sched(pim[0], [("ACT16", 0, -1, 0), ("MAC16", 100, -1, 0, 100), ("MAC16", 102, -1, 0, 100)])
    assert check(pim, s) == []
    s["cycle"][1:] += 1
    assert [(v.index, v.kind) for v in check(pim, s)] == [(1, "late")]


def test_issue_before_release(pim):
    s = sched(pim[0], [("ACT16", 0, -1, 0), ("MAC16", 99, -1, 0, 100)])
    (v,) = check(pim, s)
    assert v.kind == "release" and v.index == 1 and "released at 100" in v.rule


def test_first_command_bounded_by_release_only(pim):
    s = sched(pim[0], [("ACT", 5, 0, 0, 5)])
    assert check(pim, s) == []
    s["release"][0] = 4
    assert [v.kind for v in check(pim, s)] == ["late"]


# --------------------------------------------------------------------------- command bus


def test_two_commands_in_one_cycle(pim):
    # PRE b0 and ACT b4 share no bank: only the one-command-per-cycle bus rule applies
    s = sched(pim[0], [("PRE", 0, 0), ("ACT", 0, 4, 0)])
    (v,) = check(pim, s)
    assert (v.kind, v.index) == ("bus", 1) and "out of order" not in v.rule
    s["cycle"][1] = 1
    assert check(pim, s) == []


def test_out_of_order_cycles(pim):
    s = sched(pim[0], [("PRE", 5, 0, -1, 5), ("ACT", 3, 4, 0)])
    (v,) = check(pim, s)
    assert v.kind == "bus" and "out of order" in v.rule


def test_out_of_order_command_still_checked_against_old_commands(pim):
    # ACT16@200 after WRGB@250: out of order, and 10 cycles short of REFab@0 + nRFC = 210
    s = sched(pim[0], [("REFab", 0), ("WRGB", 250, -1, -1, 250), ("ACT16", 200, -1, 0)])
    for exhaustive in (False, True):
        found = check(pim, s, initial_mode="reg", exhaustive=exhaustive)
        assert [v.kind for v in found] == ["bus", "timing"] and rules(found, "timing") == [("nRFC", "bank")]


# --------------------------------------------------------------------------- bank-group scope


def _rd_entries(rd_cycles):
    acts = [("ACT", 0, 0, 3), ("ACT", 11, 1, 3), ("ACT", 22, 4, 3)]  # b0, b1 in group 0; b4 in group 1
    b0, b1, b4 = rd_cycles
    return [*acts, ("RD", b0, 0, 3, 52), ("RD", b1, 1, 3), ("RD", b4, 4, 3)]


def test_bankgroup_spacing_is_legal_and_tight(gddr6):
    # RD b1 waits nCCDL = 4 after RD b0 (same group); RD b4 only nCCDS = nBL = 2 (other group)
    assert check(gddr6, sched(gddr6[0], _rd_entries((52, 56, 58)))) == []


def test_same_bankgroup_read_needs_nccdl(gddr6):
    found = check(gddr6, sched(gddr6[0], _rd_entries((52, 55, 57))))
    assert [(v.index, v.kind) for v in found] == [(4, "timing")]  # RD b4 at 57 is then tight again
    assert rules(found) == [("nCCDL", "bankgroup")]


def test_other_bankgroup_read_needs_nccds(gddr6):
    found = check(gddr6, sched(gddr6[0], _rd_entries((52, 56, 57))))
    assert {v.index for v in found} == {5}
    assert rules(found) == [("nBL", "channel"), ("nCCDS", "channel")]


def test_bankgroup_of_an_all_bank_command_overlaps_every_group(pim):
    # MAC b4 (group 1) right after MAC16: the all-bank MAC16 uses every group's bus -> nCCDL
    s = sched(pim[0], [("ACT16", 0, -1, 2), ("MAC16", 56, -1, 2), ("MAC", 57, 4, 2)])
    assert rules(check(pim, s)) == [("nCCDL", "bankgroup"), ("nCCDS", "channel")]


def test_all_bank_command_waits_for_single_bank_activates(pim):
    # 16 single-bank ACTs at nRRDS = 11 spacing; MAC16 waits nRCDRDMAC after the last (bank 15)
    acts = [("ACT", 11 * b, b, 4) for b in range(16)]
    s = sched(pim[0], [*acts, ("MAC16", 165 + 56, -1, 4)])
    assert check(pim, s) == []
    s["cycle"][-1] -= 1
    (v,) = check(pim, s)
    assert v.rule.startswith("ACT[b15]@165 -> MAC16@220 needs 56") and rules([v]) == [("nRCDRDMAC", "bank")]


# --------------------------------------------------------------------------- tFAW window


def test_faw_is_dominated_by_nrrd_in_the_gddr6_preset(gddr6):
    # 4 x nRRDS = 44 > nFAW = 43: the fifth ACT is held by nRRDS, never by the window
    acts = [("ACT", 11 * k, b, 0) for k, b in enumerate([0, 4, 8, 12, 1])]
    s = sched(gddr6[0], acts)
    assert check(gddr6, s) == []
    s["cycle"][4] = 43
    assert rules(check(gddr6, s)) == [("nRRDS", "channel")]


@pytest.fixture(scope="module")
def gddr6_fast_rrd():
    return _setup("gddr6-14gbps", {"dram.timing.nRRDS": 4, "dram.timing.nRRDL": 6})


@pytest.mark.parametrize("fifth, kinds", [(43, []), (42, ["window"]), (44, ["late"])])
def test_fifth_activate_waits_for_faw(gddr6_fast_rrd, fifth, kinds):
    # ACTs at 0, 4, 8, 12 to four groups; the fifth (bank 1) must be >= first + nFAW = 43
    acts = [("ACT", 0, 0, 0), ("ACT", 4, 4, 0), ("ACT", 8, 8, 0), ("ACT", 12, 12, 0), ("ACT", fifth, 1, 0)]
    found = check(gddr6_fast_rrd, sched(gddr6_fast_rrd[0], acts))
    assert [v.kind for v in found] == kinds
    if kinds == ["window"]:
        assert rules(found) == [("nFAW", "channel")] and found[0].index == 4
        assert "ACT[b0]@0" in found[0].rule
    if kinds == ["late"]:
        assert "could issue at 43" in found[0].rule and "nFAW" in found[0].rule


def test_faw_counts_only_the_four_most_recent(gddr6_fast_rrd):
    # sixth ACT: the 4th most recent before it is ACT@4, so it needs >= 4 + 43 = 47
    acts = [("ACT", c, b, 0) for c, b in [(0, 0), (4, 4), (8, 8), (12, 12), (43, 1), (47, 5)]]
    s = sched(gddr6_fast_rrd[0], acts)
    assert check(gddr6_fast_rrd, s) == []
    s["cycle"][5] = 46
    assert ("nFAW", "channel") in rules(check(gddr6_fast_rrd, s))


# --------------------------------------------------------------------------- bank state


def _state(found):
    return [(v.index, v.kind) for v in found]


def test_activate_of_an_open_bank(pim):
    found = check(pim, sched(pim[0], [("ACT", 0, 0, 1), ("ACT", 89, 0, 2)]))
    assert _state(found) == [(1, "state")] and "open bank(s) [0]" in found[0].rule


def test_all_bank_activate_with_one_bank_open(pim):
    found = check(pim, sched(pim[0], [("ACT", 0, 2, 1), ("ACT16", 89, -1, 1)]))
    assert _state(found) == [(1, "state")] and "[2]" in found[0].rule


def test_mac16_with_one_bank_closed(pim):
    s = sched(pim[0], [("ACT16", 0, -1, 5), ("PRE", 54, 3), ("MAC16", 56, -1, 5)])
    found = check(pim, s)
    assert _state(found) == [(2, "state")] and "closed bank(s) [3]" in found[0].rule


def test_column_row_must_match_open_row(pim):
    found = check(pim, sched(pim[0], [("ACT16", 0, -1, 5), ("MAC16", 56, -1, 6)]))
    assert _state(found) == [(1, "state")] and "addresses row 6" in found[0].rule


def test_single_bank_column_command(pim):
    ok = sched(pim[0], [("ACT", 0, 3, 7), ("MAC", 56, 3, 7)])
    assert check(pim, ok) == []
    other_bank = sched(pim[0], [("ACT", 0, 3, 7), ("MAC", 1, 4, 7)])  # no timing row links b3 and b4
    assert _state(check(pim, other_bank)) == [(1, "state")]


def test_refresh_with_an_open_row(pim):
    found = check(pim, sched(pim[0], [("ACT16", 0, -1, 5), ("REFab", 89)]))  # ACT -> REFab nRC = 89
    assert _state(found) == [(1, "state")] and "refresh" in found[0].rule


def test_refresh_after_precharge(pim):
    # REFab: max(ACT16 + nRC = 89, PREA + nRP = 86); ACT16 after REFab + nRFC = 299
    s = sched(pim[0], [("ACT16", 0, -1, 5), ("PREA", 54), ("REFab", 89), ("ACT16", 299, -1, 6)])
    assert check(pim, s) == []
    s["cycle"][3] = 298
    assert rules(check(pim, s)) == [("nRFC", "bank")]


def test_precharge_of_a_closed_bank_is_harmless(pim):
    assert check(pim, sched(pim[0], [("PRE", 0, 0)])) == []


def test_write_with_autoprecharge_closes_the_row(pim):
    # WRA16 at nRCDWR = 28; the next ACT16 waits nCWL + nBL + nWR + nRP = 6 + 2 + 33 + 32 = 73
    s = sched(pim[0], [("ACT16", 0, -1, 1), ("WRA16", 28, -1, 1), ("ACT16", 101, -1, 2)])
    assert check(pim, s) == []
    s["cycle"][2] = 100
    assert rules(check(pim, s)) == [("nCWL + nBL + nWR + nRP", "bank")]
    mac_after = sched(pim[0], [("ACT16", 0, -1, 1), ("WRA16", 28, -1, 1), ("MAC16", 56, -1, 1)])
    found = check(pim, mac_after)
    assert _state(found) == [(2, "state")] and "closed bank(s)" in found[0].rule


def test_register_command_needs_register_mode(pim):
    found = check(pim, sched(pim[0], [("WRGB", 0)]))
    assert _state(found) == [(0, "state")] and "needs reg mode" in found[0].rule
    assert check(pim, sched(pim[0], [("WRGB", 0)]), initial_mode="reg") == []


def test_tmod_switches_mode_and_costs_nmodch(pim):
    s = sched(pim[0], [("TMOD", 0), ("WRGB", 32)])
    assert check(pim, s) == []
    s["cycle"][1] = 31
    assert rules(check(pim, s)) == [("nMODCH", "channel")]
    back = sched(pim[0], [("TMOD", 0), ("TMOD", 32), ("WRGB", 64)])  # second TMOD returns to mem
    assert _state(check(pim, back)) == [(2, "state")]


# --------------------------------------------------------------------------- format, channels, counts


@pytest.mark.parametrize("entry", [("MAC16", 0, 3, 0), ("ACT", 0, -1, 0), ("ACT", 0, 16, 0), ("ACT", 0, 0, -1)])
def test_malformed_entries(pim, entry):
    found = check(pim, sched(pim[0], [entry]))
    assert [v.kind for v in found] == ["format"]


def test_interleaved_channels_are_checked_independently(pim):
    ch0 = [(*e, *(-1, -1)[len(e) - 2:], 0, 0) for e in base_entries()]
    ch1 = [(n, c + 7, b, r, 0, 1) for n, c, b, r, _, _ in ch0]  # released at 0: late, so tight=False
    entries = sorted(ch0 + ch1, key=lambda e: e[1])
    s = sched(pim[0], entries)
    found = check(pim, s, tight=False)
    assert found == []
    victim = int(np.flatnonzero((s["channel"] == 1) & (s["cmd"] == pim[0].cmd("PREA")))[0])
    s["cycle"][victim] -= 1
    found = check(pim, s, tight=False)
    assert [(v.index, v.channel) for v in found] == [(victim, 1)] and rules(found) == [("nRTP", "bank")]


def test_empty_schedule(pim):
    assert check(pim, np.zeros(0, SCHEDULE_DTYPE)) == []


def test_counts(pim):
    std = pim[0]
    s = sched(std, base_entries())
    counts = schedule_counts(s, 2, len(std.command_names))
    assert counts[0, std.cmd("MAC16")] == N_MAC and counts[1].sum() == 0
    assert check_counts(s, counts, std.command_names) == []
    counts[0, std.cmd("PREA")] += 1
    (msg,) = check_counts(s, counts, std.command_names)
    assert "PREA" in msg and "reported 2" in msg
    assert check_counts(s, counts[:, :3]) != []  # entries outside the reported shape


def test_assert_schedule_ok_lists_violations(pim):
    s = sched(pim[0], base_entries())
    s["cycle"][1:N_MAC + 1] -= 1
    with pytest.raises(AssertionError, match=r"violation\(s\) in 67 commands[\s\S]*nRCDRDMAC"):
        assert_schedule_ok(*(s, *pim))


# --------------------------------------------------------------------------- pruning


def refresh_passes(n_passes: int) -> list[tuple]:
    """Row passes separated by refresh and register writes (pim-gpt), all tight.

    REFab = PREA@194 + nRP = 226 (ACT16 + nRC = 89 is earlier); TMOD to register mode at 227,
    WRGB at 259 = TMOD + nMODCH and at 261 (nBL), TMOD back to memory mode at 262 (bus; the last
    TMOD's nMODCH ended at 259); the next ACT16 at REFab + nRFC = 436, so the widest rule (nRFC)
    binds across unrelated commands, far past the bus bound.
    """
    entries, start = [], 0
    for k in range(n_passes):
        entries += row_pass_entries(row=k, start=start)
        ref = start + 226
        entries += [("REFab", ref), ("TMOD", ref + 1)]
        entries += [("WRGB", ref + 33, -1, -1, ref + 33), ("WRGB", ref + 35), ("TMOD", ref + 36)]
        start = ref + 210
    return entries


def test_refresh_passes_are_legal_and_tight(pim):
    assert check(pim, sched(pim[0], refresh_passes(2))) == []


@pytest.mark.parametrize("shift", [-1, 1])
def test_pruning_matches_exhaustive_at_every_row_command(pim, shift):
    # every non-MAC entry moved by one cycle (alone): pruning must not change a single report
    base = sched(pim[0], refresh_passes(3))
    for pos in np.flatnonzero(base["cmd"] != pim[0].cmd("MAC16")):
        s = base.copy()
        s["cycle"][pos] += shift
        full = check(pim, s, exhaustive=True)
        assert check(pim, s) == full and len(full) > 0


@pytest.mark.parametrize("seed", range(4))
def test_pruning_matches_exhaustive_on_random_perturbations(pim, gddr6_fast_rrd, seed):
    rng = np.random.default_rng(seed)
    s = sched(pim[0], refresh_passes(3))
    idx = rng.choice(len(s), 8, replace=False)
    s["cycle"][idx] += rng.integers(-40, 40, 8)
    full = check(pim, s, exhaustive=True)
    assert check(pim, s) == full and len(full) > 0
    banks = rng.permutation(16)[:12]
    cycles = np.cumsum(rng.integers(0, 20, 12))
    acts = sched(gddr6_fast_rrd[0], [("ACT", int(c), int(b), 0) for c, b in zip(cycles, banks)])
    assert check(gddr6_fast_rrd, acts) == check(gddr6_fast_rrd, acts, exhaustive=True)
