"""The compiled dispatcher's op memo (sim/engine.py) against timing every op: a PIM op whose
block and starting state (clamped) repeat takes a stored outcome instead of being timed, and
that must leave every figure and every bit of engine state as timing it would have. The
reference is the same dispatcher with the memo off, and the SimPy dispatcher (Engine.run per
op, which never uses the memo) in tests/test_system_dispatch.py."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_configs.isa import barrier, column, precharge, program, raw, simple
from hw_configs.program import AsicOp, PimOp, Program
from sim.config import load_config
from sim.dram_spec import compile_standard
from sim.system.model import SystemModel

STEP_ARRAYS = ("op_start", "op_finish", "critical", "command_counts_per_channel")
STEP_SCALARS = ("start_cycle", "finish_cycle", "row_hits", "row_misses", "refreshes", "latency_cycles_by_tag",
                "energy_j")
ENGINE_STATE = ("last", "chs", "orow", "counts", "ring")


def assert_same(a: SystemModel, b: SystemModel, x, y, where):
    for k in STEP_ARRAYS:
        assert np.array_equal(getattr(x, k), getattr(y, k)), (where, k)
    for k in STEP_SCALARS:
        assert getattr(x, k) == getattr(y, k), (where, k)
    for k in ENGINE_STATE:  # the state every later step starts from
        assert np.array_equal(getattr(a.engine, k), getattr(b.engine, k)), (where, k)


@pytest.mark.parametrize("mode", ["overlap", "serial"])
def test_memo_equals_timing_every_op_on_decode_steps(mode):
    from mapping.compile import compiler_for
    from workloads import get_spec

    cfg = load_config("pim-gpt")
    n = 10
    comp = compiler_for(get_spec("gpt2-small"), cfg, "pim-gpt", n)
    memo = SystemModel(cfg, mode=mode, memo=True)
    every = SystemModel(cfg, mode=mode, memo=False)
    n_pim = 0
    for p in range(n):
        prog = comp.compile(p)
        n_pim += sum(isinstance(o, PimOp) for o in prog.ops)
        assert_same(memo, every, memo.run_step(prog), every.run_step(prog), p)
    assert every.memo_hits == 0
    # the shortcut is taken (on this model about a quarter of the ops once a few steps have stored
    # theirs: an op whose run met a refresh is not stored, nor served when one falls due in it)
    assert memo.memo_hits > 0.15 * n_pim


@st.composite
def repeated_graphs(draw):
    """Small programs of PIM ops with refresh every few hundred cycles, so that refresh falls due
    just before, inside and just after ops that repeat."""
    n_ch = draw(st.integers(1, 4))
    nrefi = draw(st.integers(150, 900))
    cfg = load_config("pim-gpt", {"dram.channels": n_ch, "dram.timing.nREFI": nrefi, "dram.timing.nRFC": 60})
    std = compile_standard(cfg)
    full = (1 << n_ch) - 1
    ops = []
    for i in range(draw(st.integers(1, 12))):
        deps = tuple(sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=2))))) if i else ()
        if draw(st.integers(0, 4)) == 0:
            ops.append(AsicOp(i, f"a{i}", "softmax", deps, "softmax", draw(st.integers(1, 2048))))
            continue
        mask = full if draw(st.booleans()) else draw(st.integers(1, full))
        items = []
        for _ in range(draw(st.integers(1, 5))):
            what = draw(st.sampled_from(["pass", "MAC16", "WRGB", "RDMAC16", "TMOD", "barrier"]))
            row = draw(st.integers(0, 3))
            if what == "pass":  # a row pass as the mapping writes it: ACT16, MAC16s, PRE, RDMAC16
                items += [raw(mask, std.cmd("ACT16"), row=row),
                          column(mask, std.cmd("MAC16"), row=row, count=draw(st.integers(1, 64))),
                          precharge(mask), simple(mask, std.cmd("RDMAC16"), blocking=True)]
            elif what == "MAC16":
                items.append(column(mask, std.cmd("MAC16"), row=row, count=draw(st.integers(1, 64))))
            elif what == "barrier":
                items.append(barrier(mask))
            elif what == "TMOD":
                items.append(raw(mask, std.cmd("TMOD")))
            else:
                items.append(simple(mask, std.cmd(what), count=draw(st.integers(1, 4)), blocking=draw(st.booleans())))
        if draw(st.booleans()):
            items.append(precharge(mask))
        ins = program(items)
        ins[:, 8] = i
        ops.append(PimOp(i, f"p{i}", "mlp", deps, mask, ins))
    prog = Program(tuple(ops), std.command_names, "random", "pim-gpt", 0, "hand")
    return cfg, prog, draw(st.integers(2, 6))


def test_memo_leaves_the_state_of_a_channel_whose_window_was_never_written():
    """A channel that had issued nothing yet: its unwritten activation-window entries are not
    cycles a stored run wrote, so taking that outcome later must not set them (found by the
    property test below: two channels, serial mode, the second step)."""
    cfg = load_config("pim-gpt", {"dram.channels": 2, "dram.timing.nREFI": 879, "dram.timing.nRFC": 60})
    std = compile_standard(cfg)

    def row_pass(mask, row):
        return [raw(mask, std.cmd("ACT16"), row=row), column(mask, std.cmd("MAC16"), row=row, count=1),
                precharge(mask), simple(mask, std.cmd("RDMAC16"), blocking=True)]

    blocks = [[simple(1, std.cmd("WRGB"))], row_pass(1, 1), row_pass(1, 0), row_pass(2, 0), None,
              [raw(2, std.cmd("TMOD"))]]
    ops = []
    for i, items in enumerate(blocks):
        if items is None:
            ops.append(AsicOp(i, f"a{i}", "softmax", (), "softmax", 1))
            continue
        ins = program(items)
        ins[:, 8] = i
        ops.append(PimOp(i, f"p{i}", "mlp", (), int(ins[0, 1]), ins))
    prog = Program(tuple(ops), std.command_names, "hand", "pim-gpt", 0, "hand")
    memo = SystemModel(cfg, mode="serial", memo=True)
    every = SystemModel(cfg, mode="serial", memo=False)
    for s in range(3):
        assert_same(memo, every, memo.run_step(prog), every.run_step(prog), s)
    assert memo.memo_hits > 0


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(repeated_graphs(), st.sampled_from(["serial", "overlap"]))
def test_memo_equals_timing_every_op_on_random_repeated_programs(case, mode):
    cfg, prog, steps = case
    memo = SystemModel(cfg, mode=mode, memo=True)
    every = SystemModel(cfg, mode=mode, memo=False)
    for s in range(steps):
        assert_same(memo, every, memo.run_step(prog), every.run_step(prog), s)
