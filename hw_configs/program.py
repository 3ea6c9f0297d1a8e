"""A compiled decode step: the one contract between `mapping/` (which writes it) and `sim/`
(which times it and runs it on numbers).

Plain data only (frozen dataclasses, tuples, numpy arrays), so either side can use it without
importing the other. A Program is a list of ops in a valid issue order, each naming the ops it
depends on; dependencies are per tile or chunk, so a system model may overlap ASIC work on one
tile with PIM work on the next.

Op kinds
- PimOp:  DRAM/PIM work on a set of channels: an `[n, N_FIELDS]` instruction block in the format
          of `hw_configs.isa` (its OPID field equals the op's `id`). GEMV tiles (global-buffer
          fill, row passes, MAC-register reads), KV-cache writes, embedding reads.
- AsicOp: vector work on the ASIC: a `kind` from ASIC_KINDS with element counts. `reads` and
          `writes` name tensors (`"L3.q"`, `"L3.scores.h2"`) so a functional core can follow data.
- IoOp:   a transfer over the channels' external links that is not a DRAM command (data the
          engine times as commands, WRGB or RDMAC16, is inside PimOps, not here).

`tag` is the breakdown category a report charges the op's time and energy to (TAGS).

Data (for a functional executor): a PimOp's `data` (DataBinding) says which tensor elements its
register-path and data commands carry; its MAC16 operands come from the memory image at the
addresses the instructions name. Tensors are flat fp32 vectors named in `Program.tensors`
(name -> length). A reference in `reads`/`writes` is a tensor name, optionally with an element
slice `name[lo:hi]`, or `param:NAME[lo:hi]` for a parameter vector resident in the ASIC (norm
gains, biases). ASIC op semantics per kind are documented in ASIC_SEMANTICS.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hw_configs.isa import F_OPID, N_FIELDS

TAGS = ("embedding", "qkv", "attention_scores", "softmax", "attention_context", "out_proj", "mlp",
        "lm_head", "norms", "reductions", "residual", "kv_write", "data_movement", "sampling")
ASIC_KINDS = ("reduce", "layernorm", "rmsnorm", "softmax", "gelu", "silu", "mul", "residual_add",
              "bias_add", "rotary", "scale", "argmax", "convert")
IO_DIRECTIONS = ("asic_to_pim", "pim_to_asic", "host_to_asic", "asic_to_host")
# What each ASIC kind computes from its reads into its writes (all fp32, elementwise over the
# slice unless said otherwise); `meta` keys in brackets.
ASIC_SEMANTICS = {
    "reduce": "w = r0 + r1 + ... (partial sums, added in read order)",
    "layernorm": "w = LayerNorm(r0) with gain r1 and bias r2, epsilon [eps]",
    "rmsnorm": "w = RMSNorm(r0) with gain r1, epsilon [eps]",
    "softmax": "w = softmax of r0 viewed as [rows, elements / rows], per row",
    "gelu": "w = GELU (tanh approximation) of r0",
    "silu": "w = r0 * sigmoid(r0)",
    "mul": "w = r0 * r1",
    "residual_add": "w = r0 + r1",
    "bias_add": "w = r0 + r1",
    "rotary": "w = r0 viewed as [heads, [d_head]] rotated (rotate-half) at the program's position, base [theta]",
    "scale": "w = r0 * [factor]",
    "argmax": "w[0] = index of the largest element of r0 (first on ties)",
    "convert": "w = r0 (a copy into another tensor)",
}


@dataclass(frozen=True, eq=False)
class DataBinding:
    """The data a PimOp's commands move, as element indices into flat tensors (-1: none).

    E = elements per column (column_bytes / element bytes), B = banks per channel. Index arrays
    are consumed in instruction order; for an instruction whose mask holds several channels,
    WRGB data are the same on every channel, while WR and MAC-register reads take their rows of
    `wr_index` / `acc_index` per channel, channels ascending (each channel its own data).
    - WRGB (COL = first global-buffer column, COUNT columns): global-buffer lane e of column c
      gets gb_src[gb_index[n, e]] (0 when -1), one row of gb_index per column. A MAC16 at row
      column c multiplies that column with global-buffer column c (AiM streams both in step).
    - RDMAC16: the B MAC registers go to acc_dst[acc_index[n, b]] (discarded when -1); a read
      clears the registers (they accumulate from 0 again).
    - WR (COUNT columns): lane e of each column gets wr_src[wr_index[n, e]], COUNT rows per
      channel of the mask; -1 lanes are masked (the stored element is kept).
    - RD (COUNT columns): rd_dst[rd_index[n, e]] gets lane e (-1: not needed).
    """

    gb_src: str = ""
    gb_index: np.ndarray | None = None     # [WRGB columns, E] int32
    acc_dst: str = ""
    acc_index: np.ndarray | None = None    # [RDMAC16 channel-reads, B] int32
    wr_src: str = ""
    wr_index: np.ndarray | None = None     # [WR columns, E] int32
    rd_dst: str = ""
    rd_index: np.ndarray | None = None     # [RD columns, E] int32


@dataclass(frozen=True)
class PimOp:
    id: int
    name: str
    tag: str
    deps: tuple[int, ...]
    chmask: int                      # channels the block touches (bit c = channel c)
    instructions: np.ndarray = field(repr=False)  # [n, N_FIELDS] int64, OPID column == id
    macs: int = 0                    # multiply-accumulates the op performs (bf16 products)
    kind: Literal["gemv", "kv_write", "read", "write"] = "gemv"
    layer: int = -1                  # -1: not inside a layer (embedding, LM head)
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    data: DataBinding | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class AsicOp:
    id: int
    name: str
    tag: str
    deps: tuple[int, ...]
    kind: str                        # one of ASIC_KINDS
    elements: int                    # elements the op produces (its vector length)
    rows: int = 1                    # independent vectors (e.g. heads for softmax)
    inputs: int = 1                  # operands combined per element (e.g. partial sums reduced)
    layer: int = -1
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class IoOp:
    id: int
    name: str
    tag: str
    deps: tuple[int, ...]
    nbytes: int
    direction: str                   # one of IO_DIRECTIONS
    chmask: int = 0                  # channels whose links carry it (0: the host link)
    layer: int = -1
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


Op = PimOp | AsicOp | IoOp
# Ordering rule: PimOps that share a channel run on it in program order (the global buffer and
# the MAC registers are per-channel state); `deps` are data dependencies, including a global
# buffer filled by an earlier op and read by a later one.


@dataclass(frozen=True)
class Program:
    """One decode step (the token at `position`) of `model` on `hardware`, as ops in issue order."""

    ops: tuple[Op, ...]
    command_names: tuple[str, ...]   # the standard's command table that instruction ids index
    model: str
    hardware: str
    position: int
    strategy: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    tensors: dict[str, int] = field(default_factory=dict, compare=False, repr=False)  # name -> elements

    def pim_instructions(self) -> np.ndarray:
        """Every PimOp's instruction block in program order: the PIM part, timed back to back."""
        blocks = [op.instructions for op in self.ops if isinstance(op, PimOp)]
        return np.concatenate(blocks) if blocks else np.zeros((0, N_FIELDS), np.int64)

    def check(self) -> None:
        """Ids are 0..n-1 in order, dependencies point backwards, tags and kinds are known."""
        for i, op in enumerate(self.ops):
            if op.id != i:
                raise ValueError(f"op {i} ({op.name}) has id {op.id}; ids must be 0..n-1 in order")
            if op.tag not in TAGS:
                raise ValueError(f"op {i} ({op.name}): unknown tag '{op.tag}'; expected one of {TAGS}")
            bad = [d for d in op.deps if not 0 <= d < i]
            if bad:
                raise ValueError(f"op {i} ({op.name}): dependencies {bad} do not point to earlier ops")
            if isinstance(op, AsicOp) and op.kind not in ASIC_KINDS:
                raise ValueError(f"op {i} ({op.name}): unknown ASIC kind '{op.kind}'")
            if isinstance(op, IoOp) and op.direction not in IO_DIRECTIONS:
                raise ValueError(f"op {i} ({op.name}): unknown direction '{op.direction}'")
            if isinstance(op, PimOp):
                ins = op.instructions
                if ins.ndim != 2 or ins.shape[1] != N_FIELDS or ins.dtype != np.int64:
                    raise ValueError(f"op {i} ({op.name}): instructions must be [n, {N_FIELDS}] int64")
                if len(ins) and not np.all(ins[:, F_OPID] == i):
                    raise ValueError(f"op {i} ({op.name}): instruction OPID column must equal the op id")


