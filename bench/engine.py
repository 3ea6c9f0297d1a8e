"""Timing-engine throughput: DRAM commands simulated per second of wall time.

Runs command streams of at least 10 M commands through the engine in fixed-size chunks (the
engine is resumable), so memory stays flat however long the stream is. Prints one line per
stream, the fixed cost of a small call (`stream=small_calls ... us_per_call=<n>`) and, last,
`commands_per_s=<n> peak_rss_mb=<n>` for the main stream (PIM GEMV mix, the engine's default path).

    python bench/engine.py [--commands 10000000] [--hw pim-gpt]
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from sim.commands import column, program, simple
from sim.config import load_config
from sim.dram_spec import compile_standard
from sim.engine import Engine


def gemv_chunk(std, n_channels: int, n_rows: int, first_row: int) -> np.ndarray:
    """A GEMV tile stream: fill the global buffer, 16 row passes per fill, read the MAC registers."""
    allch = (1 << n_channels) - 1
    rows = []
    for r in range(n_rows):
        if r % 16 == 0:
            rows.append(simple(allch, std.cmd("WRGB"), count=64))
        rows.append(column(allch, std.cmd("MAC16"), row=(first_row + r) % 16384, count=64))
        if r % 16 == 15:
            rows.append(simple(allch, std.cmd("RDMAC16"), blocking=True))
    return program(rows)


def random_bank_chunk(std, n_channels: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Single-bank reads/writes to random banks and rows: no bursts, ~50 % row misses."""
    cmds = np.array([std.cmd("RD"), std.cmd("WR")])
    return program(column(1 << int(c), int(cmds[k]), row=int(r), count=1, col=int(col), bank=int(b))
                   for c, k, r, col, b in zip(rng.integers(0, n_channels, n), rng.integers(0, 2, n),
                                              rng.integers(0, 2, n), rng.integers(0, 64, n), rng.integers(0, 16, n)))


def run_stream(cfg, make_chunk, target: int, fast: bool) -> tuple[int, float, int]:
    """Feed chunks until `target` commands have issued; (commands, wall seconds, simulated cycles)."""
    eng = Engine(cfg, fast=fast)
    eng.warm_up()  # load or compile the core outside the timed region
    chunks = [make_chunk(k) for k in range(4)]  # distinct chunks, built before timing
    n_cmd, k = 0, 0
    t0 = time.perf_counter()
    while n_cmd < target:
        res = eng.run(chunks[k % len(chunks)], close_rows=False)
        n_cmd += int(res.counts.sum())
        k += 1
    wall = time.perf_counter() - t0
    return n_cmd, wall, eng.now


def small_calls(cfg, std, n_calls: int = 20000) -> tuple[float, float]:
    """Fixed cost of one `Engine.run` on a one-instruction program (a compiler's trusted path:
    validated once, `validate=False`), in microseconds per call: wall and CPU time (the CPU
    figure holds on a shared machine)."""
    eng = Engine(cfg)
    eng.warm_up()
    prog = program([simple(1, std.cmd("WRGB"))])
    eng.run(prog)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_calls):
        eng.run(prog, validate=False, close_rows=False)
    return (time.perf_counter() - t0) / n_calls * 1e6, (time.process_time() - c0) / n_calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=10_000_000, help="commands per stream (default 10 M)")
    ap.add_argument("--hw", default="pim-gpt")
    a = ap.parse_args()
    cfg = load_config(a.hw)
    std = compile_standard(cfg)
    ch = cfg.dram.channels
    rng = np.random.default_rng(0)
    streams = [
        ("gemv_mix_fast", lambda k: gemv_chunk(std, ch, 512, 512 * k), True),
        ("gemv_mix_per_command", lambda k: gemv_chunk(std, ch, 512, 512 * k), False),
        ("random_single_bank", lambda _: random_bank_chunk(std, ch, 20000, rng), True),
    ]
    main_rate = None
    for name, make, fast in streams:
        target = a.commands if name != "random_single_bank" else max(a.commands // 5, 1)
        n, wall, cycles = run_stream(cfg, make, target, fast)
        rate = n / wall
        print(f"stream={name} hw={cfg.name} commands={n} wall_s={wall:.3f} commands_per_s={rate:.0f} "
              f"simulated_ms={cycles * cfg.dram.tck_ns / 1e6:.3f}")
        if main_rate is None:
            main_rate = rate
    us, cpu_us = small_calls(cfg, std)
    print(f"stream=small_calls hw={cfg.name} calls=20000 program=1_instruction us_per_call={us:.2f} "
          f"cpu_us_per_call={cpu_us:.2f}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"commands_per_s={main_rate:.0f} peak_rss_mb={rss_mb:.1f}")


if __name__ == "__main__":
    main()
