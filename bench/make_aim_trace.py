"""Write example traces in the public AiM simulator's format (arkhadem/aim_simulator).

    python bench/make_aim_trace.py rowpass 1024 -o rowpass_1024.trace
    python bench/make_aim_trace.py gemv 8 4 --channels 0-7 -o gemv.trace

Options may stand before or after the kind of trace. The same text runs here
(`sim.aim_trace.load_aim_trace`) and in that simulator, so cycle counts can be compared line
for line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.aim_trace import (  # noqa: E402
    AIM_MASK_ALL, AIM_MASK_BITS, chmask_to_aim_mask, generate_gemv, generate_row_passes,
)

AIM_ROWS_PER_BANK = 16384  # GDDR6-AiM bank (hw_configs/aim-32ch.yaml, rows_per_bank)
AIM_COLUMNS_PER_ROW = 64  # 2 KB row / 32 B column (hw_configs/aim-32ch.yaml)


def parse_channels(text: str | None) -> int:
    """`0-7,16` -> that simulator's mask; None -> all 32 channels."""
    if not text:
        return AIM_MASK_ALL
    chans: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise argparse.ArgumentTypeError(f"'{text}' is not a channel list such as 0-7,16 ('{part}' is not "
                                             "a channel number or a range lo-hi)")
        first, last = int(lo), int(hi) if dash else int(lo)
        if first > last or last >= AIM_MASK_BITS:
            raise argparse.ArgumentTypeError(f"'{part}' in '{text}': channels are 0..{AIM_MASK_BITS - 1} "
                                             "and a range runs from low to high")
        chans.extend(range(first, last + 1))
    return chmask_to_aim_mask(chans)


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1 (a count of rows, blocks, tiles or columns)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1 (an empty trace is not written)")
    return value


def _options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The shared options; on the subcommands they default to 'not given' so either place works."""
    none = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--channels", type=parse_channels, metavar="LIST",
                        help="channel list such as 0-7,16 (default: all 32)", **({"default": AIM_MASK_ALL} | none))
    parser.add_argument("--opsize", type=positive, help=f"columns per ISR, 1..{AIM_COLUMNS_PER_ROW} (default 64, a full row)",
                        **({"default": AIM_COLUMNS_PER_ROW} | none))
    parser.add_argument("-o", "--output", help="output file (default: stdout)", **({"default": None} | none))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _options(ap, defaults=True)
    sub = ap.add_subparsers(dest="kind", required=True)
    rp = sub.add_parser("rowpass", help="N all-bank MAC row passes (rows 0..N-1)")
    _options(rp, defaults=False)
    rp.add_argument("rows", type=positive)
    gv = sub.add_parser("gemv", help="WR_BIAS / WR_GB / MAC_ABK / RD_MAC mix")
    _options(gv, defaults=False)
    gv.add_argument("out_blocks", type=positive, help="output blocks of 16 outputs per channel")
    gv.add_argument("k_tiles", type=positive, help="input tiles of one row each")
    gv.add_argument("--no-bias", action="store_true")
    args = ap.parse_args(argv)

    if args.opsize > AIM_COLUMNS_PER_ROW:
        ap.error(f"--opsize {args.opsize}: an AiM row has {AIM_COLUMNS_PER_ROW} columns")
    rows = args.rows if args.kind == "rowpass" else args.out_blocks * args.k_tiles
    if rows > AIM_ROWS_PER_BANK:
        ap.error(f"{args.kind} needs rows 0..{rows - 1}, but an AiM bank has {AIM_ROWS_PER_BANK} rows")
    if args.kind == "rowpass":
        text = generate_row_passes(args.rows, args.channels, args.opsize)
    else:
        text = generate_gemv(args.out_blocks, args.k_tiles, args.channels, args.opsize, bias=not args.no_bias)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            ap.error(f"cannot write {args.output}: {exc.strerror or exc}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
