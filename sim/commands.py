"""Compact DRAM/PIM instructions: the input format of the timing engine.

An instruction is one int64 row of 8 fields; a program is an array `[n, 8]`. The engine expands
each row into DRAM commands inside compiled code (open-row policy, mode changes, refresh), so a
row pass of 64 MAC16 is one row, not 66 Python objects.

Fields:  OP  CHMASK  CMD  BANK  ROW  COL  COUNT  FLAGS
- OP      OP_COLUMN: COUNT column commands CMD at (BANK, ROW, COL, COL+1, ...), opening the row
          first when it is not open (BANK = ALL_BANKS for all-bank commands such as MAC16);
          OP_SIMPLE: COUNT commands CMD that touch no row (WRGB, WRMAC16, RDMAC16, ...);
          OP_PRECHARGE: close every open row of the channel;
          OP_BARRIER: later instructions wait until everything already issued to the masked
          channels has completed;
          OP_RAW: COUNT commands CMD issued exactly as given (no mode change, no ACT/PRE, no
          refresh added): a user's own command stream, timed but not corrected (its state
          legality is the user's; refresh due meanwhile is issued at the next non-raw command).
- CHMASK  bit c set = the instruction runs on channel c (every channel in the mask, same work).
- FLAGS   FLAG_BLOCKING: later instructions wait for this one's commands to complete (a read
          of MAC results must return before the host can use them).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

OP_COLUMN, OP_SIMPLE, OP_PRECHARGE, OP_BARRIER, OP_RAW = 1, 2, 3, 4, 5
F_OP, F_CHMASK, F_CMD, F_BANK, F_ROW, F_COL, F_COUNT, F_FLAGS = range(8)
N_FIELDS = 8
ALL_BANKS = -1
# Rows at and above PSEUDO_ROW_BASE are not storage: they are opened like rows but address a
# device table (AiM's activation-function lookup rows), so they bypass the rows_per_bank check.
PSEUDO_ROW_BASE = 1 << 29
FLAG_BLOCKING = 1

def channel_mask(channels: Iterable[int] | int) -> int:
    """Channel list (or a single channel) -> bit mask (bit c = channel c)."""
    if isinstance(channels, (int, np.integer)):
        channels = [int(channels)]
    mask = 0
    for c in channels:
        if not 0 <= c < 63:
            raise ValueError(f"channel {c} out of range 0..62")
        mask |= 1 << int(c)
    return mask


def instr(op: int, chmask: int, cmd: int = -1, bank: int = ALL_BANKS, row: int = -1, col: int = 0,
          count: int = 1, flags: int = 0) -> list[int]:
    return [op, chmask, cmd, bank, row, col, count, flags]


def column(chmask: int, cmd: int, row: int, count: int, col: int = 0, bank: int = ALL_BANKS,
           blocking: bool = False) -> list[int]:
    return instr(OP_COLUMN, chmask, cmd, bank, row, col, count, FLAG_BLOCKING if blocking else 0)


def simple(chmask: int, cmd: int, count: int = 1, blocking: bool = False) -> list[int]:
    return instr(OP_SIMPLE, chmask, cmd, ALL_BANKS, -1, 0, count, FLAG_BLOCKING if blocking else 0)


def precharge(chmask: int) -> list[int]:
    return instr(OP_PRECHARGE, chmask)


def barrier(chmask: int) -> list[int]:
    return instr(OP_BARRIER, chmask)


def raw(chmask: int, cmd: int, bank: int = ALL_BANKS, row: int = -1, col: int = 0, count: int = 1) -> list[int]:
    return instr(OP_RAW, chmask, cmd, bank, row, col, count, 0)


def program(rows: Iterable[list[int]]) -> np.ndarray:
    """Stack instruction rows into the engine's `[n, 8]` int64 array."""
    arr = np.asarray(list(rows), dtype=np.int64)
    if arr.size == 0:
        return np.zeros((0, N_FIELDS), np.int64)
    if arr.ndim != 2 or arr.shape[1] != N_FIELDS:
        raise ValueError(f"a program is an [n, {N_FIELDS}] array, got shape {arr.shape}")
    return arr


# A recorded schedule: one entry per issued DRAM command, in issue order per channel.
# `release` is the earliest cycle the controller was allowed to issue the command at all (the
# front end's barrier for program commands, the due cycle for refresh), so a checker can tell a
# command held back by a timing rule from one that was not yet released.
SCHEDULE_DTYPE = np.dtype([
    ("cmd", np.int16),      # command id: index into CompiledStandard.command_names
    ("channel", np.int16),
    ("bank", np.int16),     # ALL_BANKS (-1) for all-bank / channel-wide commands
    ("row", np.int32),      # -1 when the command addresses no row
    ("col", np.int32),      # -1 when the command addresses no column
    ("cycle", np.int64),    # issue cycle (command clock)
    ("release", np.int64),
])
