"""The PIM datapath's bf16 semantics in plain numpy: the oracle the numba kernels are held to.

Same semantics as sim/functional/kernels.py (see its docstring), written the other way round:
every addition is evaluated in float64 and rounded once to the accumulate dtype with
`sim.system.asic_math` (fp32 by a cast, bf16 by `round_bf16`, itself checked against an
independent oracle), vectorised over banks and columns instead of looped. Slow; for tests and
for running small programs through `FunctionalExecutor(backend="numpy")`.
"""
from __future__ import annotations

import numpy as np

from hw_configs.isa import F_BANK, F_CHMASK, F_CMD, F_COL, F_COUNT, F_OP, F_ROW, OP_BARRIER, OP_COLUMN, OP_PRECHARGE, OP_RAW, OP_SIMPLE
from sim.system.asic_math import round_bf16

from .kernels import (
    ERR_BANK, ERR_BINDING, ERR_COLUMNS, ERR_COMMAND, ERR_RAW, ERR_RD_CHANNELS, ERR_ROW, K_ACT, K_ACT16, K_MAC16,
    K_RD, K_RDMAC16, K_WR, K_WRGB, OK,
)


def rnd(x, dtype: str) -> np.ndarray:
    """float64 values -> the dtype, nearest-even, held in float32."""
    x = np.asarray(x, np.float64)
    return round_bf16(x) if dtype == "bf16" else x.astype(np.float32)


def to_bits(x) -> np.ndarray:
    """Values -> bf16 bit patterns (uint16), nearest-even."""
    return (np.ascontiguousarray(rnd(x, "bf16")).view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def from_bits(b) -> np.ndarray:
    """bf16 bit patterns -> float32 values."""
    return (np.asarray(b, np.uint32) << np.uint32(16)).view(np.float32)


def tree_sum(p: np.ndarray, dtype: str) -> np.ndarray:
    """Balanced tree of adjacent pairs over the last axis, each sum rounded. [..., E] -> [...]"""
    while p.shape[-1] > 1:
        w = p.shape[-1]
        s = rnd(p[..., 0:w - 1:2].astype(np.float64) + p[..., 1:w:2], dtype)
        p = np.concatenate([s, p[..., w - 1:]], axis=-1) if w % 2 else s
    return p[..., 0]


def mac16(w: np.ndarray, x: np.ndarray, acc: np.ndarray, E: int, dtype: str, order: str) -> np.ndarray:
    """MAC16s over consecutive columns: w [B, n] bank elements, x [n] global-buffer elements (both
    bf16 values, n a multiple of E), acc [B] registers -> registers after the columns."""
    B, n = w.shape
    prods = (w.astype(np.float64) * x.astype(np.float64)).astype(np.float32)     # exact: 16-bit products
    prods = prods.reshape(B, n // E, E)                                          # [B, cols, E]
    acc = np.asarray(acc, np.float32).copy()
    for k in range(n // E):
        if order == "pairwise":
            acc = rnd(acc.astype(np.float64) + tree_sum(prods[:, k], dtype), dtype)
        else:
            for e in range(E):
                acc = rnd(acc.astype(np.float64) + prods[:, k, e], dtype)
    return acc


def run_block(ins, cmd_ids, E, img, gb, acc, gb_src, gb_index, acc_dst, acc_index, wr_src, wr_index,
              rd_dst, rd_index, acc_bf16, pairwise, asic_bf16, err) -> int:
    """kernels.run_block in numpy (same arguments, same effects, same error codes)."""
    C, rows, RE, B = img.shape
    acc_t = "bf16" if acc_bf16 else "fp32"
    order = "pairwise" if pairwise else "sequential"
    cur = {"gb": 0, "acc": 0, "wr": 0, "rd": 0}
    for n, row_ins in enumerate(np.asarray(ins)):
        err[0] = n
        opc, mask, cmd = int(row_ins[F_OP]), int(row_ins[F_CHMASK]), int(row_ins[F_CMD])
        chans = [c for c in range(C) if mask >> c & 1]
        if opc in (OP_PRECHARGE, OP_BARRIER):
            continue
        if opc == OP_RAW:
            if cmd not in (cmd_ids[K_ACT16], cmd_ids[K_ACT]):
                return ERR_RAW
            continue
        row, col, count, bank = (int(row_ins[f]) for f in (F_ROW, F_COL, F_COUNT, F_BANK))
        if opc == OP_COLUMN and not 0 <= row < rows:
            err[1] = row
            return ERR_ROW
        lo, hi = col * E, (col + count) * E
        if opc == OP_SIMPLE and cmd == cmd_ids[K_WRGB]:
            if cur["gb"] + count > len(gb_index):
                return ERR_BINDING
            if hi > gb.shape[1]:
                return ERR_COLUMNS
            idx = gb_index[cur["gb"]:cur["gb"] + count].reshape(-1)
            vals = np.where(idx >= 0, rnd(gb_src[np.maximum(idx, 0)], "bf16"), np.float32(0))
            gb[chans, lo:hi] = vals
            cur["gb"] += count
        elif opc == OP_SIMPLE and cmd == cmd_ids[K_RDMAC16]:
            for c in chans:
                if cur["acc"] >= len(acc_index):
                    return ERR_BINDING
                idx = acc_index[cur["acc"]]
                ok = idx >= 0
                acc_dst[idx[ok]] = rnd(acc[c, ok], "bf16" if asic_bf16 else "fp32")
                acc[c] = 0.0
                cur["acc"] += 1
        elif opc == OP_COLUMN and cmd == cmd_ids[K_MAC16]:
            if hi > gb.shape[1] or hi > RE:
                return ERR_COLUMNS
            for c in chans:
                w = from_bits(img[c, row, lo:hi, :]).T                              # [B, n]
                acc[c] = mac16(w, gb[c, lo:hi], acc[c], E, acc_t, order)
        elif opc == OP_COLUMN and cmd == cmd_ids[K_WR]:
            if hi > RE:
                return ERR_COLUMNS
            if not 0 <= bank < B:
                return ERR_BANK
            for c in chans:  # each channel of the mask its own `count` rows, channels ascending
                if cur["wr"] + count > len(wr_index):
                    return ERR_BINDING
                idx = wr_index[cur["wr"]:cur["wr"] + count].reshape(-1)
                ok = idx >= 0
                seg = img[c, row, lo:hi, bank]
                seg[ok] = to_bits(wr_src[idx[ok]])
                img[c, row, lo:hi, bank] = seg
                cur["wr"] += count
        elif opc == OP_COLUMN and cmd == cmd_ids[K_RD]:
            if cur["rd"] + count > len(rd_index):
                return ERR_BINDING
            if hi > RE:
                return ERR_COLUMNS
            if not 0 <= bank < B:
                return ERR_BANK
            if len(chans) != 1:
                return ERR_RD_CHANNELS
            idx = rd_index[cur["rd"]:cur["rd"] + count].reshape(-1)
            ok = idx >= 0
            rd_dst[idx[ok]] = from_bits(img[chans[0], row, lo:hi, bank])[ok]
            cur["rd"] += count
        else:
            err[1] = cmd
            return ERR_COMMAND
    return OK
