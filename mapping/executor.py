"""The exact program executor: runs a Program on a memory image, in fp32 with exact sums.

It is the proof that a mapping is right. Weights and KV entries are read only from the image,
at the addresses the instructions name (MAC16: channel mask, row, columns, every bank; WR/RD:
channel, bank, row, columns); the data binding of each PimOp says only which tensor elements
the global-buffer writes carry and where MAC-register reads go. A weight placed one row off, or
an instruction naming the wrong row, changes the numbers. MAC registers accumulate in float64
(an exact dot product rounded once to fp32 when read); ASIC ops call the reference's functions
(`workloads.reference`) in fp32. Norm gains and biases come from the ASIC parameter store.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw_configs.isa import (
    F_BANK, F_CHMASK, F_CMD, F_COL, F_COUNT, F_OP, F_ROW, OP_BARRIER, OP_COLUMN, OP_PRECHARGE, OP_RAW, OP_SIMPLE,
)
from hw_configs.program import AsicOp, IoOp, PimOp, Program, Tensors
from workloads import reference as R

from .device import Device, MappingError
from .placement import GemvRegion, Placement

F32 = np.float32
class ExecutionError(MappingError):
    """A program the executor cannot run (bad address, missing data binding, unknown command)."""


# --------------------------------------------------------------------------- memory image


@dataclass
class MemoryImage:
    """fp32 contents of rows [0, rows) of every bank: data[channel, bank, row, element]."""

    dev: Device
    data: np.ndarray

    @classmethod
    def empty(cls, dev: Device, rows: int) -> "MemoryImage":
        return cls(dev, np.zeros((dev.channels, dev.banks, rows, dev.row_elems), F32))

    @property
    def rows(self) -> int:
        return self.data.shape[2]


def region_matrix(reg: GemvRegion, params: dict[str, np.ndarray]) -> np.ndarray:
    """The region's weights as one [n_out, n_in] fp32 matrix (members stacked, rows of a table cut)."""
    parts = []
    for m in reg.members:
        w = np.asarray(params[m.param], F32)
        w = w.T if m.transposed else w
        parts.append(w[: m.n_out])
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def write_region(image: MemoryImage, reg: GemvRegion, w: np.ndarray) -> None:
    """Store W [n_out, n_in] at the region's addresses (the layout of GemvRegion.address)."""
    dev = image.dev
    L, C, B, T, K = dev.lanes, dev.channels, dev.banks, dev.tile_elems, reg.n_tiles
    if reg.slots == 1:
        wp = np.zeros((reg.n_blocks * L, K * T), F32)
        wp[: reg.n_out, : reg.n_in] = w
        block = wp.reshape(reg.n_blocks, B, C, K, T).transpose(2, 1, 3, 0, 4)      # [C, B, K, NB, T]
        image.data[:, :, reg.base_row:reg.base_row + K * reg.n_blocks, :T] = block.reshape(C, B, K * reg.n_blocks, T)
    else:
        se = reg.slot_cols * dev.col_elems
        wp = np.zeros((reg.n_row_blocks * reg.slots * L, se), F32)
        wp[: reg.n_out, : reg.n_in] = w
        block = wp.reshape(reg.n_row_blocks, reg.slots, B, C, se).transpose(3, 2, 0, 1, 4)  # [C, B, NRB, slots, SE]
        image.data[:, :, reg.base_row:reg.base_row + reg.n_row_blocks, : reg.slots * se] = \
            block.reshape(C, B, reg.n_row_blocks, reg.slots * se)


def build_image(placement: Placement, params: dict[str, np.ndarray]) -> MemoryImage:
    """A memory image holding every placed weight matrix and table (KV regions start at zero)."""
    image = MemoryImage.empty(placement.dev, placement.rows_used)
    for reg in placement.regions:
        if isinstance(reg, GemvRegion):
            write_region(image, reg, region_matrix(reg, params))
    return image


