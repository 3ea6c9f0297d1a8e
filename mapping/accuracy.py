"""Reference vs compiled programs on the same tokens: the numbers behind `pimsim accuracy`."""
from __future__ import annotations

import numpy as np

from workloads import Model

from .compile import StepCompiler
from .device import MappingError
from .executor import build_image, decode_tokens

NUMERICS = ("exact",)
PROMPT = "The capital of France is"


def choose_tokens(model: Model, n: int, seed: int = 0) -> list[int]:
    """A prompt (tokenised text when the model has a tokenizer, else seeded random ids),
    continued greedily by the reference when more tokens are asked for."""
    if n < 1:
        raise MappingError(f"need at least one token, got {n}")
    if model.tokenizer is not None:
        tokens = list(model.tokenizer.encode(PROMPT))
    else:
        tokens = [int(t) for t in np.random.default_rng(seed).integers(0, model.spec.vocab_size, size=min(n, 4))]
    tokens = tokens[:n]
    if len(tokens) < n:
        tokens += model.generate(tokens, n - len(tokens))
    return tokens[:n]


def accuracy(model: Model, hw, n_tokens: int, strategy: str = "pim-gpt", row_commands: str | None = None,
             numerics: str = "exact", seed: int = 0) -> dict:
    """Run the reference and the executor on the same tokens; summary + per-token figures."""
    if numerics not in NUMERICS:
        raise MappingError(f"numerics '{numerics}' is not available; expected one of {', '.join(NUMERICS)}")
    tokens = choose_tokens(model, n_tokens, seed)
    if len(tokens) > model.spec.max_context:
        raise MappingError(f"{len(tokens)} tokens exceed {model.spec.name}'s max_context {model.spec.max_context}")
    ref, _ = model.prefill(tokens)                                  # [N, V]
    comp = StepCompiler(model.spec, hw, strategy, context=len(tokens), row_commands=row_commands)
    got = decode_tokens(comp, build_image(comp.placement, model.params), model.params, tokens)
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64)).max(axis=1)
    top1 = got.argmax(axis=1) == ref.argmax(axis=1)
    return {
        "summary": {"max_abs_logit_error": float(err.max()), "top1_agreement": float(top1.mean()),
                    "tokens": len(tokens), "numerics": numerics, "model": model.spec.name,
                    "strategy": comp.strategy, "row_commands": comp.mode, "weights": model.source},
        "per_token": [{"position": i, "token": int(t), "max_abs_logit_error": float(e), "top1_match": bool(m),
                       "reference_top1": int(r), "executor_top1": int(g)}
                      for i, (t, e, m, r, g) in enumerate(zip(tokens, err, top1, ref.argmax(1), got.argmax(1)))],
    }
