"""Traces of the public AiM simulator (arkhadem/aim_simulator) read into engine instructions.

Users of that simulator describe a kernel as a text trace of host instructions ("ISRs"); this
module reads such a trace and expands every ISR into the engine's compact instructions
(`sim.commands`), so the same trace runs here.

Trace format (as that simulator's newest trace reader accepts it)
-----------------------------------------------------------------
One instruction per line, fields separated by spaces (or by commas: that simulator has a
`delimiter: ","` option, and its example traces are spreadsheet CSV). Fields appear in a fixed
order and only the fields the opcode takes are written:

    AiM WR_SBK    <gpr> <channel_mask> <bank> <row>
    AiM WR_ABK    <gpr> <channel_mask> <row>             (exactly one channel)
    AiM WR_GB     <opsize> <gpr> <channel_mask>
    AiM WR_BIAS   <gpr> <channel_mask>
    AiM RD_MAC    <gpr> <channel_mask>
    AiM RD_AF     <gpr> <channel_mask>
    AiM RD_SBK    <gpr> <channel_mask> <bank> <row>
    AiM COPY_BKGB <opsize> <channel_mask> <bank> <row>
    AiM COPY_GBBK <opsize> <channel_mask> <bank> <row>
    AiM MAC_SBK   <opsize> <channel_mask> <bank> <row>
    AiM MAC_ABK   <opsize> <channel_mask> <row>
    AiM AF        <channel_mask>
    AiM EWMUL     <opsize> <channel_mask> <row>
    AiM EWADD     <opsize> <gpr> <gpr1>
    AiM SYNC
    AiM EOC
    R|W MEM <channel> <bank> <row>      (a channel number, not a mask)
    R|W GPR <gpr>
    R|W CFR <cfr> <data>                (cfr 0: MAC operand source, 1: EWMUL bank groups, 2: AF mode)

Opcodes may carry the `ISR_` prefix. Numbers are decimal or `0x` hexadecimal. A line whose first
field starts with `#` is a comment. Reading stops at `EOC`, as in that simulator.

Channel masks: bit i of a mask addresses channel 31 - i (0x80000000 is channel 0, 0x0000ffff is
channels 16..31), whatever the number of channels. Here they become the engine's masks (bit c =
channel c). On a configuration with fewer than 32 channels, a mask bit of a channel that does not
exist is an error naming the line; with more than 32, a trace reaches channels 0..31 only.
Banks are numbered 0..15 per channel, group-major (bank b is in bank group b // 4 there), and
keep their number here.

Expansion, per ISR (that simulator's requests per channel of the mask -> our instruction row)
--------------------------------------------------------------------------------------------
  MAC_ABK n M r   n x MAC16 at columns 0..n-1 of row r, all banks; ACT16 (PREA first when another
                  row is open) when row r is not open in every bank
                  -> column(M, MAC16, row=r, count=n)
  MAC_SBK n M b r n x MAC at columns 0..n-1 of bank b, row r; single-bank ACT / PRE
                  -> column(M, MAC, row=r, count=n, bank=b)
  WR_GB n g M     n x WRGB (register mode)              -> simple(M, WRGB, count=n)
  WR_BIAS g M     1 x WRMAC16 (register mode)           -> simple(M, WRMAC16)
  RD_MAC g M      1 x RDMAC16 (register mode), blocking -> simple(M, RDMAC16, blocking=True)
  RD_AF g M       1 x RDAF16 (register mode), blocking  -> simple(M, RDAF16, blocking=True)
  WR_ABK g M r    1 x WRA16 at column 0 of row r, all banks, closes every row (auto-precharge)
                  -> column(M, WRA16, row=r, count=1)
  WR_SBK g M b r  an ordinary memory write (1 x WR, column 0), single-bank ACT / PRE
                  -> column(M, WR, row=r, count=1, bank=b)
  RD_SBK g M b r  an ordinary memory read (1 x RD, column 0), not blocking
                  -> column(M, RD, row=r, count=1, bank=b)
  COPY_BKGB n M b r  n x RDCP of bank b, row r (single-bank ACT / PRE)
                  -> column(M, RDCP, row=r, count=n, bank=b)
  COPY_GBBK n M b r  n x WRCP of bank b, row r          -> column(M, WRCP, row=r, count=n, bank=b)
  AF M            1 x AF16, all banks, on the activation-function row AF_ROW_BASE + (CFR 2 value):
                  that simulator gives AF16 this pseudo-row, so an AF closes the open data row
                  (PREA) and activates it (ACT16, then nRCDRDAF)
                  -> column(M, AF16, row=AF_ROW_BASE + afm, count=1)
  EWMUL n M r     n x EWMUL16 at columns 0..n-1 of row r, all banks (ACT16)
                  -> column(M, EWMUL16, row=r, count=n)
  EWADD n g g1    no DRAM work (adds host registers)    -> nothing
  SYNC            waits until every channel (not only a mask) has finished all earlier work
                  -> barrier(all channels)
  EOC             end of the trace; waits like SYNC     -> barrier(all channels), then stop
  R|W MEM c b r   1 x RD / WR at column 0 of bank b, row r of channel c
                  -> column(1 << c, RD / WR, row=r, count=1, bank=b)
  R|W GPR, R CFR  host registers, no DRAM work          -> nothing
  W CFR 2 v       sets the AF mode used by later AFs    -> nothing (changes AF rows)
  W CFR 0|1 v     MAC operand source / EWMUL bank groups: no effect on timing there -> nothing
  WR_AFLUT        rejected: that simulator does not support it either

Column addresses: an ISR of opsize n touches columns 0..n-1 of one row (no ISR takes a start
column). That simulator does not bound them: an opsize beyond the columns of a row keeps issuing
into column numbers past the end of the row, never wrapping nor moving to the next row. That
is not a real access, so here an opsize above `columns_per_row` is an error naming the line.

Where this reading differs from that simulator
----------------------------------------------
- Stricter input: an opsize of 0 (that simulator silently does nothing), negative numbers (it
  reads -1 as "field absent" and trailing garbage such as `12abc` as 12), rows past
  `rows_per_bank` (it does not check) and mask bits above bit 31 (it ignores them) are errors.
- Looser input: runs of spaces/tabs and `\\r\\n` endings are accepted (it splits on single spaces),
  `#text` is a comment (it needs `#` as a separate field), spreadsheet padding (a leading empty
  field, trailing commas, all-comma lines) is ignored, and a trace without EOC ends at its last
  line (it stops with an error).
- R MEM / RD_SBK: that simulator serves a read without any DRAM command whenever a memory write is
  still waiting in the same channel's queue (its write-to-read forwarding compares addresses that
  its trace reader never sets). Here every read issues its RD.
- Memory reads/writes there go through a first-ready FR-FCFS queue with write batching; here
  each instruction runs in trace order.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sim.commands import PSEUDO_ROW_BASE, barrier, channel_mask, column, program, simple

AIM_MASK_BITS = 32
AIM_MASK_ALL = (1 << AIM_MASK_BITS) - 1
# Row given to AF16 by that simulator: outside every data row, one per activation-function mode.
AF_ROW_BASE = PSEUDO_ROW_BASE  # the AiM model's activation-function rows
AF_MODES = 8
CFR_BROADCAST, CFR_EWMUL_BG, CFR_AFM = 0, 1, 2
CFR_LIMITS = {CFR_BROADCAST: 1, CFR_EWMUL_BG: 1, CFR_AFM: AF_MODES - 1}

# Field names in the fixed order that simulator reads them.
AIM_FIELDS: dict[str, tuple[str, ...]] = {
    "WR_SBK": ("gpr", "mask", "bank", "row"),
    "WR_ABK": ("gpr", "mask", "row"),
    "WR_GB": ("opsize", "gpr", "mask"),
    "WR_BIAS": ("gpr", "mask"),
    "WR_AFLUT": ("opsize",),
    "RD_MAC": ("gpr", "mask"),
    "RD_AF": ("gpr", "mask"),
    "RD_SBK": ("gpr", "mask", "bank", "row"),
    "COPY_BKGB": ("opsize", "mask", "bank", "row"),
    "COPY_GBBK": ("opsize", "mask", "bank", "row"),
    "MAC_SBK": ("opsize", "mask", "bank", "row"),
    "MAC_ABK": ("opsize", "mask", "row"),
    "AF": ("mask",),
    "EWMUL": ("opsize", "mask", "row"),
    "EWADD": ("opsize", "gpr", "gpr1"),
    "SYNC": (),
    "EOC": (),
}
HOST_FIELDS: dict[str, tuple[str, ...]] = {
    "MEM": ("channel", "bank", "row"),
    "GPR": ("gpr",),
    "CFR": ("cfr", "data"),
}
_PLACEHOLDER = {"mask": "channel_mask", "gpr1": "gpr"}


class TraceError(ValueError):
    """A trace line that cannot be run, located by source and line number."""

    def __init__(self, source: str, lineno: int, line: str, reason: str):
        self.source, self.lineno, self.line, self.reason = source, lineno, line, reason
        super().__init__(f"{source}:{lineno}: {line!r}: {reason}")


@dataclass(frozen=True)
class AimOp:
    """One trace instruction. `name` is the ISR (`MAC_ABK`) or `R_MEM`, `W_CFR`, ...; absent fields are None."""

    name: str
    opsize: int | None = None
    mask: int | None = None  # that simulator's channel mask (bit i = channel 31 - i)
    channel: int | None = None  # R/W MEM only
    bank: int | None = None
    row: int | None = None
    gpr: int | None = None
    gpr1: int | None = None
    cfr: int | None = None
    data: int | None = None
    source: str = field(default="<text>", compare=False)
    lineno: int = field(default=0, compare=False)
    line: str = field(default="", compare=False)

    def error(self, reason: str) -> TraceError:
        return TraceError(self.source, self.lineno, self.line, reason)


@dataclass(frozen=True)
class TraceLimits:
    """The organisation a trace is checked against."""

    n_channels: int
    banks_per_channel: int
    rows_per_bank: int
    columns_per_row: int

    @classmethod
    def from_config(cls, cfg) -> "TraceLimits":
        d = cfg.dram
        return cls(d.channels, d.banks_per_channel, d.rows_per_bank, d.columns_per_row)


# --------------------------------------------------------------------------- channel masks


def aim_mask_channels(mask: int) -> tuple[int, ...]:
    """That simulator's mask -> channel numbers, ascending (bit i is channel 31 - i)."""
    return tuple(sorted(AIM_MASK_BITS - 1 - i for i in range(AIM_MASK_BITS) if mask >> i & 1))


