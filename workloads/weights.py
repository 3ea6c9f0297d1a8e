"""Weights as a dict of fp32 numpy arrays keyed by Hugging Face parameter names.

Three sources: seeded random tensors for any spec, a local Hugging Face directory
(config.json + safetensors), and GGUF files (read and dequantized by the `gguf` package).
Every source ends in `validate_params`, so a missing tensor or a wrong shape is reported the
same way: the tensor's name, where it came from, and the shape the spec expects.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from .spec import ModelSpec, SpecError

F32 = np.float32
INIT_STD = 0.02  # GPT-2's initializer_range; keeps random-weight logits O(1)


class WeightsError(ValueError):
    """Weights are missing, unreadable or do not fit the model spec."""


# ---- random ---------------------------------------------------------------------------------
def random_weights(spec: ModelSpec, seed: int = 0, std: float = INIT_STD) -> dict[str, np.ndarray]:
    """N(0, std) matrices and embeddings, unit norm gains, zero biases; same seed, same weights."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in spec.param_shapes().items():
        if len(shape) == 2:
            params[name] = rng.standard_normal(shape, dtype=F32) * F32(std)
        elif name.endswith(".bias"):
            params[name] = np.zeros(shape, F32)
        else:
            params[name] = np.ones(shape, F32)
    return params


# ---- validation -----------------------------------------------------------------------------
def validate_params(spec: ModelSpec, params: dict[str, np.ndarray], origin: str,
                    file_names: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Exactly the spec's tensors, fp32 and contiguous; extra tensors (buffers such as GPT-2's
    causal-mask `attn.bias`, or an `lm_head.weight` copy of tied embeddings) are dropped.

    `file_names` maps an HF name to the name the file uses, for the error message.
    """
    problems = []
    for name, shape in spec.param_shapes().items():
        in_file = f" ({file_names[name]!r} in the file)" if file_names and name in file_names else ""
        if name not in params:
            problems.append(f"missing tensor {name!r}{in_file}, expected shape {shape}")
        elif tuple(params[name].shape) != shape:
            problems.append(f"tensor {name!r}{in_file} has shape {tuple(params[name].shape)}, expected {shape}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise WeightsError(f"{origin}: weights do not fit model {spec.name!r}: " + "; ".join(problems[:5]) + more)
    return {name: np.ascontiguousarray(params[name], dtype=F32) for name in spec.param_shapes()}


# ---- Hugging Face directories ---------------------------------------------------------------
def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """bf16 is the top half of an fp32: widen the bits, no rounding involved."""
    return (raw.astype(np.uint32) << 16).view(F32)


SAFETENSORS_MAX_HEADER = 100 << 20  # the format's own bound on the JSON header (100 MB)
GGUF_MAGIC = b"GGUF"


def _safetensors_header(path: Path) -> tuple[int, dict]:
    """(data offset, header) per the safetensors layout: u64 length, then a JSON header.

    Checked by hand so a bad file is reported by name with what is wrong (the library's own
    errors name neither the file nor the cause)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path}: truncated or not a safetensors file: {size} bytes, fewer than the "
                               "8-byte header length that starts a safetensors file")
        (length,) = struct.unpack("<Q", head)
        first = f.read(1)
        if first != b"{" or length > SAFETENSORS_MAX_HEADER:
            what = "a GGUF file, not safetensors" if head[:4] == GGUF_MAGIC else "not a safetensors file"
            raise WeightsError(f"{path}: {what}: a safetensors file starts with an 8-byte header length "
                               "followed by a JSON header ('{')")
        if 8 + length > size:
            raise WeightsError(f"{path}: truncated safetensors file: the header needs {8 + length} bytes, "
                               f"the file has {size}")
        try:
            header = json.loads(first + f.read(length - 1))
        except (ValueError, UnicodeDecodeError) as err:
            raise WeightsError(f"{path}: not a safetensors file: its header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a safetensors file: its header is not a JSON object")
    data_bytes = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise WeightsError(f"{path}: not a valid safetensors file: tensor {name!r} has no data_offsets [begin, end]")
        if offsets[1] > data_bytes:
            raise WeightsError(f"{path}: truncated safetensors file: tensor {name!r} ends at byte {offsets[1]} "
                               f"of the data, but the file holds {data_bytes} bytes of data")
    return 8 + length, header


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of one safetensors file as fp32 (bf16 widened by hand: numpy has no bf16)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"safetensors file {str(path)!r} does not exist")
    data_offset, header = _safetensors_header(path)
    tensors, bf16 = {}, []
    try:
        with safe_open(str(path), framework="numpy") as f:
            for name in f.keys():
                if f.get_slice(name).get_dtype() == "BF16":
                    bf16.append(name)
                else:
                    tensors[name] = f.get_tensor(name).astype(F32, copy=False)
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file: {err}") from None
    if bf16:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        for name in bf16:
            start, end = header[name]["data_offsets"]
            words = raw[data_offset + start: data_offset + end].view("<u2")
            tensors[name] = _bf16_to_f32(words).reshape(header[name]["shape"])
    return tensors


