"""Instruction blocks of the step's kernels, built with numpy (no per-command Python objects).

A *sweep* is the PIM half of a GEMV: optionally fill the global buffer, then for each row:
MAC16 over one or more column segments of an all-bank row, reading the MAC registers after
each segment (one output per bank per segment). How rows are opened and closed is the
`row_commands` policy:
- "controller": the controller does everything (mode change, PREA, ACT16 before each MAC16).
  This is the only form the public AiM simulator's trace format can express.
- "precharge":  an explicit precharge after a row's last MAC16, before its RDMAC16, so the PREA
  overlaps the register/memory mode round trip.
- "explicit":   that, plus an explicit ACT16 of the next row right after the read, issued while
  the channel is still in register mode: ACT16 -> MAC16 (nRCDRDMAC) then hides the mode change
  back, and the round trip costs ~1 % of a row pass instead of ~24 % (measured, pim-gpt preset).
  Each op then starts and ends with all banks precharged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw_configs.isa import (
    ALL_BANKS, F_BANK, F_CHMASK, F_CMD, F_COL, F_COUNT, F_FLAGS, F_OP, F_ROW, FLAG_BLOCKING, N_FIELDS,
    OP_COLUMN, OP_PRECHARGE, OP_RAW, OP_SIMPLE,
)

from .device import Device

ROW_COMMANDS = ("explicit", "precharge", "controller")


@dataclass(frozen=True)
class Cmds:
    act16: int
    mac16: int
    wrgb: int
    rdmac16: int
    wr: int
    rd: int

    @classmethod
    def of(cls, dev: Device) -> "Cmds":
        return cls(dev.cmd("ACT16"), dev.cmd("MAC16"), dev.cmd("WRGB"), dev.cmd("RDMAC16"), dev.cmd("WR"), dev.cmd("RD"))


def channel_bits(dev: Device, masks: np.ndarray) -> np.ndarray:
    """[R] channel masks -> [R, C] booleans."""
    return (np.asarray(masks, np.int64)[:, None] >> np.arange(dev.channels)) & 1 == 1


def sweep(dev: Device, cmds: Cmds, mode: str, rows, masks, col0, ncols, gb_ncols=None, gb_col0=None,
          gb_mask=None) -> np.ndarray:
    """Instruction rows of a sweep: rows [R], masks [R], segments col0/ncols [R, NS] (a segment of
    0 columns is skipped), an optional global-buffer fill before row r of gb_ncols[r] columns
    (0: none) at gb_col0[r] on gb_mask[r]. Per row: [ACT16] [WRGB] (MAC16 [PRE] RDMAC16) x NS."""
    rows = np.asarray(rows, np.int64)
    masks = np.asarray(masks, np.int64)
    col0 = np.asarray(col0, np.int64)
    ncols = np.asarray(ncols, np.int64)
    n_rows, n_seg = col0.shape
    k = 2 + 3 * n_seg
    g = np.zeros((n_rows, k, N_FIELDS), np.int64)
    keep = np.zeros((n_rows, k), bool)
    g[:, :, F_CHMASK] = masks[:, None]
    g[:, :, F_BANK] = ALL_BANKS
    g[:, :, F_ROW] = -1
    g[:, :, F_COUNT] = 1
    seg_on = ncols > 0
    if mode == "explicit":
        g[:, 0, F_OP], g[:, 0, F_CMD], g[:, 0, F_ROW] = OP_RAW, cmds.act16, rows
        keep[:, 0] = seg_on.any(axis=1)
    if gb_ncols is not None:
        gb_ncols = np.asarray(gb_ncols, np.int64)
        g[:, 1, F_OP], g[:, 1, F_CMD] = OP_SIMPLE, cmds.wrgb
        g[:, 1, F_COL] = 0 if gb_col0 is None else gb_col0
        g[:, 1, F_COUNT] = np.maximum(gb_ncols, 1)
        g[:, 1, F_CHMASK] = masks if gb_mask is None else gb_mask
        keep[:, 1] = gb_ncols > 0
    mac, pre, rd = g[:, 2::3], g[:, 3::3], g[:, 4::3]
    mac[..., F_OP], mac[..., F_CMD], mac[..., F_ROW] = OP_COLUMN, cmds.mac16, rows[:, None]
    mac[..., F_COL], mac[..., F_COUNT] = col0, np.maximum(ncols, 1)
    pre[..., F_OP] = OP_PRECHARGE
    rd[..., F_OP], rd[..., F_CMD], rd[..., F_FLAGS] = OP_SIMPLE, cmds.rdmac16, FLAG_BLOCKING
    keep[:, 2::3] = seg_on
    keep[:, 4::3] = seg_on
    if mode != "controller":
        last = n_seg - 1 - np.argmax(seg_on[:, ::-1], axis=1)  # last segment with columns
        pre_on = np.zeros_like(seg_on)
        pre_on[np.arange(n_rows), last] = seg_on.any(axis=1)
        keep[:, 3::3] = pre_on
    return g[keep]


def select_reads(dev: Device, masks, ncols, acc) -> np.ndarray:
    """MAC-register read destinations in instruction order: acc [R, NS, C, B] -> [n, B] for the
    kept segments and the channels of each row's mask (ascending)."""
    sel = (np.asarray(ncols)[:, :, None] > 0) & channel_bits(dev, masks)[:, None, :]
    return np.ascontiguousarray(acc[sel], dtype=np.int32)


def lane_grid(dev: Device) -> tuple[np.ndarray, np.ndarray]:
    """[C, B] channel and bank of every lane, and the lane number bank * C + channel."""
    ch = np.arange(dev.channels)[:, None]
    bank = np.arange(dev.banks)[None, :]
    return np.broadcast_to(ch, (dev.channels, dev.banks)), bank * dev.channels + ch


def tile_gb_index(dev: Device, first: int, length: int, n_cols: int, offset: int = 0, copies: int = 1) -> np.ndarray:
    """Global-buffer lanes of an input tile: elements [first, first + length) of a vector at
    `offset`, over n_cols columns, repeated `copies` times (one per row slot) -> [copies * n_cols, E]."""
    e = np.arange(n_cols * dev.col_elems).reshape(n_cols, dev.col_elems)
    idx = np.where(e < length, offset + first + e, -1)
    return np.ascontiguousarray(np.tile(idx, (copies, 1)), dtype=np.int32)