def aim_mask_to_chmask(mask: int) -> int:
    """That simulator's mask -> the engine's mask (bit c = channel c): the 32 bits reversed."""
    return channel_mask(aim_mask_channels(mask))


def chmask_to_aim_mask(channels: Iterable[int]) -> int:
    """Channel numbers -> that simulator's mask, for writing traces."""
    mask = 0
    for c in channels:
        if not 0 <= c < AIM_MASK_BITS:
            raise ValueError(f"channel {c} cannot be addressed by a 32-bit AiM channel mask")
        mask |= 1 << (AIM_MASK_BITS - 1 - c)
    return mask


# --------------------------------------------------------------------------- parsing

_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")


def grammar(kind: str, name: str) -> str:
    """`AiM MAC_ABK <opsize> <channel_mask> <row>`: the form a line of this opcode must have."""
    names = AIM_FIELDS[name] if kind == "AiM" else HOST_FIELDS[name]
    return " ".join([kind, name] + [f"<{_PLACEHOLDER.get(f, f)}>" for f in names])


def _tokens(line: str) -> list[str]:
    """Split on commas (CSV traces) or whitespace; drop spreadsheet padding."""
    if "," not in line:
        return line.split()
    toks = [t.strip() for t in line.split(",")]
    while toks and not toks[-1]:
        toks.pop()
    if len(toks) > 1 and not toks[0]:
        toks = toks[1:]
    return toks


