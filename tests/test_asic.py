"""ASIC model: cycle counts against hand derivations, exact clock conversion, the algorithm knobs,
work conservation (cycles x lanes bound the operation counts), config and op errors named."""
from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_configs.program import ASIC_KINDS, AsicOp
from sim.cli import main as cli
from sim.config import HW_CONFIG_DIR, ConfigError, load_config
from sim.system.asic import AsicModel

SCALE = 0.622  # 45 nm -> 28 nm factor of the presets


# The knobs the hand derivations below assume (pinned, so a new preset default does not move them)
HAND = {"lanes": 256, "exp_taylor_order": 4, "recip_newton_iterations": 2, "rsqrt_newton_iterations": 2,
        "op_overhead_cycles": 2, "clock_mhz": 1000.0, "leakage_mw": 50.0}


def model(**asic) -> AsicModel:
    return AsicModel(load_config("pim-gpt", {f"asic.{k}": v for k, v in {**HAND, **asic}.items()}))


def op(kind, n, rows=1, inputs=1, i=3):
    """An op of `rows` rows of `n` elements (AsicOp.elements counts all rows)."""
    total = n * rows if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else n
    return AsicOp(i, f"L0.{kind}", "norms", (), kind, total, rows, inputs)


# ---- hand-derived cycle counts (HAND: 256 lanes, Taylor order 4, 2 + 2 Newton steps, 2 overhead) ----

def test_reduce_of_eight_partial_sums():
    # 1024 outputs over 256 lanes = 4 passes; 8 partial sums need 7 adds each; + 2 overhead
    assert model().cycles(op("reduce", 1024, inputs=8)) == 4 * 7 + 2


def test_layernorm_of_2048():
    # 8 passes per sweep, tree of log2(256) = 8 steps:
    # sum x 8 + tree 8, mean 1 mul, x - mean 8, sum d^2 8 fma + tree 8, var 1 mul, + eps 1 add,
    # rsqrt: seed 2 int + halve 1 mul + 2 steps x (mul, fma, mul) = 9, d*r 8, *g + b 8, overhead 2
    expected = 8 + 8 + 1 + 8 + 8 + 8 + 1 + 1 + 9 + 8 + 8 + 2
    assert model().cycles(op("layernorm", 2048)) == expected == 70


def test_softmax_of_24_short_heads():
    # 40 scores per head: 6 heads share the 256 lanes -> 4 groups, each one pass; tree over 40 = 6 steps.
    # Per group: max 1 + tree 6; x - max 1, exp (2 clamp, mul, round, 2 fma, 4 Horner fma, exponent
    # add = 11), accumulate 1; tree 6; reciprocal seed 1 + 2 x 2 fma; times 1/sum 1.
    per_group = 1 + 6 + 1 + 11 + 1 + 6 + 5 + 1
    assert model().cycles(op("softmax", 40, rows=24)) == 4 * per_group + 2 == 130


def test_gelu_and_argmax():
    # GELU of 8192 = 32 passes of: x*x, fma, *x (3), exp 11, 1 + w 1, reciprocal 5, x*s 1 = 21
    assert model().cycles(op("gelu", 8192)) == 32 * 21 + 2
    # argmax over the GPT-2 vocabulary: ceil(50257/256) = 197 passes and 8 tree steps, each compare + select
    assert model().cycles(op("argmax", 50257)) == 2 * 197 + 2 * 8 + 2


def test_numpy_integer_sizes_are_accepted():
    import numpy as np

    assert model().cycles(op("reduce", np.int64(1024), inputs=np.int32(8))) == 30


def test_lanes_scale_an_elementwise_op():
    # residual add of 2048: one add per element
    assert model(lanes=1).cycles(op("residual_add", 2048, inputs=2)) == 2048 + 2
    assert model(lanes=64).cycles(op("residual_add", 2048, inputs=2)) == 32 + 2
    assert model(lanes=3000).cycles(op("residual_add", 2048, inputs=2)) == 1 + 2


# ---- clocks --------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from([k for k in ASIC_KINDS if k not in ("reduce", "rotary")]),
       n=st.integers(1, 20000), rows=st.integers(1, 32))
def test_100mhz_costs_exactly_ten_times_1ghz_in_dram_cycles(kind, n, rows):
    fast, slow = model(), model(clock_mhz=100)
    o = op(kind, n, rows=rows) if kind not in ("layernorm", "rmsnorm", "softmax") else op(kind, min(n, 2048), rows)
    # 1 GHz, tCK 0.5 ns: one ASIC cycle = 2 DRAM cycles exactly
    assert fast.dram_cycles(o, 0.5) == 2 * fast.cycles(o)
    assert slow.dram_cycles(o, 0.5) == 10 * fast.dram_cycles(o, 0.5)


