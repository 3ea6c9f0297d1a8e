"""Lock step (channels in the same state, addressed alike, timed once) against timing every
channel: the same figures for every run of random multi-run programs, and the same device state
afterwards as seen through a later run and the engine's own read-outs."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.commands import barrier, column, precharge, program, simple
from sim.config import load_config
from sim.dram_spec import compile_standard
from sim.engine import Engine

FIGURES = ("start_cycle", "finish_cycle", "counts", "row_hits", "row_misses", "refreshes", "idle_refreshes",
           "channel_finish", "first_issue", "op_counts", "op_first_issue", "op_finish", "instr_first_issue",
           "instr_finish")


def _figures(res) -> dict:
    return {k: np.array(getattr(res, k)) for k in FIGURES}


def _readouts(eng: Engine, until: int) -> dict:
    return {"channel_finish": eng.channel_finish, "front": eng.front, "total_counts": eng.total_counts,
            "active": eng.active_cycles(until)}


@st.composite
def multi_run_programs(draw):
    """Runs whose instructions mostly address every channel (lock step applies), with some that
    address a subset (groups split, then must merge again only when the states agree)."""
    n_ch = draw(st.integers(2, 4))
    nrefi = draw(st.sampled_from([250, 400, 3333]))
    cfg = load_config("pim-gpt", {"dram.channels": n_ch, "dram.timing.nREFI": nrefi,
                                  "dram.timing.nRFC": 100 if nrefi < 500 else 210})
    std = compile_standard(cfg)
    full = (1 << n_ch) - 1
    runs = []
    for r in range(draw(st.integers(1, 4))):
        items = []
        if draw(st.booleans()):  # every channel alone, alike but for its row: equal times, other rows
            cnt = draw(st.integers(1, 4))
            items += [column(1 << ch, std.cmd("MAC16"), row=draw(st.integers(0, 2)), count=cnt) for ch in range(n_ch)]
        for _ in range(draw(st.integers(1, 12))):
            mask = full if draw(st.integers(0, 3)) else draw(st.integers(1, full))
            kind = draw(st.sampled_from(["all", "all", "bank", "simple", "barrier", "precharge"]))
            if kind == "all":
                cnt = draw(st.integers(1, 8))
                items.append(column(mask, std.cmd(draw(st.sampled_from(["MAC16", "WRA16"]))),
                                    row=draw(st.integers(0, 3)), count=cnt, col=draw(st.integers(0, 64 - cnt)),
                                    blocking=draw(st.booleans())))
            elif kind == "bank":
                cnt = draw(st.integers(1, 4))
                items.append(column(mask, std.cmd(draw(st.sampled_from(["RD", "WR", "MAC"]))), row=draw(st.integers(0, 3)),
                                    count=cnt, col=draw(st.integers(0, 64 - cnt)), bank=draw(st.integers(0, 15))))
            elif kind == "simple":
                items.append(simple(mask, std.cmd(draw(st.sampled_from(["WRGB", "RDMAC16"]))),
                                    count=draw(st.integers(1, 4)), blocking=draw(st.booleans())))
            elif kind == "barrier":
                items.append(barrier(mask))
            else:
                items.append(precharge(mask))
        prog = program(items)
        prog[:, 8] = np.sort(draw(st.lists(st.integers(0, 3), min_size=len(prog), max_size=len(prog))))
        gap = draw(st.integers(0, 700))
        runs.append((prog, gap, draw(st.booleans())))
    return cfg, runs, draw(st.booleans())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(multi_run_programs())
def test_lockstep_equals_timing_every_channel(case):
    cfg, runs, refresh = case
    fast = Engine(cfg, refresh=refresh, lockstep=True)
    every = Engine(cfg, refresh=refresh, lockstep=False)
    for prog, gap, close in runs:
        start = max(int(every.front.max()), every.now) + gap
        a = _figures(fast.run(prog, start_cycle=start, close_rows=close, instr_times=True))
        b = _figures(every.run(prog, start_cycle=start, close_rows=close, instr_times=True))
        for k in FIGURES:
            assert np.array_equal(a[k], b[k]), k
        until = every.now + 5000
        ra, rb = _readouts(fast, until), _readouts(every, until)
        for k in ra:
            assert np.array_equal(ra[k], rb[k]), k
    # the state left behind times a later run alike, on every channel
    probe = program([column((1 << cfg.dram.channels) - 1, compile_standard(cfg).cmd("MAC16"), row=1, count=3)])
    s = max(int(every.front.max()), every.now)
    a, b = _figures(fast.run(probe, start_cycle=s)), _figures(every.run(probe, start_cycle=s))
    for k in FIGURES:
        assert np.array_equal(a[k], b[k]), k


def test_channels_addressed_alike_are_timed_once():
    """Lock step is really taken: a broadcast program costs one channel's work. The class labels
    say which channels ended in the same state."""
    cfg = load_config("pim-gpt", {"dram.channels": 4})
    std = compile_standard(cfg)
    eng = Engine(cfg)
    eng.run(program([column(0b1111, std.cmd("MAC16"), row=2, count=64)] * 4))
    from sim.engine import C_CLASS

    assert eng.chs[:, C_CLASS].tolist() == [0, 0, 0, 0]
    eng.run(program([column(0b0010, std.cmd("WR"), row=7, count=1, bank=3)]))  # channel 1 alone
    assert eng.chs[:, C_CLASS].tolist() == [0, 1, 0, 0]


def test_channels_with_other_open_rows_are_not_merged():
    """Two channels, equal in every issue cycle, differ only in the row they hold open: a
    broadcast to row 1 hits on one and misses on the other."""
    cfg = load_config("pim-gpt", {"dram.channels": 2})
    std = compile_standard(cfg)
    mac = std.cmd("MAC16")
    prog = program([column(0b01, mac, row=1, count=4), column(0b10, mac, row=2, count=4), column(0b11, mac, row=1, count=4)])
    res = Engine(cfg).run(prog, close_rows=False)
    assert res.row_misses.tolist() == [1, 2]
    assert res.row_hits.tolist() == [7, 6]
    assert res.channel_finish[1] > res.channel_finish[0]