def _number(tok: str) -> int | None:
    if not _NUMBER.fullmatch(tok):
        return None
    return int(tok, 16) if tok[:2].lower() == "0x" else int(tok)


def _parse_line(toks: list[str], fail) -> AimOp:
    kind = toks[0]
    if kind == "AiM":
        if len(toks) < 2:
            raise fail(f"expected an opcode after 'AiM', one of: {', '.join(AIM_FIELDS)}")
        name = toks[1][4:] if toks[1].startswith("ISR_") else toks[1]
        if name not in AIM_FIELDS:
            raise fail(f"unknown AiM opcode '{toks[1]}'; expected one of: {', '.join(AIM_FIELDS)}")
        if name == "WR_AFLUT":
            raise fail("WR_AFLUT is not supported: the public AiM simulator rejects it too, so no timing is defined for it")
        names, form, opname = AIM_FIELDS[name], grammar("AiM", name), name
    elif kind in ("R", "W"):
        if len(toks) < 2 or toks[1] not in HOST_FIELDS:
            got = f"'{toks[1]}'" if len(toks) > 1 else "nothing"
            raise fail(f"expected MEM, GPR or CFR after '{kind}', got {got}")
        names, form, opname = HOST_FIELDS[toks[1]], grammar(kind, toks[1]), f"{kind}_{toks[1]}"
    else:
        raise fail(f"unknown instruction type '{kind}'; expected 'AiM', 'R' or 'W' (or '#' for a comment)")
    args = toks[2:]
    if len(args) != len(names):
        which = "missing fields" if len(args) < len(names) else "extra fields"
        raise fail(f"{which}: expected '{form}'")
    values = {}
    for fname, tok in zip(names, args):
        val = _number(tok)
        if val is None:
            raise fail(f"<{_PLACEHOLDER.get(fname, fname)}> is {tok!r}, not a non-negative decimal or 0x-hex integer: expected '{form}'")
        values[fname] = val
    return AimOp(opname, **values)