def read_hf_safetensors(directory: str | Path) -> dict[str, np.ndarray]:
    """model.safetensors, or the shards listed by model.safetensors.index.json."""
    directory = Path(directory)
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        return read_safetensors(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors = {}
        for shard in shards:
            tensors.update(read_safetensors(directory / shard))
        return tensors
    found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise WeightsError(f"{directory}: no model.safetensors or model.safetensors.index.json "
                       f"(found: {', '.join(found) or 'nothing'}); only safetensors checkpoints are read")


def _require(config: dict, key: str, origin: str):
    if key not in config:
        raise SpecError(f"{origin}: config.json has no {key!r}")
    return config[key]


def _expect(config: dict, key: str, allowed: tuple, default, origin: str) -> None:
    value = config.get(key, default)
    if value not in allowed:
        raise SpecError(f"{origin}: config.json {key}={value!r} is not supported (supported: {allowed})")


def _rope_theta(config: dict, origin: str) -> float:
    """transformers 4 keeps `rope_theta` (+ `rope_scaling`); 5 nests both in `rope_parameters`."""
    rope = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if kind != "default":
        raise SpecError(f"{origin}: rope type {kind!r} is not supported (supported: 'default')")
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))


def spec_from_hf_config(config: dict, name: str, origin: str = "config.json") -> ModelSpec:
    """A ModelSpec from a transformers config.json (model_type gpt2 or llama)."""
    kind = config.get("model_type")
    if kind == "gpt2":
        _expect(config, "activation_function", ("gelu_new", "gelu_pytorch_tanh"), "gelu_new", origin)
        _expect(config, "scale_attn_weights", (True,), True, origin)
        _expect(config, "scale_attn_by_inverse_layer_idx", (False,), False, origin)
        _expect(config, "add_cross_attention", (False,), False, origin)
        d_model = _require(config, "n_embd", origin)
        return ModelSpec(
            name=name, family="gpt", n_layers=_require(config, "n_layer", origin), d_model=d_model,
            n_heads=_require(config, "n_head", origin), d_ff=config.get("n_inner") or 4 * d_model,
            vocab_size=_require(config, "vocab_size", origin),
            max_context=_require(config, "n_positions", origin),
            norm_eps=config.get("layer_norm_epsilon", 1e-5),
            tied_embeddings=config.get("tie_word_embeddings", True), source=origin)
    if kind == "llama":
        _expect(config, "hidden_act", ("silu",), "silu", origin)
        _expect(config, "attention_bias", (False,), False, origin)
        _expect(config, "mlp_bias", (False,), False, origin)
        return ModelSpec(
            name=name, family="llama", n_layers=_require(config, "num_hidden_layers", origin),
            d_model=_require(config, "hidden_size", origin),
            n_heads=_require(config, "num_attention_heads", origin),
            n_kv_heads=config.get("num_key_value_heads"), d_head=config.get("head_dim"),
            d_ff=_require(config, "intermediate_size", origin),
            vocab_size=_require(config, "vocab_size", origin),
            max_context=_require(config, "max_position_embeddings", origin),
            norm_eps=config.get("rms_norm_eps", 1e-6), rope_theta=_rope_theta(config, origin),
            tied_embeddings=config.get("tie_word_embeddings", False), source=origin)
    raise SpecError(f"{origin}: model_type {kind!r} is not supported (supported: 'gpt2', 'llama')")


def read_hf_config(directory: str | Path) -> ModelSpec:
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise WeightsError(f"{directory}: no config.json (a Hugging Face model directory needs "
                           "config.json and model.safetensors)")
    return spec_from_hf_config(json.loads(config_path.read_text()), directory.name, str(config_path))


