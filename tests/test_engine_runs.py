"""Run boundaries, per-channel front ends, op tags and refresh obligations of the timing engine.

Every expected cycle is derived by hand from the AiM timing preset (REFERENCE section 2):
nRCDRDMAC 56, nCCDL 2, nRTP 12, nRP 32, nRAS 54, nRC 89, nRCDRD 36, nBL 2, nMODCH 32,
nCWLGB 1, nCLREG 0, nRFC 210, nREFI 3333.
"""
from __future__ import annotations

import numpy as np
import pytest

from sim.commands import barrier, column, program, raw, simple
from sim.config import ConfigError, load_config
from sim.dram_spec import compile_standard
from sim.engine import MAX_POSTPONED_REFRESHES, Engine

NREFI, NRFC = 3333, 210


@pytest.fixture(scope="module")
def pim():
    cfg = load_config("pim-gpt")
    return cfg, compile_standard(cfg)


def cmds(res, std, name, channel=None):
    s = res.schedule
    keep = s["cmd"] == std.cmd(name)
    if channel is not None:
        keep &= s["channel"] == channel
    return s[keep]


# --------------------------------------------------------------------------- 1. per-channel front ends


def test_blocking_read_on_one_channel_does_not_delay_a_later_run_on_another(pim):
    cfg, std = pim
    eng = Engine(cfg, refresh=False)
    eng.run(program([column(0b01, std.cmd("MAC16"), row=0, count=64),
                     simple(0b01, std.cmd("RDMAC16"), blocking=True)]))
    res = eng.run(program([column(0b10, std.cmd("MAC16"), row=0, count=1)]), start_cycle=0, record=True)
    assert cmds(res, std, "ACT16", 1)["cycle"].tolist() == [0]
    assert res.finish_cycle == 56 + 12 + 32  # ACT16, MAC16 @56, PREA @68 done + nRP


def test_barrier_holds_only_its_channels(pim):
    """ch0: ACT @0, RD @36 (nRCDRD), data back @36 + nCL + nBL = 88; the barrier holds ch0's next
    instruction (a WRGB: TMOD first) until 88, while ch1's row pass starts at 0."""
    cfg, std = pim
    prog = program([column(0b01, std.cmd("RD"), row=0, count=1, bank=0),
                    barrier(0b01),
                    column(0b10, std.cmd("MAC16"), row=0, count=1),
                    simple(0b01, std.cmd("WRGB"))])
    res = Engine(cfg, refresh=False).run(prog, record=True, close_rows=False)
    assert cmds(res, std, "ACT16", 1)["cycle"].tolist() == [0]
    assert cmds(res, std, "TMOD", 0)["cycle"].tolist() == [36 + 50 + 2]


def test_start_before_a_channel_is_released_is_an_error(pim):
    cfg, std = pim
    eng = Engine(cfg, refresh=False)
    eng.run(program([simple(1, std.cmd("RDMAC16"), blocking=True)]))  # TMOD 0, RDMAC16 @32, back @34
    assert eng.front.tolist()[0] == 34
    with pytest.raises(ValueError, match="channel 0's front end"):
        eng.run(program([simple(1, std.cmd("WRGB"))]), start_cycle=10)


# --------------------------------------------------------------------------- 2. closing rows


def test_closing_rows_touches_only_the_programs_channels(pim):
    cfg, std = pim
    mac = std.cmd("MAC16")
    eng = Engine(cfg, refresh=False)
    eng.run(program([column(0b10, mac, row=5, count=1)]), close_rows=False)   # ch1 leaves row 5 open
    other = eng.run(program([column(0b01, mac, row=0, count=1)]))             # ch0 closes its own row
    assert other.counts[1].sum() == 0 and other.counts[0, std.cmd("PREA")] == 1
    again = eng.run(program([column(0b10, mac, row=5, count=1)]), close_rows=False)
    assert again.row_hits.tolist()[1] == 1 and again.counts[1, std.cmd("ACT16")] == 0


# --------------------------------------------------------------------------- 3. finish excludes refresh


def test_finish_is_the_runs_own_last_command_not_refresh_completion(pim):
    """1660 WRGB: TMOD @0, WRGB @32 + 2k (nBL), the last @3350, done +nCWLGB+nBL = 3353. A REFab
    falls due at 3333 and issues; its nRFC does not count."""
    cfg, std = pim
    eng = Engine(cfg)
    res = eng.run(program([simple(1, std.cmd("WRGB"), count=1660)]))
    assert res.finish_cycle == 32 + 1659 * 2 + 3 == 3353
    assert res.refreshes.tolist()[0] == 1 and res.refresh_cycles.tolist()[0] == NRFC
    assert eng.now == 3353
    # a barrier waits for the run's commands, not for the refresh (done at 3333 + 210 = 3543)
    after = eng.run(program([barrier(1), simple(1, std.cmd("WRGB"))]), record=True)
    assert cmds(after, std, "WRGB")["cycle"].tolist() == [3353]