def asic_store(placement: Placement, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vectors the ASIC keeps (norm gains, biases); matrices are not in it."""
    return {name: np.asarray(params[name], F32).reshape(-1) for name in placement.asic_params}


# --------------------------------------------------------------------------- tensors


# --------------------------------------------------------------------------- PIM ops


def _channels(mask: int) -> list[int]:
    return [c for c in range(63) if mask >> c & 1]


@dataclass
class PimState:
    """Per-channel state that outlives an op: the global buffer and the MAC registers."""

    gb: np.ndarray    # [C, global-buffer elements]
    acc: np.ndarray   # [C, B] float64 (exact sums, rounded when read)

    @classmethod
    def empty(cls, dev: Device) -> "PimState":
        return cls(np.zeros((dev.channels, dev.gb_cols * dev.col_elems), np.float64),
                   np.zeros((dev.channels, dev.banks), np.float64))


def run_pim(op: PimOp, image: MemoryImage, tensors: Tensors, names: tuple[str, ...], state: PimState) -> None:
    """Execute one PimOp's instructions on the image and the channels' state."""
    dev = image.dev
    E = dev.col_elems
    gb, acc = state.gb, state.acc
    d = op.data
    cur = {"gb": 0, "acc": 0, "wr": 0, "rd": 0}

    def take(kind: str, n: int) -> np.ndarray:
        index = getattr(d, f"{kind}_index") if d is not None else None
        if index is None or cur[kind] + n > len(index):
            raise ExecutionError(f"op {op.id} ({op.name}): instructions need more {kind} data than its binding holds")
        out = index[cur[kind]:cur[kind] + n]
        cur[kind] += n
        return out

    for ins in op.instructions:
        opc, mask, cmd = int(ins[F_OP]), int(ins[F_CHMASK]), int(ins[F_CMD])
        chans = _channels(mask)
        if opc in (OP_PRECHARGE, OP_BARRIER):
            continue
        name = names[cmd]
        if opc == OP_RAW:
            if name not in ("ACT16", "ACT"):
                raise ExecutionError(f"op {op.id} ({op.name}): raw {name} has no defined effect on data")
            continue
        row, col, count, bank = int(ins[F_ROW]), int(ins[F_COL]), int(ins[F_COUNT]), int(ins[F_BANK])
        lo, hi = col * E, (col + count) * E
        if opc == OP_COLUMN and not 0 <= row < image.rows:
            raise ExecutionError(f"op {op.id} ({op.name}): row {row} is outside the image (rows 0..{image.rows - 1})")
        if opc == OP_SIMPLE and name == "WRGB":
            idx = take("gb", count)
            src = tensors.full(d.gb_src)
            vals = np.where(idx >= 0, src[np.maximum(idx, 0)], 0.0).reshape(-1)
            gb[chans, lo:hi] = vals
        elif opc == OP_SIMPLE and name == "RDMAC16":
            dst = tensors.full(d.acc_dst)
            for c in chans:
                idx = take("acc", 1)[0]
                ok = idx >= 0
                dst[idx[ok]] = acc[c, ok]
                acc[c] = 0.0
        elif opc == OP_COLUMN and name == "MAC16":
            w = image.data[chans, :, row, lo:hi]                                   # [c, B, n]
            acc[chans] += np.einsum("cbn,cn->cb", w.astype(np.float64), gb[chans, lo:hi])
        elif opc == OP_COLUMN and name == "WR":
            src = tensors.full(d.wr_src)
            for c in chans:  # each channel its own data, channels ascending
                idx = take("wr", count).reshape(-1)
                ok = idx >= 0
                seg = image.data[c, bank, row, lo:hi]
                seg[ok] = src[idx[ok]]
        elif opc == OP_COLUMN and name == "RD":
            if len(chans) != 1:
                raise ExecutionError(f"op {op.id} ({op.name}): a read must name one channel")
            idx = take("rd", count).reshape(-1)
            ok = idx >= 0
            tensors.full(d.rd_dst)[idx[ok]] = image.data[chans[0], bank, row, lo:hi][ok]
        else:
            raise ExecutionError(f"op {op.id} ({op.name}): the executor does not model {name} instructions")


# --------------------------------------------------------------------------- ASIC ops


def run_asic(op: AsicOp, tensors: Tensors, position: int) -> None:
    """Compute one ASIC op with the reference's functions (fp32)."""
    r = [tensors.get(x) for x in op.reads]
    m, k = op.meta, op.kind
    if k == "reduce":
        out = np.zeros(len(r[0]), F32)
        for part in r:  # in order, fp32
            out += part
    elif k == "layernorm":
        out = R.layer_norm(r[0][None, :], r[1], r[2], m["eps"])[0]
    elif k == "rmsnorm":
        out = R.rms_norm(r[0][None, :], r[1], m["eps"])[0]
    elif k == "softmax":
        out = R.softmax(r[0].reshape(op.rows, -1)).reshape(-1)
    elif k == "gelu":
        out = R.gelu_tanh(r[0])
    elif k == "silu":
        out = R.silu(r[0])
    elif k == "mul":
        out = r[0] * r[1]
    elif k in ("residual_add", "bias_add"):
        out = r[0] + r[1]
    elif k == "scale":
        out = r[0] * F32(m["factor"])
    elif k == "rotary":
        dh = m["d_head"]
        cos, sin = R.rope_cos_sin(np.array([position]), dh, m["theta"])
        out = R.apply_rope(r[0].reshape(m["heads"], 1, dh), cos, sin).reshape(-1)
    elif k == "argmax":
        out = np.array([np.argmax(r[0])], F32)
    elif k == "convert":
        out = r[0].copy()
    else:
        raise ExecutionError(f"op {op.id} ({op.name}): unknown ASIC kind {k!r}")
    tensors.put(op.writes[0], np.asarray(out, F32))


def execute(program: Program, image: MemoryImage, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run every op in program order; returns the step's tensors (e.g. `logits`, `token`)."""
    if program.command_names != image.dev.command_names:
        raise ExecutionError("program was compiled for another command table than the image's device")
    tensors = Tensors(program.tensors, params, ExecutionError)
    state = PimState.empty(image.dev)
    for op in program.ops:
        if isinstance(op, PimOp):
            run_pim(op, image, tensors, program.command_names, state)
        elif isinstance(op, AsicOp):
            run_asic(op, tensors, program.position)
        elif not isinstance(op, IoOp):
            raise ExecutionError(f"op {op!r} is not a PimOp, AsicOp or IoOp")
    return tensors.t


def decode_tokens(compiler, image: MemoryImage, params: dict[str, np.ndarray], tokens) -> np.ndarray:
    """Logits [N, vocab] of feeding `tokens` one decode step at a time from position 0."""
    store = asic_store(compiler.placement, params)
    out = []
    for pos, tok in enumerate(tokens):
        t = execute(compiler.compile(pos, int(tok)), image, store)
        out.append(t["logits"].copy())
    return np.stack(out)
