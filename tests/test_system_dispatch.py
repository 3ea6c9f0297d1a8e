"""The compiled dispatcher against the SimPy model it implements: the same start and finish cycle
of every op, the same releasing op (hence critical path and latency attribution), the same counts
and energy, on random op graphs and on real decode steps, in both modes, carrying state from
step to step."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_configs.isa import column, program, simple
from hw_configs.program import AsicOp, IoOp, PimOp, Program
from sim.config import load_config
from sim.dram_spec import compile_standard
from sim.system.model import SystemModel

ARRAYS = ("op_start", "op_finish", "critical", "command_counts", "command_counts_per_channel")
SCALARS = ("start_cycle", "finish_cycle", "row_hits", "row_misses", "refreshes", "io_bytes", "n_ops",
           "latency_cycles_by_tag", "energy_j")


def assert_same_step(a, b):
    for k in ARRAYS:
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    for k in SCALARS:
        assert getattr(a, k) == getattr(b, k), k


@st.composite
def op_graphs(draw):
    n_ch = draw(st.integers(1, 4))
    cfg = load_config("pim-gpt", {"dram.channels": n_ch, "dram.timing.nREFI": 400, "dram.timing.nRFC": 100})
    std = compile_standard(cfg)
    full = (1 << n_ch) - 1
    ops = []
    for i in range(draw(st.integers(1, 30))):
        deps = tuple(sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=3))))) if i else ()
        kind = draw(st.sampled_from(["pim", "pim", "asic", "io"]))
        if kind == "pim":
            mask = draw(st.integers(1, full))
            items = []
            for _ in range(draw(st.integers(0, 3))):
                what = draw(st.sampled_from(["WRGB", "MAC16", "RDMAC16"]))
                if what == "MAC16":
                    items.append(column(mask, std.cmd("MAC16"), row=draw(st.integers(0, 3)), count=draw(st.integers(1, 64))))
                else:
                    items.append(simple(mask, std.cmd(what), count=draw(st.integers(1, 8)), blocking=draw(st.booleans())))
            ins = program(items) if items else np.zeros((0, 9), np.int64)
            ins[:, 8] = i
            ops.append(PimOp(i, f"p{i}", draw(st.sampled_from(["qkv", "mlp", "kv_write"])), deps, mask, ins))
        elif kind == "asic":
            rows = draw(st.integers(1, 4))  # elements count every row
            ops.append(AsicOp(i, f"a{i}", draw(st.sampled_from(["residual", "softmax", "reductions"])), deps,
                              draw(st.sampled_from(["residual_add", "softmax", "reduce"])),
                              draw(st.integers(1, 1024)) * rows, rows=rows, inputs=2))
        else:
            ops.append(IoOp(i, f"io{i}", "data_movement", deps, draw(st.integers(0, 100_000)), "pim_to_asic",
                            chmask=draw(st.integers(0, full))))
    prog = Program(tuple(ops), std.command_names, "random", "pim-gpt", 0, "hand")
    return cfg, prog, draw(st.integers(1, 3)), draw(st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(op_graphs(), st.sampled_from(["serial", "overlap"]))
def test_compiled_dispatcher_equals_simpy_on_random_graphs(case, mode):
    cfg, prog, steps, refresh = case
    fast = SystemModel(cfg, mode=mode, refresh=refresh, kernel="compiled")
    ref = SystemModel(cfg, mode=mode, refresh=refresh, kernel="simpy")
    for _ in range(steps):  # the timeline and the bank state carry from step to step
        assert_same_step(fast.run_step(prog), ref.run_step(prog))


@pytest.mark.parametrize("mode,front_end", [("serial", "pim-gpt"), ("overlap", "pim-gpt"), ("overlap", "aim")])
def test_compiled_dispatcher_equals_simpy_on_decode_steps(mode, front_end):
    from mapping.compile import compiler_for
    from workloads import get_spec

    cfg = load_config("pim-gpt")
    comp = compiler_for(get_spec("gpt2-small"), cfg, "pim-gpt", 8)
    fast = SystemModel(cfg, mode=mode, kernel="compiled", front_end=front_end)
    ref = SystemModel(cfg, mode=mode, kernel="simpy", front_end=front_end)
    for p in range(3):
        prog = comp.compile(p)
        a, b = fast.run_step(prog), ref.run_step(prog)
        assert_same_step(a, b)
        assert a.refreshes > 0 and a.critical.sum() > 1


def test_graph_updated_from_the_previous_step_equals_one_built_from_scratch():
    """The dispatcher's arrays are patched from step to step (changed ops only); across chunk and
    block boundaries of the KV cache they must equal the arrays built from the ops alone."""
    from mapping.compile import compiler_for
    from sim.system.model import _Graph
    from workloads import get_spec

    cfg = load_config("pim-gpt")
    comp = compiler_for(get_spec("gpt2-small"), cfg, "pim-gpt", 300)
    model = SystemModel(cfg, kernel="compiled")
    fields = ("kind", "chmask", "dur", "tags", "pj", "nbytes", "dep_ptr", "dep_idx", "succ_ptr", "succ_idx", "lo",
              "hi", "instructions")
    patched = 0
    for p in (0, 1, 2, 15, 16, 17, 127, 128, 129, 255, 256, 257):
        ops = comp.compile(p).ops
        before = model._last_graph
        got = model._graph(ops)
        patched += before is not None and got.dep_idx is before.dep_idx
        want = _Graph.build(ops, model._op_info)
        for f in fields:
            assert np.array_equal(getattr(got, f), getattr(want, f)), (p, f)
        assert got.asic_pj == want.asic_pj and got.io_bytes == want.io_bytes
    assert patched >= 6  # most steps reuse the previous step's dependency arrays