# --------------------------------------------------------------------------- 4. start_cycle and idle refresh


def test_idle_refresh_is_not_charged_to_the_next_run(pim):
    """Ten refreshes fall due in an idle gap; they issue at their due cycles and do not count in
    the next run's figures; the run (row pass of one MAC16 + close) takes 56 + 12 + 32."""
    cfg, std = pim
    eng = Engine(cfg)
    eng.run(program([column(1, std.cmd("MAC16"), row=0, count=1)]))
    start = 10 * NREFI + 300  # the tenth refresh (3333 x 10) has completed by then
    res = eng.run(program([column(1, std.cmd("MAC16"), row=1, count=1)]), start_cycle=start, record=True)
    assert res.idle_refreshes.tolist()[0] == 10 and res.refreshes.tolist()[0] == 0
    assert res.counts[0, std.cmd("REFab")] == 0
    idle = res.schedule[res.schedule["instr"] == -2]
    assert idle["cycle"][idle["cmd"] == std.cmd("REFab")].tolist() == [NREFI * k for k in range(1, 11)]
    assert res.cycles == 56 + 12 + 32
    assert res.channel_finish.tolist()[0] == start + 100


def test_per_run_figures_are_per_run(pim):
    cfg, std = pim
    eng = Engine(cfg, refresh=False)
    first = eng.run(program([column(1, std.cmd("MAC16"), row=0, count=64)]))
    second = eng.run(program([column(1, std.cmd("MAC16"), row=1, count=64)]))
    assert first.channel_finish.tolist()[0] == 226 and second.start_cycle == 226
    assert second.channel_finish.tolist()[0] == 452 and second.cycles == 226
    assert second.counts[0, std.cmd("MAC16")] == 64 and second.row_misses.tolist()[0] == 1
    assert eng.channel_finish.tolist()[0] == 452  # cumulative view


# --------------------------------------------------------------------------- 5. controller-owned commands


@pytest.mark.parametrize("name", ["REFab", "TMOD"])
def test_simple_rejects_commands_the_controller_owns(pim, name):
    cfg, std = pim
    with pytest.raises(ValueError, match=rf"instruction 0 .*command {name} is issued by the controller"):
        Engine(cfg).run(program([simple(1, std.cmd(name))]))


# --------------------------------------------------------------------------- 6. AiM table: nRC, PRE->PRE


def test_single_bank_read_misses_activate_every_nrc(pim):
    """ACT @0, RD @36, PRE @max(36 + nRTP, nRAS) = 54, next ACT @max(54 + nRP = 86, nRC = 89)."""
    cfg, std = pim
    rd = std.cmd("RD")
    res = Engine(cfg, refresh=False).run(program([column(1, rd, row=r, count=1, bank=0) for r in range(3)]),
                                         record=True)
    assert cmds(res, std, "ACT")["cycle"].tolist() == [0, 89, 178]


def test_precharges_of_different_banks_are_not_serialised(pim):
    """ACT b0 @0, ACT b1 @11 (nRRDS); PRE b0 @54 (nRAS), PRE b1 @65 (nRAS): no PRE->PRE nRP between
    different banks; a PREA after PRE b1 waits nRP (65 + 32 = 97)."""
    cfg, std = pim
    act, pre, prea = std.cmd("ACT"), std.cmd("PRE"), std.cmd("PREA")
    prog = program([raw(1, act, bank=0, row=0), raw(1, act, bank=1, row=0), raw(1, pre, bank=0),
                    raw(1, pre, bank=1), raw(1, prea)])
    res = Engine(cfg, refresh=False).run(prog, record=True, close_rows=False)
    assert res.schedule["cycle"].tolist() == [0, 11, 54, 65, 97]


# --------------------------------------------------------------------------- 7. refresh postponement bound


def test_refresh_postponement_is_bounded_inside_a_raw_stream(pim):
    """A raw read stream of 30,000 RD (60,000 cycles, 18 intervals) on an open row: the controller
    may postpone at most 8 refreshes; at the bound it refreshes and re-opens the row, so the
    user's stream stays legal. Afterwards the next controlled command catches up back to back."""
    cfg, std = pim
    act, rd = std.cmd("ACT"), std.cmd("RD")
    eng = Engine(cfg)
    prog = program([raw(1, act, bank=0, row=7)] + [raw(1, rd, bank=0, row=7, count=60)] * 500
                   + [column(1, rd, row=7, count=1, bank=0)])
    res = eng.run(prog, record=True, start_cycle=0)
    s = res.schedule
    refs = s["cycle"][s["cmd"] == std.cmd("REFab")]
    owed_at = lambda t: t // NREFI - np.searchsorted(refs, t, side="right")  # due by t, not yet issued
    program_cmds = s[s["instr"] >= 0]
    assert max(owed_at(int(t)) for t in program_cmds["cycle"]) <= MAX_POSTPONED_REFRESHES
    # each refresh inside the stream re-opened row 7 of bank 0 before the next RD
    assert np.all(s["row"][(s["cmd"] == act)] == 7)
    assert len(refs) == res.schedule["cycle"].max() // NREFI
    assert res.counts[0, rd] == 30001 and len(refs) >= 17


