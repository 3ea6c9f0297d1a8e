"""Compiled steps: exactly the model's MACs (counted from instructions and bindings, not from the
compiler's own numbers), dependencies that cover every read, shape caching and speed, programs
the engine accepts, and the row-hit rate of the default strategy."""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_configs.isa import F_CHMASK, F_CMD, F_COL, F_COUNT, F_OP, OP_COLUMN, OP_SIMPLE
from hw_configs.program import PimOp
from mapping.compile import StepCompiler, compile_step
from mapping.device import MappingError, device_of
from mapping.kernels import ROW_COMMANDS
from mapping.placement import STRATEGIES
from sim.config import load_config
from sim.engine import Engine
from workloads import ModelSpec, get_spec

from test_mapping_placement import specs

PIM = load_config("pim-gpt")


def small_hw(channels, banks, row_bytes, gb_bytes):
    return load_config("pim-gpt", {"dram.channels": channels, "dram.banks_per_channel": banks,
                                   "dram.bank_groups": min(banks, 4), "dram.row_bytes": row_bytes,
                                   "pim.global_buffer_bytes": gb_bytes, "dram.rows_per_bank": 4096})


hardware = st.builds(small_hw, st.integers(1, 4), st.sampled_from([4, 8, 16]), st.sampled_from([256, 512, 2048]),
                     st.sampled_from([64, 128, 256, 2048]))


def useful_macs(op: PimOp, names, gb_valid: dict) -> int:
    """Products of a valid input element (global-buffer lane with data) and a bank whose MAC
    register is read into a real output, walked from the instructions and the binding. The
    global buffer (`gb_valid`: channel -> column -> valid lanes) persists from op to op."""
    mac, wrgb, rdmac = names.index("MAC16"), names.index("WRGB"), names.index("RDMAC16")
    d = op.data
    pending = {}
    total, gcur, acur = 0, 0, 0
    for ins in op.instructions:
        chans = [c for c in range(63) if ins[F_CHMASK] >> c & 1]
        if ins[F_OP] == OP_SIMPLE and ins[F_CMD] == wrgb:
            rows = d.gb_index[gcur:gcur + ins[F_COUNT]] >= 0
            gcur += ins[F_COUNT]
            for c in chans:
                v = gb_valid.setdefault(c, {})
                for k in range(ins[F_COUNT]):
                    v[ins[F_COL] + k] = int(rows[k].sum())
        elif ins[F_OP] == OP_COLUMN and ins[F_CMD] == mac:
            for c in chans:
                n = sum(gb_valid.get(c, {}).get(ins[F_COL] + k, 0) for k in range(ins[F_COUNT]))
                pending[c] = pending.get(c, 0) + n
        elif ins[F_OP] == OP_SIMPLE and ins[F_CMD] == rdmac:
            for c in chans:
                total += pending.pop(c, 0) * int((d.acc_index[acur] >= 0).sum())
                acur += 1
    return total


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), hw=hardware, strategy=st.sampled_from(STRATEGIES), data=st.data())
def test_step_performs_exactly_the_models_macs(spec, hw, strategy, data):
    p = data.draw(st.integers(0, spec.max_context - 1))
    mode = data.draw(st.sampled_from(ROW_COMMANDS))
    prog = compile_step(spec, hw, p, strategy, row_commands=mode, token=data.draw(st.integers(0, spec.vocab_size - 1)))
    prog.check()
    for op in prog.ops:  # plain integers: sizes go to JSON reports
        assert all(type(v) is int for v in (op.id, op.layer, getattr(op, "macs", 0), getattr(op, "elements", 0)))
    expected = spec.matmul_params_per_token + 2 * spec.n_layers * spec.q_dim * (p + 1)
    names = prog.command_names
    gb = {}
    walked = {op.id: useful_macs(op, names, gb) for op in prog.ops if isinstance(op, PimOp) and op.kind == "gemv"}
    assert sum(walked.values()) == expected
    assert all(walked[i] == prog.ops[i].macs for i in walked)  # the compiler's per-op numbers agree


def _writes_and_reads(op):
    """(writes, reads) as lists of (tensor, element indices) of one op."""
    def rng(ref, sizes):
        name, _, sl = ref.partition("[")
        if sl:
            lo, hi = map(int, sl.rstrip("]").split(":"))
            return name, np.arange(lo, hi)
        return name, np.arange(sizes[name])
    if isinstance(op, PimOp):
        d = op.data
        w, r = [], []
        if d.acc_index is not None and d.acc_dst:
            w.append((d.acc_dst, d.acc_index[d.acc_index >= 0]))
        if d.rd_index is not None and d.rd_dst:
            w.append((d.rd_dst, d.rd_index[d.rd_index >= 0]))
        if d.gb_index is not None and d.gb_src:
            r.append((d.gb_src, d.gb_index[d.gb_index >= 0]))
        if d.wr_index is not None and d.wr_src:
            r.append((d.wr_src, d.wr_index[d.wr_index >= 0]))
        return w, r
    return op.writes, op.reads


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), hw=hardware, strategy=st.sampled_from(STRATEGIES), data=st.data())
def test_dependencies_cover_every_element_read(spec, hw, strategy, data):
    """Every element an op reads was last written by an op among its (transitive) dependencies."""
    prog = compile_step(spec, hw, data.draw(st.integers(0, spec.max_context - 1)), strategy)
    sizes = prog.tensors
    last = {name: np.full(n, -1) for name, n in sizes.items()}
    closure = []
    for op in prog.ops:
        anc = set(op.deps)
        for dep in op.deps:
            anc |= closure[dep]
        closure.append(anc)
        if isinstance(op, PimOp):
            writes, reads = _writes_and_reads(op)
        else:
            writes, reads = [], []
            for ref in op.reads:
                if not ref.startswith("param:"):
                    name, _, sl = ref.partition("[")
                    idx = np.arange(*map(int, sl.rstrip("]").split(":"))) if sl else np.arange(sizes[name])
                    reads.append((name, idx))
            for ref in op.writes:
                name, _, sl = ref.partition("[")
                idx = np.arange(*map(int, sl.rstrip("]").split(":"))) if sl else np.arange(sizes[name])
                writes.append((name, idx))
        for name, idx in reads:
            writers = set(last[name][idx].tolist()) - {-1}
            assert writers <= anc, f"op {op.name} reads {name} written by ops {writers - anc} it does not depend on"
            assert (last[name][idx] >= 0).all(), f"op {op.name} reads elements of {name} nobody wrote"
        for name, idx in writes:
            last[name][idx] = op.id