def test_conversion_is_exact_rational_rounded_up():
    m = model()
    # 57 cycles of 1 ns = 100 cycles of 0.57 ns exactly (57 / 0.57 in floats is 100.00000000000001)
    assert m.to_dram_cycles(57, 0.57) == 100
    assert m.to_dram_cycles(58, 0.57) == 102  # 101.75 -> 102
    m300 = model(clock_mhz=300)
    assert m300.to_dram_cycles(3, 0.5) == 20     # 10 ns exactly
    assert m300.to_dram_cycles(1, 0.5) == 7      # 3.33 ns = 6.67 cycles -> 7
    assert m.to_dram_cycles(0, 0.5) == 0


# ---- knobs ---------------------------------------------------------------------------------------

def test_more_taylor_terms_cost_more_cycles():
    lo, hi = model(exp_taylor_order=4), model(exp_taylor_order=7)
    # one more Horner fma per element and order: +P (gelu, silu) and +B*C (softmax) per order
    assert hi.cycles(op("gelu", 8192)) - lo.cycles(op("gelu", 8192)) == 3 * 32
    assert hi.cycles(op("silu", 1000)) - lo.cycles(op("silu", 1000)) == 3 * 4
    assert hi.cycles(op("softmax", 1000, rows=16)) - lo.cycles(op("softmax", 1000, rows=16)) == 3 * 16 * 4
    for kind in ("layernorm", "rmsnorm", "residual_add", "argmax"):
        assert hi.cycles(op(kind, 1000)) == lo.cycles(op(kind, 1000))


def test_newton_iterations_cost_cycles_where_they_are_used():
    base = model()
    more_recip = model(recip_newton_iterations=3)
    more_rsqrt = model(rsqrt_newton_iterations=3)
    # reciprocal: 2 fma per iteration, per element in GELU, once per row group in softmax
    assert more_recip.cycles(op("gelu", 512)) - base.cycles(op("gelu", 512)) == 2 * 2
    assert more_recip.cycles(op("softmax", 512, rows=3)) - base.cycles(op("softmax", 512, rows=3)) == 3 * 2
    # rsqrt: 3 ops per step, once per row
    assert more_rsqrt.cycles(op("rmsnorm", 576, rows=2)) - base.cycles(op("rmsnorm", 576, rows=2)) == 2 * 3
    assert more_rsqrt.cycles(op("gelu", 512)) == base.cycles(op("gelu", 512))


# ---- work conservation ---------------------------------------------------------------------------

ARITH = ("add", "mul", "fma", "cmp", "int")


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(ASIC_KINDS), n=st.integers(1, 5000), rows=st.integers(1, 40),
       inputs=st.integers(2, 16), lanes=st.sampled_from([1, 2, 7, 16, 64, 256, 1024]))
def test_cycles_times_lanes_bound_the_operations(kind, n, rows, inputs, lanes):
    """Each lane does at most one operation per cycle, so cycles x lanes >= operations performed;
    with one lane nothing runs side by side, so cycles equal the operations exactly."""
    if kind == "rotary":
        n += n % 2
    m = model(lanes=lanes, sram_bytes=1 << 30)
    o = op(kind, n, rows=rows, inputs=inputs)
    busy = m.cycles(o) - m.cfg.op_overhead_cycles
    ops = sum(m.op_counts(o)[t] for t in ARITH)
    assert busy * lanes >= ops
    if lanes == 1:
        assert busy == ops
    bigger = op(kind, n + 2, rows=rows, inputs=inputs)
    assert m.cycles(bigger) >= m.cycles(o)


# ---- energy --------------------------------------------------------------------------------------

def test_dynamic_energy_by_operation_type():
    m = model()
    e = m.energy_pj(op("reduce", 1024, inputs=8))
    # 1024 x 7 fp32 adds at 0.9 pJ (45 nm) x 0.622; SRAM: 8 reads + 1 write per element at 10 pJ x 0.622
    assert e["add"] == pytest.approx(1024 * 7 * 0.9 * SCALE)
    assert e["sram"] == pytest.approx(1024 * 9 * 10.0 * SCALE)
    assert e["mul"] == e["fma"] == e["cmp"] == e["int"] == 0
    assert m.dynamic_pj(op("reduce", 1024, inputs=8)) == pytest.approx(sum(e.values()))
    bf = model(dtype="bf16").energy_pj(op("reduce", 1024, inputs=8))
    assert bf["add"] == pytest.approx(1024 * 7 * 0.4 * SCALE)  # fp16 add figure
    assert bf["sram"] == pytest.approx(1024 * 9 * 5.0 * SCALE)


