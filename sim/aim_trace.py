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
  A trace file must be UTF-8 text without NUL bytes, all of it (also past EOC): anything else
  is an error naming the line and column of the first bad byte.
- Looser input: runs of spaces/tabs and `\\r\\n` endings are accepted (it splits on single spaces),
  `#text` is a comment (it needs `#` as a separate field), spreadsheet padding (a leading empty
  field, trailing commas, all-comma lines) is ignored, and a trace without EOC ends at its last
  line (it stops with an error).
- R MEM / RD_SBK: that simulator serves a read without any DRAM command whenever a memory write is
  still waiting in the same channel's queue (its write-to-read forwarding compares addresses that
  its trace reader never sets). Here every read issues its RD.
- Memory reads/writes there go through a first-ready FR-FCFS queue with write batching; here
  each instruction runs in trace order.

Two readers, one language
-------------------------
`parse_trace` is the line-by-line reader (an AimOp per line; `load_aim_trace_reference` adds the
translation). `load_aim_trace` reads the same language vectorised with numpy, piece by piece,
so a long trace costs memory per instruction, not per byte of text, and shows progress on
stderr. Lines it cannot vouch for (any error, non-ASCII text, unusual spacing) go to the
line-by-line reader, so every result and every message is that reader's; a property test holds
the two to the same output on random traces.
"""
from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sim.commands import (
    F_BANK, F_CHMASK, F_CMD, F_COUNT, F_FLAGS, F_OP, F_ROW, FLAG_BLOCKING, N_FIELDS,
    OP_BARRIER, OP_COLUMN, OP_SIMPLE, PSEUDO_ROW_BASE, barrier, channel_mask, column, program, simple,
)

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

    def __init__(self, source: str, lineno: int, line: str | None, reason: str):
        self.source, self.lineno, self.line, self.reason = source, lineno, line, reason
        shown = "" if line is None else f" {line!r}:"  # None: not text, nothing worth showing
        super().__init__(f"{source}:{lineno}:{shown} {reason}")


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


def _parse_raw_line(raw: str, lineno: int, source: str, limits: TraceLimits | None) -> AimOp | None:
    """One line of a trace as the reference reader sees it: None for blank and comment lines."""
    line = raw.strip()
    toks = _tokens(line)
    if not toks or toks[0].startswith("#"):
        return None

    def fail(reason: str) -> TraceError:
        return TraceError(source, lineno, line, reason)

    if any(not t for t in toks):
        raise fail("empty field between delimiters")
    op = _parse_line(toks, fail)
    op = replace(op, source=source, lineno=lineno, line=line)
    kind, _, region = op.name.partition("_")
    _check_generic(op, fail, grammar(kind, region) if kind in ("R", "W") else grammar("AiM", op.name))
    if limits is not None:
        check_op(op, limits)
    return op


# --------------------------------------------------------------------------- reading files

TRACE_SUFFIXES = (".txt", ".csv", ".trace")


def _open_trace(path: Path):
    """The file opened for binary reading; a missing file or a folder is an OSError naming it."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "trace file does not exist", str(path)) from None
    except IsADirectoryError:
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a trace file", str(path)) from None


def _text_error(data: bytes, pos: int, source: str, lines_before: int, reason: str) -> TraceError:
    """A TraceError for the bad byte at `pos` of `data`, located by line (as str.splitlines counts)."""
    prefix = data[:pos].decode("utf-8")  # valid: `pos` is the first problem
    lines = (prefix + "x").splitlines()
    return TraceError(source, lines_before + len(lines), None, f"column {len(lines[-1])}: {reason}")


def _check_text(data: bytes, source: str, lines_before: int = 0) -> str:
    """Bytes of a trace file -> text; a NUL byte or bytes that are not UTF-8 are an error naming the line."""
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
        bad = None
    except UnicodeDecodeError as exc:
        bad, text = exc.start, ""
    if nul >= 0 and (bad is None or nul < bad):
        raise _text_error(data, nul, source, lines_before,
                          "a NUL byte: this is a binary file, not a text trace")
    if bad is not None:
        raise _text_error(data, bad, source, lines_before,
                          f"byte 0x{data[bad]:02x} is not UTF-8 text: this is not a text trace")
    return text


def _read_source(path_or_text: str | Path) -> tuple[str, str]:
    """(source name, text). A Path, or a one-line string naming an existing or trace-like file, is read."""
    path = _as_path(path_or_text)
    if path is None:
        return "<text>", str(path_or_text)
    with _open_trace(path) as fh:
        data = fh.read()
    return str(path), _check_text(data, str(path))


