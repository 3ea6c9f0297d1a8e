"""The numpy reference against transformers/PyTorch on Hugging Face checkpoints written by
`save_pretrained`, plus the safetensors loader's errors.

Models are tiny (2 layers, d_model 64) and randomly initialised from a config: nothing is
downloaded. After HF's init every parameter gets N(0, 0.1) noise added, so norm gains and
biases are not 1/0 (which would hide a swapped gain/bias) and logits are O(1) rather than
O(0.01) (which would make an absolute tolerance meaningless).

Tolerance 1e-4 on logits: both sides compute in fp32; they differ only in summation order
(BLAS blocking, softmax/normalisation reduction order), ~1e-7 relative per operation. With
logits of magnitude ~1-3 and two layers, observed differences are ~1e-6; a real error (a
mask off by one, a wrong RoPE pairing, a K/V head mapped to the wrong query group) changes
logits by ~1e-2 or more.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from workloads import SpecError, WeightsError, load_model  # noqa: E402
from workloads.weights import read_safetensors  # noqa: E402

ATOL = 1e-4
VOCAB, CONTEXT, N_PREFILL, N_DECODE = 211, 64, 16, 16


def _perturb(model, seed: int):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


def _save(model, path):
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB,
                                     n_positions=CONTEXT, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
                                     bos_token_id=0, eos_token_id=0)
    model = _perturb(transformers.GPT2LMHeadModel(config), 1)
    return model, _save(model, tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """GQA: 4 query heads share 2 K/V heads; untied LM head; non-default rope_theta and eps."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=96, vocab_size=VOCAB, max_position_embeddings=CONTEXT, rms_norm_eps=1e-5,
        rope_theta=5000.0, tie_word_embeddings=False)
    model = _perturb(transformers.LlamaForCausalLM(config), 2)
    return model, _save(model, tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def llama_tied_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=48, num_attention_heads=6, num_key_value_heads=2,
        intermediate_size=80, vocab_size=VOCAB, max_position_embeddings=CONTEXT, tie_word_embeddings=True)
    model = _perturb(transformers.LlamaForCausalLM(config), 3)
    return model, _save(model, tmp_path_factory.mktemp("llama_tied"))


def _hf_prefill_then_decode(model, prompt: list[int], steps: list[int]) -> np.ndarray:
    """Logits [len(prompt) + len(steps), vocab] from transformers' own KV-cache path."""
    with torch.no_grad():
        out = model(torch.tensor([prompt]), use_cache=True)
        rows, past = [out.logits[0]], out.past_key_values
        for token in steps:
            out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
            rows.append(out.logits[0])
            past = out.past_key_values
    return torch.cat(rows).numpy()


def _ours_prefill_then_decode(model, prompt: list[int], steps: list[int]) -> np.ndarray:
    logits, cache = model.prefill(prompt)
    rows = [logits]
    for token in steps:
        step_logits, cache = model.decode(token, cache)
        rows.append(step_logits[None, :])
    assert cache.length == len(prompt) + len(steps)
    return np.concatenate(rows)


@pytest.mark.parametrize("fixture", ["gpt2_dir", "llama_dir", "llama_tied_dir"])
def test_logits_match_transformers(fixture, request):
    hf_model, path = request.getfixturevalue(fixture)
    ours = load_model(path)
    rng = np.random.default_rng(7)
    prompt = rng.integers(0, VOCAB, N_PREFILL).tolist()
    steps = rng.integers(0, VOCAB, N_DECODE).tolist()
    expected = _hf_prefill_then_decode(hf_model, prompt, steps)
    got = _ours_prefill_then_decode(ours, prompt, steps)
    assert got.shape == (N_PREFILL + N_DECODE, VOCAB)
    assert np.abs(expected).max() > 0.5  # logits are O(1): the tolerance is meaningful
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_spec_read_from_config(llama_dir):
    _, path = llama_dir
    spec = load_model(path).spec
    assert (spec.family, spec.n_layers, spec.d_model, spec.n_heads, spec.n_kv_heads, spec.d_head) == ("llama", 2, 64, 4, 2, 16)
    assert spec.rope_theta == 5000.0 and spec.tied_embeddings is False and spec.max_context == CONTEXT


def test_greedy_generation_matches_transformers(gpt2_dir):
    hf_model, path = gpt2_dir
    prompt = [5, 17, 42, 9]
    with torch.no_grad():
        hf = hf_model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                               pad_token_id=0)[0, len(prompt):].tolist()
    assert load_model(path).generate(prompt, 8, greedy=True) == hf


