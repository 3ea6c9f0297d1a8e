"""Model shapes and the analytic counts derived from them.

A `ModelSpec` is the only thing the mapping layer and the timing engine need to know about a
model: every weight tensor's name (the Hugging Face checkpoint name) and shape follow from it,
and so do the per-token costs. Weights are optional and live elsewhere (`workloads.weights`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass as pydantic_dataclass

BF16_BYTES = 2

Family = Literal["gpt", "llama"]


class SpecError(ValueError):
    """A model description is inconsistent or unknown."""


@dataclass(frozen=True)
class MatrixSpec:
    """One weight matrix used as a GEMV/GEMM operand: y[out] = W[out, in] @ x[in].

    `transposed_in_checkpoint` is True when the checkpoint stores it as [in, out]
    (GPT-2's Conv1D layers), so a loader or a mapper knows which axis is which.
    """

    name: str
    out_features: int
    in_features: int
    role: str
    transposed_in_checkpoint: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    @property
    def checkpoint_shape(self) -> tuple[int, int]:
        if self.transposed_in_checkpoint:
            return (self.in_features, self.out_features)
        return self.shape

    @property
    def n_params(self) -> int:
        return self.out_features * self.in_features


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ModelSpec:
    """Shapes of a decoder-only transformer of the GPT or LLaMA family.

    gpt:   learned positions, LayerNorm (with bias), tanh-GELU MLP, multi-head attention,
           biases on every linear layer, LM head tied to the token embedding by default.
    llama: RMSNorm, rotary positions (HF rotate-half convention), SwiGLU MLP, grouped-query
           attention, no biases, LM head optionally tied.
    Optional fields left as None get the family default in __post_init__.
    """

    name: str
    family: Family
    n_layers: PositiveInt
    d_model: PositiveInt
    n_heads: PositiveInt
    d_ff: PositiveInt
    vocab_size: PositiveInt
    max_context: PositiveInt
    n_kv_heads: PositiveInt | None = None
    d_head: PositiveInt | None = None
    norm_eps: PositiveFloat = 1e-5
    rope_theta: PositiveFloat | None = None
    tied_embeddings: bool | None = None
    source: str = ""

    def __post_init__(self) -> None:
        def fill(field: str, value) -> None:
            if getattr(self, field) is None:
                object.__setattr__(self, field, value)

        fill("n_kv_heads", self.n_heads)
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise SpecError(
                    f"model {self.name!r}: d_model {self.d_model} is not a multiple of n_heads "
                    f"{self.n_heads}; give d_head explicitly")
            object.__setattr__(self, "d_head", self.d_model // self.n_heads)
        fill("tied_embeddings", self.family == "gpt")
        if self.family == "llama":
            fill("rope_theta", 10000.0)
            if self.d_head % 2:
                raise SpecError(f"model {self.name!r}: rotary embeddings need an even d_head, got {self.d_head}")
        elif self.rope_theta is not None:
            raise SpecError(f"model {self.name!r}: rope_theta is only meaningful for family 'llama'")
        if self.family == "gpt" and self.n_kv_heads != self.n_heads:
            raise SpecError(
                f"model {self.name!r}: family 'gpt' uses multi-head attention, so n_kv_heads "
                f"({self.n_kv_heads}) must equal n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise SpecError(
                f"model {self.name!r}: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")

    # ---- widths -------------------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        return self.n_heads * self.d_head

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.d_head

    @property
    def group_size(self) -> int:
        """Query heads sharing one K/V head (1 for multi-head attention)."""
        return self.n_heads // self.n_kv_heads

    # ---- tensor inventory (HF checkpoint names) -------------------------------------------
    def layer_prefix(self, layer: int) -> str:
        return f"transformer.h.{layer}." if self.family == "gpt" else f"model.layers.{layer}."

    @property
    def embedding_name(self) -> str:
        return "transformer.wte.weight" if self.family == "gpt" else "model.embed_tokens.weight"

    def per_layer_matrices(self, layer: int = 0) -> tuple[MatrixSpec, ...]:
        """Every weight matrix of one transformer layer, in execution order."""
        p, d, q, kv, ff = self.layer_prefix(layer), self.d_model, self.q_dim, self.kv_dim, self.d_ff
        if self.family == "gpt":
            return (
                MatrixSpec(p + "attn.c_attn.weight", 3 * q, d, "qkv", True),
                MatrixSpec(p + "attn.c_proj.weight", d, q, "attn_out", True),
                MatrixSpec(p + "mlp.c_fc.weight", ff, d, "ffn_up", True),
                MatrixSpec(p + "mlp.c_proj.weight", d, ff, "ffn_down", True),
            )
        return (
            MatrixSpec(p + "self_attn.q_proj.weight", q, d, "q"),
            MatrixSpec(p + "self_attn.k_proj.weight", kv, d, "k"),
            MatrixSpec(p + "self_attn.v_proj.weight", kv, d, "v"),
            MatrixSpec(p + "self_attn.o_proj.weight", d, q, "attn_out"),
            MatrixSpec(p + "mlp.gate_proj.weight", ff, d, "ffn_gate"),
            MatrixSpec(p + "mlp.up_proj.weight", ff, d, "ffn_up"),
            MatrixSpec(p + "mlp.down_proj.weight", d, ff, "ffn_down"),
        )

    def per_layer_vectors(self, layer: int = 0) -> dict[str, tuple[int]]:
        """Norm gains and biases of one layer: name -> shape."""
        p, d, q, ff = self.layer_prefix(layer), self.d_model, self.q_dim, self.d_ff
        if self.family == "gpt":
            return {
                p + "ln_1.weight": (d,), p + "ln_1.bias": (d,),
                p + "attn.c_attn.bias": (3 * q,), p + "attn.c_proj.bias": (d,),
                p + "ln_2.weight": (d,), p + "ln_2.bias": (d,),
                p + "mlp.c_fc.bias": (ff,), p + "mlp.c_proj.bias": (d,),
            }
        return {p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,)}

    def lm_head_matrix(self) -> MatrixSpec:
        """The vocabulary projection; with tied embeddings it *is* the token embedding."""
        name = self.embedding_name if self.tied_embeddings else "lm_head.weight"
        return MatrixSpec(name, self.vocab_size, self.d_model, "lm_head")

    def global_tensors(self) -> dict[str, tuple[int, ...]]:
        """Tensors outside the layers (embeddings, final norm, untied LM head): name -> shape."""
        d = self.d_model
        shapes: dict[str, tuple[int, ...]] = {self.embedding_name: (self.vocab_size, d)}
        if self.family == "gpt":
            shapes["transformer.wpe.weight"] = (self.max_context, d)
            shapes["transformer.ln_f.weight"] = (d,)
            shapes["transformer.ln_f.bias"] = (d,)
        else:
            shapes["model.norm.weight"] = (d,)
        if not self.tied_embeddings:
            shapes["lm_head.weight"] = (self.vocab_size, d)
        return shapes

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter tensor as stored in an HF checkpoint: name -> shape."""
        shapes = dict(self.global_tensors())
        for layer in range(self.n_layers):
            shapes.update({m.name: m.checkpoint_shape for m in self.per_layer_matrices(layer)})
            shapes.update(self.per_layer_vectors(layer))
        return shapes

    # ---- analytic counts -----------------------------------------------------------------
    @property
    def n_params(self) -> int:
        """All parameters, embeddings included, a tied LM head counted once."""
        return sum(math.prod(s) for s in self.param_shapes().values())

    @property
    def bf16_bytes(self) -> int:
        return self.n_params * BF16_BYTES

    @property
    def matmul_params_per_token(self) -> int:
        """Weights read by the GEMVs of one decode step: all layer matrices plus the LM head
        (the embedding lookup reads one row only, so it is not counted)."""
        per_layer = sum(m.n_params for m in self.per_layer_matrices())
        return self.n_layers * per_layer + self.lm_head_matrix().n_params

    @property
    def matmul_weight_bf16_bytes(self) -> int:
        return self.matmul_params_per_token * BF16_BYTES

    def flops_per_token(self, context: int) -> int:
        """FLOPs to decode one token attending to `context` positions (itself included).

        2 FLOPs per multiply-accumulate: the weight GEMVs, then per layer q.K^T and p.V,
        each n_heads * d_head * context MACs. Norms, softmax and activations are ignored
        (they are O(d_model), not O(d_model^2)).
        """
        attention_macs = 2 * self.n_layers * self.q_dim * context
        return 2 * (self.matmul_params_per_token + attention_macs)

    @property
    def kv_bytes_per_position(self) -> int:
        """bf16 bytes of K and V stored per cached position, all layers."""
        return 2 * self.n_layers * self.kv_dim * BF16_BYTES

    def kv_cache_bytes(self, context: int) -> int:
        """bf16 bytes of the KV cache at `context` positions (read once per decoded token)."""
        return context * self.kv_bytes_per_position
