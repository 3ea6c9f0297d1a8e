"""Token generation with full cycle-level timing (refresh on): wall time per simulated token.

For each model: `--tokens` simulated tokens (decode steps) on pim-gpt.yaml in overlap mode, every
step timed in full: a prompt of 1 and `--tokens` - 1 generated tokens, so 1024 fills GPT-2's whole
context of 1024 positions (prompt 1 + 1024 generated would exceed it). One line per model (cpu_s: this process's CPU time, the figure to quote on
a shared machine):

    model=gpt2-xl tokens=1024 wall_s=<n> cpu_s=<n> peak_rss_mb=<n> sim_latency_ms_per_token=<n> pim_only_ms=<n> floor_ms=<n> bound_ms=<n>

A first line, compile_or_load_wall_s=<n> compile_peak_rss_mb=<n>, is a child process that loads the
compiled engine from numba's cache, or compiles it there on a cold cache (minutes, once).

    python bench/generate.py [--tokens 1024] [--models gpt2-xl,...|paper] [--hw pim-gpt]

With no --models: GPT2-XL alone, then the 8 paper models one after the other and their total.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

from sim.compose import simulate

PAPER_MODELS = ("gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-small", "gpt3-medium", "gpt3-large",
                "gpt3-xl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1024, help="simulated tokens per model: prompt 1 + tokens - 1 "
                    "generated (default 1024)")
    ap.add_argument("--models", help="comma-separated names, or 'paper' for all 8 paper models (default: "
                    "gpt2-xl, then the 8 paper models)")
    ap.add_argument("--hw", default="pim-gpt")
    a = ap.parse_args()
    if a.models is None:
        groups = [("gpt2-xl",), PAPER_MODELS]
    else:
        groups = [PAPER_MODELS if a.models == "paper" else tuple(a.models.split(","))]
    compile_engine(groups[0][0], a.hw)
    simulate(groups[0][0], a.hw, prompt_len=1, gen_len=0)  # load the compiled engine outside the timing
    for models in groups:
        run_group(models, a.hw, a.tokens)


def compile_engine(model: str, hw: str) -> None:
    """Fill numba's cache in a child process, so that this process only loads the engine and its
    peak RSS is the simulator's, not LLVM's; on a cold cache the compile's own figures get a line."""
    code = ("import resource, time; from sim.compose import simulate; t = time.perf_counter(); "
            f"simulate({model!r}, {hw!r}, prompt_len=1, gen_len=0); "
            "print(f'{time.perf_counter() - t:.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}')")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    print(f"compile_or_load_wall_s={out[0]} compile_peak_rss_mb={out[1]}", flush=True)


def run_group(models: tuple[str, ...], hw: str, tokens: int) -> None:
    total = 0.0
    for m in models:
        t0, c0 = time.perf_counter(), time.process_time()
        g = simulate(m, hw, prompt_len=1, gen_len=tokens - 1)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        total += wall
        s = g.summary
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"model={m} tokens={tokens} wall_s={wall:.1f} cpu_s={cpu:.1f} peak_rss_mb={rss:.0f} "
              f"sim_latency_ms_per_token={s['latency_s_per_token_mean'] * 1e3:.4f} "
              f"pim_only_ms={s['pim_only_s_per_token'] * 1e3:.4f} floor_ms={s['row_pass_floor_s_per_token'] * 1e3:.4f} "
              f"bound_ms={s['bound_s_per_token'] * 1e3:.4f}", flush=True)
    if len(models) > 1:
        print(f"models={len(models)} tokens={tokens} total_wall_s={total:.1f}", flush=True)


if __name__ == "__main__":
    main()
