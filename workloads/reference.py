"""Reference forward pass in numpy (fp32): small pure functions plus an explicit KV cache.

Shapes use T = new tokens in this step, S = cached positions after this step (past + T),
H = query heads, Hkv = key/value heads, G = H // Hkv, dh = head width, V = vocabulary.
Layer weights are looked up by their checkpoint names relative to the layer prefix
(e.g. "attn.c_attn.weight"), so a tensor here is a tensor in the Hugging Face checkpoint.

The cache is the one mutable object: a step writes its new K/V rows in place into
preallocated buffers and returns a cache whose `length` covers them. A cache is therefore
valid for one line of continuation; `KVCache.copy()` branches it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import ModelSpec

F32 = np.float32


# ---- elementwise and normalisation ----------------------------------------------------------
def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    # x: [T, d]; weight, bias: [d] -> [T, d]
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + F32(eps)) * weight + bias


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    # x: [T, d]; weight: [d] -> [T, d]
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + F32(eps)) * weight


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU with the tanh approximation (GPT-2's "gelu_new")."""
    return F32(0.5) * x * (F32(1.0) + np.tanh(F32(np.sqrt(2.0 / np.pi)) * (x + F32(0.044715) * x * x * x)))


def silu(x: np.ndarray) -> np.ndarray:
    # exp(-x) overflows to inf for x << 0, where x / inf = -0 is the right limit.
    with np.errstate(over="ignore"):
        return x / (F32(1.0) + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    # x: [..., S] -> [..., S]; -inf entries (masked) become exact zeros
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---- rotary position embedding (Hugging Face "rotate half" convention) ----------------------
def rope_cos_sin(positions: np.ndarray, d_head: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Angles in float64 then rounded once, so long positions stay accurate."""
    # positions: [T] -> cos, sin: [T, dh]
    inv_freq = 1.0 / theta ** (np.arange(0, d_head, 2, dtype=np.float64) / d_head)  # [dh/2]
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]  # [T, dh/2]
    angles = np.concatenate([angles, angles], axis=-1)  # [T, dh]
    return np.cos(angles).astype(F32), np.sin(angles).astype(F32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate pairs (i, i + dh/2) of every head by the position's angles."""
    # x: [heads, T, dh]; cos, sin: [T, dh] -> [heads, T, dh]
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


# ---- attention with a KV cache --------------------------------------------------------------
@dataclass
class KVCache:
    """Per-layer K and V buffers [n_layers, Hkv, capacity, dh]; positions < length are valid."""

    k: np.ndarray
    v: np.ndarray
    length: int = 0

    @classmethod
    def empty(cls, spec: ModelSpec, capacity: int) -> "KVCache":
        shape = (spec.n_layers, spec.n_kv_heads, capacity, spec.d_head)
        return cls(np.zeros(shape, F32), np.zeros(shape, F32), 0)

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def copy(self) -> "KVCache":
        return KVCache(self.k.copy(), self.v.copy(), self.length)

    def reserve(self, needed: int, limit: int) -> "KVCache":
        """This cache if it holds `needed` positions, else a larger copy (doubling, up to `limit`)."""
        if needed <= self.capacity:
            return self
        capacity = min(limit, max(needed, 2 * self.capacity))
        grown_shape = self.k.shape[:2] + (capacity,) + self.k.shape[3:]
        k, v = np.zeros(grown_shape, F32), np.zeros(grown_shape, F32)
        k[:, :, : self.length] = self.k[:, :, : self.length]
        v[:, :, : self.length] = self.v[:, :, : self.length]
        return KVCache(k, v, self.length)


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, n_past: int) -> np.ndarray:
    """Scaled dot-product attention of T new queries over S = n_past + T cached positions;
    query t sees positions <= n_past + t. Query head h uses K/V head h // G (GQA)."""
    # q: [Hkv, G, T, dh]; k, v: [Hkv, S, dh] -> [Hkv, G, T, dh]
    n_kv, group, t_new, d_head = q.shape
    scores = q.reshape(n_kv, group * t_new, d_head) @ k.transpose(0, 2, 1)  # [Hkv, G*T, S]
    scores = scores.reshape(n_kv, group, t_new, -1) * F32(1.0 / np.sqrt(d_head))  # [Hkv, G, T, S]
    if t_new > 1:
        future = np.arange(k.shape[1])[None, :] > (n_past + np.arange(t_new))[:, None]  # [T, S]
        scores = np.where(future, F32(-np.inf), scores)
    probs = softmax(scores)  # [Hkv, G, T, S]
    return (probs.reshape(n_kv, group * t_new, -1) @ v).reshape(n_kv, group, t_new, d_head)


def split_heads(x: np.ndarray, n_heads: int) -> np.ndarray:
    # x: [T, heads * dh] -> [heads, T, dh]
    t_new = x.shape[0]
    return x.reshape(t_new, n_heads, -1).transpose(1, 0, 2)


def merge_heads(x: np.ndarray) -> np.ndarray:
    # x: [Hkv, G, T, dh] or [H, T, dh] -> [T, H * dh]
    t_new, d_head = x.shape[-2:]
    return x.reshape(-1, t_new, d_head).transpose(1, 0, 2).reshape(t_new, -1)


def cached_attention(q: np.ndarray, k_new: np.ndarray, v_new: np.ndarray,
                     cache: KVCache, layer: int, n_past: int) -> np.ndarray:
    """Append this step's K/V to the layer's cache, attend over everything cached."""
    # q: [H, T, dh]; k_new, v_new: [Hkv, T, dh] -> [T, H * dh]
    n_kv, t_new, d_head = k_new.shape
    end = n_past + t_new
    cache.k[layer, :, n_past:end] = k_new
    cache.v[layer, :, n_past:end] = v_new
    q = q.reshape(n_kv, -1, t_new, d_head)  # [Hkv, G, T, dh]
    out = causal_attention(q, cache.k[layer, :, :end], cache.v[layer, :, :end], n_past)
    return merge_heads(out)


# ---- transformer blocks ---------------------------------------------------------------------
def gpt_block(x: np.ndarray, w: dict[str, np.ndarray], spec: ModelSpec,
              cache: KVCache, layer: int, n_past: int) -> np.ndarray:
    """Pre-norm GPT-2 block; Conv1D weights are [in, out], hence x @ W."""
    # x: [T, d_model] -> [T, d_model]
    h = layer_norm(x, w["ln_1.weight"], w["ln_1.bias"], spec.norm_eps)
    qkv = h @ w["attn.c_attn.weight"] + w["attn.c_attn.bias"]  # [T, 3 * q_dim]
    q, k, v = (split_heads(part, spec.n_heads) for part in np.split(qkv, 3, axis=-1))  # [H, T, dh]
    attn = cached_attention(q, k, v, cache, layer, n_past)  # [T, q_dim]
    x = x + attn @ w["attn.c_proj.weight"] + w["attn.c_proj.bias"]
    h = layer_norm(x, w["ln_2.weight"], w["ln_2.bias"], spec.norm_eps)
    h = gelu_tanh(h @ w["mlp.c_fc.weight"] + w["mlp.c_fc.bias"])  # [T, d_ff]
    return x + h @ w["mlp.c_proj.weight"] + w["mlp.c_proj.bias"]


def llama_block(x: np.ndarray, w: dict[str, np.ndarray], spec: ModelSpec,
                cache: KVCache, layer: int, n_past: int,
                cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Pre-norm LLaMA block; Linear weights are [out, in], hence x @ W.T."""
    # x: [T, d_model]; cos, sin: [T, dh] -> [T, d_model]
    h = rms_norm(x, w["input_layernorm.weight"], spec.norm_eps)
    q = split_heads(h @ w["self_attn.q_proj.weight"].T, spec.n_heads)  # [H, T, dh]
    k = split_heads(h @ w["self_attn.k_proj.weight"].T, spec.n_kv_heads)  # [Hkv, T, dh]
    v = split_heads(h @ w["self_attn.v_proj.weight"].T, spec.n_kv_heads)  # [Hkv, T, dh]
    attn = cached_attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, cache, layer, n_past)
    x = x + attn @ w["self_attn.o_proj.weight"].T
    h = rms_norm(x, w["post_attention_layernorm.weight"], spec.norm_eps)
    gate = silu(h @ w["mlp.gate_proj.weight"].T)  # [T, d_ff]
    return x + (gate * (h @ w["mlp.up_proj.weight"].T)) @ w["mlp.down_proj.weight"].T


def layer_weights(params: dict[str, np.ndarray], spec: ModelSpec, layer: int) -> dict[str, np.ndarray]:
    """One layer's tensors keyed by their name relative to the layer prefix."""
    prefix = spec.layer_prefix(layer)
    return {name[len(prefix):]: t for name, t in params.items() if name.startswith(prefix)}


def forward(token_ids: np.ndarray, params: dict[str, np.ndarray],
            layers: list[dict[str, np.ndarray]], spec: ModelSpec, cache: KVCache) -> np.ndarray:
    """Run T new tokens at positions cache.length.. through the model, filling the cache.

    The caller guarantees cache capacity; `cache.length` is advanced by the caller.
    """
    # token_ids: [T] -> logits: [T, V]
    n_past = cache.length
    positions = np.arange(n_past, n_past + len(token_ids))  # [T]
    x = params[spec.embedding_name][token_ids]  # [T, d_model]
    if spec.family == "gpt":
        x = x + params["transformer.wpe.weight"][positions]
        for layer, w in enumerate(layers):
            x = gpt_block(x, w, spec, cache, layer, n_past)
        x = layer_norm(x, params["transformer.ln_f.weight"], params["transformer.ln_f.bias"], spec.norm_eps)
    else:
        cos, sin = rope_cos_sin(positions, spec.d_head, spec.rope_theta)
        for layer, w in enumerate(layers):
            x = llama_block(x, w, spec, cache, layer, n_past, cos, sin)
        x = rms_norm(x, params["model.norm.weight"], spec.norm_eps)
    return x @ params[spec.lm_head_matrix().name].T  # [T, V]