@pytest.mark.parametrize("timing,why", [
    ({"nREFI": 280}, "no room for one row cycle"),
    ({"nREFI": 400, "nRFC": 210}, "refresh would occupy 52% of the time"),
])
def test_configs_where_refresh_leaves_no_time_are_rejected(timing, why):
    with pytest.raises(ConfigError, match=why):
        load_config("pim-gpt", {f"dram.timing.{k}": v for k, v in timing.items()})


# --------------------------------------------------------------------------- op tags, instruction times


def test_op_tags_report_first_issue_finish_and_counts(pim):
    """op 0: 64 WRGB (TMOD @0, WRGB @32..158, done 158 + 3); op 1: one row pass (TMOD back to
    memory mode @159, ACT16 @191, MAC16 @247..373, done 374); op 2: nothing issued."""
    cfg, std = pim
    prog = program([simple(1, std.cmd("WRGB"), count=64, opid=0),
                    column(1, std.cmd("MAC16"), row=0, count=64, opid=1)])
    prog = np.concatenate([prog, program([barrier(1, opid=2)])])
    res = Engine(cfg, refresh=False).run(prog, close_rows=False, instr_times=True)
    assert res.op_first_issue.tolist() == [0, 159, -1]
    assert res.op_finish.tolist() == [161, 374, -1]
    names = std.command_names
    assert {names[c]: int(n) for c, n in enumerate(res.op_counts[1]) if n} == {"TMOD": 1, "ACT16": 1, "MAC16": 64}
    assert res.instr_first_issue.tolist() == [0, 159, -1] and res.instr_finish.tolist() == [161, 374, -1]


def test_schedule_names_instruction_and_op(pim):
    cfg, std = pim
    prog = program([simple(1, std.cmd("WRGB"), count=2, opid=5), column(1, std.cmd("MAC16"), row=0, count=1, opid=9)])
    s = Engine(cfg, refresh=False).run(prog, record=True).schedule
    names = [std.command_names[c] for c in s["cmd"]]
    assert names == ["TMOD", "WRGB", "WRGB", "TMOD", "ACT16", "MAC16", "PREA"]
    assert s["instr"].tolist() == [0, 0, 0, 1, 1, 1, 2] and s["opid"].tolist() == [5, 5, 5, 9, 9, 9, 9]


def test_snapshot_restore_times_an_alternative_without_disturbing(pim):
    cfg, std = pim
    eng = Engine(cfg)
    eng.run(program([column(3, std.cmd("MAC16"), row=r, count=64) for r in range(20)]), close_rows=False)
    saved = eng.snapshot()
    alt = eng.run(program([column(1, std.cmd("MAC16"), row=99, count=64)]))
    eng.restore(saved)
    real = eng.run(program([column(1, std.cmd("MAC16"), row=99, count=64)]))
    assert (alt.start_cycle, alt.finish_cycle, alt.counts.tolist()) == (real.start_cycle, real.finish_cycle,
                                                                          real.counts.tolist())


def test_program_for_another_command_table_is_rejected(pim):
    cfg, std = pim
    plain = load_config("gddr6-14gbps")
    prog = program([column(1, std.cmd("MAC16"), row=0, count=1)])
    with pytest.raises(ValueError, match="command table"):
        Engine(plain).run(prog, command_names=std.command_names)
    Engine(cfg, refresh=False).run(prog, command_names=std.command_names)


@pytest.mark.parametrize("bad,msg", [
    (np.zeros((0, 9), np.int64), "empty program"),
    (program([column(1, 7, row=0, count=1, opid=-3)]), "op id out of range"),
])
def test_bad_programs_name_the_problem(pim, bad, msg):
    cfg, _ = pim
    with pytest.raises(ValueError, match=msg):
        Engine(cfg).run(bad)


def test_burst_in_constant_time_equals_timing_every_command(pim):
    """The O(1) burst shortcut (unrecorded) and the command-by-command path (recorded) agree on
    finish, counts and per-instruction times over refresh boundaries."""
    cfg, std = pim
    rows = []
    for r in range(40):
        rows.append(simple(0xFF, std.cmd("WRGB"), count=64, opid=r))
        rows.append(column(0xFF, std.cmd("MAC16"), row=r, count=64, opid=r))
        rows.append(simple(0x0F, std.cmd("RDMAC16"), blocking=True, opid=r))
    prog = program(rows)
    fast = Engine(cfg).run(prog, instr_times=True)
    slow = Engine(cfg).run(prog, instr_times=True, record=True)
    assert fast.finish_cycle == slow.finish_cycle
    assert np.array_equal(fast.counts, slow.counts)
    assert np.array_equal(fast.instr_finish, slow.instr_finish)
    assert np.array_equal(fast.op_finish, slow.op_finish)
    assert np.array_equal(fast.row_hits, slow.row_hits)
