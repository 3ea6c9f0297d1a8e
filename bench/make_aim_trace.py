"""Write example traces in the public AiM simulator's format (arkhadem/aim_simulator).

    python bench/make_aim_trace.py rowpass 1024 -o rowpass_1024.trace
    python bench/make_aim_trace.py gemv 8 4 --channels 0-7 -o gemv.trace

The same text runs here (`sim.aim_trace.load_aim_trace`) and in that simulator, so cycle counts
can be compared line for line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.aim_trace import AIM_MASK_ALL, chmask_to_aim_mask, generate_gemv, generate_row_passes  # noqa: E402


def parse_channels(text: str | None) -> int:
    """`0-7,16` -> that simulator's mask; None -> all 32 channels."""
    if not text:
        return AIM_MASK_ALL
    chans: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        chans.extend(range(int(lo), int(hi or lo) + 1))
    return chmask_to_aim_mask(chans)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", help="channel list such as 0-7,16 (default: all 32)")
    ap.add_argument("--opsize", type=int, default=64, help="columns per ISR (default 64, a full row)")
    ap.add_argument("-o", "--output", help="output file (default: stdout)")
    sub = ap.add_subparsers(dest="kind", required=True)
    rp = sub.add_parser("rowpass", help="N all-bank MAC row passes (rows 0..N-1)")
    rp.add_argument("rows", type=int)
    gv = sub.add_parser("gemv", help="WR_BIAS / WR_GB / MAC_ABK / RD_MAC mix")
    gv.add_argument("out_blocks", type=int, help="output blocks of 16 outputs per channel")
    gv.add_argument("k_tiles", type=int, help="input tiles of one row each")
    gv.add_argument("--no-bias", action="store_true")
    args = ap.parse_args(argv)

    mask = parse_channels(args.channels)
    if args.kind == "rowpass":
        text = generate_row_passes(args.rows, mask, args.opsize)
    else:
        text = generate_gemv(args.out_blocks, args.k_tiles, mask, args.opsize, bias=not args.no_bias)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