def test_dependencies_are_per_tile_not_per_layer():
    """The down projection's first input tile waits only for the up-projection chunks it reads."""
    spec = ModelSpec(name="d", family="gpt", n_layers=1, d_model=64, n_heads=4, d_ff=512, vocab_size=50,
                     max_context=8)
    hw = small_hw(2, 4, 256, 256)  # 128-element tiles, 8 lanes
    prog = compile_step(spec, hw, 3)
    by_name = {op.name: op for op in prog.ops}
    down0 = by_name["L0.ffn_down.t0.c0"]
    ups = [op for op in prog.ops if op.name.startswith("L0.ffn_up.t0")]
    anc = set()
    stack = list(down0.deps)
    while stack:
        i = stack.pop()
        if i not in anc:
            anc.add(i)
            stack.extend(prog.ops[i].deps)
    assert len(ups) >= 4 and any(u.id in anc for u in ups) and not all(u.id in anc for u in ups)


def test_only_attention_is_rebuilt_per_position():
    comp = StepCompiler(get_spec("gpt2-small"), PIM)
    a, b = comp.compile(10), comp.compile(700)
    assert len(a.ops) == len(b.ops)
    per_position = {"attention_scores", "attention_context", "softmax", "kv_write", "embedding"}
    for x, y in zip(a.ops, b.ops):
        if x.tag not in per_position and not (x.name.endswith(("scores_reduce", "context_reduce"))):
            assert x is y, x.name  # the same cached op object
    assert a.ops[0].meta["row_of_table"] == 0 and b.ops[1].meta["row_of_table"] == 700


def test_all_gpt2_xl_steps_compile_within_5_seconds():
    t0 = time.process_time()
    comp = StepCompiler(get_spec("gpt2-xl"), PIM)
    for p in range(1024):
        comp.compile(p)
    assert time.process_time() - t0 < 5.0


@pytest.mark.parametrize("strategy,mode", [("pim-gpt", "explicit"), ("pim-gpt", "controller"), ("naive", None)])
def test_engine_accepts_the_program(strategy, mode):
    spec = ModelSpec(name="v", family="llama", n_layers=2, d_model=96, n_heads=6, n_kv_heads=2, d_ff=200,
                     vocab_size=300, max_context=300)
    hw = small_hw(2, 8, 512, 256)
    prog = compile_step(spec, hw, 257, strategy, row_commands=mode)
    res = Engine(hw, refresh=True).run(prog.pim_instructions())  # validates every instruction
    mac = prog.command_names.index("MAC16")
    n_mac = sum(int(i[F_COUNT]) * bin(int(i[F_CHMASK])).count("1") for i in prog.pim_instructions()
                if i[F_OP] == OP_COLUMN and i[F_CMD] == mac)
    assert res.command_totals()["MAC16"] == n_mac


def row_hit(totals):
    cols = sum(totals.get(c, 0) for c in ("MAC16", "WR", "RD"))
    return 1 - (totals.get("ACT16", 0) + totals.get("ACT", 0)) / cols


def test_row_hit_rate_gpt3_xl_default_at_least_98_percent_and_above_naive():
    spec = get_spec("gpt3-xl")
    rates = {}
    for strategy in STRATEGIES:
        res = Engine(PIM, refresh=False).run(compile_step(spec, PIM, 1023, strategy).pim_instructions())
        rates[strategy] = row_hit(res.command_totals())
    assert rates["pim-gpt"] >= 0.98
    assert rates["pim-gpt"] > rates["naive"]


def test_gpt2_xl_at_512_within_1_35_of_the_row_pass_floor():
    """The efficiency target: PIM part alone (refresh as configured, on) <= 1.35 x row passes x 226."""
    from mapping.stats import row_passes

    prog = compile_step(get_spec("gpt2-xl"), PIM, 512)
    floor = int(row_passes(prog.pim_instructions(), device_of(PIM)).max()) * (56 + 63 * 2 + 12 + 32)
    cycles = Engine(PIM).run(prog.pim_instructions()).cycles
    assert cycles <= 1.35 * floor


def test_bad_positions_and_tokens_are_errors():
    comp = StepCompiler(get_spec("gpt2-small"), PIM, context=16)
    with pytest.raises(MappingError, match="position 16 out of range 0..15"):
        comp.compile(16)
    with pytest.raises(MappingError, match="token 50257 outside the vocabulary"):
        comp.compile(0, token=50257)
    with pytest.raises(MappingError, match="unknown row_commands 'sometimes'"):
        StepCompiler(get_spec("gpt2-small"), PIM, row_commands="sometimes")
    assert device_of(PIM).tile_elems == 1024
