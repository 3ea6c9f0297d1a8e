"""The ASIC's algorithms on numbers (numpy), step for step as `sim.system.asic` counts them, in
fp32 or in bf16 emulated by round-to-nearest-even after every operation.

Arithmetic model. Values are float32 arrays holding values of the dtype. Every operation (add,
mul, fma) is evaluated in float64 and rounded once to the dtype: products and fma of dtype values
are exact in float64, and a float64 sum is exact or off by < 2^-53 relative, so each operation's
error is within u (1 + 2^-28), u = 2^-24 (fp32) or 2^-8 (bf16; 8 significant bits). Constants
(ln 2, log2 e, 1/i!, ...) are rounded to the dtype too. Compares, negation, 2^k scaling in the
normal range and the bit-trick seeds introduce no rounding beyond what is stated.

Algorithms and error bounds (relative unless stated; first order in u, the 1.01 factor covers the
second-order terms; the tests check each bound pointwise against numpy's exact functions):

exp(x), x clamped to [-86, 86] (keeps 2^k normal and 1 + e^x below 2^126, the reciprocal seed's
range). t = rnd(x log2e_c), k = rint(t), r1 = rnd(x - k ln2_hi), r = rnd(r1 - k ln2_lo)
(ln2_hi = rnd(ln 2), ln2_lo = rnd(ln 2 - ln2_hi)), p = Horner of sum_{i<=T} c_i r^i with fma,
c_i = rnd(1/i!), exp = p * 2^k.
    |x/ln2 - k| <= 1/2 + |x| (|log2e - log2e_c| + u log2e_c)      so |r| <= rho(x) = ln2 * that
    truncation   e^rho rho^(T+1) / (T+1)!          (Lagrange remainder, relative to e^r)
    Horner       u [1 + 2 rho + sum_{i=2..T} (i+2) rho^i / i!] e^rho: term i of the sum meets at
                 most min(i+1, T) fma roundings plus its coefficient's (c_0 = c_1 = 1 are exact),
                 divided by p >= e^-rho
    reduction    dr <= u (|r1| + rho) + |k| |ln 2 - ln2_hi - ln2_lo|,  |r1| <= rho + |k| |ln2_lo|,
                 |k| <= |x| log2e_c (1 + u) + 1/2; it changes e^r by a factor e^dr
    E_exp(x) = 1.01 (truncation + Horner + dr)
reciprocal(d), 2^-125 <= d <= 2^125. Seed y0 = bits^-1(0x7EF311C3 - bits(d)), rounded to the dtype;
    its error |1 - d y0| <= e0 = 0.05052 (fp32; exhaustive over one binade, where the pattern
    repeats), e0 (1 + u) + u for bf16. Iteration e = rnd(1 - d y), y = rnd(y + y e) maps
    1 - d y' = (1 - e^2 + e (1 - e) d1)(1 + d2), so e' <= e^2 + u (1 + e)^2.
    E_rcp = e_Nr of that recursion, times 1.01.
rsqrt(x), x > 0 normal. Seed y0 = bits^-1(0x5f3759df - (bits(x) >> 1)), |y0 sqrt(x) - 1| <= 0.03438
    (exhaustive over two binades, the period of the pattern); bf16 as above. h = x/2 (exact),
    step y' = rnd(y rnd(1.5 - h rnd(y y))): with y sqrt(x) = 1 + e the exact step gives
    1 - 1.5 e^2 - 0.5 e^3, so e' <= 1.5 e^2 + 0.5 |e|^3 + u (2 + 0.5 (1 + |e|)^3).  E_rsq = e_Ns x 1.01.
lane_sum over N elements on L lanes: element j goes to lane j mod L; each lane accumulates its
    C = ceil(N/L) elements in order, then a pairwise tree of D = ceil(log2 min(N, L)) steps.
    |error| <= 1.01 A u sum |terms|, A = C - 1 + D (plain), C + D (sum of squares by fma).
softmax: m = max x (exact), d = rnd(x - m), e = exp(d), S = lane_sum(e), y = rnd(e rcp(S)).
    With exact d_i, e_i = e^d_i: a_i = E_exp(d_i) + 1.01 |d_i| u (the rounding of d moves e by
    |d| u); rel(S) <= sum_j e_j a_j / sum_j e_j + A u (positive terms);
    rel(y_i) <= 1.01 (a_i + rel(S) + E_rcp + u)  (+ 5e-38 absolute where d_i < -86 is clamped).
gelu (tanh form): 0.5 (1 + tanh(z/2)) = 1/(1 + e^-z), so GELU(x) = x / (1 + exp(v)),
    v = x (a + b x^2), a = -2 sqrt(2/pi), b = 0.044715 a: s = rnd(x x), q = rnd(b_c s + a_c),
    v = rnd(q x) has |v - v*| <= 4 u |v*| (a, b same sign: no cancellation); w = exp(v),
    z = rnd(1 + w), y = rnd(x rcp(z)). With sigma = 1/(1 + e^v*):
    rel(y) <= 1.01 ((1 - sigma) (E_exp(v*) + 1.01 |v*| 4u) + 2u + E_rcp) (+ |x| 5e-38 absolute
    where |v*| reaches the clamp).
silu: v = -x (exact), then as gelu: rel(y) <= 1.01 ((1 - sigma) E_exp(-x) + 2u + E_rcp).
layernorm: mu = rnd(lane_sum(x) inv_n), inv_n = rnd(1/N); d = rnd(x - mu); S2 = lane_sum(d^2) by fma;
    var = rnd(S2 inv_n); ve = rnd(var + eps); r = rsqrt(ve); y = rnd(rnd(d r) g + b) (fma).
    With exact mu, d_i, var, s = 1/sqrt(var + eps):
    dmu <= A1 u sum|x| / N + 2u |mu|;  |d^_i - d_i| <= dmu + u |d_i|;
    |S2^ - S2| <= A2 u S2 + 2u (S2 + dmu sum|d|) + N (dmu + u max|d|)^2  (sum d_i = 0 removes the
    first-order dmu term); rel(ve) <= (|S2^ - S2| / N + 2u var) / (var + eps) + u;
    rel(r) <= rel(ve) / 2 + E_rsq;
    |y^_i - y_i| <= 1.01 (|g_i| (s (dmu + 2u |d_i|) + s |d_i| rel(r)) + u (|g_i d_i| s + |b_i|)).
rmsnorm: ms = rnd(lane_sum(x^2) inv_n), ve = rnd(ms + eps), y = rnd(rnd(x rsqrt(ve)) g):
    rel(y) <= 1.01 ((A2 u + 2u) ms / (ms + eps) / 2 + u / 2 + E_rsq + 2u).
reduce of I partial-sum vectors, added in read order: s = rnd(rnd(p0 + p1) + p2) ...:
    |error| <= 1.01 (I - 1) u sum_i |p_i|   (recursive summation, first order).
scale by a constant f: y = rnd(x f_c), f_c = rnd(f):  rel(y) <= 1.01 2u.
elementwise add / mul: one rounding, rel <= u.
rotary at position t, pairs (x1, x2) = (x_i, x_{i + dh/2}) of a head: angle a_i = t theta^(-2i/dh)
    (float64), table c = rnd(cos a), s = rnd(sin a); y1 = rnd(x1 c - rnd(x2 s)),
    y2 = rnd(x2 c + rnd(x1 s)) (one mul and one fma each). With exact cos, sin:
    |y1^ - y1| <= 1.01 u (|x1 cos| + 2 |x2 sin| + |y1|), and y2 alike with x1, x2 swapped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

UNIT_ROUNDOFF = {"fp32": 2.0**-24, "bf16": 2.0**-8}
EXP_LO, EXP_HI = -86.0, 86.0
RECIP_MAGIC = 0x7EF311C3
RSQRT_MAGIC = 0x5F3759DF
LN2 = math.log(2.0)
LOG2E = 1.0 / LN2
GELU_A = -2.0 * math.sqrt(2.0 / math.pi)
GELU_B = 0.044715 * GELU_A


def round_bf16(x) -> np.ndarray:
    """float64 values -> nearest bf16 (ties to even), held in float32. bf16 = the top 16 bits of fp32:
    8 significant bits, fp32's exponent range; its subnormals are multiples of 2^-133."""
    x = np.asarray(x, np.float64)
    bits = x.view(np.uint64)
    drop = np.uint64(45)                                   # 52 - 7 stored fraction bits
    half = np.uint64((1 << 44) - 1)
    lsb = (bits >> drop) & np.uint64(1)
    rounded = ((bits + half + lsb) >> drop << drop).view(np.float64)
    tiny = np.abs(x) < 2.0**-126
    out = np.where(tiny, np.rint(x * 2.0**133) * 2.0**-133, rounded)
    out = np.where(np.isnan(x), np.nan, out)
    with np.errstate(over="ignore"):
        return out.astype(np.float32)


