"""The numpy reference's building blocks and its prefill/decode/cache contract.

The end-to-end comparison with transformers is in test_workloads_hf.py; here each function is
checked against torch's own (independent) implementation or a mathematical property, and the
KV-cache path against recomputing the whole sequence without a cache.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from workloads import ModelSpec, load_model, pick_token, random_weights
from workloads.model import Model
from workloads.reference import apply_rope, gelu_tanh, layer_norm, rms_norm, rope_cos_sin, silu, softmax

RNG = np.random.default_rng(1234)


def _x(*shape, scale=3.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# ---- elementwise functions against torch ----------------------------------------------------
# Tolerances: fp32 on both sides, different formulas/reduction orders: a few ulp of values O(1-10).
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def test_layer_norm_matches_torch(torch):
    F = torch.nn.functional
    x, w, b = _x(7, 48), _x(48), _x(48)
    expected = F.layer_norm(torch.from_numpy(x), (48,), torch.from_numpy(w), torch.from_numpy(b), eps=1e-5)
    np.testing.assert_allclose(layer_norm(x, w, b, 1e-5), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_rms_norm_matches_torch(torch):
    F = torch.nn.functional
    x, w = _x(7, 48), _x(48)
    expected = F.rms_norm(torch.from_numpy(x), (48,), torch.from_numpy(w), eps=1e-6)
    np.testing.assert_allclose(rms_norm(x, w, 1e-6), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_gelu_tanh_matches_torch(torch):
    F = torch.nn.functional
    x = np.concatenate([_x(1000), np.array([-80.0, -10.0, 0.0, 10.0, 80.0], np.float32)])
    expected = F.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    np.testing.assert_allclose(gelu_tanh(x), expected, rtol=1e-5, atol=1e-6)


def test_silu_matches_torch_without_overflow_warnings(torch):
    F = torch.nn.functional
    x = np.concatenate([_x(1000), np.array([-1000.0, -90.0, 0.0, 90.0, 1000.0], np.float32)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's default overflow warning would fail here
        got = silu(x)
    np.testing.assert_allclose(got, F.silu(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_softmax_of_masked_row():
    got = softmax(np.array([[1.0, -np.inf, 3.0]], np.float32))
    np.testing.assert_allclose(got, [[1 / (1 + np.e ** 2), 0.0, np.e ** 2 / (1 + np.e ** 2)]], rtol=1e-6)


# ---- rotary embeddings: properties -------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(p=st.integers(0, 5000), q=st.integers(0, 5000), shift=st.integers(0, 3000))
def test_rope_scores_depend_only_on_relative_position(p, q, shift):
    """<rope(a, p), rope(b, q)> = <rope(a, p + s), rope(b, q + s)>: the property RoPE exists for."""
    d_head, theta = 16, 10000.0
    rng = np.random.default_rng(p * 7919 + q)
    a, b = rng.standard_normal((2, 1, 1, d_head)).astype(np.float32)

    def score(pa, pb):
        ca, sa = rope_cos_sin(np.array([pa]), d_head, theta)
        cb, sb = rope_cos_sin(np.array([pb]), d_head, theta)
        return float((apply_rope(a, ca, sa) * apply_rope(b, cb, sb)).sum())

    assert score(p, q) == pytest.approx(score(p + shift, q + shift), abs=1e-4)


def test_rope_is_a_rotation_of_pairs_i_and_i_plus_half():
    d_head = 8
    x = _x(1, 1, d_head)
    cos, sin = rope_cos_sin(np.array([37]), d_head, 10000.0)
    y = apply_rope(x, cos, sin)
    pair_norm = lambda v: v[..., :4] ** 2 + v[..., 4:] ** 2  # noqa: E731
    np.testing.assert_allclose(pair_norm(y), pair_norm(x), rtol=1e-5)
    # the first pair turns by exactly 37 rad (frequency theta^0 = 1)
    angle = np.arctan2(y[0, 0, 4], y[0, 0, 0]) - np.arctan2(x[0, 0, 4], x[0, 0, 0])
    assert np.isclose(np.cos(angle), np.cos(37.0), atol=1e-5) and np.isclose(np.sin(angle), np.sin(37.0), atol=1e-5)


# ---- prefill / decode / cache ------------------------------------------------------------------
def tiny(family: str, n_heads=4, n_kv_heads=None, d_head=8, max_context=300, layers=2) -> Model:
    spec = ModelSpec(name=f"tiny-{family}", family=family, n_layers=layers, d_model=32, n_heads=n_heads,
                     n_kv_heads=n_kv_heads, d_head=d_head, d_ff=48, vocab_size=97, max_context=max_context)
    params = random_weights(spec, seed=5, std=0.3)  # large std: O(1) logits, peaked attention
    for name, t in params.items():  # gains and biases away from 1 and 0
        if t.ndim == 1:
            params[name] = t + np.random.default_rng(len(name)).standard_normal(t.shape).astype(np.float32) * 0.2
    return Model(spec, params, source="test")


# Tolerance 1e-4 against recomputation: the same fp32 arithmetic, only grouped differently
# (one [T, d] matmul versus T [1, d] ones), so differences are summation-order rounding.
@settings(max_examples=12, deadline=None)
@given(family=st.sampled_from(["gpt", "llama"]), heads=st.sampled_from([(4, 4), (4, 2), (6, 1), (2, 2)]),
       d_head=st.sampled_from([4, 8, 6]), n_prompt=st.integers(1, 9), n_decode=st.integers(1, 7))
def test_decode_with_cache_equals_recomputing_everything(family, heads, d_head, n_prompt, n_decode):
    n_heads, n_kv = heads
    if family == "gpt":
        n_kv = n_heads
    model = tiny(family, n_heads, n_kv, d_head)
    tokens = np.random.default_rng(n_prompt * 31 + n_decode).integers(0, 97, n_prompt + n_decode)
    full, _ = model.prefill(tokens)  # no cache reuse: every position computed from scratch
    logits, cache = model.prefill(tokens[:n_prompt])
    np.testing.assert_allclose(logits, full[:n_prompt], atol=1e-4, rtol=0)
    for i in range(n_prompt, len(tokens)):
        step, cache = model.decode(int(tokens[i]), cache)
        np.testing.assert_allclose(step, full[i], atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_cache_growth_past_first_allocation(family):
    """Crossing the first 256-position buffer reallocates; results must not change."""
    model = tiny(family, max_context=300, layers=1)
    tokens = np.random.default_rng(0).integers(0, 97, 262)
    full, _ = model.prefill(tokens)
    _, cache = model.prefill(tokens[:250])
    assert cache.capacity == 256
    for i in range(250, 262):
        step, cache = model.decode(int(tokens[i]), cache)
    assert cache.capacity == 300 and cache.length == 262
    np.testing.assert_allclose(step, full[-1], atol=1e-4, rtol=0)


def test_chunked_prefill_equals_one_prefill():
    model = tiny("llama", 4, 2)
    tokens = list(range(20, 40))
    full, _ = model.prefill(tokens)
    first, cache = model.prefill(tokens[:7])
    second, cache = model.prefill(tokens[7:], cache)
    np.testing.assert_allclose(np.concatenate([first, second]), full, atol=1e-4, rtol=0)


def test_copied_cache_branches_independently():
    model = tiny("gpt")
    _, cache = model.prefill([1, 2, 3])
    branch = cache.copy()
    a, _ = model.decode(10, cache)
    b, _ = model.decode(11, branch)
    expected_a, _ = model.prefill([1, 2, 3, 10])
    expected_b, _ = model.prefill([1, 2, 3, 11])
    np.testing.assert_allclose(a, expected_a[-1], atol=1e-4)
    np.testing.assert_allclose(b, expected_b[-1], atol=1e-4)


def test_context_limit_and_bad_ids_are_errors():
    model = tiny("gpt", max_context=8)
    _, cache = model.prefill(list(range(8)))
    with pytest.raises(ValueError, match="9 positions exceeds tiny-gpt's max_context 8"):
        model.decode(1, cache)
    with pytest.raises(ValueError, match=r"token id 97 is outside the vocabulary \[0, 97\)"):
        model.prefill([1, 97])
    with pytest.raises(ValueError, match="at least one token"):
        model.prefill([])


# ---- generation -------------------------------------------------------------------------------
def test_greedy_generate_is_argmax_of_full_recomputation():
    model = tiny("llama", 4, 2)
    prompt = [5, 6, 7]
    seq = list(prompt)
    for _ in range(6):
        logits, _ = model.prefill(seq)
        seq.append(int(np.argmax(logits[-1])))
    assert model.generate(prompt, 6, greedy=True) == seq[len(prompt):]


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    model = tiny("gpt")
    runs = [model.generate([1, 2], 12, greedy=False, seed=s, temperature=2.0) for s in (0, 0, 1)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_top_k_one_sampling_is_greedy():
    model = tiny("gpt")
    assert model.generate([4], 8, greedy=False, top_k=1, seed=3) == model.generate([4], 8, greedy=True)


def test_sampling_frequencies_follow_softmax():
    """20,000 draws from softmax([0, 1, 2] / 0.5) = [0.0159, 0.1173, 0.8668]; 4 sigma bounds."""
    logits = np.array([0.0, 1.0, 2.0], np.float32)
    rng = np.random.default_rng(0)
    counts = np.bincount([pick_token(logits, rng, False, temperature=0.5) for _ in range(20000)], minlength=3)
    expected = np.array([0.015876, 0.117310, 0.866813])
    sigma = np.sqrt(expected * (1 - expected) / 20000)
    assert np.all(np.abs(counts / 20000 - expected) < 4 * sigma)


def test_random_weights_seeded():
    spec = tiny("llama").spec
    a, b, c = random_weights(spec, 1), random_weights(spec, 1), random_weights(spec, 2)
    assert a.keys() == spec.param_shapes().keys()
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["model.layers.0.mlp.up_proj.weight"], c["model.layers.0.mlp.up_proj.weight"])
    assert np.std(a["model.layers.0.mlp.up_proj.weight"]) == pytest.approx(0.02, rel=0.05)


def test_load_model_random_for_builtin_and_yaml(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("family: gpt\nn_layers: 1\nd_model: 16\nn_heads: 2\nd_ff: 32\nvocab_size: 50\nmax_context: 16\n")
    model = load_model(path, weights="random", seed=3)
    logits, cache = model.prefill([1, 2, 3])
    assert logits.shape == (3, 50) and cache.length == 3 and logits.dtype == np.float32