def _check_generic(op: AimOp, fail, form: str) -> None:
    """Checks that need no configuration."""
    if op.opsize is not None and op.opsize < 1:
        raise fail(f"opsize {op.opsize} out of range (at least 1): expected '{form}'")
    if op.mask is not None:
        if op.mask == 0 or op.mask > AIM_MASK_ALL:
            raise fail(f"channel_mask {op.mask:#x} must select channels with bits 0..31 (0x1..0xffffffff): expected '{form}'")
        if op.name == "WR_ABK" and op.mask.bit_count() != 1:
            raise fail(f"WR_ABK needs exactly one channel in its mask, got {op.mask:#010x} "
                       f"({op.mask.bit_count()} channels), as in the public AiM simulator")
    if op.channel is not None and op.channel >= AIM_MASK_BITS:
        raise fail(f"channel {op.channel} out of range 0..{AIM_MASK_BITS - 1}: expected '{form}'")
    if op.cfr is not None:
        if op.cfr not in CFR_LIMITS:
            raise fail(f"unknown CFR {op.cfr}; expected 0 (MAC operand source), 1 (EWMUL bank groups) or 2 (AF mode)")
        if op.data > CFR_LIMITS[op.cfr]:
            raise fail(f"CFR {op.cfr} value {op.data} out of range 0..{CFR_LIMITS[op.cfr]}")