def _f32_bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, np.float32).view(np.uint32)


def _from_bits(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b, np.uint32).view(np.float32)


@dataclass(frozen=True)
class AsicNumerics:
    """The ASIC datapath of one config: dtype, algorithm knobs, lane count (sets the summation order)."""

    dtype: Literal["fp32", "bf16"] = "fp32"
    exp_taylor_order: int = 4
    recip_newton_iterations: int = 2
    rsqrt_newton_iterations: int = 2
    lanes: int = 512

    def __post_init__(self):
        if self.dtype not in UNIT_ROUNDOFF:
            raise ValueError(f"dtype must be one of {tuple(UNIT_ROUNDOFF)}, got '{self.dtype}'")
        if self.exp_taylor_order < 1 or self.lanes < 1 or min(self.recip_newton_iterations,
                                                               self.rsqrt_newton_iterations) < 0:
            raise ValueError("exp_taylor_order and lanes must be >= 1, Newton iterations >= 0")

    @classmethod
    def from_config(cls, asic) -> "AsicNumerics":
        """From a `sim.config.AsicConfig`."""
        return cls(asic.dtype, asic.exp_taylor_order, asic.recip_newton_iterations,
                   asic.rsqrt_newton_iterations, asic.lanes)

    @property
    def u(self) -> float:
        return UNIT_ROUNDOFF[self.dtype]

    # ---- one rounding per operation -------------------------------------------------------------
    def rnd(self, x) -> np.ndarray:
        """Round (float64) values to the dtype."""
        x = np.asarray(x, np.float64)
        return round_bf16(x) if self.dtype == "bf16" else x.astype(np.float32)

    def add(self, a, b):
        return self.rnd(np.asarray(a, np.float64) + np.asarray(b, np.float64))

    def mul(self, a, b):
        return self.rnd(np.asarray(a, np.float64) * np.asarray(b, np.float64))

    def fma(self, a, b, c):
        return self.rnd(np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64))

    def const(self, c: float) -> np.float32:
        return self.rnd(c)[()]

    # ---- building blocks ------------------------------------------------------------------------
    def exp(self, x):
        """e^x by range reduction and a Taylor series of order exp_taylor_order."""
        x = np.clip(self.rnd(x), EXP_LO, EXP_HI)                           # 2 cmp
        k = np.rint(self.mul(x, self.const(LOG2E)))                        # mul, int (round)
        ln2_hi = self.const(LN2)
        ln2_lo = self.const(LN2 - float(ln2_hi))
        r = self.fma(-k, ln2_lo, self.fma(-k, ln2_hi, x))                  # 2 fma
        coef = [self.const(1.0 / math.factorial(i)) for i in range(self.exp_taylor_order + 1)]
        p = np.full_like(r, coef[-1])
        for c in reversed(coef[:-1]):                                      # T fma
            p = self.fma(p, r, c)
        return np.ldexp(p, k.astype(np.int32)).astype(np.float32)          # int (exponent add)

    def reciprocal(self, d):
        """1/d for 2^-125 <= d <= 2^125: bit-trick seed + Newton-Raphson iterations."""
        d = self.rnd(d)
        if np.any(~(d >= 2.0**-125)) or np.any(d > 2.0**125):
            raise ValueError("reciprocal: operands must lie in [2^-125, 2^125]")
        y = self.rnd(_from_bits(np.uint32(RECIP_MAGIC) - _f32_bits(d)))   # int
        for _ in range(self.recip_newton_iterations):                      # 2 fma each
            e = self.fma(-d, y, 1.0)
            y = self.fma(y, e, y)
        return y

    def rsqrt(self, x):
        """1/sqrt(x) for normal x > 0: the fast inverse square root seed + Newton steps."""
        x = self.rnd(x)
        if np.any(~(x >= 2.0**-126)) or np.any(~np.isfinite(x)):
            raise ValueError("rsqrt: operands must be finite and >= 2^-126")
        y = self.rnd(_from_bits(np.uint32(RSQRT_MAGIC) - (_f32_bits(x) >> np.uint32(1))))   # 2 int
        h = self.mul(x, 0.5)                                               # mul
        for _ in range(self.rsqrt_newton_iterations):                      # mul, fma, mul each
            t = self.fma(-h, self.mul(y, y), 1.5)
            y = self.mul(y, t)
        return y

    def lane_sum(self, x, square: bool = False):
        """Sum (or sum of squares) over the last axis in the lanes' order: per-lane accumulation of
        elements j, j + L, ..., then a pairwise tree over the lanes. [..., N] -> [...]"""
        x = self.rnd(x)
        n, L = x.shape[-1], self.lanes
        c = -(-n // L)
        padded = np.zeros(x.shape[:-1] + (c * L,), np.float32)
        padded[..., :n] = x
        chunks = padded.reshape(x.shape[:-1] + (c, L))                     # [..., C, L]
        acc = self.mul(chunks[..., 0, :], chunks[..., 0, :]) if square else chunks[..., 0, :]
        for i in range(1, c):
            v = chunks[..., i, :]
            acc = self.fma(v, v, acc) if square else self.add(acc, v)
        p = acc[..., : min(n, L)]
        while p.shape[-1] > 1:
            w = p.shape[-1]
            h = (w + 1) // 2
            p = np.concatenate([self.add(p[..., : w - h], p[..., h:w]), p[..., w - h : h]], axis=-1)
        return p[..., 0]

    # ---- the ops --------------------------------------------------------------------------------
    def reduce(self, parts):
        """Partial sums added in read order (the MAC-register reads of an input's tiles)."""
        acc = self.rnd(parts[0])
        for part in parts[1:]:
            acc = self.add(acc, self.rnd(part))
        return acc

    def scale(self, x, factor: float):
        """x times a constant (e.g. 1/sqrt(d_head)), the constant held in the dtype."""
        return self.mul(self.rnd(x), self.const(factor))

    def rope_table(self, position: int, d_head: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
        """cos, sin [d_head / 2] of one position, from float64 angles, rounded to the dtype."""
        inv_freq = 1.0 / theta ** (np.arange(0, d_head, 2, dtype=np.float64) / d_head)
        angles = float(position) * inv_freq
        return self.rnd(np.cos(angles)), self.rnd(np.sin(angles))

    def rotary(self, x, position: int, theta: float):
        """Rotate pairs (i, i + dh/2) of every head by the position's angles. x [heads, dh]."""
        x = self.rnd(x)
        half = x.shape[-1] // 2
        c, s = self.rope_table(position, x.shape[-1], theta)
        x1, x2 = x[..., :half], x[..., half:]
        y1 = self.fma(x1, c, -self.mul(x2, s))
        y2 = self.fma(x2, c, self.mul(x1, s))
        return np.concatenate([y1, y2], axis=-1)

    def softmax(self, x):
        """Softmax over the last axis (e.g. [heads, positions])."""
        x = self.rnd(x)
        d = self.add(x, -x.max(axis=-1, keepdims=True))
        e = self.exp(d)
        return self.mul(e, self.reciprocal(self.lane_sum(e))[..., None])

    def gelu(self, x):
        """GELU, tanh form, as x / (1 + exp(x (a + b x^2)))."""
        x = self.rnd(x)
        v = self.mul(self.fma(self.const(GELU_B), self.mul(x, x), self.const(GELU_A)), x)
        return self.mul(x, self.reciprocal(self.add(self.exp(v), 1.0)))

    def silu(self, x):
        """SiLU x * sigmoid(x) = x / (1 + exp(-x))."""
        x = self.rnd(x)
        return self.mul(x, self.reciprocal(self.add(self.exp(-x), 1.0)))

    def layernorm(self, x, gamma, beta, eps: float):
        """LayerNorm over the last axis. x [..., N], gamma, beta [N]."""
        x, gamma, beta = self.rnd(x), self.rnd(gamma), self.rnd(beta)
        inv_n = self.const(1.0 / x.shape[-1])
        mu = self.mul(self.lane_sum(x), inv_n)[..., None]
        d = self.add(x, -mu)
        var = self.mul(self.lane_sum(d, square=True), inv_n)
        r = self.rsqrt(self.add(var, self.const(eps)))[..., None]
        return self.fma(self.mul(d, r), gamma, beta)

    def rmsnorm(self, x, gamma, eps: float):
        """RMSNorm over the last axis. x [..., N], gamma [N]."""
        x, gamma = self.rnd(x), self.rnd(gamma)
        ms = self.mul(self.lane_sum(x, square=True), self.const(1.0 / x.shape[-1]))
        r = self.rsqrt(self.add(ms, self.const(eps)))[..., None]
        return self.mul(self.mul(x, r), gamma)
