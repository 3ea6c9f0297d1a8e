"""The PIM controller's instruction format: the low-level half of the mapping <-> sim contract.

It lives with the hardware description, not in `sim/` or `mapping/`, because both sides use it
and neither may import the other: the mapping layer writes these rows, the timing engine and
the functional core execute them. Plain numpy and the standards' YAML; no simulator code.

An instruction is one int64 row of 9 fields; a block of instructions is an array `[n, 9]`. The
engine expands each row into DRAM commands inside compiled code (open-row policy, mode changes,
refresh), so a row pass of 64 MAC16 is one row, not 66 Python objects.

Fields:  OP  CHMASK  CMD  BANK  ROW  COL  COUNT  FLAGS  OPID
- OP      OP_COLUMN: COUNT column commands CMD at (BANK, ROW, COL, COL+1, ...), opening the row
          first when it is not open (BANK = ALL_BANKS for all-bank commands such as MAC16);
          OP_SIMPLE: COUNT commands CMD that touch no row (WRGB, WRMAC16, RDMAC16, ...); commands
          the controller owns (refresh, mode change, ACT/PRE) are rejected;
          OP_PRECHARGE: close every open row of the masked channels;
          OP_BARRIER: later instructions on the masked channels wait until everything already
          issued to the masked channels has completed (refresh excluded);
          OP_RAW: COUNT commands CMD issued exactly as given (no mode change, no ACT/PRE added): a
          user's own command stream, timed but not corrected.
- CHMASK  bit c set = the instruction runs on channel c (every channel in the mask, same work).
- CMD     a command id: the index of the command in its standard's `commands:` table. Ids mean
          nothing without the table, so programs travel with `command_names` (see
          `command_names_of`) and the engine rejects a program built for another table.
- FLAGS   FLAG_BLOCKING: later instructions on the masked channels wait for this one's commands
          (on every masked channel) to complete (a read of MAC results must return before the
          ASIC can use them).
- OPID    the op the instruction belongs to (>= 0): the engine reports first issue, finish and
          command counts per op id, so one call can time many ops.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

OP_COLUMN, OP_SIMPLE, OP_PRECHARGE, OP_BARRIER, OP_RAW = 1, 2, 3, 4, 5
OP_NAMES = {OP_COLUMN: "column", OP_SIMPLE: "simple", OP_PRECHARGE: "precharge", OP_BARRIER: "barrier",
            OP_RAW: "raw"}
F_OP, F_CHMASK, F_CMD, F_BANK, F_ROW, F_COL, F_COUNT, F_FLAGS, F_OPID = range(9)
N_FIELDS = 9
ALL_BANKS = -1
# Rows at and above PSEUDO_ROW_BASE are not storage: they are opened like rows but address a
# device table (AiM's activation-function lookup rows), so they bypass the rows_per_bank check.
PSEUDO_ROW_BASE = 1 << 29
FLAG_BLOCKING = 1
MAX_CHANNELS = 63  # channel masks are int64 bit sets

STANDARDS_DIR = Path(__file__).resolve().parent / "standards"


def channel_mask(channels: Iterable[int] | int) -> int:
    """Channel list (or a single channel) -> bit mask (bit c = channel c)."""
    if isinstance(channels, (int, np.integer)):
        channels = [int(channels)]
    mask = 0
    for c in channels:
        if not 0 <= c < MAX_CHANNELS:
            raise ValueError(f"channel {c} out of range 0..{MAX_CHANNELS - 1}")
        mask |= 1 << int(c)
    return mask


def instr(op: int, chmask: int, cmd: int = -1, bank: int = ALL_BANKS, row: int = -1, col: int = 0,
          count: int = 1, flags: int = 0, opid: int = 0) -> list[int]:
    return [op, chmask, cmd, bank, row, col, count, flags, opid]


def column(chmask: int, cmd: int, row: int, count: int, col: int = 0, bank: int = ALL_BANKS,
           blocking: bool = False, opid: int = 0) -> list[int]:
    return instr(OP_COLUMN, chmask, cmd, bank, row, col, count, FLAG_BLOCKING if blocking else 0, opid)


def simple(chmask: int, cmd: int, count: int = 1, blocking: bool = False, opid: int = 0) -> list[int]:
    return instr(OP_SIMPLE, chmask, cmd, ALL_BANKS, -1, 0, count, FLAG_BLOCKING if blocking else 0, opid)


def precharge(chmask: int, opid: int = 0) -> list[int]:
    return instr(OP_PRECHARGE, chmask, opid=opid)


def barrier(chmask: int, opid: int = 0) -> list[int]:
    return instr(OP_BARRIER, chmask, opid=opid)


def raw(chmask: int, cmd: int, bank: int = ALL_BANKS, row: int = -1, col: int = 0, count: int = 1,
        opid: int = 0) -> list[int]:
    return instr(OP_RAW, chmask, cmd, bank, row, col, count, 0, opid)


def program(rows: Iterable[list[int]]) -> np.ndarray:
    """Stack instruction rows into the engine's `[n, N_FIELDS]` int64 array."""
    arr = np.asarray(list(rows), dtype=np.int64)
    if arr.size == 0:
        return np.zeros((0, N_FIELDS), np.int64)
    if arr.ndim != 2 or arr.shape[1] != N_FIELDS:
        raise ValueError(f"a program is an [n, {N_FIELDS}] array, got shape {arr.shape}")
    return arr


def standard_file(standard: str, config_source: str = "") -> Path:
    """A standard's YAML: a name in hw_configs/standards/, or a path relative to the config file."""
    if not standard.endswith((".yaml", ".yml")):
        return STANDARDS_DIR / f"{standard}.yaml"
    path = Path(standard)
    if not path.is_absolute() and config_source and not config_source.startswith("<"):
        path = Path(config_source).parent / path
    return path


def command_names_of(cfg) -> tuple[str, ...]:
    """The command table of a hardware config's standard, in id order (read from its YAML).

    A program builder resolves command names to ids with this; the engine compares the tuple
    with its own compiled standard, so ids from one table are never run against another."""
    path = standard_file(cfg.dram.standard, getattr(cfg, "source", ""))
    data = yaml.safe_load(path.read_text())
    return tuple(data["commands"])


# A recorded schedule: one entry per issued DRAM command, in issue order per channel.
# `release` is the earliest cycle the controller was allowed to issue the command at all (the
# channel's front end for program commands, the due cycle for refresh), so a checker can tell a
# command held back by a timing rule from one that was not yet released. `instr` is the index of
# the instruction the command serves (len(program) for the closing precharge of a run), -1 for
# refresh-owned commands during the run (REFab, the PREA before it, rows re-opened after it) and
# -2 for refresh issued in the idle gap before the run (not counted in the run's figures);
# `opid` is the instruction's op id (-1 for refresh).
SCHEDULE_DTYPE = np.dtype([
    ("cmd", np.int16),      # command id: index into the standard's command table
    ("channel", np.int16),
    ("bank", np.int16),     # ALL_BANKS (-1) for all-bank / channel-wide commands
    ("row", np.int32),      # -1 when the command addresses no row
    ("col", np.int32),      # -1 when the command addresses no column
    ("cycle", np.int64),    # issue cycle (command clock)
    ("release", np.int64),
    ("instr", np.int32),
    ("opid", np.int32),
])