def check_op(op: AimOp, limits: TraceLimits) -> None:
    """Raise TraceError when `op` does not fit the organisation `limits`."""
    kind, _, region = op.name.partition("_")
    form = grammar(kind, region) if kind in ("R", "W") else grammar("AiM", op.name)
    if op.opsize is not None and op.name != "EWADD" and op.opsize > limits.columns_per_row:
        raise op.error(f"opsize {op.opsize} out of range 1..{limits.columns_per_row}: a row has "
                       f"{limits.columns_per_row} columns and an ISR stays in one row: expected '{form}'")
    if op.mask is not None:
        missing = [c for c in aim_mask_channels(op.mask) if c >= limits.n_channels]
        if missing:
            raise op.error(f"channel_mask {op.mask:#010x} selects channel(s) {', '.join(map(str, missing))}, "
                           f"but the configuration has channels 0..{limits.n_channels - 1} (mask bit i is channel 31 - i)")
    if op.channel is not None and op.channel >= limits.n_channels:
        raise op.error(f"channel {op.channel} does not exist: the configuration has channels 0..{limits.n_channels - 1}")
    if op.bank is not None and op.bank >= limits.banks_per_channel:
        raise op.error(f"bank {op.bank} out of range 0..{limits.banks_per_channel - 1}: expected '{form}'")
    if op.row is not None and op.row >= limits.rows_per_bank:
        raise op.error(f"row {op.row} out of range 0..{limits.rows_per_bank - 1}: expected '{form}'")


def _read_source(path_or_text: str | Path) -> tuple[str, str]:
    """(source name, text). A Path, or a one-line string naming an existing or trace-like file, is read."""
    if isinstance(path_or_text, Path):
        return str(path_or_text), path_or_text.read_text()
    s = str(path_or_text)
    if "\n" not in s and (Path(s).is_file() or s.endswith((".txt", ".csv", ".trace"))):
        return s, Path(s).read_text()
    return "<text>", s


def parse_trace(path_or_text: str | Path, limits: TraceLimits | None = None, source: str | None = None) -> list[AimOp]:
    """Read a trace up to and including its EOC; with `limits`, also check it against a configuration."""
    name, text = _read_source(path_or_text)
    name = source or name
    ops: list[AimOp] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        toks = _tokens(line)
        if not toks or toks[0].startswith("#"):
            continue

        def fail(reason: str, _n=lineno, _l=line) -> TraceError:
            return TraceError(name, _n, _l, reason)

        if any(not t for t in toks):
            raise fail("empty field between delimiters")
        op = _parse_line(toks, fail)
        op = replace(op, source=name, lineno=lineno, line=line)
        kind, _, region = op.name.partition("_")
        _check_generic(op, fail, grammar(kind, region) if kind in ("R", "W") else grammar("AiM", op.name))
        if limits is not None:
            check_op(op, limits)
        ops.append(op)
        if op.name == "EOC":
            break
    return ops


# --------------------------------------------------------------------------- translation

# ISR -> (engine command, all banks?) for the ISRs that run on DRAM columns.
_COLUMN_ISRS = {
    "MAC_ABK": "MAC16", "EWMUL": "EWMUL16", "WR_ABK": "WRA16",
    "MAC_SBK": "MAC", "COPY_BKGB": "RDCP", "COPY_GBBK": "WRCP", "WR_SBK": "WR", "RD_SBK": "RD",
}
_SIMPLE_ISRS = {"WR_GB": ("WRGB", False), "WR_BIAS": ("WRMAC16", False),
                "RD_MAC": ("RDMAC16", True), "RD_AF": ("RDAF16", True)}
_HOST_ONLY = {"EWADD", "R_GPR", "W_GPR", "R_CFR", "W_CFR"}


def _cmd(std, name: str, op: AimOp) -> int:
    try:
        return std.cmd(name)
    except KeyError:
        raise op.error(f"{op.name} needs command {name}, which DRAM standard '{std.name}' does not have") from None


