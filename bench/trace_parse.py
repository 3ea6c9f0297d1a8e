"""AiM trace reading speed: lines per second of wall time, and the memory it takes.

Writes a generated trace of `--lines` lines (default 4 M: every ISR kind, host ops, comments,
SYNCs, one EOC at the end) to a temporary file, then reads it with `load_aim_trace` in a fresh
process, so the peak RSS is the reader's (plus Python and numpy), not the generator's. Prints

    stream=trace_parse lines=<n> wall_s=<n> lines_per_s=<n> peak_rss_mb=<n> instructions=<n> cpu_s=<n>

(cpu_s is the reader's CPU time: on a shared machine wall time also counts other work.)

    python bench/trace_parse.py [--lines 4000000] [--hw aim-32ch]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# One period of the generated trace: a GEMV-like kernel with the other ISRs mixed in.
PERIOD = [
    "AiM WR_BIAS 0 0xffffffff",
    "AiM WR_GB 64 0 0xffffffff",
    "AiM MAC_ABK 64 0xffffffff {row}",
    "AiM WR_GB 64 0 0xffffffff",
    "AiM MAC_ABK 64 0xffffffff {row1}",
    "AiM RD_MAC 0 0xffffffff",
    "AiM MAC_SBK 8 0x80000000 {bank} {row}",
    "W MEM {ch} {bank} {row}",
    "R MEM {ch} {bank} {row1}",
    "AiM COPY_BKGB 4 0xf0000000 {bank} {row}",
    "W CFR 2 1",
    "AiM AF 0xffffffff",
    "AiM RD_AF 0 0xffffffff",
    "AiM EWMUL 16 0x0000ffff {row}",
    "AiM EWADD 4 1 2",
    "# a comment line",
    "AiM SYNC",
]


def write_trace(path: Path, n_lines: int) -> None:
    """`n_lines` lines (the last one EOC), written in blocks so the generator stays small."""
    with path.open("w") as fh:
        block: list[str] = []
        for i in range(n_lines - 1):
            k = i // len(PERIOD)
            block.append(PERIOD[i % len(PERIOD)].format(row=(2 * k) % 16384, row1=(2 * k + 1) % 16384,
                                                       bank=k % 16, ch=k % 32))
            if len(block) == 100_000:
                fh.write("\n".join(block) + "\n")
                block.clear()
        block.append("AiM EOC")
        fh.write("\n".join(block) + "\n")


def read_once(path: Path, hw: str, n_lines: int) -> str:
    """Read the trace (in this process) and return the figure line."""
    from sim.aim_trace import load_aim_trace
    from sim.config import load_config
    from sim.dram_spec import compile_standard

    cfg = load_config(hw)
    std = compile_standard(cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    prog = load_aim_trace(path, cfg, std, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"stream=trace_parse lines={n_lines} wall_s={wall:.3f} lines_per_s={n_lines / wall:.0f} "
            f"peak_rss_mb={rss_mb:.0f} instructions={len(prog)} cpu_s={cpu:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=4_000_000, help="trace length in lines (default 4 M)")
    ap.add_argument("--hw", default="aim-32ch", help="hardware preset the trace is checked against (32 channels)")
    ap.add_argument("--read", metavar="TRACE", help=argparse.SUPPRESS)  # the child process
    a = ap.parse_args(argv)
    if a.lines < 1:
        ap.error("--lines must be at least 1")
    if a.read:
        print(read_once(Path(a.read), a.hw, a.lines))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.trace"
        write_trace(path, a.lines)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        child = subprocess.run([sys.executable, __file__, "--read", str(path), "--lines", str(a.lines), "--hw", a.hw],
                               env=env, capture_output=True, text=True)
        sys.stderr.write(child.stderr)
        if child.returncode:
            return child.returncode
        print(child.stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
