"""The functional core: runs the same Program the timing path times, on a bf16 memory image.

PIM ops execute their instruction blocks in the numba kernels (kernels.py): MAC16 reads the
row named by the instruction in every bank of every masked channel, so a weight placed
elsewhere gives other numbers. ASIC ops compute with `AsicNumerics` (the configured dtype, Taylor
order, Newton-Raphson iterations, lane order). The image comes from outside (sim/compose.py
builds it from the mapping's placement); this module sees Programs and arrays only.

Tensors are flat float32 vectors holding values of the ASIC dtype; `param:NAME` references read
the ASIC parameter store (norm gains, biases), rounded to the dtype when used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw_configs.program import AsicOp, IoOp, PimOp, Program, Tensors
from sim.system.asic_math import AsicNumerics

from . import emulate, kernels

ERRORS = {
    kernels.ERR_ROW: "row {detail} is outside the image",
    kernels.ERR_BINDING: "the instructions need more data than the op's binding holds",
    kernels.ERR_COMMAND: "command id {detail} has no modelled effect on data",
    kernels.ERR_RD_CHANNELS: "a read must name exactly one channel",
    kernels.ERR_RAW: "a raw command other than ACT16/ACT has no defined effect on data",
    kernels.ERR_COLUMNS: "columns run past the row or the global buffer",
    kernels.ERR_BANK: "the bank is outside the channel",
}
EMPTY_F32 = np.zeros(0, np.float32)


class FunctionalError(ValueError):
    """A program or image the functional core cannot run."""


# --------------------------------------------------------------------------- memory image


@dataclass
class PimImage:
    """bf16 bit patterns of rows [0, rows) of every bank: data[channel, row, element, bank] (uint16)."""

    data: np.ndarray

    @classmethod
    def from_fp32(cls, values: np.ndarray) -> "PimImage":
        """From float values laid out [channel, bank, row, element], each rounded to bf16 (nearest-even)."""
        values = np.ascontiguousarray(values, np.float32)
        C, B, R, RE = values.shape
        out = np.empty((C, R, RE, B), np.uint16)
        kernels.bf16_image_from_fp32(values, out)
        return cls(out)

    def values(self) -> np.ndarray:
        """float32 values [channel, bank, row, element] (the mapping's layout)."""
        return emulate.from_bits(self.data).transpose(0, 3, 1, 2)

    def copy(self) -> "PimImage":
        return PimImage(self.data.copy())

    @property
    def rows(self) -> int:
        return self.data.shape[1]


# --------------------------------------------------------------------------- numerics


@dataclass(frozen=True)
class PimNumerics:
    """The numeric choices of one config: the PIM's accumulation and the ASIC's datapath."""

    asic: AsicNumerics
    accumulate_dtype: str = "fp32"   # pim.accumulate_dtype
    adder_tree: str = "pairwise"     # pim.adder_tree
    gb_elems: int = 1024             # global-buffer elements per channel (pim-gpt: 2 KB of bf16, REFERENCE 2)

    def __post_init__(self):
        if self.accumulate_dtype not in ("fp32", "bf16"):
            raise FunctionalError(f"accumulate_dtype must be fp32 or bf16, got '{self.accumulate_dtype}'")
        if self.adder_tree not in ("pairwise", "sequential"):
            raise FunctionalError(f"adder_tree must be pairwise or sequential, got '{self.adder_tree}'")

    @classmethod
    def from_config(cls, cfg) -> "PimNumerics":
        """From a HardwareConfig with `pim` and `asic` sections."""
        if cfg.pim is None or cfg.asic is None:
            raise FunctionalError(f"{cfg.source}: the functional core needs `pim` and `asic` sections")
        if cfg.pim.mac_dtype != "bf16":
            raise FunctionalError(f"{cfg.source}: pim.mac_dtype '{cfg.pim.mac_dtype}': the functional core "
                                  "models bf16 memory and MAC operands only")
        return cls(AsicNumerics.from_config(cfg.asic), cfg.pim.accumulate_dtype, cfg.pim.adder_tree,
                   cfg.pim.global_buffer_bytes // 2)


# --------------------------------------------------------------------------- tensors


# --------------------------------------------------------------------------- executor


def _index(a, width: int) -> np.ndarray:
    if a is None or len(a) == 0:
        return np.zeros((0, width), np.int32)
    return np.ascontiguousarray(a, np.int32)


def run_asic(op: AsicOp, t: Tensors, position: int, a: AsicNumerics) -> None:
    """One ASIC op with the configured approximations and dtype."""
    r = [t.get(x) for x in op.reads]
    m, k = op.meta, op.kind
    if k == "reduce":
        out = a.reduce(r)
    elif k == "layernorm":
        out = a.layernorm(r[0][None, :], r[1], r[2], m["eps"])[0]
    elif k == "rmsnorm":
        out = a.rmsnorm(r[0][None, :], r[1], m["eps"])[0]
    elif k == "softmax":
        out = a.softmax(r[0].reshape(op.rows, -1)).reshape(-1)
    elif k == "gelu":
        out = a.gelu(r[0])
    elif k == "silu":
        out = a.silu(r[0])
    elif k == "mul":
        out = a.mul(a.rnd(r[0]), a.rnd(r[1]))
    elif k in ("residual_add", "bias_add"):
        out = a.add(a.rnd(r[0]), a.rnd(r[1]))
    elif k == "scale":
        out = a.scale(r[0], m["factor"])
    elif k == "rotary":
        out = a.rotary(r[0].reshape(m["heads"], m["d_head"]), position, m["theta"]).reshape(-1)
    elif k == "argmax":
        out = np.array([np.argmax(r[0])], np.float32)
    elif k == "convert":
        out = a.rnd(r[0])
    else:
        raise FunctionalError(f"op {op.id} ({op.name}): unknown ASIC kind {k!r}")
    t.put(op.writes[0], np.asarray(out, np.float32))


class FunctionalExecutor:
    """Runs Programs on one image with one set of numerics; the image persists across steps
    (the KV cache lives in it). backend 'numba' (kernels.py) or 'numpy' (emulate.py)."""

    def __init__(self, image: PimImage, params: dict[str, np.ndarray], numerics: PimNumerics,
                 backend: str = "numba"):
        if backend not in ("numba", "numpy"):
            raise FunctionalError(f"backend must be numba or numpy, got '{backend}'")
        self.image, self.numerics = image, numerics
        self.params = {k: np.asarray(v, np.float32).reshape(-1) for k, v in params.items()}
        self.block = kernels.run_block if backend == "numba" else emulate.run_block
        self._names: tuple[str, ...] | None = None
        self._cmd_ids = None

    def _commands(self, names: tuple[str, ...]) -> np.ndarray:
        if names != self._names:
            self._cmd_ids = np.array([names.index(c) if c in names else -2 for c in kernels.KERNEL_COMMANDS],
                                     np.int64)
            self._names = names
        return self._cmd_ids

    def run(self, program: Program) -> dict[str, np.ndarray]:
        """Execute every op in program order; the step's tensors (e.g. `logits`, `token`)."""
        img = self.image.data
        C, _, _, B = img.shape
        if "elements_per_column" not in program.meta:
            raise FunctionalError("the program does not say how many elements a column holds "
                                  "(meta['elements_per_column'])")
        E = int(program.meta["elements_per_column"])
        if img.shape[2] % E:
            raise FunctionalError(f"image rows of {img.shape[2]} elements are not whole columns of {E}")
        if int(program.meta.get("banks", B)) != B:
            raise FunctionalError(f"program for {program.meta.get('banks')} banks, image has {B}")
        cmd_ids = self._commands(program.command_names)
        num = self.numerics
        acc_bf16, pairwise = num.accumulate_dtype == "bf16", num.adder_tree == "pairwise"
        asic_bf16 = num.asic.dtype == "bf16"
        gb = np.zeros((C, num.gb_elems), np.float32)
        acc = np.zeros((C, B), np.float32)
        err = np.zeros(2, np.int64)
        t = Tensors(program.tensors, self.params, FunctionalError)
        full = t.full
        for op in program.ops:
            if isinstance(op, PimOp):
                d = op.data
                if d is None:
                    raise FunctionalError(f"op {op.id} ({op.name}): a PimOp without a data binding")
                ins = op.instructions
                if not ins.flags.writeable:  # one compiled signature for all blocks
                    ins = ins.copy()
                code = self.block(
                    ins, cmd_ids, E, img, gb, acc,
                    full(d.gb_src) if d.gb_src else EMPTY_F32, _index(d.gb_index, E),
                    full(d.acc_dst) if d.acc_dst else EMPTY_F32, _index(d.acc_index, B),
                    full(d.wr_src) if d.wr_src else EMPTY_F32, _index(d.wr_index, E),
                    full(d.rd_dst) if d.rd_dst else EMPTY_F32, _index(d.rd_index, E),
                    acc_bf16, pairwise, asic_bf16, err)
                if code != kernels.OK:
                    msg = ERRORS[code].format(detail=int(err[1]))
                    raise FunctionalError(f"op {op.id} ({op.name}), instruction {int(err[0])}: {msg} "
                                          f"(image rows 0..{img.shape[1] - 1})")
            elif isinstance(op, AsicOp):
                run_asic(op, t, program.position, num.asic)
            elif not isinstance(op, IoOp):
                raise FunctionalError(f"op {op!r} is not a PimOp, AsicOp or IoOp")
        return t.t


def decode_tokens(compile_step, executor: FunctionalExecutor, tokens) -> np.ndarray:
    """Logits [N, vocab] of feeding `tokens` one decode step at a time from position 0;
    compile_step(position, token) -> Program."""
    return np.stack([executor.run(compile_step(pos, int(tok)))["logits"].copy() for pos, tok in enumerate(tokens)])