# --------------------------------------------------------------------------- tensors of a step

_REF = re.compile(r"^(?P<name>[^\[\]]+)(\[(?P<lo>\d+):(?P<hi>\d+)\])?$")


def parse_ref(ref: str, error: type[Exception] = ValueError) -> tuple[str, int | None, int | None]:
    """`name` or `name[lo:hi]` -> (name, lo, hi) (None, None without a slice)."""
    m = _REF.match(ref)
    if not m:
        raise error(f"bad tensor reference {ref!r}: expected 'name' or 'name[lo:hi]'")
    lo = m.group("lo")
    return m.group("name"), (int(lo) if lo is not None else None), (int(m.group("hi")) if lo is not None else None)


class Tensors:
    """A step's flat fp32 tensors (`Program.tensors`) plus the ASIC parameter store (`param:NAME`),
    read and written by the references ops name; `error` is the exception an executor raises."""

    def __init__(self, sizes: dict[str, int], params: dict[str, np.ndarray], error: type[Exception] = ValueError):
        self.t = {name: np.zeros(n, np.float32) for name, n in sizes.items()}
        self.params = params
        self.error = error

    def full(self, name: str) -> np.ndarray:
        if name.startswith("param:"):
            key = name[6:]
            if key not in self.params:
                raise self.error(f"parameter {key!r} is not in the ASIC parameter store")
            return self.params[key]
        if name not in self.t:
            raise self.error(f"tensor {name!r} is not declared in the program")
        return self.t[name]

    def get(self, ref: str) -> np.ndarray:
        name, lo, hi = parse_ref(ref, self.error)
        arr = self.full(name)
        return arr if lo is None else arr[lo:hi]

    def put(self, ref: str, value: np.ndarray) -> None:
        name, lo, hi = parse_ref(ref, self.error)
        arr = self.full(name)
        lo, hi = (0, len(arr)) if lo is None else (lo, hi)
        if hi > len(arr) or hi - lo != np.size(value):
            raise self.error(f"writing {np.size(value)} elements to {ref!r} (tensor of {len(arr)})")
        arr[lo:hi] = value
