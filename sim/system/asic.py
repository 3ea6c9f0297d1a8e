"""Cycles and dynamic energy of the ASIC's vector ops (one `AsicOp` at a time).

The unit (config `asic:`) has `lanes` lanes; each lane performs one elementary operation per cycle
(add, mul, fma, cmp, or an integer/bit op), fully pipelined, on operands from an SRAM buffer that
keeps up with the lanes. Idle lanes cost no dynamic energy. These are the model's assumptions: the
paper names the algorithms (REFERENCE 1) but not the microarchitecture.

An op has `elements` N per row (its vector length), `rows` R independent vectors and `inputs` I
operands per element. With L lanes:
    P = ceil(R*N / L)             lane passes of an elementwise op (rows packed into the lanes)
    C = ceil(N / L)               lane passes over one row
    D = ceil(log2(min(N, L)))     steps of the cross-lane reduction tree of one row
    B = R if N >= L else ceil(R / floor(L / N))   row groups, one after another (short rows share
                                  the lanes; their trees and scalar steps run side by side)
Building blocks, in operations per element (each op one lane-cycle; T = exp_taylor_order,
Nr = recip_newton_iterations, Ns = rsqrt_newton_iterations):
    EXP = T + 7    clamp to [-86, 86] (2 cmp); k = rint(x * log2 e) (mul + int); r = x - k ln2 as two
                   fma (ln2 = hi + lo); Horner of sum_{i<=T} r^i / i! (T fma); * 2^k (int: exponent add)
    RCP = 1 + 2Nr  seed = magic - bits(d) (int); per iteration e = 1 - d*y, y = y + y*e (2 fma)
    RSQ = 3 + 3Ns  seed = 0x5f3759df - (bits(x) >> 1) (2 int); h = x/2 (mul); per step y*y (mul),
                   t = 1.5 - h*y*y (fma), y*t (mul)
The per-kind formulas are next to each kind below; hw_configs/pim-gpt.yaml derives them in comments.
Every op also costs `op_overhead_cycles` (first operand read, last result written).

The same walk yields the operation counts (for energy): a formula's cycles times L bound its
counts, and with L = 1 cycles equal the arithmetic counts exactly (tests check both).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hw_configs.program import ASIC_KINDS, AsicOp
from sim.config import ASIC_OP_TYPES, ConfigError, HardwareConfig

ELEMENT_BYTES = {"fp32": 4, "bf16": 2}
ARITH_TYPES = tuple(t for t in ASIC_OP_TYPES if t != "sram")


@dataclass(frozen=True)
class Knobs:
    """The algorithm knobs that set the cost of exp, 1/x and 1/sqrt(x)."""

    exp_order: int
    recip_iters: int
    rsqrt_iters: int


def exp_ops(k: Knobs) -> dict[str, int]:
    """EXP: range reduction + Taylor series of order T (see the module docstring)."""
    return {"cmp": 2, "mul": 1, "int": 2, "fma": k.exp_order + 2}


def rcp_ops(k: Knobs) -> dict[str, int]:
    """RCP: bit-trick seed + Nr Newton-Raphson iterations."""
    return {"int": 1, "fma": 2 * k.recip_iters}


def rsq_ops(k: Knobs) -> dict[str, int]:
    """RSQ: fast inverse square root seed + Ns Newton steps."""
    return {"int": 2, "mul": 1 + 2 * k.rsqrt_iters, "fma": k.rsqrt_iters}


def _sum(*parts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in parts:
        for t, n in p.items():
            out[t] = out.get(t, 0) + n
    return out


def _times(d: dict[str, int], n: int) -> dict[str, int]:
    return {t: c * n for t, c in d.items()}


def _len(d: dict[str, int]) -> int:
    """Lane-cycles of a sequence of operations (one cycle each)."""
    return sum(d.values())


@dataclass(frozen=True)
class Shape:
    n: int      # elements per row
    r: int      # rows
    i: int      # inputs per element
    lanes: int

    @property
    def total(self) -> int:
        return self.n * self.r

    @property
    def p(self) -> int:
        return -(-self.total // self.lanes)

    @property
    def c(self) -> int:
        return -(-self.n // self.lanes)

    @property
    def m(self) -> int:
        """Partials entering one row's cross-lane tree."""
        return min(self.n, self.lanes)

    @property
    def d(self) -> int:
        return (self.m - 1).bit_length()  # ceil(log2 m), 0 for m = 1

    @property
    def rows_per_group(self) -> int:
        return 1 if self.n >= self.lanes else min(self.r, self.lanes // self.n)

    @property
    def b(self) -> int:
        return -(-self.r // self.rows_per_group)


@dataclass(frozen=True)
class Work:
    cycles: int                 # ASIC cycles, without the per-op overhead
    ops: dict[str, int]         # elementary operations performed, by type (ASIC_OP_TYPES)


def _elementwise(s: Shape, per_element: dict[str, int], reads: int, writes: int = 1) -> Work:
    """P passes of the same per-element sequence."""
    ops = _times(per_element, s.total)
    ops["sram"] = s.total * (reads + writes)
    return Work(s.p * _len(per_element), ops)


def _binary(s: Shape, op: str) -> Work:
    """I operands combined per element: I-1 operations; I <= 2 is one (the second operand implied)."""
    k = max(s.i - 1, 1)
    return _elementwise(s, {op: k}, reads=max(s.i, 2))


# ---- the kinds: cycles formula next to each ------------------------------------------------------

def _reduce(s: Shape, k: Knobs) -> Work:
    # P * (I - 1): partial-sum reduction, I - 1 adds per element
    if s.i < 2:
        raise ValueError(f"reduce needs inputs >= 2 partial sums, got {s.i}")
    return _elementwise(s, {"add": s.i - 1}, reads=s.i)


def _mul(s: Shape, k: Knobs) -> Work:
    # P * max(I - 1, 1)
    return _binary(s, "mul")


def _add(s: Shape, k: Knobs) -> Work:
    # residual_add, bias_add: P * max(I - 1, 1)
    return _binary(s, "add")


def _scale(s: Shape, k: Knobs) -> Work:
    # P: one mul by a constant
    return _elementwise(s, {"mul": 1}, reads=1)


def _convert(s: Shape, k: Knobs) -> Work:
    # P: one rounding (fp32 <-> bf16 is an integer add and mask on the bit pattern)
    return _elementwise(s, {"int": 1}, reads=1)


def _rotary(s: Shape, k: Knobs) -> Work:
    # 2P: per pair (a, b): a*c - b*s, a*s + b*c = 2 mul + 2 fma; cos/sin read from a table
    if s.n % 2:
        raise ValueError(f"rotary rotates pairs; elements per row must be even, got {s.n}")
    return _elementwise(s, {"mul": 1, "fma": 1}, reads=2)


def _gelu(s: Shape, k: Knobs) -> Work:
    # P * (EXP + RCP + 5): GELU(x) = x / (1 + exp(x (a + b x^2))), a = -2 sqrt(2/pi), b = 0.044715 a
    # (the tanh form, 0.5 (1 + tanh u) = 1 / (1 + exp(-2u))): x*x (mul), a + b x^2 (fma), *x (mul),
    # exp, 1 + w (add), reciprocal, x * s (mul)
    return _elementwise(s, _sum({"mul": 3, "fma": 1, "add": 1}, exp_ops(k), rcp_ops(k)), reads=1)


def _silu(s: Shape, k: Knobs) -> Work:
    # P * (EXP + RCP + 3): SiLU(x) = x / (1 + exp(-x)): -x (int: sign flip), exp, 1 + w (add),
    # reciprocal, x * s (mul)
    return _elementwise(s, _sum({"int": 1, "add": 1, "mul": 1}, exp_ops(k), rcp_ops(k)), reads=1)


def _rowwise(s: Shape, per_element: dict[str, int], tree: dict[str, int], scalar: dict[str, int],
             reads: int, writes: int) -> Work:
    """B groups x (C passes of the per-element sequence + D steps per tree op + the scalar chain)."""
    cycles = s.b * (s.c * _len(per_element) + s.d * _len(tree) + _len(scalar))
    ops = _sum(_times(per_element, s.total), _times(tree, s.r * (s.m - 1)), _times(scalar, s.r))
    ops["sram"] = s.total * (reads + writes)
    return Work(cycles, ops)


def _softmax(s: Shape, k: Knobs) -> Work:
    # B * (C * (EXP + 4) + 2D + RCP): max (C cmp + D tree cmp); x - max (add), exp, sum (add):
    # C * (EXP + 2) + D tree adds; 1 / sum once per row (RCP); * (1 / sum) (C mul)
    # SRAM: x read twice, e written and read, y written
    return _rowwise(s, _sum({"cmp": 1, "add": 2, "mul": 1}, exp_ops(k)), {"cmp": 1, "add": 1},
                    rcp_ops(k), reads=3, writes=2)


def _layernorm(s: Shape, k: Knobs) -> Work:
    # B * (5C + 2D + 3 + RSQ): sum x (C add + D), mean = sum * (1/N) (mul), d = x - mean (C add),
    # sum d^2 (C fma + D), var = sum * (1/N) (mul), + eps (add), r = RSQ, d * r (C mul), * g + b (C fma)
    # SRAM: x read twice, d written and read, g and b read, y written
    return _rowwise(s, {"add": 2, "fma": 2, "mul": 1}, {"add": 2}, _sum({"mul": 2, "add": 1}, rsq_ops(k)),
                    reads=5, writes=2)


def _rmsnorm(s: Shape, k: Knobs) -> Work:
    # B * (3C + D + 2 + RSQ): sum x^2 (C fma + D), * (1/N) (mul), + eps (add), r = RSQ, x * r * g (2C mul)
    # SRAM: x read twice, g read, y written
    return _rowwise(s, {"fma": 1, "mul": 2}, {"add": 1}, _sum({"mul": 1, "add": 1}, rsq_ops(k)),
                    reads=3, writes=1)


def _argmax(s: Shape, k: Knobs) -> Work:
    # B * (2C + 2D): compare + select (value, index) per element and per tree step
    # SRAM: x read once, one index written per row
    w = _rowwise(s, {"cmp": 1, "int": 1}, {"cmp": 1, "int": 1}, {}, reads=1, writes=0)
    return Work(w.cycles, {**w.ops, "sram": s.total + s.r})


KIND_WORK = {
    "reduce": _reduce, "layernorm": _layernorm, "rmsnorm": _rmsnorm, "softmax": _softmax,
    "gelu": _gelu, "silu": _silu, "mul": _mul, "residual_add": _add, "bias_add": _add,
    "rotary": _rotary, "scale": _scale, "argmax": _argmax, "convert": _convert,
}
assert set(KIND_WORK) == set(ASIC_KINDS), "every ASIC kind of the Program contract needs a cost formula"

# Vectors of one row that must sit in the SRAM at once (kinds that read their row more than once;
# the others stream).
RESIDENT_VECTORS = {"softmax": 1, "layernorm": 3, "rmsnorm": 2}


class AsicModel:
    """Cycles (ASIC and DRAM clock) and dynamic energy of AsicOps on the configured vector unit."""

    def __init__(self, cfg: HardwareConfig):
        if cfg.asic is None:
            raise ConfigError(cfg.source, "asic", "this hardware config has no asic section")
        self.cfg = cfg.asic
        self.source = cfg.source
        a = cfg.asic
        self.knobs = Knobs(a.exp_taylor_order, a.recip_newton_iterations, a.rsqrt_newton_iterations)
        self.op_pj = a.op_pj()
        self.element_bytes = ELEMENT_BYTES[a.dtype]
        self._ns_per_cycle = Fraction(1000) / Fraction(str(a.clock_mhz))
        self._cache: dict[tuple, Work] = {}

    # ---- work -------------------------------------------------------------------------------------
    def work(self, op: AsicOp) -> Work:
        key = (op.kind, op.elements, op.rows, op.inputs)
        w = self._cache.get(key)
        if w is None:
            w = self._cache[key] = self._work(op)
        return w

    def _work(self, op: AsicOp) -> Work:
        where = f"ASIC op {op.id} ({op.name})"
        if op.kind not in KIND_WORK:
            raise ValueError(f"{where}: unknown kind '{op.kind}'; expected one of {ASIC_KINDS}")
        sizes = []
        for name in ("elements", "rows", "inputs"):
            v = getattr(op, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}")
            sizes.append(int(v))
        elements, rows, inputs = sizes
        if elements % rows:
            raise ValueError(f"{where}: {elements} elements do not split into {rows} rows of equal length")
        s = Shape(elements // rows, rows, inputs, self.cfg.lanes)  # AsicOp.elements counts every row
        if op.kind in RESIDENT_VECTORS:
            need = s.rows_per_group * s.n * self.element_bytes * RESIDENT_VECTORS[op.kind]
            if need > self.cfg.sram_bytes:
                raise ValueError(f"{where}: {op.kind} of {s.n} elements keeps {RESIDENT_VECTORS[op.kind]} "
                                 f"vector(s) of {self.cfg.dtype} in SRAM = {need} bytes > asic.sram_bytes "
                                 f"= {self.cfg.sram_bytes} ({self.source})")
        try:
            return KIND_WORK[op.kind](s, self.knobs)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def op_counts(self, op: AsicOp) -> dict[str, int]:
        """Elementary operations of the op by type (ASIC_OP_TYPES; 'sram' = element accesses)."""
        ops = self.work(op).ops
        return {t: ops.get(t, 0) for t in ASIC_OP_TYPES}

    # ---- time -------------------------------------------------------------------------------------
    def cycles(self, op: AsicOp) -> int:
        """ASIC clock cycles of one op, its fixed overhead included."""
        return self.work(op).cycles + self.cfg.op_overhead_cycles

    def to_dram_cycles(self, asic_cycles: int, tck_ns: float) -> int:
        """ASIC cycles as DRAM command-clock cycles: exact rational conversion, rounded up."""
        t = asic_cycles * self._ns_per_cycle / Fraction(str(tck_ns))
        return math.ceil(t)

    def dram_cycles(self, op: AsicOp, tck_ns: float) -> int:
        return self.to_dram_cycles(self.cycles(op), tck_ns)

    def time_ns(self, op: AsicOp) -> float:
        return float(self.cycles(op) * self._ns_per_cycle)

    # ---- energy -----------------------------------------------------------------------------------
    def energy_pj(self, op: AsicOp) -> dict[str, float]:
        """Dynamic energy of one op by operation type, pJ (leakage: `leakage_pj`, a function of time)."""
        counts = self.op_counts(op)
        return {t: counts[t] * self.op_pj[t] for t in ASIC_OP_TYPES}

    def dynamic_pj(self, op: AsicOp) -> float:
        return sum(self.energy_pj(op).values())

    def leakage_pj(self, duration_ns: float) -> float:
        """Leakage over a stretch of time (the unit leaks whether busy or idle): mW x ns = pJ."""
        if duration_ns < 0:
            raise ValueError(f"duration must be >= 0 ns, got {duration_ns}")
        return self.cfg.leakage_mw * duration_ns
