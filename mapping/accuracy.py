"""Reference vs compiled programs on the same tokens: the numbers behind `pimsim accuracy`.

Teacher forcing: the prompt plus the reference's greedy continuation is fed to both the fp32
reference (`workloads`) and a decoder running the compiled programs, position by position, and
their logits compared. A decoder factory is `make(compiler, model) -> step(position, token) ->
logits [V]`; `exact` (this package's fp32 executor) is built in, others (the PIM numerics of
sim/functional) are passed in by the composition root, so mapping never imports the simulator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workloads import Model

from .compile import StepCompiler
from .device import MappingError
from .executor import asic_store, build_image, execute

PROMPT = "The capital of France is"


def exact_decoder(compiler: StepCompiler, model: Model):
    """step(position, token) -> logits with the exact fp32 executor on the mapping's image."""
    image, store = build_image(compiler.placement, model.params), asic_store(compiler.placement, model.params)
    return lambda pos, tok: execute(compiler.compile(pos, int(tok)), image, store)["logits"].copy()


NUMERICS = {"exact": exact_decoder}


def choose_tokens(model: Model, n: int, seed: int = 0) -> tuple[list[int], int]:
    """(tokens, prompt length): a prompt (tokenised text when the model has a tokenizer, else
    seeded random ids), continued greedily by the reference when more tokens are asked for."""
    if n < 1:
        raise MappingError(f"need at least one token, got {n}")
    if model.tokenizer is not None:
        tokens = list(model.tokenizer.encode(PROMPT))
    else:
        tokens = [int(t) for t in np.random.default_rng(seed).integers(0, model.spec.vocab_size, size=min(n, 4))]
    tokens = tokens[:n]
    n_prompt = len(tokens)
    if len(tokens) < n:
        tokens += model.generate(tokens, n - len(tokens))
    return tokens[:n], n_prompt


@dataclass
class Prepared:
    """What every numerics run of one (model, hardware, tokens) shares."""

    tokens: list[int]
    n_prompt: int
    reference: np.ndarray        # [N, V] fp32 logits, teacher-forced
    compiler: StepCompiler


def prepare(model: Model, hw, n_tokens: int, strategy: str = "pim-gpt", row_commands: str | None = None,
            seed: int = 0, extra_positions: int = 0) -> Prepared:
    """Tokens, reference logits and a compiler reserving KV for N (+ extra) positions."""
    tokens, n_prompt = choose_tokens(model, n_tokens, seed)
    if len(tokens) > model.spec.max_context:
        raise MappingError(f"{len(tokens)} tokens exceed {model.spec.name}'s max_context {model.spec.max_context}")
    ref, _ = model.prefill(tokens)                                  # [N, V]
    context = min(model.spec.max_context, len(tokens) + extra_positions)
    comp = StepCompiler(model.spec, hw, strategy, context=context, row_commands=row_commands)
    return Prepared(tokens, n_prompt, ref, comp)


def teacher_forced(step, tokens) -> np.ndarray:
    """Logits [N, V] of feeding `tokens` from position 0."""
    return np.stack([np.asarray(step(pos, tok), np.float32) for pos, tok in enumerate(tokens)])


def greedy_after(step, logits: np.ndarray, start: int, n: int) -> list[int]:
    """n tokens decoded greedily from position `start`, logits [start - 1] giving the first; the
    positions before `start` must already be in the decoder's KV cache (teacher forcing did it)."""
    out = [int(np.argmax(logits[start - 1]))]
    for pos in range(start, start + n - 1):
        out.append(int(np.argmax(step(pos, out[-1]))))
    return out[:n]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def perplexity(logits: np.ndarray, tokens, n_prompt: int) -> float | None:
    """exp(mean -log p(token[i+1] | logits[i])) over the continuation tokens[n_prompt:] (None if empty)."""
    rows = np.arange(max(n_prompt, 1) - 1, len(tokens) - 1)
    if len(rows) == 0:
        return None
    lp = log_softmax(logits[rows])[np.arange(len(rows)), np.asarray(tokens)[rows + 1]]
    return float(np.exp(-lp.mean()))


def compare(ref: np.ndarray, got: np.ndarray, tokens, n_prompt: int) -> tuple[dict, list[dict]]:
    """Summary figures and per-position records of two teacher-forced logit arrays [N, V]."""
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    err = diff.max(axis=1)
    top1 = got.argmax(axis=1) == ref.argmax(axis=1)
    summary = {"top1_agreement": float(top1.mean()), "max_abs_logit_error": float(err.max()),
               "mean_abs_logit_error": float(diff.mean()),
               "perplexity_reference": perplexity(ref, tokens, n_prompt),
               "perplexity_numerics": perplexity(got, tokens, n_prompt)}
    per_token = [{"position": i, "token": int(t), "max_abs_logit_error": float(e), "top1_match": bool(m),
                  "reference_top1": int(r), "executor_top1": int(g)}
                 for i, (t, e, m, r, g) in enumerate(zip(tokens, err, top1, ref.argmax(1), got.argmax(1)))]
    return summary, per_token


def accuracy(model: Model, hw, n_tokens: int, strategy: str = "pim-gpt", row_commands: str | None = None,
             numerics: str = "exact", seed: int = 0, decoders: dict | None = None,
             continuation: bool = True) -> dict:
    """Run the reference and a decoder on the same tokens; summary + per-token figures. With
    `continuation`, also the decoder's own greedy continuation of the prompt (as many tokens as
    the reference's), next to the reference's."""
    available = {**NUMERICS, **(decoders or {})}
    if numerics not in available:
        raise MappingError(f"numerics '{numerics}' is not available; expected one of {', '.join(available)}")
    prep = prepare(model, hw, n_tokens, strategy, row_commands, seed)
    tokens, n_prompt = prep.tokens, prep.n_prompt
    step = available[numerics](prep.compiler, model)
    got = teacher_forced(step, tokens)
    summary, per_token = compare(prep.reference, got, tokens, n_prompt)
    summary.update({"tokens": len(tokens), "prompt_tokens": n_prompt, "numerics": numerics,
                    "model": model.spec.name, "strategy": prep.compiler.strategy,
                    "row_commands": prep.compiler.mode, "weights": model.source})
    n_cont = len(tokens) - n_prompt
    if continuation and n_cont > 0:
        mine = greedy_after(step, got, n_prompt, n_cont)
        summary["reference_continuation"] = tokens[n_prompt:]
        summary["numerics_continuation"] = mine
        if model.tokenizer is not None:
            summary["prompt_text"] = model.tokenizer.decode(tokens[:n_prompt])
            summary["reference_text"] = model.tokenizer.decode(tokens[n_prompt:])
            summary["numerics_text"] = model.tokenizer.decode(mine)
    return {"summary": summary, "per_token": per_token}