def _translate(op: AimOp, std, all_channels: int, afm: int) -> list[list[int]]:
    """One op -> its instruction rows (empty for host-only work)."""
    n = op.opsize or 1
    if op.name in _COLUMN_ISRS:
        bank = op.bank if op.bank is not None else -1
        return [column(aim_mask_to_chmask(op.mask), _cmd(std, _COLUMN_ISRS[op.name], op), row=op.row, count=n, bank=bank)]
    if op.name in _SIMPLE_ISRS:
        cmd, blocking = _SIMPLE_ISRS[op.name]
        return [simple(aim_mask_to_chmask(op.mask), _cmd(std, cmd, op), count=n, blocking=blocking)]
    if op.name == "AF":
        return [column(aim_mask_to_chmask(op.mask), _cmd(std, "AF16", op), row=AF_ROW_BASE + afm, count=1)]
    if op.name in ("R_MEM", "W_MEM"):
        cmd = _cmd(std, "RD" if op.name == "R_MEM" else "WR", op)
        return [column(channel_mask(op.channel), cmd, row=op.row, count=1, bank=op.bank)]
    if op.name in ("SYNC", "EOC"):
        return [barrier(all_channels)]
    if op.name in _HOST_ONLY:
        return []
    raise op.error(f"no translation for {op.name}")


def trace_to_program(ops: Sequence[AimOp], std, n_channels: int, banks_per_channel: int,
                     rows_per_bank: int, columns_per_row: int) -> np.ndarray:
    """Expand trace ops into the engine's `[n, 8]` instruction array (see the module docstring)."""
    limits = TraceLimits(n_channels, banks_per_channel, rows_per_bank, columns_per_row)
    all_channels = channel_mask(range(n_channels))
    afm, rows = 0, []
    for op in ops:
        check_op(op, limits)
        if op.name == "W_CFR" and op.cfr == CFR_AFM:
            afm = op.data
        rows.extend(_translate(op, std, all_channels, afm))
        if op.name == "EOC":
            break
    return program(rows)


def load_aim_trace(path_or_text: str | Path, cfg, std=None) -> np.ndarray:
    """Parse and translate a trace for a loaded HardwareConfig (compiling its standard unless given)."""
    if std is None:
        from sim.dram_spec import compile_standard

        std = compile_standard(cfg)
    limits = TraceLimits.from_config(cfg)
    ops = parse_trace(path_or_text, limits)
    return trace_to_program(ops, std, limits.n_channels, limits.banks_per_channel,
                            limits.rows_per_bank, limits.columns_per_row)


# --------------------------------------------------------------------------- writing example traces


def generate_row_passes(n_rows: int, mask: int = AIM_MASK_ALL, opsize: int = 64, first_row: int = 0) -> str:
    """`n_rows` all-bank MAC row passes (rows first_row..), then EOC: the row-pass benchmark."""
    lines = [f"AiM MAC_ABK {opsize} {mask:#010x} {first_row + r}" for r in range(n_rows)]
    return "\n".join(["# all-bank MAC row passes", *lines, "AiM EOC"]) + "\n"


def generate_gemv(out_blocks: int, k_tiles: int, mask: int = AIM_MASK_ALL, opsize: int = 64,
                  bias: bool = True) -> str:
    """A GEMV-shaped trace: per output block (16 outputs per channel), optionally load the bias,
    then for each input tile load the vector chunk into the global buffer and MAC one weight row,
    then read the 16 accumulators back (a blocking read)."""
    lines = [f"# GEMV: {out_blocks} output blocks x {k_tiles} input tiles of {opsize} columns"]
    row = 0
    for _ in range(out_blocks):
        if bias:
            lines.append(f"AiM WR_BIAS 0 {mask:#010x}")
        for _ in range(k_tiles):
            lines.append(f"AiM WR_GB {opsize} 0 {mask:#010x}")
            lines.append(f"AiM MAC_ABK {opsize} {mask:#010x} {row}")
            row += 1
        lines.append(f"AiM RD_MAC 0 {mask:#010x}")
    lines.append("AiM EOC")
    return "\n".join(lines) + "\n"
