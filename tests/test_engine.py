"""Timing engine: goldens derived by hand from the timing tables, datasheet-style tests per
constraint row, GDDR6 bandwidth/latency formulas, refresh, and property tests against the
independent schedule checker (sim/checker.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.checker import assert_schedule_ok, check_counts, check_schedule, finish_cycle
from sim.commands import ALL_BANKS, barrier, column, precharge, program, raw, simple
from sim.config import load_config
from sim.dram_spec import compile_standard
from sim.engine import Engine, run_program

# pim-gpt / AiM preset values used below (hw_configs/pim-gpt.yaml, REFERENCE section 2):
# nRCDRDMAC 56, nCCDL 2, nRTP 12, nRP 32, nRAS 54, nRCDWR 28, nCWL 6, nBL 2, nWR 33, nRFC 210, nREFI 3333
ROW_PASS = 56 + 63 * 2 + 12 + 32  # = 226: ACT16 -> 64 MAC16 -> PREA -> precharged
WR_ABK = 28 + 6 + 2 + 33 + 32  # = 101: ACT16 -> WRA16 (auto-precharge) -> precharged


@pytest.fixture(scope="module")
def pim():
    cfg = load_config("pim-gpt", {"dram.channels": 2})
    return cfg, compile_standard(cfg)


@pytest.fixture(scope="module")
def gddr6():
    cfg = load_config("gddr6-14gbps")
    return cfg, compile_standard(cfg)


def schedule_of(res, std, name):
    s = res.schedule
    return s[s["cmd"] == std.cmd(name)]


# --------------------------------------------------------------------------- goldens


@pytest.mark.parametrize("n_rows", [1, 2, 7, 100])
def test_row_passes_take_226_cycles_each(pim, n_rows):
    cfg, std = pim
    prog = program([column(1, std.cmd("MAC16"), row=r, count=64) for r in range(n_rows)])
    res = run_program(cfg, prog, refresh=False, record=True)
    assert res.cycles == n_rows * ROW_PASS == n_rows * 226
    assert res.command_totals() == {"ACT16": n_rows, "PREA": n_rows, "MAC16": 64 * n_rows}
    acts = schedule_of(res, std, "ACT16")["cycle"]
    assert list(acts) == [226 * r for r in range(n_rows)]
    macs = schedule_of(res, std, "MAC16")["cycle"][:64]
    assert list(macs) == [56 + 2 * k for k in range(64)]


def test_all_bank_write_takes_101_cycles(pim):
    cfg, std = pim
    res = run_program(cfg, program([column(1, std.cmd("WRA16"), row=5, count=1)]), refresh=False, record=True)
    assert res.cycles == WR_ABK == 101
    assert list(res.schedule["cycle"]) == [0, 28]


def test_back_to_back_all_bank_writes(pim):
    cfg, std = pim
    res = run_program(cfg, program([column(1, std.cmd("WRA16"), row=r, count=1) for r in range(10)]), refresh=False)
    assert res.cycles == 10 * 101  # WRA16 -> next ACT16: nCWL + nBL + nWR + nRP = 73, + nRCDWR 28


def test_row_hit_skips_activate(pim):
    cfg, std = pim
    mac = std.cmd("MAC16")
    # two half-row bursts on the same row: one ACT16, the second burst continues at nCCDL
    res = run_program(cfg, program([column(1, mac, row=3, count=32), column(1, mac, row=3, count=32, col=32)]),
                      refresh=False)
    assert res.cycles == ROW_PASS
    assert int(res.row_hits.sum()) == 63 and int(res.row_misses.sum()) == 1


def test_channels_run_in_parallel(pim):
    cfg, std = pim
    res = run_program(cfg, program([column(0b11, std.cmd("MAC16"), row=r, count=64) for r in range(3)]), refresh=False)
    assert res.cycles == 3 * ROW_PASS
    assert list(res.channel_finish) == [3 * ROW_PASS] * 2


def test_blocking_read_holds_back_only_its_channels(pim):
    cfg, std = pim
    # channel 0: row pass then RDMAC16 (blocking; done = nCLREG 0 + nBL 2); channel 1 does not wait
    rdmac = std.cmd("RDMAC16")
    prog = program([column(0b01, std.cmd("MAC16"), row=0, count=64),
                    simple(0b01, rdmac, blocking=True),
                    column(0b10, std.cmd("MAC16"), row=0, count=64),
                    simple(0b11, rdmac, blocking=True),
                    column(0b10, std.cmd("MAC16"), row=1, count=1)])
    res = run_program(cfg, prog, refresh=False, record=True)
    s = res.schedule
    rd = s[s["cmd"] == rdmac]
    # TMOD to register mode after the last MAC16 (bus), RDMAC16 nMODCH = 32 later
    assert rd[0]["cycle"] == 182 + 1 + 32
    ch1 = s[s["channel"] == 1]
    assert ch1[0]["cmd"] == std.cmd("ACT16") and ch1[0]["cycle"] == 0  # not held back by channel 0
    # the blocking read on both channels holds channel 1 until channel 0's read has returned too
    rd_both = rd[rd["instr"] == 3]
    released = int((rd_both["cycle"] + 0 + 2).max())
    after = ch1[ch1["instr"] == 4]
    assert after["release"].min() == released and after["cycle"].min() >= released


def test_barrier_waits_for_all_channels(pim):
    cfg, std = pim
    prog = program([column(0b01, std.cmd("MAC16"), row=0, count=64), barrier(0b11),
                    column(0b10, std.cmd("MAC16"), row=0, count=64)])
    res = run_program(cfg, prog, refresh=False, record=True)
    s = res.schedule
    first_ch1 = s[s["channel"] == 1]["cycle"].min()
    # everything on channel 0 issued before the barrier has completed: last MAC16 at 182, done 183
    assert first_ch1 == 183
    assert res.cycles == 183 + ROW_PASS


# --------------------------------------------------------------------------- per constraint row


def _targets(scope: str, std, a: int, b: int, bpg: int):
    """Bank of A and bank of B such that the two overlap at `scope` and at no narrower scope."""
    a_all, b_all = std.target_all[a], std.target_all[b]
    if a_all or b_all:
        return (ALL_BANKS if a_all else 0), (ALL_BANKS if b_all else 0)
    return {"bank": (0, 0), "bankgroup": (0, 1), "channel": (0, bpg)}[scope]


def _expected_gap(std, a: int, b: int, bank_a: int, bank_b: int, bpg: int) -> int:
    """The largest non-window row of the raw table (groups expanded) that applies to A -> B."""
    names = std.command_names

    def overlap(scope):
        if bank_a == ALL_BANKS or bank_b == ALL_BANKS or scope == "channel":
            return True
        if scope == "bank":
            return bank_a == bank_b
        return bank_a // bpg == bank_b // bpg

    gap = std.issue_gap
    for after, before, scope, cycles, window in std.table:
        if window is None and names[a] in after and names[b] in before and overlap(scope):
            gap = max(gap, cycles)
    return gap


def _row_cases(preset: str):
    cfg = load_config(preset)
    std = compile_standard(cfg)
    cases = set()
    for after, before, scope, cycles, window in std.table:
        if window is None:  # every member pair of the row (windows have their own test)
            cases |= {(preset, a, b, scope) for a in after for b in before}
    return sorted(cases)


@pytest.mark.parametrize("preset,a_name,b_name,scope", _row_cases("pim-gpt") + _row_cases("gddr6-14gbps"))
def test_every_constraint_row_blocks_until_its_cycle(preset, a_name, b_name, scope):
    """A at cycle 0, then B: B issues exactly at the largest applicable row of the YAML table (read
    from the raw rows, not the engine's compiled CSR form), and the independent checker confirms B
    one cycle earlier would break a rule. The values themselves are the preset's; the hand-derived
    goldens above pin the main ones (nRCDRDMAC, nCCDL, nRTP, nRP, nRCDWR, nWR, nRCDRD, nCL, nRC...)."""
    cfg = load_config(preset, {"dram.channels": 1})
    std = compile_standard(cfg)
    bpg = cfg.dram.banks_per_group
    a, b = std.cmd(a_name), std.cmd(b_name)
    bank_a, bank_b = _targets(scope, std, a, b, bpg)
    expected = _expected_gap(std, a, b, bank_a, bank_b, bpg)
    prog = program([raw(1, a, bank=bank_a, row=0, col=0), raw(1, b, bank=bank_b, row=0, col=0)])
    res = Engine(cfg, refresh=False).run(prog, record=True, close_rows=False)
    assert list(res.schedule["cycle"]) == [0, expected]
    early = res.schedule.copy()
    early["cycle"][1] = expected - 1
    if expected - 1 >= 0:
        kinds = {v.kind for v in check_schedule(early, cfg, prog, refresh=False, tight=False) if v.index == 1}
        assert kinds & {"timing", "bus"}


def test_four_activate_window(gddr6):
    """nFAW = 60 (override; the stock 43 < 4 x nRRDS never binds): 4 ACTs per 60 cycles."""
    cfg = load_config("gddr6-14gbps", {"dram.timing.nFAW": 60, "dram.channels": 1})
    std = compile_standard(cfg)
    act = std.cmd("ACT")
    banks = [0, 4, 8, 12, 1, 5, 9, 13, 2]  # alternate bank groups: nRRDS = 11 between ACTs
    res = Engine(cfg, refresh=False).run(program([raw(1, act, bank=b, row=0) for b in banks]), record=True,
                                         close_rows=False)
    assert list(res.schedule["cycle"]) == [0, 11, 22, 33, 60, 71, 82, 93, 120]


# --------------------------------------------------------------------------- plain GDDR6


def test_gddr6_unloaded_read_latency(gddr6):
    cfg, std = gddr6
    res = Engine(cfg, refresh=False).run(program([column(1, std.cmd("RD"), row=0, count=1, bank=3)]),
                                         close_rows=False, record=True)
    assert res.cycles == 30 + 24 + 2  # nRCDRD + nCL + nBL


def _read_stream(cfg, std, bank_order, repeats):
    rd = std.cmd("RD")
    rows = [column(1, rd, row=0, count=1, col=c, bank=b)
            for _ in range(repeats) for c in range(cfg.dram.columns_per_row) for b in bank_order]
    return Engine(cfg, refresh=False).run(program(rows), record=True, close_rows=False)


def test_gddr6_bank_interleaved_reads_reach_peak(gddr6):
    cfg, std = gddr6
    order = [g * 4 + i for i in range(4) for g in range(4)]  # consecutive reads in different bank groups
    res = _read_stream(cfg, std, order, repeats=32)
    reads = schedule_of(res, std, "RD")["cycle"]
    peak_gap = max(cfg.dram.timing["nBL"], cfg.dram.timing["nCCDS"])  # 2: one 32 B burst per 2 cycles
    efficiency = len(reads) * peak_gap / (reads[-1] + peak_gap - reads[0])
    assert efficiency >= 0.99
    assert np.all(np.diff(reads[64:]) == peak_gap)  # steady state is exactly the peak


def test_gddr6_same_bank_group_stream_is_limited_by_nccdl(gddr6):
    cfg, std = gddr6
    res = _read_stream(cfg, std, [0, 1, 2, 3], repeats=4)
    reads = schedule_of(res, std, "RD")["cycle"]
    assert np.all(np.diff(reads[8:]) == 4)  # nCCDL


def test_gddr6_row_miss_stream_single_bank_is_limited_by_nrc(gddr6):
    cfg, std = gddr6
    rd = std.cmd("RD")
    res = Engine(cfg, refresh=False).run(program([column(1, rd, row=r, count=1, bank=0) for r in range(20)]),
                                         record=True)
    acts = schedule_of(res, std, "ACT")["cycle"]
    # ACT -> RD (nRCDRD 30) -> PRE (max(RD + nRTP 4, ACT + nRAS 60)) -> ACT (+ nRP 30): max(nRC 90, 60 + 30)
    assert np.all(np.diff(acts) == 90)


def _miss_stream_acts(cfg):
    std = compile_standard(cfg)
    rd = std.cmd("RD")
    order = [g * 4 + i for i in range(4) for g in range(4)]  # alternate bank groups
    prog = program([column(1, rd, row=r, count=1, bank=b) for r in range(3) for b in order])
    res = Engine(cfg, refresh=False).run(prog, record=True)
    assert_schedule_ok(res.schedule, cfg, prog, refresh=False, close_rows=True)
    return schedule_of(res, std, "ACT")["cycle"]


def test_gddr6_row_miss_stream_across_banks_in_order():
    """In program order the next ACT waits behind this request's RD: period nRCDRD + 1 = 31,
    which is above nRRDS (11), nFAW / 4 (10.75) and nRC / 16 banks."""
    acts = _miss_stream_acts(load_config("gddr6-14gbps", {"dram.channels": 1}))
    assert np.all(np.diff(acts[:16]) == 30 + 1)


def test_gddr6_row_miss_stream_limited_by_nrrd_then_nfaw():
    """With a short nRCDRD (5) the stream is limited by nRRDS = 11; with nFAW = 60 by the window:
    four ACTs at 11-cycle spacing, the fifth at the first ACT + 60."""
    acts = _miss_stream_acts(load_config("gddr6-14gbps", {"dram.channels": 1, "dram.timing.nRCDRD": 5}))
    assert np.all(np.diff(acts[:16]) == 11)
    acts = _miss_stream_acts(load_config("gddr6-14gbps", {"dram.channels": 1, "dram.timing.nRCDRD": 5,
                                                          "dram.timing.nFAW": 60}))
    assert list(acts[:9]) == [0, 11, 22, 33, 60, 71, 82, 93, 120]


# --------------------------------------------------------------------------- refresh


def test_refresh_count_and_lost_time_follow_nrefi_and_nrfc(pim):
    cfg, std = pim
    n_rows = 1024
    prog = program([column(1, std.cmd("MAC16"), row=r, count=64) for r in range(n_rows)])
    base = run_program(cfg, prog, refresh=False).cycles
    res = run_program(cfg, prog, refresh=True, record=True)
    n_ref = res.command_totals()["REFab"]
    refs = schedule_of(res, std, "REFab")
    # one refresh per elapsed nREFI: due at k x 3333, issued at the first command due after it
    assert n_ref == res.cycles // 3333
    assert np.all(refs["release"] == 3333 * np.arange(1, n_ref + 1))
    lost = res.cycles - base
    # each refresh costs nRFC, plus at most the re-open cost when it interrupts a row pass:
    # nRTP (last MAC16 -> PREA) + nRP (PREA -> REFab) + nRCDRDMAC (ACT16 -> MAC16) = 100
    assert n_ref * 210 <= lost <= n_ref * (210 + 12 + 32 + 56)
    assert_schedule_ok(res.schedule, cfg, prog, refresh=True, close_rows=True)


def test_idle_gap_gets_its_refreshes_on_time(pim):
    cfg, std = pim
    eng = Engine(cfg, refresh=True)
    eng.run(program([column(1, std.cmd("MAC16"), row=0, count=1)]))
    res = eng.run(program([column(1, std.cmd("MAC16"), row=1, count=1)]), start_cycle=10 * 3333 + 5, record=True)
    refs = schedule_of(res, std, "REFab")
    assert len(refs) == 10
    assert list(refs["cycle"]) == [3333 * k for k in range(1, 11)]


# --------------------------------------------------------------------------- properties


def _stream(draw, std, n_channels, n_banks, n_cols, all_bank_cmds, bank_cmds, simple_cmds):
    items = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["all", "bank", "simple", "barrier", "precharge"]))
        mask = draw(st.integers(1, (1 << n_channels) - 1))
        if kind == "all" and all_bank_cmds:
            cmd = std.cmd(draw(st.sampled_from(all_bank_cmds)))
            cnt = draw(st.integers(1, 8))
            items.append(column(mask, cmd, row=draw(st.integers(0, 3)), count=cnt, col=draw(st.integers(0, n_cols - cnt)),
                                blocking=draw(st.booleans())))
        elif kind == "bank":
            cmd = std.cmd(draw(st.sampled_from(bank_cmds)))
            cnt = draw(st.integers(1, 4))
            items.append(column(mask, cmd, row=draw(st.integers(0, 3)), count=cnt, col=draw(st.integers(0, n_cols - cnt)),
                                bank=draw(st.integers(0, n_banks - 1))))
        elif kind == "simple" and simple_cmds:
            items.append(simple(mask, std.cmd(draw(st.sampled_from(simple_cmds))), count=draw(st.integers(1, 4)),
                                blocking=draw(st.booleans())))
        elif kind == "barrier":
            items.append(barrier(mask))
        else:
            items.append(precharge(mask))
    return program(items)


@st.composite
def aim_streams(draw):
    n_ch = draw(st.integers(1, 3))
    nrefi = draw(st.sampled_from([250, 400, 3333]))  # short intervals with a short nRFC (a config rule:
    cfg = load_config("pim-gpt", {"dram.channels": n_ch, "dram.timing.nREFI": nrefi,  # nRFC <= nREFI / 2)
                                  "dram.timing.nRFC": 100 if nrefi < 500 else 210})
    std = compile_standard(cfg)
    prog = _stream(draw, std, n_ch, 16, 64, ["MAC16", "WRA16", "AF16", "EWMUL16"], ["RD", "WR", "MAC", "RDCP", "WRCP"],
                   ["WRGB", "WRMAC16", "RDMAC16", "RDAF16"])
    return cfg, std, prog, draw(st.booleans())


@st.composite
def gddr6_streams(draw):
    nrefi = draw(st.sampled_from([220, 300, 3333]))
    cfg = load_config("gddr6-14gbps", {"dram.timing.nREFI": nrefi, "dram.timing.nRFC": 100 if nrefi < 500 else 211,
                                        "dram.timing.nFAW": draw(st.sampled_from([43, 60]))})
    std = compile_standard(cfg)
    return cfg, std, _stream(draw, std, 2, 16, 64, [], ["RD", "WR"], []), draw(st.booleans())


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(aim_streams(), st.integers(0, 5000))
def test_random_aim_streams_are_legal_and_tight(case, start):
    cfg, std, prog, refresh = case
    res = Engine(cfg, refresh=refresh).run(prog, record=True, start_cycle=start)
    assert np.all(res.schedule["release"] >= start) if not refresh else True
    assert_schedule_ok(res.schedule, cfg, prog, refresh=refresh, close_rows=True, start_cycle=start)
    in_run = res.schedule[res.schedule["instr"] != -2]  # idle-gap refresh is not the run's
    assert check_counts(in_run, res.counts, std.command_names) == []
    own = res.schedule[res.schedule["instr"] >= 0]
    # finish = the latest completion of the run's own commands (refresh excluded), `done` as the
    # checker reads it from the standard
    assert res.finish_cycle == finish_cycle(res.schedule, cfg, start)


@SETTINGS
@given(gddr6_streams())
def test_random_gddr6_streams_are_legal_and_tight(case):
    cfg, std, prog, refresh = case
    res = Engine(cfg, refresh=refresh).run(prog, record=True)
    assert_schedule_ok(res.schedule, cfg, prog, refresh=refresh, close_rows=True)


@SETTINGS
@given(aim_streams())
def test_burst_shortcut_equals_command_by_command(case):
    """The reuse shortcut (bursts timed by their self gap) gives the same schedule to the cycle."""
    cfg, std, prog, refresh = case
    fast = Engine(cfg, refresh=refresh, fast=True).run(prog, record=True)
    slow = Engine(cfg, refresh=refresh, fast=False).run(prog, record=True)
    assert np.array_equal(fast.schedule, slow.schedule)
    assert fast.finish_cycle == slow.finish_cycle


@SETTINGS
@given(aim_streams(), st.integers(0, 25))
def test_split_runs_equal_one_run(case, cut):
    """State carries across runs: two runs (rows left open between them) time like one."""
    cfg, std, prog, refresh = case
    whole = Engine(cfg, refresh=refresh).run(prog, record=True, close_rows=False, start_cycle=0)
    eng = Engine(cfg, refresh=refresh)
    if not 0 < cut < len(prog):
        return
    first = eng.run(prog[:cut], record=True, close_rows=False, start_cycle=0)
    touched = [c for c in range(cfg.dram.channels) if np.bitwise_or.reduce(prog[cut:, 1]) >> c & 1]
    fronts = eng.front[touched]
    # the second run is handed over when its slowest channel is released; it times like the
    # tail of one run exactly when every channel it touches is released at that cycle
    second = eng.run(prog[cut:], record=True, close_rows=False, start_cycle=int(fronts.max()))
    tail = second.schedule.copy()
    tail["instr"][tail["instr"] >= 0] += cut
    joined = np.concatenate([first.schedule, tail])
    if np.all(fronts == fronts.max()) and not refresh:
        assert np.array_equal(joined, whole.schedule)
        assert max(first.finish_cycle, second.finish_cycle) == whole.finish_cycle
    assert_schedule_ok(joined, cfg, prog, refresh=refresh, runs=[(0, 0), (cut, int(fronts.max()))])


# --------------------------------------------------------------------------- bad programs


@pytest.mark.parametrize("bad,msg", [
    (column(1, 7, row=16384, count=1), "row out of range"),
    (column(1, 7, row=0, count=65), "columns out of range"),
    (column(1 << 5, 7, row=0, count=1), "channel mask"),
    (column(1, 7, row=0, count=1, bank=3), "all-bank command with a bank"),
    (column(1, 4, row=0, count=1, bank=16), "bank out of range"),
    (simple(1, 7), "OP_SIMPLE"),
    (column(1, 99, row=0, count=1), "unknown command id"),
    ([9, 1, 0, -1, 0, 0, 1, 0, 0], "unknown opcode"),
])
def test_bad_instructions_are_rejected_with_their_index(pim, bad, msg):
    cfg, std = pim
    # the ids written in the cases above: MAC16 = 7, RD = 4 (order of commands in gddr6-aim.yaml)
    assert std.cmd("MAC16") == 7 and std.cmd("RD") == 4
    with pytest.raises(ValueError, match=msg) as err:
        Engine(cfg).run(program([column(1, 7, row=0, count=1), bad]))
    assert "instruction 1" in str(err.value)


# --------------------------------------------------------------------------- edge cases


def test_refresh_due_exactly_at_a_command_goes_first(pim):
    """nREFI = 452 = 2 row passes: the third ACT16 would issue exactly at the due cycle, so REFab
    goes first (PREA already done at 420, REFab at 452), the ACT16 at 452 + nRFC 210 = 662."""
    cfg = load_config("pim-gpt", {"dram.channels": 1, "dram.timing.nREFI": 452})
    std = compile_standard(cfg)
    res = Engine(cfg).run(program([column(1, std.cmd("MAC16"), row=r, count=64) for r in range(3)]), record=True)
    assert list(schedule_of(res, std, "REFab")["cycle"]) == [452]
    assert list(schedule_of(res, std, "ACT16")["cycle"]) == [0, 226, 662]
    assert res.cycles == 662 + 226


def test_tiny_refresh_interval_still_makes_progress(pim):
    """The shortest interval a config accepts (nREFI = 2 x nRFC, less than one row pass): a refresh
    falls due during every row pass and the run still ends, legal and tight."""
    cfg = load_config("pim-gpt", {"dram.channels": 1, "dram.timing.nREFI": 200, "dram.timing.nRFC": 100})
    std = compile_standard(cfg)
    prog = program([column(1, std.cmd("MAC16"), row=r, count=64) for r in range(3)])
    res = Engine(cfg).run(prog, record=True)
    assert res.command_totals()["MAC16"] == 192
    assert_schedule_ok(res.schedule, cfg, prog, refresh=True, close_rows=True)


def test_raw_mode_change_is_tracked(pim):
    cfg, std = pim
    res = Engine(cfg, refresh=False).run(program([raw(1, std.cmd("TMOD")), simple(1, std.cmd("WRGB"))]), record=True)
    assert [std.command_names[c] for c in res.schedule["cmd"]] == ["TMOD", "WRGB"]
    assert list(res.schedule["cycle"]) == [0, 32]  # nMODCH


def test_run_reports_its_own_finish(pim):
    cfg, std = pim
    eng = Engine(cfg, refresh=False)
    eng.run(program([column(0b01, std.cmd("MAC16"), row=r, count=64) for r in range(10)]))
    res = eng.run(program([column(0b10, std.cmd("MAC16"), row=0, count=1)]), start_cycle=0)
    assert (res.start_cycle, res.finish_cycle) == (0, 56 + 12 + 32)  # ACT16, MAC16@56, PREA@68 + nRP


def test_standard_without_single_bank_activate_is_an_error(tmp_path):
    import yaml as _yaml

    from sim.config import HW_CONFIG_DIR

    std = _yaml.safe_load((HW_CONFIG_DIR / "standards" / "gddr6.yaml").read_text())
    std["commands"]["ACT"]["target"] = "all"
    (tmp_path / "allbank.yaml").write_text(_yaml.safe_dump(std))
    hw = _yaml.safe_load((HW_CONFIG_DIR / "gddr6-14gbps.yaml").read_text())
    hw["dram"]["standard"] = "allbank.yaml"  # relative to the config file
    (tmp_path / "hw.yaml").write_text(_yaml.safe_dump(hw))
    cfg = load_config(tmp_path / "hw.yaml")
    rd = compile_standard(cfg).cmd("RD")
    with pytest.raises(ValueError, match="single-bank ACT and PRE, which standard 'gddr6' does not define"):
        Engine(cfg).run(program([column(1, rd, row=0, count=1, bank=2)]))