def test_leakage_is_power_times_time():
    assert model().leakage_pj(1000.0) == pytest.approx(50.0 * 1000.0)  # 50 mW x 1 us = 50 nJ
    with pytest.raises(ValueError):
        model().leakage_pj(-1.0)


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("o,words", [
    (op("cube", 10), "unknown kind 'cube'"),
    (op("gelu", 0), "elements must be a positive integer"),
    (op("softmax", 10, rows=0), "rows must be a positive integer"),
    (op("softmax", 10, rows=True), "rows must be a positive integer"),
    (op("reduce", 10, inputs=1), "reduce needs inputs >= 2"),
    (op("rotary", 63), "must be even"),
    (op("layernorm", 8192), "98304 bytes > asic.sram_bytes = 65536"),
])
def test_bad_op_is_named(o, words):
    with pytest.raises(ValueError, match="ASIC op 3 \\(L0\\.") as err:
        model().cycles(o)
    assert words in str(err.value)


def preset_dict():
    return yaml.safe_load((HW_CONFIG_DIR / "pim-gpt.yaml").read_text())


@pytest.mark.parametrize("edit,key,words", [
    (lambda a: a.update(clock_mhz=0), "asic.clock_mhz", "greater than 0"),
    (lambda a: a.update(clock_mhz=-100.0), "asic.clock_mhz", "greater than 0"),
    (lambda a: a.update(lanes=0), "asic.lanes", "greater than 0"),
    (lambda a: a.update(lanes=16.5), "asic.lanes", "valid integer"),
    (lambda a: a.update(exp_algorithm="pade"), "asic.exp_algorithm", "'taylor'"),
    (lambda a: a.update(recip_algorithm="goldschmidt"), "asic.recip_algorithm", "'newton_raphson'"),
    (lambda a: a.update(rsqrt_algorithm="lut"), "asic.rsqrt_algorithm", "'fast_inverse_sqrt'"),
    (lambda a: a.update(dtype="fp16"), "asic.dtype", "'fp32' or 'bf16'"),
    (lambda a: a["op_pj_45nm"]["fp32"].update(add=0), "asic.op_pj_45nm.fp32.add", "greater than 0"),
    (lambda a: a.update(leakage_mw=-1.0), "asic.leakage_mw", "greater than 0"),
    (lambda a: a.update(scale_45nm_to_28nm=0), "asic.scale_45nm_to_28nm", "greater than 0"),
    (lambda a: a.update(exp_taylor_order=0), "asic.exp_taylor_order", "greater than or equal to 1"),
    (lambda a: a.update(dtype="bf16", op_pj_45nm={"fp32": a["op_pj_45nm"]["fp32"]}), "asic",
     "no entry for dtype 'bf16'"),
    (lambda a: a.update(width=4), "asic.width", "unknown key"),
    (lambda a: a.pop("lanes"), "asic.lanes", "required key is missing"),
])
def test_bad_asic_config_names_the_key(tmp_path, edit, key, words):
    d = preset_dict()
    edit(d["asic"])
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert err.value.key == key and words in str(err.value)
    assert str(err.value).startswith(f"{p}: {key}: ")


def test_config_without_asic_section_is_named():
    with pytest.raises(ConfigError, match="gddr6-14gbps.yaml: asic: this hardware config has no asic section"):
        AsicModel(load_config("gddr6-14gbps"))


def test_set_override_reaches_the_asic(capsys):
    assert load_config("pim-gpt", {"asic.clock_mhz": 100}).asic.clock_mhz == 100.0
    assert cli(["validate", "pim-gpt", "--set", "asic.clock_mhz=100", "--set", "asic.lanes=64", "--json"]) == 0
    resolved = json.loads(capsys.readouterr().out)["config"]["asic"]
    assert resolved["clock_mhz"] == 100.0 and resolved["lanes"] == 64


def test_mapped_softmax_is_timed_per_head():
    """GPT2-small at position 39: the compiler's softmax holds 12 heads x 40 scores (elements
    counts all of them). On the default 512 lanes the 12 rows of 40 share one group (512 // 40 =
    12): one pass per sweep, tree over 40 = 6 steps, so 1 + 6 + 1 + 11 + 1 + 6 + 5 + 1 = 32 cycles
    + 2 overhead (Taylor order 4, 2 Newton steps), not 12 groups of a 480-long row."""
    from mapping.compile import compile_step
    from sim.config import load_config
    from sim.system.asic import AsicModel
    from workloads import get_spec

    cfg = load_config("pim-gpt")
    prog = compile_step(get_spec("gpt2-small"), cfg, 39)
    sm = next(o for o in prog.ops if o.name == "L0.softmax")
    assert (sm.elements, sm.rows) == (12 * 40, 12)
    assert AsicModel(cfg).cycles(sm) == 34
