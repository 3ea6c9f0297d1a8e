"""The PIM datapath on numbers, compiled: one numba call executes one PimOp's instruction block.

Number formats. Memory (weights, KV cache) and the global buffer hold bf16; the image keeps the
bit patterns (uint16) in the layout [channel, row, element, bank], so the 16 banks' elements under
one column address sit side by side and a MAC16 multiplies them as one vector. Every bf16 x bf16
product is exact in fp32 (8 + 8 significant bits): the multipliers lose nothing. The adder tree
and the MAC register add in `pim.accumulate_dtype`:
- fp32: IEEE fp32 additions (numba's float32 arithmetic);
- bf16: each sum computed in float64 and rounded once to bf16, nearest-even. For two operands of
  at most 24 significant bits the float64 sum is exact or off by far less than a bf16 half-ulp,
  so this is the correctly rounded bf16 sum (no double rounding).
`pim.adder_tree` orders one MAC16 column's 16 products per bank: `pairwise` adds adjacent pairs
level by level (p0+p1, p2+p3, ...; an odd last one passes up) and then adds the tree's sum to the
register; `sequential` adds them one after another into the register.

Tolerance against exact sums: after K columns a register differs from the exact sum of its
products and its start value by at most gamma_m * sum |terms|, gamma_m = m u / (1 - m u), with
m = ceil(log2 E) + K (pairwise) or E K (sequential) roundings met by any term and u = 2^-24
(fp32) or 2^-8 (bf16); delivery to a bf16 ASIC rounds once more (u). Tested pointwise.

Data paths: WRGB and WR round the ASIC's values to bf16 (the memory format); RD returns bf16
values; RDMAC16 delivers each register to the ASIC, rounded to the ASIC's dtype, and clears it.
sim/functional/emulate.py computes the same in plain numpy; the tests hold the two bit-exact.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from hw_configs.isa import F_BANK, F_CHMASK, F_CMD, F_COL, F_COUNT, F_OP, F_ROW, OP_BARRIER, OP_COLUMN, OP_PRECHARGE, OP_RAW, OP_SIMPLE

# error codes of run_block (the executor turns them into messages)
OK, ERR_ROW, ERR_BINDING, ERR_COMMAND, ERR_RD_CHANNELS, ERR_RAW, ERR_COLUMNS, ERR_BANK = range(8)
# command ids the kernel needs, in this order (index into `cmd_ids`)
K_WRGB, K_RDMAC16, K_MAC16, K_WR, K_RD, K_ACT16, K_ACT, N_K = range(8)
KERNEL_COMMANDS = ("WRGB", "RDMAC16", "MAC16", "WR", "RD", "ACT16", "ACT")


@intrinsic
def _f64_bits(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.uint64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.uint64), codegen


@intrinsic
def _bits_f32(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@njit(cache=True, inline="always")
def bf16_value(bits):
    """bf16 bit pattern (uint16) -> its value as float32 (exact)."""
    return _bits_f32(np.uint32(bits) << np.uint32(16))


@njit(cache=True)
def round_bf16_f64(x):
    """float64 -> nearest bf16 (ties to even) as float32: the top 8 significant bits of the
    float64, rounded on its bit pattern; below 2^-126 the bf16 grid is fixed at 2^-133."""
    if x != x:
        return np.float32(x)
    if abs(x) < 2.0**-126:
        return np.float32(np.rint(x * 2.0**133) * 2.0**-133)
    b = _f64_bits(x)
    lsb = (b >> np.uint64(45)) & np.uint64(1)
    b = ((b + np.uint64((1 << 44) - 1) + lsb) >> np.uint64(45)) << np.uint64(45)
    return np.float32(_bits_f64(b))      # exact, or inf past the bf16 (= fp32) range


@njit(cache=True, inline="always")
def bf16_bits(x32):
    """float32 -> bf16 bit pattern (uint16), nearest-even."""
    v = round_bf16_f64(np.float64(x32))
    return np.uint16(_f32_bits_of(v) >> np.uint32(16))


@intrinsic
def _f32_bits_of(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@njit(cache=True, inline="always")
def _add(a, b, acc_bf16):
    if acc_bf16:
        return round_bf16_f64(np.float64(a) + np.float64(b))
    return a + b


@njit(cache=True, inline="always")
def _deliver(v, asic_bf16):
    return round_bf16_f64(np.float64(v)) if asic_bf16 else v


@njit(cache=True)
def mac_columns(img, c, row, col0, count, gb, acc, p, acc_bf16, pairwise):
    """acc[c, b] += sum over columns col0.. of (row's 16 elements of bank b) x (global buffer's)."""
    E, B = p.shape
    for col in range(col0, col0 + count):
        base = col * E
        for e in range(E):
            g = gb[c, base + e]
            for b in range(B):
                p[e, b] = bf16_value(img[c, row, base + e, b]) * g
        if pairwise:
            w = E
            while w > 1:
                h = w // 2
                for i in range(h):
                    for b in range(B):
                        p[i, b] = _add(p[2 * i, b], p[2 * i + 1, b], acc_bf16)
                if w & 1:
                    for b in range(B):
                        p[h, b] = p[w - 1, b]
                w = h + (w & 1)
            for b in range(B):
                acc[c, b] = _add(acc[c, b], p[0, b], acc_bf16)
        else:
            for e in range(E):
                for b in range(B):
                    acc[c, b] = _add(acc[c, b], p[e, b], acc_bf16)


@njit(cache=True)
def mac_fp32_tree16(img, c, row, col0, count, gb, acc):
    """mac_columns for fp32, pairwise, 16 elements per column, written out so the loop over banks
    vectorises: per bank, 16 exact products, a 4-level tree of adjacent pairs, then the register."""
    B = img.shape[3]
    for col in range(col0, col0 + count):
        k = col * 16
        r = img[c, row]
        g = gb[c, k:k + 16]
        g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15 = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
        for b in range(B):
            p0 = bf16_value(r[k + 0, b]) * g0
            p1 = bf16_value(r[k + 1, b]) * g1
            p2 = bf16_value(r[k + 2, b]) * g2
            p3 = bf16_value(r[k + 3, b]) * g3
            p4 = bf16_value(r[k + 4, b]) * g4
            p5 = bf16_value(r[k + 5, b]) * g5
            p6 = bf16_value(r[k + 6, b]) * g6
            p7 = bf16_value(r[k + 7, b]) * g7
            p8 = bf16_value(r[k + 8, b]) * g8
            p9 = bf16_value(r[k + 9, b]) * g9
            p10 = bf16_value(r[k + 10, b]) * g10
            p11 = bf16_value(r[k + 11, b]) * g11
            p12 = bf16_value(r[k + 12, b]) * g12
            p13 = bf16_value(r[k + 13, b]) * g13
            p14 = bf16_value(r[k + 14, b]) * g14
            p15 = bf16_value(r[k + 15, b]) * g15
            t = (((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))) + (((p8 + p9) + (p10 + p11)) + ((p12 + p13) + (p14 + p15)))
            acc[c, b] = acc[c, b] + t


@njit(cache=True)
def run_block(ins, cmd_ids, E, img, gb, acc, gb_src, gb_index, acc_dst, acc_index, wr_src, wr_index,
              rd_dst, rd_index, acc_bf16, pairwise, asic_bf16, err):
    """Execute one PimOp's instructions. E elements per column; img [C, rows, RE, B] uint16;
    gb [C, GBE] float32 (bf16 values); acc [C, B] float32 (values of the accumulate dtype).
    Index arrays as DataBinding ([n, E], [n, B]). Returns an error code (OK = 0); err[0] = the
    failing instruction, err[1] = a detail value."""
    C, rows, RE, B = img.shape
    GBE = gb.shape[1]
    p = np.empty((E, B), np.float32)
    n_gb = n_acc = n_wr = n_rd = 0
    for n in range(ins.shape[0]):
        err[0] = n
        opc, mask, cmd = ins[n, F_OP], ins[n, F_CHMASK], ins[n, F_CMD]
        if opc == OP_PRECHARGE or opc == OP_BARRIER:
            continue
        if opc == OP_RAW:
            if cmd != cmd_ids[K_ACT16] and cmd != cmd_ids[K_ACT]:
                return ERR_RAW
            continue
        row, col, count, bank = ins[n, F_ROW], ins[n, F_COL], ins[n, F_COUNT], ins[n, F_BANK]
        if opc == OP_COLUMN and not (0 <= row < rows):
            err[1] = row
            return ERR_ROW
        lo, hi = col * E, (col + count) * E
        if opc == OP_SIMPLE and cmd == cmd_ids[K_WRGB]:
            if n_gb + count > gb_index.shape[0]:
                return ERR_BINDING
            if hi > GBE:
                return ERR_COLUMNS
            for c in range(C):
                if mask >> c & 1:
                    for k in range(count):
                        for e in range(E):
                            j = gb_index[n_gb + k, e]
                            gb[c, lo + k * E + e] = round_bf16_f64(np.float64(gb_src[j])) if j >= 0 else 0.0
            n_gb += count
        elif opc == OP_SIMPLE and cmd == cmd_ids[K_RDMAC16]:
            for c in range(C):
                if mask >> c & 1:
                    if n_acc >= acc_index.shape[0]:
                        return ERR_BINDING
                    for b in range(B):
                        j = acc_index[n_acc, b]
                        if j >= 0:
                            acc_dst[j] = _deliver(acc[c, b], asic_bf16)
                        acc[c, b] = 0.0
                    n_acc += 1
        elif opc == OP_COLUMN and cmd == cmd_ids[K_MAC16]:
            if hi > GBE or hi > RE:
                return ERR_COLUMNS
            fast = E == 16 and pairwise and not acc_bf16
            for c in range(C):
                if mask >> c & 1:
                    if fast:
                        mac_fp32_tree16(img, c, row, col, count, gb, acc)
                    else:
                        mac_columns(img, c, row, col, count, gb, acc, p, acc_bf16, pairwise)
        elif opc == OP_COLUMN and cmd == cmd_ids[K_WR]:
            if hi > RE:
                return ERR_COLUMNS
            if not (0 <= bank < B):
                return ERR_BANK
            for c in range(C):  # each channel of the mask its own `count` rows, channels ascending
                if mask >> c & 1:
                    if n_wr + count > wr_index.shape[0]:
                        return ERR_BINDING
                    for k in range(count):
                        for e in range(E):
                            j = wr_index[n_wr + k, e]
                            if j >= 0:
                                img[c, row, lo + k * E + e, bank] = bf16_bits(wr_src[j])
                    n_wr += count
        elif opc == OP_COLUMN and cmd == cmd_ids[K_RD]:
            if n_rd + count > rd_index.shape[0]:
                return ERR_BINDING
            if hi > RE:
                return ERR_COLUMNS
            if not (0 <= bank < B):
                return ERR_BANK
            c = -1
            for ch in range(C):
                if mask >> ch & 1:
                    if c >= 0:
                        return ERR_RD_CHANNELS
                    c = ch
            if c < 0:
                return ERR_RD_CHANNELS
            for k in range(count):
                for e in range(E):
                    j = rd_index[n_rd + k, e]
                    if j >= 0:
                        rd_dst[j] = bf16_value(img[c, row, lo + k * E + e, bank])
            n_rd += count
        else:
            err[1] = cmd
            return ERR_COMMAND
    return OK


@njit(cache=True)
def bf16_image_from_fp32(src, dst):
    """dst [C, rows, RE, B] uint16 <- src [C, B, rows, RE] float32, each value rounded to bf16."""
    C, B, R, RE = src.shape
    for c in range(C):
        for b in range(B):
            for r in range(R):
                for e in range(RE):
                    dst[c, r, e, b] = bf16_bits(src[c, b, r, e])