def _as_path(path_or_text: str | Path) -> Path | None:
    """The file a source names, or None for trace text (a Path is always a file)."""
    if isinstance(path_or_text, Path):
        return path_or_text
    s = str(path_or_text)
    if "\n" not in s and (Path(s).is_file() or s.endswith(TRACE_SUFFIXES)):
        return Path(s)
    return None


def parse_trace(path_or_text: str | Path, limits: TraceLimits | None = None, source: str | None = None) -> list[AimOp]:
    """Read a trace up to and including its EOC; with `limits`, also check it against a configuration.

    The line-by-line reader: every line becomes an AimOp. `load_aim_trace` reads the same
    language vectorised (and falls back to this reader's checks for the lines it cannot vouch
    for); tests hold the two to the same result."""
    name, text = _read_source(path_or_text)
    name = source or name
    ops: list[AimOp] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        op = _parse_raw_line(raw, lineno, name, limits)
        if op is None:
            continue
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


def trace_host_lines(ops: Sequence[AimOp]) -> np.ndarray:
    """Per instruction of `trace_to_program(ops)`: the host-only lines (no DRAM work) just before it."""
    out, pending = [], 0
    for op in ops:
        if op.name in _HOST_ONLY:
            pending += 1
            continue
        out.append(pending)
        pending = 0
        if op.name == "EOC":
            break
    return np.array(out, np.int64)


def load_aim_trace_reference(path_or_text: str | Path, cfg, std=None) -> np.ndarray:
    """`load_aim_trace` by the line-by-line reader (AimOp per line): the oracle of the fast one."""
    std = std if std is not None else _compile(cfg)
    limits = TraceLimits.from_config(cfg)
    ops = parse_trace(path_or_text, limits)
    return trace_to_program(ops, std, limits.n_channels, limits.banks_per_channel,
                            limits.rows_per_bank, limits.columns_per_row)


def _compile(cfg):
    from sim.dram_spec import compile_standard

    return compile_standard(cfg)


def load_aim_trace(path_or_text: str | Path, cfg, std=None, *, progress: bool | None = None) -> np.ndarray:
    """The engine program of a trace (see `load_aim_trace_lines`, which also gives the line counts
    the aim front end needs)."""
    return load_aim_trace_lines(path_or_text, cfg, std, progress=progress)[0]