def test_bf16_checkpoint_widened_exactly(tmp_path, llama_dir):
    """numpy has no bf16; the loader widens the bits itself. torch's bf16 -> fp32 is the oracle."""
    hf_model, _ = llama_dir
    bf16 = hf_model.to(torch.bfloat16)
    try:
        bf16.save_pretrained(tmp_path, safe_serialization=True)
        ours = load_model(tmp_path).params
        for name, p in bf16.named_parameters():
            np.testing.assert_array_equal(ours[name], p.detach().float().numpy(), err_msg=name)
    finally:
        hf_model.to(torch.float32)


# ---- errors ---------------------------------------------------------------------------------
def _copy_config(src, dst, **changes):
    config = json.loads((src / "config.json").read_text())
    config.update(changes)
    dst.mkdir(exist_ok=True)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_missing_safetensors_is_named(tmp_path, gpt2_dir):
    _, path = gpt2_dir
    target = _copy_config(path, tmp_path / "no_weights")
    with pytest.raises(WeightsError, match=r"no_weights: no model\.safetensors.*found: config\.json"):
        load_model(target)


def test_missing_config_is_named(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"no config\.json"):
        load_model(tmp_path)


def _rewrite(path, dst, edit):
    from safetensors.numpy import save_file

    tensors = read_safetensors(path / "model.safetensors")
    edit(tensors)
    target = _copy_config(path, dst)
    save_file(tensors, str(target / "model.safetensors"))
    return target


def test_shape_mismatch_names_tensor_and_expected_shape(tmp_path, llama_dir):
    _, path = llama_dir
    name = "model.layers.1.self_attn.k_proj.weight"

    def edit(t):
        t[name] = t[name][:16]

    target = _rewrite(path, tmp_path / "bad_shape", edit)
    with pytest.raises(WeightsError) as info:
        load_model(target)
    message = str(info.value)
    assert name in message and "(16, 64)" in message and "expected (32, 64)" in message


def test_missing_tensor_names_tensor(tmp_path, gpt2_dir):
    _, path = gpt2_dir
    name = "transformer.h.0.mlp.c_fc.bias"
    target = _rewrite(path, tmp_path / "missing", lambda t: t.pop(name))
    with pytest.raises(WeightsError, match=rf"missing tensor '{name}'.*expected shape \(256,\)"):
        load_model(target)


def test_unsupported_config_is_named(tmp_path, llama_dir):
    _, path = llama_dir
    target = _copy_config(path, tmp_path / "bias", attention_bias=True)
    with pytest.raises(SpecError, match="attention_bias=True is not supported"):
        load_model(target)
    target = _copy_config(path, tmp_path / "bert", model_type="bert")
    with pytest.raises(SpecError, match="model_type 'bert' is not supported"):
        load_model(target)


def test_named_model_rejects_other_checkpoint(gpt2_dir):
    _, path = gpt2_dir
    with pytest.raises(WeightsError, match="not a gpt2-small checkpoint: n_layers 2 .expected 12."):
        load_model("gpt2-small", weights=path)


def test_unknown_path_lists_builtin_names(tmp_path):
    with pytest.raises(SpecError, match="unknown model .*nowhere.*gpt2-small.*llama2-7b"):
        load_model(tmp_path / "nowhere")


def test_tokenizer_json_in_directory_is_used(tmp_path, gpt2_dir):
    """A tokenizer.json beside the checkpoint (as HF ships it) gives the model a tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    _, path = gpt2_dir
    target = _copy_config(path, tmp_path / "with_tokenizer")
    (target / "model.safetensors").symlink_to(path / "model.safetensors")
    vocab = {ch: i for i, ch in enumerate("abcdefgh")} | {"ab": 8, "abc": 9}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("ab", "c")]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(target / "tokenizer.json"))
    model = load_model(target)
    assert model.tokenizer.encode("abcd") == [9, 3]  # merges applied: "abc" + "d"


def test_gpt2_base_model_names_and_buffers_accepted(tmp_path, gpt2_dir):
    """Older GPT-2 checkpoints (GPT2Model) lack the "transformer." prefix and carry the causal
    mask buffer `h.N.attn.bias`; they load to the same model."""
    hf_model, path = gpt2_dir

    def edit(t):
        for name in list(t):
            t[name.removeprefix("transformer.")] = t.pop(name)
        t["h.0.attn.bias"] = np.tril(np.ones((1, 1, CONTEXT, CONTEXT), np.float32))

    target = _rewrite(path, tmp_path / "legacy", edit)
    tokens = [3, 14, 15, 92, 65]
    with torch.no_grad():
        expected = hf_model(torch.tensor([tokens])).logits[0].numpy()
    np.testing.assert_allclose(load_model(target).prefill(tokens)[0], expected, rtol=0, atol=ATOL)
