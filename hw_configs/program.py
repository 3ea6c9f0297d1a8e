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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hw_configs.isa import F_OPID, N_FIELDS

TAGS = ("embedding", "qkv", "attention_scores", "softmax", "attention_context", "out_proj", "mlp",
        "lm_head", "norms", "reductions", "residual", "kv_write", "data_movement", "sampling")
ASIC_KINDS = ("reduce", "layernorm", "rmsnorm", "softmax", "gelu", "silu", "mul", "residual_add",
              "bias_add", "rotary", "scale", "argmax", "convert")
IO_DIRECTIONS = ("asic_to_pim", "pim_to_asic", "host_to_asic", "asic_to_host")


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