def normalise_hf_names(spec: ModelSpec, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """GPT2Model checkpoints omit GPT2LMHeadModel's "transformer." prefix; add it back."""
    if spec.family != "gpt" or any(n.startswith("transformer.") for n in tensors):
        return tensors
    return {(n if n.startswith("lm_head.") else "transformer." + n): t for n, t in tensors.items()}


def load_hf_weights(directory: str | Path, spec: ModelSpec) -> dict[str, np.ndarray]:
    tensors = normalise_hf_names(spec, read_hf_safetensors(directory))
    return validate_params(spec, tensors, str(directory))


# ---- GGUF -----------------------------------------------------------------------------------
GGUF_LLAMA_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
GGUF_LLAMA_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def gguf_to_hf_name(name: str) -> str | None:
    if name in GGUF_LLAMA_GLOBAL:
        return GGUF_LLAMA_GLOBAL[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in GGUF_LLAMA_LAYER:
        return f"model.layers.{parts[1]}.{GGUF_LLAMA_LAYER[parts[2]]}"
    return None


def hf_to_gguf_names(spec: ModelSpec) -> dict[str, str]:
    names = {hf: gg for gg, hf in GGUF_LLAMA_GLOBAL.items()}
    for layer in range(spec.n_layers):
        for gg, hf in GGUF_LLAMA_LAYER.items():
            names[f"model.layers.{layer}.{hf}"] = f"blk.{layer}.{gg}"
    return names


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo the row order llama.cpp gives Q/K weights for its adjacent-pairs RoPE.

    Within each head, llama.cpp interleaves the rows of the two halves (h0[0], h1[0], h0[1], ...)
    so that rotating adjacent pairs equals HF's rotating (i, i + dh/2). Here the rows go back to
    HF's order, so one RoPE convention serves every source.
    """
    # w: [n_heads * dh, d_in] -> [n_heads * dh, d_in]
    out_features, d_in = w.shape
    half = out_features // n_heads // 2
    return w.reshape(n_heads, half, 2, d_in).swapaxes(1, 2).reshape(out_features, d_in)


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def open_gguf(path: str | Path):
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"GGUF file {str(path)!r} does not exist")
    with path.open("rb") as f:
        magic = f.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        hint = (" (it is a .safetensors file: give the Hugging Face directory that holds it with config.json)"
                if path.suffix == ".safetensors" else "")
        raise WeightsError(f"{path}: not a GGUF file: it does not start with {GGUF_MAGIC!r}{hint}")
    try:
        return GGUFReader(str(path))
    except Exception as err:  # the reader raises bare ValueError/struct errors on bad files
        raise WeightsError(f"{path}: not a readable GGUF file (truncated or damaged?): {err}") from None


def spec_from_gguf(reader, name: str, origin: str) -> ModelSpec:
    """A ModelSpec from GGUF metadata (architecture 'llama': LLaMA, SmolLM, Mistral-style)."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise SpecError(f"{origin}: GGUF architecture {arch!r} is not supported (supported: 'llama')")

    def need(key: str):
        value = _field(reader, f"llama.{key}")
        if value is None:
            raise SpecError(f"{origin}: GGUF metadata has no 'llama.{key}'")
        return value

    tensor_names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in tensor_names:
        raise SpecError(f"{origin}: has 'rope_freqs.weight' (scaled RoPE), which is not supported")
    d_model, n_heads = int(need("embedding_length")), int(need("attention.head_count"))
    d_head = int(_field(reader, "llama.attention.key_length", d_model // n_heads))
    rope_dims = int(_field(reader, "llama.rope.dimension_count", d_head))
    if rope_dims != d_head:
        raise SpecError(f"{origin}: partial rotary embeddings (rope.dimension_count {rope_dims} "
                        f"< head width {d_head}) are not supported")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    vocab = _field(reader, "llama.vocab_size") or (len(tokens) if tokens else None)
    if vocab is None:
        raise SpecError(f"{origin}: GGUF metadata gives no vocabulary size")
    return ModelSpec(
        name=name, family="llama", n_layers=int(need("block_count")), d_model=d_model,
        n_heads=n_heads, n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", n_heads)),
        d_head=d_head, d_ff=int(need("feed_forward_length")), vocab_size=int(vocab),
        max_context=int(need("context_length")),
        norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        tied_embeddings="output.weight" not in tensor_names, source=origin)


def read_gguf_weights(reader, spec: ModelSpec, origin: str) -> dict[str, np.ndarray]:
    """Dequantize every tensor to fp32 (any type `gguf.quants` knows), map names to HF's,
    restore HF's Q/K row order."""
    from gguf.quants import dequantize

    expected, params = spec.param_shapes(), {}
    for tensor in reader.tensors:
        hf_name = gguf_to_hf_name(tensor.name)
        if hf_name is None:
            raise WeightsError(f"{origin}: unexpected tensor {tensor.name!r} for a llama model "
                               "(an unsupported architecture variant?)")
        try:
            array = dequantize(tensor.data, tensor.tensor_type).astype(F32, copy=False)
        except NotImplementedError:
            raise WeightsError(f"{origin}: tensor {tensor.name!r} has type {tensor.tensor_type.name}, "
                               "which the installed gguf package cannot dequantize") from None
        expected_size = math.prod(int(n) for n in tensor.shape)
        if array.size == expected_size:
            array = array.reshape(tuple(int(n) for n in reversed(tensor.shape)))
        if array.shape == expected.get(hf_name):  # a wrong shape is left for validate_params
            if hf_name.endswith("q_proj.weight"):
                array = unpermute_rope_rows(array, spec.n_heads)
            elif hf_name.endswith("k_proj.weight"):
                array = unpermute_rope_rows(array, spec.n_kv_heads)
        params[hf_name] = array
    return validate_params(spec, params, origin, hf_to_gguf_names(spec))