def load_aim_trace_lines(path_or_text: str | Path, cfg, std=None, *,
                         progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse, check and translate a trace for a loaded HardwareConfig (compiling its standard unless given).

    `path_or_text`: a Path (always a file), or a string: a file name when it is one line naming an
    existing file or ending in .trace/.txt/.csv, else trace text. `progress`: None shows a
    progress bar on stderr for long traces only, True always, False never.
    Vectorised (see the module docstring); `bench/trace_parse.py` measures its speed.
    Returns (program, host_lines): host_lines[i] counts the lines without DRAM work (EWADD,
    R/W GPR, R/W CFR) between instruction i-1 and i; that simulator spends a decode cycle on each
    (`Engine(cfg, front_end="aim").run(prog, host_lines=...)`). Comments and blank lines cost none."""
    std = std if std is not None else _compile(cfg)
    limits = TraceLimits.from_config(cfg)
    path = _as_path(path_or_text)
    if path is None:
        text = str(path_or_text)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: no bytes to scan, read line by line
            ops = parse_trace(text, limits)
            return (trace_to_program(ops, std, limits.n_channels, limits.banks_per_channel, limits.rows_per_bank,
                                     limits.columns_per_row), trace_host_lines(ops))
        reader = _FastReader("<text>", limits, std)
        return reader.read(_text_pieces(data), len(data), progress, check_text=False), reader.host_lines
    reader = _FastReader(str(path), limits, std)
    with _open_trace(path) as fh:
        size = _file_size(fh)
        return reader.read(_file_pieces(fh), size, progress, check_text=True), reader.host_lines


# --------------------------------------------------------------------------- vectorised reading
# The fast reader classifies every line with numpy over the bytes of a piece of the text:
# blank/comment (skipped), well formed and within limits (taken from the arrays), or anything
# else, which goes to the line-by-line reader (`_parse_raw_line`): that gives the exact value of
# an unusual but valid line, or raises the error for a bad one. The fast path only takes lines
# it can vouch for, so the result and every message are the reference reader's.

CHUNK_BYTES = 1 << 19  # the text is read in pieces of about this size (cut at line ends)
PROGRESS_MIN_BYTES = 32 << 20  # progress is shown for traces at least this long (~1 M lines)
_MAX_DEC_DIGITS, _MAX_HEX_DIGITS = 18, 15  # longer numbers (valid but rare) go line by line: int64

_OPS: tuple[str, ...] = (*AIM_FIELDS, *(f"{k}_{r}" for r in HOST_FIELDS for k in ("R", "W")))
_OPNUM = {n: i for i, n in enumerate(_OPS)}
_FIELD_NAMES = ("opsize", "mask", "channel", "bank", "row", "gpr", "gpr1", "cfr", "data")
_FI = {f: i for i, f in enumerate(_FIELD_NAMES)}
_FIELDS_OF = [AIM_FIELDS[n] if n in AIM_FIELDS else HOST_FIELDS[n[2:]] for n in _OPS]
_NF = np.array([len(f) for f in _FIELDS_OF], np.int64)  # fields after the opcode
_SLOT = np.full((len(_OPS), len(_FIELD_NAMES)), -1, np.int64)  # [op, field] -> position, -1 absent
for _o, _names in enumerate(_FIELDS_OF):
    for _k, _f in enumerate(_names):
        _SLOT[_o, _FI[_f]] = _k
_NAME_KEYS = sorted({*(n.encode() for n in AIM_FIELDS), *(b"ISR_" + n.encode() for n in AIM_FIELDS),
                     *(n.encode() for n in HOST_FIELDS)})
_KIND_AIM, _KIND_R, _KIND_W, _KIND_OTHER = range(4)
_OPTAB = np.full((4, len(_NAME_KEYS)), -1, np.int64)  # [kind, name key] -> op (-1: line by line)
for _i, _key in enumerate(_NAME_KEYS):
    _n = _key.decode()
    _n = _n[4:] if _n.startswith("ISR_") else _n
    if _key.decode() in AIM_FIELDS or _key.startswith(b"ISR_"):
        if _n != "WR_AFLUT":  # always an error: the reference reader words it
            _OPTAB[_KIND_AIM, _i] = _OPNUM[_n]
    else:
        _OPTAB[_KIND_R, _i], _OPTAB[_KIND_W, _i] = _OPNUM[f"R_{_n}"], _OPNUM[f"W_{_n}"]

# Bytes of tokens, inside a piece whose line breaks are all '\n': all but the whitespace of
# str.split() that is not a line break (tab, 0x1f, space), the comma and the line end.
_TOKEN_BYTES = bytes(0 if c in (9, 0x1F, 32, ord(","), ord("\n")) else 1 for c in range(256))
_LENMASK = np.array([(1 << (8 * n)) - 1 for n in range(9)], np.uint64)  # the first n bytes of a word
_AIM_WORD = np.uint64(int.from_bytes(b"AiM", "little"))
_MIX = np.uint64(0x9E3779B97F4A7C15)
_name_words = [(int.from_bytes(k[:8], "little"), int.from_bytes(k[8:16], "little")) for k in _NAME_KEYS]
_name_hash = [(lo ^ (hi * 0x9E3779B97F4A7C15)) & ((1 << 64) - 1) for lo, hi in _name_words]
_order = np.argsort(np.array(_name_hash, np.uint64), kind="stable")
_NAME_HASH = np.array(_name_hash, np.uint64)[_order]
_NAME_LO = np.array([w[0] for w in _name_words], np.uint64)[_order]
_NAME_HI = np.array([w[1] for w in _name_words], np.uint64)[_order]
_NAME_LEN = np.array([len(k) for k in _NAME_KEYS], np.int64)[_order]
_NAME_INDEX = _order.astype(np.int64)
assert np.unique(_NAME_HASH).size == _NAME_HASH.size
_FIELD_AT = np.zeros((len(_OPS), max(len(f) for f in _FIELDS_OF)), np.int64)  # [op, position] -> field
for _o, _names in enumerate(_FIELDS_OF):
    for _k, _f in enumerate(_names):
        _FIELD_AT[_o, _k] = _FI[_f]
_DIGIT = np.full(256, 99, np.int64)
for _c in range(10):
    _DIGIT[ord("0") + _c] = _c
for _c in range(6):
    _DIGIT[ord("a") + _c] = _DIGIT[ord("A") + _c] = 10 + _c
_REV8 = np.array([int(f"{i:08b}"[::-1], 2) for i in range(256)], np.int64)
_REV16 = (_REV8[np.arange(1 << 16) & 255] << 8) | _REV8[np.arange(1 << 16) >> 8]  # 16 bits reversed
_BREAKS = bytes.maketrans(b"\r\x0b\x0c\x1c\x1d\x1e", b"\n" * 6)  # str.splitlines's ASCII breaks
_OTHER_BREAKS = tuple(bytes([c]) for c in b"\r\x0b\x0c\x1c\x1d\x1e")
_CFR_MAX = np.array([CFR_LIMITS[c] for c in sorted(CFR_LIMITS)], np.int64)

# What each op becomes: engine opcode (0: nothing), command name, blocking.
_ROW_OP = np.zeros(len(_OPS), np.int64)
_ROW_CMD: list[str | None] = [None] * len(_OPS)
_ROW_BLOCKING = np.zeros(len(_OPS), np.int64)
for _n, _c in _COLUMN_ISRS.items():
    _ROW_OP[_OPNUM[_n]], _ROW_CMD[_OPNUM[_n]] = OP_COLUMN, _c
for _n, (_c, _b) in _SIMPLE_ISRS.items():
    _ROW_OP[_OPNUM[_n]], _ROW_CMD[_OPNUM[_n]], _ROW_BLOCKING[_OPNUM[_n]] = OP_SIMPLE, _c, _b
_ROW_OP[_OPNUM["AF"]], _ROW_CMD[_OPNUM["AF"]] = OP_COLUMN, "AF16"
_ROW_OP[_OPNUM["R_MEM"]], _ROW_CMD[_OPNUM["R_MEM"]] = OP_COLUMN, "RD"
_ROW_OP[_OPNUM["W_MEM"]], _ROW_CMD[_OPNUM["W_MEM"]] = OP_COLUMN, "WR"
_ROW_OP[_OPNUM["SYNC"]] = _ROW_OP[_OPNUM["EOC"]] = OP_BARRIER


_HEAP_PRIMED = False


def _keep_temporaries_on_the_heap() -> None:
    """Once per process: allocate and free one 30 MB block (its pages are never touched).

    glibc's malloc then serves blocks up to that size from its heap and keeps up to twice that
    freed (its dynamic mmap and trim thresholds rise to the largest mmapped block freed, at most
    32 MB), instead of handing every piece's numpy temporaries back to the OS and faulting them
    in again: measured 2x on trace reading. Other allocators: one allocation, nothing else."""
    global _HEAP_PRIMED
    if not _HEAP_PRIMED:
        _HEAP_PRIMED = True
        np.empty(30 << 20, np.uint8)  # allocated and, unreferenced, freed at once


def _file_size(fh) -> int:
    try:
        return os.fstat(fh.fileno()).st_size
    except OSError:
        return 0


def _file_pieces(fh, chunk: int | None = None):
    """Bytes of a file in pieces that end at a '\n' (the last one may not)."""
    chunk = chunk or CHUNK_BYTES
    rest = b""
    while block := fh.read(chunk):
        data = rest + block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
            rest = data[cut:]
        else:  # a line longer than a piece
            rest = data
    if rest:
        yield rest


def _text_pieces(data: bytes, chunk: int | None = None):
    chunk = chunk or CHUNK_BYTES
    start = 0
    while start < len(data):
        cut = data.rfind(b"\n", start, start + chunk) + 1 if start + chunk < len(data) else len(data)
        if cut <= start:  # a line longer than a piece
            cut = data.find(b"\n", start + chunk) + 1 or len(data)
        yield data[start:cut]
        start = cut


def _normalise(piece: bytes, text: str | None) -> bytes:
    """The piece's lines (as str.splitlines splits them) joined by '\n', ending with '\n'."""
    if text is not None:
        lines = text.splitlines()
        return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    odd_break = any(piece.find(c) >= 0 for c in _OTHER_BREAKS)  # (memchr: far cheaper than a copy)
    out = piece.replace(b"\r\n", b"\n").translate(_BREAKS) if odd_break else piece
    return out if not out or out.endswith(b"\n") else out + b"\n"


def _words(buf: bytes) -> np.ndarray:
    """w[p] = the 8 bytes of `buf` from byte p as one little-endian uint64 (zeros past the end)."""
    padded = buf + bytes(16)
    return np.ndarray(shape=(len(buf) + 8,), dtype="<u8", buffer=padded, strides=(1,))


def _bytes_of(v: int) -> np.uint64:
    return np.uint64(0x0101010101010101 * v)


_B01, _B0F, _B20, _B30, _B80 = (_bytes_of(v) for v in (0x01, 0x0F, 0x20, 0x30, 0x80))
_U3, _U6, _U8, _U64 = np.uint64(3), np.uint64(6), np.uint64(8), np.uint64(64)
_HEX_PREFIX = np.uint64(ord("0") | ord("x") << 8)
# Combining 8 digit values into a number by multiply-and-shift: pairs, quads, halves (per base).
_STEPS = [(np.uint64(8), np.uint64(0x00FF00FF00FF00FF), 256), (np.uint64(16), np.uint64(0x0000FFFF0000FFFF), 65536),
          (np.uint64(32), np.uint64(0xFFFFFFFF), 1 << 32)]
_MULT = {base: [np.uint64(base ** (1 << k) * scale + 1) for k, (_, _, scale) in enumerate(_STEPS)] for base in (10, 16)}


def _in_range(c: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """0x80 in each byte of `c` (bytes < 0x80) within lo..hi: adds that never carry out of a byte."""
    return ((c + _bytes_of(0x80 - lo)) & ~(c + _bytes_of(0x7F - hi))) & _B80


def _numbers(buf: bytes, words: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of tokens that are decimal or 0x-hex integers, and which tokens are (int64, bool).

    A number of up to 8 digits is one word: its digits are moved to the top and '0's filled in
    below, every byte is tested and the digits are combined in all 8 lanes at once (SWAR).
    Longer numbers go digit by digit."""
    hexa = (lens >= 3) & (((words[starts] & np.uint64(0xFFFF)) | np.uint64(0x2000)) == _HEX_PREFIX)
    off = hexa.astype(np.int64) * 2
    n = lens - off  # digits
    nbits = np.minimum(n, 8).astype(np.uint64) * _U8
    x = (words[starts + off] << (_U64 - nbits)) | (_B30 >> nbits)  # (numpy shifts by >= 64 give 0)
    digit = _in_range(x, 0x30, 0x39)
    ok = np.where(hexa, (digit | _in_range(x | _B20, 0x61, 0x66)) == _B80, digit == _B80) & (n >= 1) & (n <= 8)
    v = (x & _B0F) + np.uint64(9) * ((x >> _U6) & _B01)  # a letter: its low nibble + 9
    any_hex = bool(hexa.any())
    for k, (shift, mask, _) in enumerate(_STEPS):
        mult = np.where(hexa, _MULT[16][k], _MULT[10][k]) if any_hex else _MULT[10][k]
        v = ((v * mult) >> shift) & mask
    val = v.astype(np.int64)
    long_ = (n > 8) & (n <= np.where(hexa, _MAX_HEX_DIGITS, _MAX_DEC_DIGITS))
    if long_.any():  # rare: digit by digit
        b = np.frombuffer(buf, np.uint8)
        first, dl, base = starts[long_] + off[long_], n[long_], np.where(hexa[long_], 16, 10)
        lv, good = np.zeros(first.size, np.int64), np.ones(first.size, bool)
        for j in range(int(dl.max())):
            active = j < dl
            d = _DIGIT[b[np.minimum(first + j, b.size - 1)]]
            good &= ~active | (d < base)
            lv = np.where(active & good, lv * base + d, lv)
        val[long_], ok[long_] = lv, good
    return val, ok


def _aim_to_chmask(mask: np.ndarray) -> np.ndarray:
    """That simulator's 32-bit masks -> the engine's (bit c = channel c): the bits reversed."""
    return (_REV16[mask & 0xFFFF] << 16) | _REV16[(mask >> 16) & 0xFFFF]


def _lines_of(eol: np.ndarray, positions: np.ndarray, n_lines: int) -> np.ndarray:
    """Which lines hold at least one of the byte `positions`."""
    if not positions.size:
        return np.zeros(n_lines, bool)
    return np.bincount(np.searchsorted(eol, positions), minlength=n_lines) > 0


def _scan(buf: bytes, limits: TraceLimits):
    """Classify the lines of one piece ('\n'-terminated lines).

    Returns (the lines to read line by line, ascending; for the lines taken: their numbers in
    the piece, op, field values [fields, m] (-1 absent); line ends [L])."""
    arr = np.frombuffer(buf, np.uint8)
    is_eol = arr == ord("\n")
    eol = np.flatnonzero(is_eol)
    tok = np.frombuffer(buf.translate(_TOKEN_BYTES), bool)  # a byte of a token (bool: fast nonzero)
    change = np.flatnonzero(tok[1:] != tok[:-1]) + 1
    if tok[0]:
        change = np.concatenate([[0], change])
    starts = change[0::2].copy()
    lens = change[1::2] - starts
    del change, tok
    before_eol = np.searchsorted(starts, eol)  # [L] tokens that start before each line end
    per_line = np.diff(before_eol, prepend=0)
    lines = np.flatnonzero(per_line)  # [NL] the non-empty lines
    ntok = per_line[lines]
    first = before_eol[lines] - ntok  # first token of each non-empty line
    del before_eol, per_line
    words = _words(buf)
    first_byte = arr[starts[first]]

    # Comma lines: fields between commas, each stripped. The fast path takes them when every
    # field holds at most one token and the tokens fill consecutive fields from field 0 or 1
    # (a leading empty field and trailing empty fields are spreadsheet padding).
    f0 = np.zeros(lines.size, np.int64)
    ragged = np.zeros(lines.size, bool)
    if buf.find(b",") >= 0:
        commas = np.cumsum(arr == ord(","), dtype=np.int64)  # commas up to and including p
        line_start = np.concatenate([[0], eol[:-1] + 1])[lines]
        before = commas[line_start] - (arr[line_start] == ord(","))
        has_comma = commas[eol[lines]] > before
        owner = np.repeat(np.arange(lines.size), ntok)
        d = commas[starts] - before[owner] - (np.arange(starts.size) - first[owner])  # field - token index
        del commas
        f0 = d[first]
        ragged = has_comma & ((np.bincount(owner[d != f0[owner]], minlength=lines.size) > 0) | (f0 > 1))
    if not buf.isascii():
        high_lines = np.cumsum(is_eol, dtype=np.int32)[np.flatnonzero(arr >= 0x80)]
        ragged |= np.isin(lines, high_lines)  # non-ASCII: line by line
    del is_eol

    skip = (first_byte == ord("#")) & (f0 <= 1)
    cand = ~skip & ~ragged & (ntok >= 2) & (ntok <= 2 + int(_NF.max()))
    ci = np.flatnonzero(cand)
    t0 = first[ci]
    s0, l0 = starts[t0], lens[t0]
    w0 = words[s0] & _LENMASK[np.minimum(l0, 8)]
    # (bool arithmetic instead of np.where / boolean indexing: several times faster in numpy)
    one = l0 == 1
    kind = (_KIND_OTHER - (_KIND_OTHER - _KIND_AIM) * ((l0 == 3) & (w0 == _AIM_WORD))
            - (_KIND_OTHER - _KIND_R) * (one & (w0 == ord("R"))) - (_KIND_OTHER - _KIND_W) * (one & (w0 == ord("W"))))
    s1, l1 = starts[t0 + 1], lens[t0 + 1]
    lo = words[s1] & _LENMASK[np.minimum(l1, 8)]
    hi = words[s1 + 8] & _LENMASK[np.clip(l1 - 8, 0, 8)]
    key = lo ^ (hi * _MIX)
    k = np.minimum(np.searchsorted(_NAME_HASH, key), _NAME_HASH.size - 1)
    known = (_NAME_LO[k] == lo) & (_NAME_HI[k] == hi) & (_NAME_LEN[k] == l1)
    op = (_OPTAB[kind, _NAME_INDEX[k]] + 1) * known - 1
    ok = (op >= 0) & (ntok[ci] == 2 + _NF[np.maximum(op, 0)])
    if not ok.all():
        cand[ci[~ok]] = False  # unknown opcode or wrong field count: line by line
        ci, op, t0 = ci.compress(ok), op.compress(ok), t0.compress(ok)

    # Field tokens: the ones after the opcode, in order.
    nf = _NF[op]
    owner = np.repeat(np.arange(ci.size), nf)
    pos = np.arange(owner.size) - np.repeat(np.cumsum(nf) - nf, nf)
    tix = t0[owner] + 2 + pos
    vals, num_ok = _numbers(buf, words, starts[tix], lens[tix])
    bad = np.zeros(ci.size, bool) if num_ok.all() else np.bincount(owner[~num_ok], minlength=ci.size) > 0
    val = np.full((len(_FIELD_NAMES), ci.size), -1, np.int64)
    np.put(val, _FIELD_AT[op[owner], pos] * ci.size + owner, vals)

    # The checks of `_check_generic` and `check_op`; a line failing one goes line by line.
    opsize, mask, chan, bank, row, cfr, data = (val[_FI[f]] for f in
                                               ("opsize", "mask", "channel", "bank", "row", "cfr", "data"))
    # (absent fields are -1, so an upper bound needs no presence test)
    has_opsize, has_mask = opsize >= 0, mask >= 0
    bad |= has_opsize & ((opsize < 1) | ((opsize > limits.columns_per_row) & (op != _OPNUM["EWADD"])))
    bad |= has_mask & ((mask == 0) | (mask > AIM_MASK_ALL))
    wr_abk = op == _OPNUM["WR_ABK"]
    if wr_abk.any():
        bad |= wr_abk & (np.bitwise_count(np.maximum(mask, 0)) != 1)
    if limits.n_channels < AIM_MASK_BITS:
        bad |= has_mask & ((mask & ((1 << (AIM_MASK_BITS - limits.n_channels)) - 1)) != 0)
    bad |= chan >= min(AIM_MASK_BITS, limits.n_channels)
    has_cfr = cfr >= 0
    if has_cfr.any():
        bad |= has_cfr & ((cfr >= _CFR_MAX.size) | (data > _CFR_MAX[np.clip(cfr, 0, _CFR_MAX.size - 1)]))
    bad |= bank >= limits.banks_per_channel
    bad |= row >= limits.rows_per_bank
    odd = np.sort(np.concatenate([lines.compress(~skip & ~cand), lines[ci.compress(bad)]]))
    if bad.any():
        good = ~bad
        ci, op, val = ci.compress(good), op.compress(good), val.compress(good, axis=1)
    return odd, lines[ci], op, val, eol


class _FastReader:
    """Reads one trace piece by piece into compact per-instruction columns, then the program."""

    def __init__(self, source: str, limits: TraceLimits, std):
        self.source, self.limits, self.std = source, limits, std
        self.all_channels = channel_mask(range(limits.n_channels))
        ids = []
        for name in _ROW_CMD:
            try:
                ids.append(-1 if name is None else std.cmd(name))
            except KeyError:
                ids.append(-2)  # the standard lacks it: an error if the trace uses the op
        self.cmd_id = np.array(ids, np.int64)
        self.afm = 0
        self.lines_before = 0
        self.host_carry = 0  # host-only lines since the last kept instruction (across pieces)
        self.host_lines = np.zeros(0, np.int64)  # per instruction, after `read`
        self.missing: TraceError | None = None  # first op whose command the standard lacks
        self.parts: list[tuple[np.ndarray, ...]] = []

    def read(self, pieces, size: int, progress: bool | None, check_text: bool) -> np.ndarray:
        from tqdm import tqdm

        _keep_temporaries_on_the_heap()
        show = progress if progress is not None else size >= PROGRESS_MIN_BYTES
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {self.source}", file=sys.stderr,
                   disable=not show, leave=False)
        pieces = iter(pieces)
        try:
            for piece in pieces:
                lines = _normalise(piece, self._text(piece, check_text))
                bar.update(len(piece))
                try:
                    done = self._piece(lines)
                except TraceError:
                    self.lines_before += lines.count(b"\n")
                    self._check_rest(pieces, check_text)  # a file that is not text: that error first
                    raise
                self.lines_before += self.piece_lines
                if done:
                    self._check_rest(pieces, check_text)
                    break
        finally:
            bar.close()
        if self.missing is not None:
            raise self.missing
        return self._program()

    def _text(self, piece: bytes, check_text: bool) -> str | None:
        """None for an ASCII piece (read as bytes), else its text; a binary piece is an error."""
        if piece.isascii() and (not check_text or piece.find(b"\0") < 0):
            return None
        return _check_text(piece, self.source, self.lines_before) if check_text else piece.decode("utf-8")

    def _check_rest(self, pieces, check_text: bool) -> None:
        """The reference reader decodes a whole file before it parses: so do the pieces not yet read."""
        if check_text:
            for piece in pieces:
                self.lines_before += _normalise(piece, self._text(piece, True)).count(b"\n")

    def _piece(self, buf: bytes) -> bool:
        """Read one piece of lines; True when it held the EOC."""
        self.piece_lines = 0
        if not buf:
            return False
        odd, lines, op, val, eol = _scan(buf, self.limits)
        n_lines = self.piece_lines = eol.size
        eoc = lines[op == _OPNUM["EOC"]]
        stop = int(eoc[0]) if eoc.size else n_lines  # the first EOC the fast path took
        extra_lines, extra_ops, extra_vals = [], [], []
        for i in odd[odd < stop].tolist():  # the others, line by line, in order
            start = int(eol[i - 1]) + 1 if i else 0
            raw = buf[start:int(eol[i])].decode("utf-8")
            parsed = _parse_raw_line(raw, self.lines_before + i + 1, self.source, self.limits)
            if parsed is None:
                continue
            extra_lines.append(i)
            extra_ops.append(_OPNUM[parsed.name])
            extra_vals.append([-1 if v is None else min(v, 1 << 62) for v in (getattr(parsed, f) for f in _FIELD_NAMES)])
            if parsed.name == "EOC":
                stop = i
                break
        done = stop < n_lines
        if extra_lines:
            lines = np.concatenate([lines, extra_lines])
            op = np.concatenate([op, extra_ops])
            val = np.concatenate([val, np.array(extra_vals, np.int64).T], axis=1)
            order = np.argsort(lines, kind="stable")
            lines, op, val = lines[order], op[order], val[:, order]
        if done:
            keep = lines <= stop
            lines, op, val = lines[keep], op[keep], val[:, keep]
        self._take(buf, eol, lines, op, val)
        return done

    def _take(self, buf: bytes, eol: np.ndarray, lines: np.ndarray, op: np.ndarray, val: np.ndarray) -> None:
        """Keep the instruction rows of the taken `lines` (ops `op`, fields `val` [fields, m])."""
        if self.missing is None:
            lacking = np.flatnonzero(self.cmd_id[op] == -2)
            if lacking.size:
                i = int(lines[lacking[0]])
                start = int(eol[i - 1]) + 1 if i else 0
                name = _OPS[int(op[lacking[0]])]
                self.missing = TraceError(self.source, self.lines_before + i + 1,
                                          buf[start:int(eol[i])].decode("utf-8").strip(),
                                          f"{name} needs command {_ROW_CMD[_OPNUM[name]]}, which DRAM standard "
                                          f"'{self.std.name}' does not have")
        if not op.size:
            return
        # AF mode: the data of the latest `W CFR 2 v` before each op (carried across pieces).
        # Fields an op does not have are -1, which is also the engine's "no bank / no row".
        sets = (op == _OPNUM["W_CFR"]) & (val[_FI["cfr"]] == CFR_AFM)
        row = val[_FI["row"]]
        is_af = op == _OPNUM["AF"]
        if is_af.any():
            latest = np.maximum.accumulate(np.where(sets, np.arange(op.size), -1))
            afm = np.where(latest >= 0, val[_FI["data"], np.maximum(latest, 0)], self.afm)
            row = row + (AF_ROW_BASE + afm + 1) * is_af  # an AF has no row field (-1)
        if sets.any():
            self.afm = int(val[_FI["data"], np.flatnonzero(sets)[-1]])
        keep = _ROW_OP[op] != 0
        hosts = np.cumsum(~keep)[keep]  # host-only lines up to each kept one, in this piece
        before = np.diff(hosts, prepend=0)
        if before.size:
            before[0] += self.host_carry
            self.host_carry = int(op.size - keep.sum() - hosts[-1])
        else:
            self.host_carry += int(op.size)
        if not keep.all():
            op, val, row = op.compress(keep), val.compress(keep, axis=1), row.compress(keep)
        mask, chan = val[_FI["mask"]], val[_FI["channel"]]
        has_mask, is_mem = mask >= 0, chan >= 0
        chmask = (_aim_to_chmask(np.maximum(mask, 0)) * has_mask + np.left_shift(1, np.maximum(chan, 0)) * is_mem
                  + self.all_channels * ~(has_mask | is_mem))  # else SYNC/EOC: every channel
        count = np.maximum(val[_FI["opsize"]], 1)
        self.parts.append((op.astype(np.int8), chmask, val[_FI["bank"]].astype(np.int16), row,
                           count.astype(np.int32), before))  # opsize <= columns_per_row for ops with rows

    def _program(self) -> np.ndarray:
        """The engine's `[n, N_FIELDS]` program from the kept columns, written piece by piece."""
        prog = np.empty((sum(p[0].size for p in self.parts), N_FIELDS), np.int64)
        self.host_lines = np.zeros(len(prog), np.int64)
        at = 0
        for op, chmask, bank, row, count, before in self.parts:
            self.host_lines[at:at + op.size] = before
            op = op.astype(np.int64)
            cols = np.zeros((N_FIELDS, op.size), np.int64)  # field-major, then one transposing copy
            cols[F_OP] = _ROW_OP[op]
            cols[F_CHMASK] = chmask
            cols[F_CMD] = self.cmd_id[op]
            cols[F_BANK] = bank  # -1 = ALL_BANKS where the op has no bank
            cols[F_ROW] = row  # -1 where it has no row
            cols[F_COUNT] = count
            cols[F_FLAGS] = _ROW_BLOCKING[op] * FLAG_BLOCKING  # F_COL and F_OPID stay 0
            prog[at:at + op.size] = cols.T
            at += op.size
        self.parts.clear()
        return prog


# --------------------------------------------------------------------------- writing example traces


def generate_row_passes(n_rows: int, mask: int = AIM_MASK_ALL, opsize: int = 64, first_row: int = 0) -> str:
    """`n_rows` all-bank MAC row passes (rows first_row..), then EOC: the row-pass benchmark."""
    _require_counts(n_rows=n_rows, opsize=opsize)
    lines = [f"AiM MAC_ABK {opsize} {mask:#010x} {first_row + r}" for r in range(n_rows)]
    return "\n".join(["# all-bank MAC row passes", *lines, "AiM EOC"]) + "\n"


def generate_gemv(out_blocks: int, k_tiles: int, mask: int = AIM_MASK_ALL, opsize: int = 64,
                  bias: bool = True) -> str:
    """A GEMV-shaped trace: per output block (16 outputs per channel), optionally load the bias,
    then for each input tile load the vector chunk into the global buffer and MAC one weight row,
    then read the 16 accumulators back (a blocking read)."""
    _require_counts(out_blocks=out_blocks, k_tiles=k_tiles, opsize=opsize)
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


def _require_counts(**counts: int) -> None:
    """A generator asked for nothing writes nothing silently: an error instead."""
    for name, n in counts.items():
        if n < 1:
            raise ValueError(f"{name} must be at least 1, got {n}")
