"""The AiM simulator's trace front end (`Engine(cfg, front_end="aim")`, `pimsim run-trace`).

Rules (from arkhadem/aim_simulator: src/memory_system/impl/aim_DRAM_system.cpp,
src/dram_controller/impl/AiM_dram_controller.cpp, src/dram_controller/controller.h), in the
controller's cycles, for a line decoded at cycle T:
  R1 its commands issue from T + 1; the first line is decoded at the start cycle;
  R2 every channel of its mask gets one request per command (opsize of them), into an in-order
     buffer of 33; request j of a channel enters at max(T, cycle request j - 33 left), and a
     request leaves when its final command (the MAC16, not its ACT/PRE) issues;
  R3 the next line is decoded the cycle after the line's last request entered, on whichever
     channel that is (so one full buffer stalls all channels); a host-only line (EWADD, GPR,
     CFR) takes one decode cycle;
  R4 RD_MAC / RD_AF: the next line is decoded at the cycle the data returns (issue + nCLREG + nBL),
     so it issues one cycle after that;
  R5 SYNC / EOC: one request per channel, at the buffer head one cycle after the previous request
     left (and after it entered); it calls back one cycle later once every earlier request's data
     has departed (MAC16: issue + 1); the run ends (that simulator's memory_system_cycles) at the
     last callback.
GDDR6-AiM preset numbers used below (hw_configs/aim-32ch.yaml): nRCDRDMAC 56, nCCDL 2 (MAC16 to
MAC16), nRTP 12, nRP 32, nRAS 54, nRC 89, nCLREG 0, nBL 2. Refresh off throughout.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim.aim_trace as aim_trace
from sim.aim_trace import load_aim_trace_lines, parse_trace, trace_host_lines
from sim.cli import main as cli
from sim.config import load_config
from sim.engine import Engine

CH0, CH1 = 0x80000000, 0x40000000  # AiM masks: bit 31 - c is channel c


@pytest.fixture(scope="module")
def cfg():
    return load_config("aim-32ch")


def run_aim(cfg, text):
    prog, host = load_aim_trace_lines(text, cfg)
    eng = Engine(cfg, refresh=False, front_end="aim")
    return eng.run(prog, host_lines=host, close_rows=False, record=True)


def issues(res, name, ch):
    sched = res.schedule
    cmd = res.command_names.index(name)
    return sched["cycle"][(sched["cmd"] == cmd) & (sched["channel"] == ch)].tolist()


ALTERNATING = (f"AiM MAC_ABK 64 {CH0:#x} 0\nAiM MAC_ABK 64 {CH1:#x} 0\n"
               f"AiM MAC_ABK 64 {CH0:#x} 1\nAiM MAC_ABK 64 {CH1:#x} 1\nAiM EOC\n")


def test_two_channels_alternating_behind_a_full_queue(cfg):
    """Lines alternate ch0, ch1, ch0, ch1 (64 MAC16 each), then EOC; derived by hand:

    L1 (ch0, row 0) decoded at T1 = 0. ACT16 at 1 (R1), MAC16 m (m = 0..63) at 1 + 56 + 2m = 57 + 2m.
       Requests 0..32 enter at 0; request j >= 33 waits for request j-33 to leave: request 63
       enters at MAC 30's issue, 57 + 60 = 117 (R2). T2 = 118 (R3).
    L2 (ch1, row 0), ch1 idle until now: ACT16 at T2 + 1 = 119, MACs at 175 + 2m, last 301.
       Request 63 enters at MAC 30: 175 + 60 = 235; T3 = 236. (Fed in parallel, ch1 would have
       started at cycle 0: the full buffer of ch0 held back ch1's line.)
    L3 (ch0, row 1): PREA at max(T3 + 1 = 237, last MAC 183 + nRTP 12 = 195, ACT 1 + nRAS 54) = 237,
       ACT16 at 237 + nRP 32 = 269 (>= 1 + nRC 89), MACs at 325 + 2m, last 451; request 127
       enters at request 94's MAC: 325 + 60 = 385; T4 = 386.
    L4 (ch1, row 1): PREA at max(387, 301 + 12) = 387, ACT16 at 419, MACs at 475 + 2m, last 601;
       request 127 enters at 475 + 60 = 535; T5 = 536.
    EOC (R5): ch1 (request 128) enters at max(536, request 95 left = 475 + 62 = 537) = 537, is at
       the head at max(537, last MAC 601) + 1 = 602 and calls back at max(602, 601 + 1) + 1 = 603.
       ch0 enters at max(536, 387) = 536, head max(536, 451) + 1 = 537, callback 538; the idle
       channels call back at 538 too. The run ends at 603.
    With the pim-gpt front end both channels run in parallel: 2 row passes = 2 x 226 = 452
    (closing precharge included)."""
    res = run_aim(cfg, ALTERNATING)
    assert issues(res, "ACT16", 0) == [1, 269]
    assert issues(res, "ACT16", 1) == [119, 419]
    assert issues(res, "PREA", 0) == [237] and issues(res, "PREA", 1) == [387]
    mac0, mac1 = issues(res, "MAC16", 0), issues(res, "MAC16", 1)
    assert mac0 == [57 + 2 * m for m in range(64)] + [325 + 2 * m for m in range(64)]
    assert mac1 == [175 + 2 * m for m in range(64)] + [475 + 2 * m for m in range(64)]
    assert res.front_end_cycles == 603
    prog, _ = load_aim_trace_lines(ALTERNATING, cfg)
    assert Engine(cfg, refresh=False).run(prog).cycles == 2 * 226


def test_run_trace_defaults_to_the_aim_front_end(cfg, tmp_path, capsys):
    trace = tmp_path / "alt.trace"
    trace.write_text(ALTERNATING)
    out = tmp_path / "r.json"
    assert cli(["run-trace", str(trace), "--hw", "aim-32ch", "--no-refresh", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "front end aim" in printed and "cycles=603 " in printed
    got = json.loads(out.read_text())
    assert got["cycles"] == 603 and got["front_end"] == "aim"
    assert got["commands"] == {"ACT16": 4, "PREA": 2, "MAC16": 256}  # rows left open, as there
    assert cli(["run-trace", str(trace), "--hw", "aim-32ch", "--no-refresh", "--front-end", "pim-gpt",
                "--json", str(out)]) == 0
    assert "front end pim-gpt" in capsys.readouterr().out
    got = json.loads(out.read_text())
    assert got["cycles"] == 452 and got["front_end"] == "pim-gpt"
    with pytest.raises(SystemExit):
        cli(["run-trace", str(trace), "--front-end", "ramulator"])
    assert "invalid choice: 'ramulator'" in capsys.readouterr().err


def test_row_pass_golden_of_that_simulator(cfg):
    """1024 all-bank row passes: that simulator reports 231,383 cycles (REFERENCE 2a): ACT16 of row
    r at 1 + 226 r, last MAC16 at 1 + 1023 x 226 + 56 + 63 x 2 = 231,381, EOC at the head at
    231,382, callback (MAC16 departed at 231,382) at 231,383. The pim-gpt front end keeps its
    golden: 1024 x 226 = 231,424 with the closing precharge."""
    prog, host = load_aim_trace_lines(aim_trace.generate_row_passes(1024), cfg)
    res = Engine(cfg, refresh=False, front_end="aim").run(prog, host_lines=host, close_rows=False)
    assert res.front_end_cycles == 231_383
    assert res.command_totals() == {"ACT16": 32 * 1024, "PREA": 32 * 1023, "MAC16": 32 * 1024 * 64}
    assert Engine(cfg, refresh=False).run(prog).cycles == 1024 * 226


def test_host_only_lines_take_one_decode_cycle_each(cfg):
    """Three host-only lines before a row pass: ACT16 at 3 + 1 = 4 instead of 1 (R3), last MAC16
    at 4 + 56 + 126 = 186, EOC callback at 186 + 1 + 1 = 188 (185 without them). Comments and
    blank lines cost nothing (that trace reader skips them without a cycle)."""
    body = f"AiM MAC_ABK 64 {CH0:#x} 0\nAiM EOC\n"
    plain = run_aim(cfg, "# comment\n\n" + body)
    assert issues(plain, "ACT16", 0) == [1] and plain.front_end_cycles == 185
    hosted = run_aim(cfg, "W GPR 3\nAiM EWADD 1 0 1\n# comment\nW CFR 0 0\n" + body)
    assert issues(hosted, "ACT16", 0) == [4] and hosted.front_end_cycles == 188


def test_blocking_read_holds_every_channel_until_a_cycle_after_its_data(cfg):
    """RD_MAC on ch0, then a row pass on idle ch1: ch1's ACT16 issues at the RDMAC16's data return
    (issue + nCLREG 0 + nBL 2) + 1 (R4); fed in parallel it would issue at cycle 0."""
    text = f"AiM MAC_ABK 64 {CH0:#x} 0\nAiM RD_MAC 0 {CH0:#x}\nAiM MAC_ABK 64 {CH1:#x} 0\nAiM EOC\n"
    res = run_aim(cfg, text)
    (rd,) = issues(res, "RDMAC16", 0)
    assert issues(res, "ACT16", 1) == [rd + 2 + 1]
    prog, _ = load_aim_trace_lines(text, cfg)
    par = Engine(cfg, refresh=False).run(prog, record=True)
    assert issues(par, "ACT16", 1) == [0]


def test_aim_and_memory_requests_do_not_share_a_channel(cfg):
    """A memory write (W MEM) after an AiM line enters only when the AiM buffer is empty (the last
    MAC16 left at 57 + 126 = 183): the line after it is decoded at 184, so ch1's ACT16 issues at
    185 (R1); without the write, ch1's line is decoded at 118 (as in the alternating case)."""
    mac = f"AiM MAC_ABK 64 {CH0:#x} 0\n"
    tail = f"AiM MAC_ABK 64 {CH1:#x} 0\nAiM EOC\n"
    assert issues(run_aim(cfg, mac + tail), "ACT16", 1) == [119]
    assert issues(run_aim(cfg, mac + "W MEM 0 0 5\n" + tail), "ACT16", 1) == [185]


LINE = st.one_of(
    st.tuples(st.just("MAC_ABK"), st.integers(1, 64), st.integers(0, 3)),
    st.tuples(st.just("WR_GB"), st.integers(1, 64), st.just(0)),
    st.tuples(st.just("WR_BIAS"), st.just(1), st.just(0)),
    st.tuples(st.just("EWMUL"), st.integers(1, 8), st.integers(0, 3)),
    st.tuples(st.just("COPY_GBBK"), st.integers(1, 8), st.integers(0, 3)),
    st.tuples(st.just("W_MEM"), st.just(1), st.integers(0, 3)),
)


def render(line):
    name, n, row = line
    if name == "MAC_ABK" or name == "EWMUL":
        return f"AiM {name} {n} {CH0:#x} {row}"
    if name == "WR_GB":
        return f"AiM WR_GB {n} 0 {CH0:#x}"
    if name == "WR_BIAS":
        return f"AiM WR_BIAS 0 {CH0:#x}"
    if name == "COPY_GBBK":
        return f"AiM COPY_GBBK {n} {CH0:#x} 2 {row}"
    return f"W MEM 0 3 {row}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINE, min_size=1, max_size=12))
def test_single_channel_without_blocking_reads_is_the_parallel_schedule_one_cycle_later(cfg, lines):
    """One channel, no blocking reads: the decoder and the buffer never hold back a command (a
    line waits for room only while the channel is busy with 33 earlier requests, and the
    controller issues at most one command per cycle, so it never outruns one line per cycle).
    So the aim schedule is the pim-gpt schedule shifted by the one decode cycle of R1, and the
    EOC callback comes one cycle after the last completion (R5): cycles differ by exactly 2."""
    text = "\n".join(render(x) for x in lines) + "\nAiM EOC\n"
    prog, host = load_aim_trace_lines(text, cfg)
    aim = Engine(cfg, refresh=False, front_end="aim").run(prog, host_lines=host, close_rows=False, record=True)
    par = Engine(cfg, refresh=False).run(prog, close_rows=False, record=True)
    assert np.array_equal(aim.schedule["cmd"], par.schedule["cmd"])
    assert np.array_equal(aim.schedule["cycle"], par.schedule["cycle"] + 1)
    assert aim.front_end_cycles == par.cycles + 2


def test_host_lines_fast_reader_matches_the_line_reader(cfg):
    """Host-only line counts per instruction, read piece by piece (small pieces, so runs of host
    lines cross piece boundaries) and line by line."""
    rng = np.random.default_rng(7)
    pool = ["W GPR 1", "R GPR 2", "AiM EWADD 4 1 2", "W CFR 2 1", "R CFR 0 0", "# note", "",
            f"AiM MAC_ABK 8 {CH0:#x} 3", f"AiM WR_GB 4 0 {CH1:#x}", "AiM SYNC", "R MEM 1 2 3"]
    text = "\n".join(rng.choice(pool, 400).tolist()) + "\nAiM EOC\nW GPR 9\n"
    limits = aim_trace.TraceLimits.from_config(cfg)
    expected = trace_host_lines(parse_trace(text, limits))
    reader = aim_trace._FastReader("<text>", limits, aim_trace._compile(cfg))
    prog = reader.read(aim_trace._text_pieces(text.encode(), 97), len(text), False, check_text=False)
    assert len(prog) == len(expected) and reader.host_lines.tolist() == expected.tolist()
    assert load_aim_trace_lines(text, cfg)[1].tolist() == expected.tolist()
    assert expected.sum() == sum(line.split()[:2] in (["W", "GPR"], ["R", "GPR"], ["AiM", "EWADD"], ["W", "CFR"],
                                                      ["R", "CFR"]) for line in text.split("\nAiM EOC")[0].splitlines())


def test_bad_front_end_and_host_lines(cfg):
    with pytest.raises(ValueError, match="unknown front end 'asic'"):
        Engine(cfg, front_end="asic")
    prog, host = load_aim_trace_lines(f"AiM MAC_ABK 2 {CH0:#x} 0\n", cfg)
    with pytest.raises(ValueError, match="applies to the aim front end"):
        Engine(cfg).run(prog, host_lines=host)
    with pytest.raises(ValueError, match="one count per instruction"):
        Engine(cfg, front_end="aim").run(prog, host_lines=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"host_lines\[0\] = -1"):
        Engine(cfg, front_end="aim").run(prog, host_lines=np.array([-1]))
