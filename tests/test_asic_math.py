"""ASIC numerics against numpy's exact (float64) functions, each within the error bound derived in
sim/system/asic_math.py's docstring, re-implemented here from that derivation; bf16 rounding
against an independent oracle; exhaustive sweeps where the dtype is small enough."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim.config import load_config
from sim.system.asic_math import AsicNumerics, round_bf16

LN2, LOG2E = math.log(2.0), 1.0 / math.log(2.0)
CLAMP_ABS = 5e-38          # > e^-86: what the [-86, 86] clamp can add, absolute, to a sigmoid or softmax
SUBNORMAL_ABS = 2.0**-133  # rounding into the subnormal range


def num(dtype="fp32", **kw) -> AsicNumerics:
    return AsicNumerics(dtype=dtype, **kw)


def all_bf16(lo: float, hi: float) -> np.ndarray:
    """Every finite bf16 value in [lo, hi], as float64."""
    b = np.arange(0, 1 << 16, dtype=np.uint32) << np.uint32(16)
    f = b.view(np.float32)
    v = f[np.isfinite(f)].astype(np.float64)
    return np.unique(v[(v >= lo) & (v <= hi)])


# ---- bounds, from the derivation ----------------------------------------------------------------

def exp_bound(a: AsicNumerics, x) -> np.ndarray:
    u, T = a.u, a.exp_taylor_order
    l2e = float(a.const(LOG2E))
    hi = float(a.const(LN2))
    lo = float(a.const(LN2 - hi))
    ax = np.minimum(np.abs(np.asarray(x, np.float64)), 86.0)
    rho = LN2 * (0.5 + ax * (abs(LOG2E - l2e) + u * l2e))
    trunc = np.exp(rho) * rho ** (T + 1) / math.factorial(T + 1)
    horner = u * (1 + 2 * rho + sum((i + 2) * rho**i / math.factorial(i) for i in range(2, T + 1))) * np.exp(rho)
    k = ax * l2e * (1 + u) + 0.5
    dr = u * (rho + k * abs(lo) + rho) + k * (abs(LN2 - hi - lo) + 1e-16)
    return 1.01 * (trunc + horner + dr)


def recip_bound(a: AsicNumerics) -> float:
    u, e = a.u, 0.05052
    if a.dtype == "bf16":
        e = e * (1 + u) + u
    for _ in range(a.recip_newton_iterations):
        e = e * e + u * (1 + e) ** 2
    return 1.01 * e


def rsqrt_bound(a: AsicNumerics) -> float:
    u, e = a.u, 0.03438
    if a.dtype == "bf16":
        e = e * (1 + u) + u
    for _ in range(a.rsqrt_newton_iterations):
        e = 1.5 * e * e + 0.5 * e**3 + u * (2 + 0.5 * (1 + e) ** 3)
    return 1.01 * e


def sum_rounds(a: AsicNumerics, n: int, square: bool) -> int:
    c, m = -(-n // a.lanes), min(n, a.lanes)
    return (c if square else c - 1) + (m - 1).bit_length()


def rel_err(got, exact):
    got, exact = np.asarray(got, np.float64), np.asarray(exact, np.float64)
    return np.abs(got - exact) / np.abs(exact)


# ---- bf16 rounding -------------------------------------------------------------------------------

def bf16_oracle(x: float) -> float:
    """Nearest value with 8 significant bits (ties to even) by frexp and Python's round-half-even."""
    if x == 0 or not math.isfinite(x):
        return x
    if abs(x) < 2.0**-126:
        return round(x * 2.0**133) * 2.0**-133
    m, e = math.frexp(x)                   # x = m 2^e, 0.5 <= |m| < 1
    q = round(m * 2.0**8) * 2.0 ** (e - 8)
    return q if abs(q) < 2.0**128 else math.copysign(math.inf, x)


def test_bf16_rounding_matches_the_oracle():
    rng = np.random.default_rng(7)
    f32 = rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    f32 = f32[np.isfinite(f32)].astype(np.float64)
    f64 = rng.standard_normal(20000) * 10.0 ** rng.uniform(-40, 38, 20000)
    ties = (np.arange(1, 3000, dtype=np.float64) * 2 + 1) * 2.0**-9   # odd multiples of a half bf16 ulp at 1..2
    near_max = np.array([3.3895313892515355e38, 3.3961775292304e38, 3.4e38, 1e-39, -2.0**-130, 2.0**-133 * 1.5])
    x = np.concatenate([f32, f64, ties, near_max])
    got = round_bf16(x).astype(np.float64)
    want = np.array([bf16_oracle(v) for v in x])
    bad = ~((got == want) | (np.isnan(got) & np.isnan(want)))
    assert not bad.any(), list(zip(x[bad][:5], got[bad][:5], want[bad][:5]))
    assert np.isnan(round_bf16(np.array([np.nan]))[0])


def test_every_bf16_result_is_a_bf16_value():
    a = num("bf16")
    x = a.rnd(np.random.default_rng(0).normal(0, 4, (3, 300)))
    outs = [a.exp(x), a.softmax(x), a.gelu(x), a.silu(x), a.layernorm(x, np.ones(300), np.zeros(300), 1e-5),
            a.rmsnorm(x, np.ones(300), 1e-5), a.reciprocal(np.abs(x) + 1), a.rsqrt(np.abs(x) + 1)]
    for y in outs:
        assert y.dtype == np.float32 and not (y.view(np.uint32) & np.uint32(0xFFFF)).any()


# ---- exp -------------------------------------------------------------------------------------------

def test_exp_fp32_within_bound_over_the_range():
    a = num("fp32")
    x = a.rnd(np.concatenate([np.linspace(-86, 86, 400001), [0.0, LN2 / 2, -LN2 / 2, 86.0, -86.0]]))
    err = rel_err(a.exp(x), np.exp(x.astype(np.float64)))
    assert (err <= exp_bound(a, x)).all()
    # the order is real: near |r| = ln2/2 the truncation term is what one sees
    assert err.max() > 0.3 * math.exp(LN2 / 2) * (LN2 / 2) ** 5 / math.factorial(5) * 0.5


def test_exp_bf16_within_bound_for_every_bf16_input():
    a = num("bf16")
    x = all_bf16(-86.0, 86.0)
    err = rel_err(a.exp(x), np.exp(x))
    assert (err <= exp_bound(a, x)).all()


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6, 8])
def test_exp_error_follows_the_taylor_order(order):
    a = num("fp32", exp_taylor_order=order)
    x = a.rnd(np.linspace(-20, 20, 20001))
    err = rel_err(a.exp(x), np.exp(x.astype(np.float64)))
    assert (err <= exp_bound(a, x)).all()
    if order <= 4:  # truncation-limited: within a factor 3 of e^rho rho^(T+1)/(T+1)! at rho = ln2/2
        trunc = math.exp(LN2 / 2) * (LN2 / 2) ** (order + 1) / math.factorial(order + 1)
        assert err.max() > trunc / 3


def test_exp_saturates_outside_the_clamp():
    a = num("fp32")
    assert a.exp(np.array([-1000.0]))[0] == a.exp(np.array([-86.0]))[0] > 0
    assert a.exp(np.array([500.0]))[0] == a.exp(np.array([86.0]))[0] < 2.0**126


# ---- reciprocal and rsqrt ---------------------------------------------------------------------------

def test_seeds_measured_exhaustively():
    """The seed errors the bounds start from (0.05052, 0.03438), over every fp32 significand of the
    pattern's period."""
    a = num("fp32", recip_newton_iterations=0, rsqrt_newton_iterations=0)
    d = (np.uint32(0x3F800000) + np.arange(1 << 23, dtype=np.uint32)).view(np.float32)      # [1, 2)
    assert rel_err(a.reciprocal(d), 1 / d.astype(np.float64)).max() <= 0.05052
    x = (np.uint32(0x3F800000) + np.arange(1 << 24, dtype=np.uint32)).view(np.float32)      # [1, 4)
    assert rel_err(a.rsqrt(x), 1 / np.sqrt(x.astype(np.float64))).max() <= 0.03438


@pytest.mark.parametrize("iters", [0, 1, 2, 3])
def test_reciprocal_within_bound(iters):
    rng = np.random.default_rng(iters)
    for dtype in ("fp32", "bf16"):
        a = num(dtype, recip_newton_iterations=iters)
        d = a.rnd(2.0 ** rng.uniform(-125, 125, 200000))
        if dtype == "bf16":
            d = np.concatenate([d, all_bf16(2.0**-125, 2.0**125)])
        err = rel_err(a.reciprocal(d), 1 / d.astype(np.float64))
        assert err.max() <= recip_bound(a)
        if iters == 1 and dtype == "fp32":
            assert err.max() > 0.5 * 0.05052**2  # one iteration squares the seed error, no more


@pytest.mark.parametrize("iters", [0, 1, 2, 3])
def test_rsqrt_within_bound(iters):
    rng = np.random.default_rng(10 + iters)
    for dtype in ("fp32", "bf16"):
        a = num(dtype, rsqrt_newton_iterations=iters)
        x = a.rnd(2.0 ** rng.uniform(-126, 127, 200000))
        if dtype == "bf16":
            x = np.concatenate([x, all_bf16(2.0**-126, 3e38)])
        err = rel_err(a.rsqrt(x), 1 / np.sqrt(x.astype(np.float64)))
        assert err.max() <= rsqrt_bound(a)
        if iters == 1 and dtype == "fp32":
            assert err.max() > 0.5 * 1.5 * 0.03438**2


def test_out_of_domain_operands_are_errors():
    a = num()
    with pytest.raises(ValueError, match="reciprocal"):
        a.reciprocal(np.array([0.0]))
    with pytest.raises(ValueError, match="rsqrt"):
        a.rsqrt(np.array([-1.0]))


# ---- summation order -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("n,lanes", [(1, 256), (5, 256), (1000, 1), (2048, 256), (3001, 64), (300, 7)])
def test_lane_sum_within_bound(dtype, n, lanes):
    a = num(dtype, lanes=lanes)
    x = a.rnd(np.random.default_rng(n).normal(0, 1, (4, n)))
    x64 = x.astype(np.float64)
    for square, terms in ((False, x64), (True, x64**2)):
        exact = np.array([math.fsum(r) for r in terms])
        bound = 1.01 * sum_rounds(a, n, square) * a.u * np.abs(terms).sum(axis=-1)
        assert (np.abs(a.lane_sum(x, square=square) - exact) <= bound).all()


def test_one_lane_sums_in_sequence():
    a = num("fp32", lanes=1)
    x = np.random.default_rng(3).normal(0, 1, 777).astype(np.float32)
    assert a.lane_sum(x) == np.add.accumulate(x, dtype=np.float32)[-1]


# ---- softmax, GELU, SiLU ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("n,scale", [(1, 1.0), (7, 3.0), (40, 1.0), (256, 10.0), (1000, 2.0), (2048, 30.0)])
def test_softmax_within_bound(dtype, n, scale):
    a = num(dtype)
    x = a.rnd(np.random.default_rng(n).normal(0, scale, (5, n)))
    y = a.softmax(x).astype(np.float64)
    x64 = x.astype(np.float64)
    d = x64 - x64.max(axis=-1, keepdims=True)
    e = np.exp(d)
    exact = e / e.sum(axis=-1, keepdims=True)
    ai = exp_bound(a, d) + 1.01 * np.abs(d) * a.u
    rel_s = (e * ai).sum(axis=-1, keepdims=True) / e.sum(axis=-1, keepdims=True) + sum_rounds(a, n, False) * a.u
    bound = 1.01 * (ai + rel_s + recip_bound(a) + a.u) * exact + CLAMP_ABS
    assert (np.abs(y - exact) <= bound).all()


def sigma_of(v):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(v))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_gelu_within_bound(dtype):
    a = num(dtype)
    x = a.rnd(np.concatenate([np.linspace(-12, 12, 200001), [-1e4, -100.0, 0.0, 100.0, 1e4]]))
    if dtype == "bf16":
        x = np.concatenate([x, all_bf16(-14.0, 14.0)])
    x64 = x.astype(np.float64)
    z = math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)
    small = np.abs(x64) < 3
    tanh_form = 0.5 * x64 * (1 + np.tanh(z))
    with np.errstate(over="ignore"):
        exact = x64 / (1 + np.exp(-2 * z))   # the same function, without tanh's cancellation for x << 0
    assert np.allclose(exact[small], tanh_form[small], rtol=1e-12, atol=1e-300)
    v = -2 * z
    rel = 1.01 * ((1 - sigma_of(v)) * (exp_bound(a, v) + 1.01 * np.abs(v) * 4 * a.u) + 2 * a.u + recip_bound(a))
    bound = rel * np.abs(exact) + np.abs(x64) * CLAMP_ABS + SUBNORMAL_ABS
    with np.errstate(over="ignore"):
        assert (np.abs(a.gelu(x).astype(np.float64) - exact) <= bound).all()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_silu_within_bound(dtype):
    a = num(dtype)
    x = a.rnd(np.concatenate([np.linspace(-100, 100, 200001), [-1e4, 1e4]]))
    if dtype == "bf16":
        x = np.concatenate([x, all_bf16(-100.0, 100.0)])
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        exact = x64 / (1 + np.exp(-x64))
        rel = 1.01 * ((1 - sigma_of(-x64)) * exp_bound(a, -x64) + 2 * a.u + recip_bound(a))
    bound = rel * np.abs(exact) + np.abs(x64) * CLAMP_ABS + SUBNORMAL_ABS
    assert (np.abs(a.silu(x).astype(np.float64) - exact) <= bound).all()


# ---- norms -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("n,shift", [(1, 0.0), (5, 0.0), (768, 0.0), (768, 20.0), (2048, 0.0), (1600, 3.0)])
def test_layernorm_within_bound(dtype, n, shift):
    a = num(dtype)
    rng = np.random.default_rng(n)
    x = a.rnd(rng.normal(shift, 2.0, (4, n)))
    g, b = a.rnd(rng.normal(1, 0.2, n)), a.rnd(rng.normal(0, 0.2, n))
    eps = float(a.const(1e-5))
    y = a.layernorm(x, g, b, eps).astype(np.float64)
    x64, g64, b64 = (v.astype(np.float64) for v in (x, g, b))
    u = a.u
    mu = x64.mean(axis=-1, keepdims=True)
    d = x64 - mu
    s2 = (d**2).sum(axis=-1, keepdims=True)
    var = s2 / n
    s = 1 / np.sqrt(var + eps)
    exact = d * s * g64 + b64
    dmu = sum_rounds(a, n, False) * u * np.abs(x64).sum(axis=-1, keepdims=True) / n + 2 * u * np.abs(mu)
    ds2 = (sum_rounds(a, n, True) * u * s2 + 2 * u * (s2 + dmu * np.abs(d).sum(axis=-1, keepdims=True))
           + n * (dmu + u * np.abs(d).max(axis=-1, keepdims=True)) ** 2)
    rel_ve = (ds2 / n + 2 * u * var) / (var + eps) + u
    rel_r = rel_ve / 2 + rsqrt_bound(a)
    bound = 1.01 * (np.abs(g64) * (s * (dmu + 2 * u * np.abs(d)) + s * np.abs(d) * rel_r)
                    + u * (np.abs(g64 * d) * s + np.abs(b64)))
    assert (np.abs(y - exact) <= bound).all()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("n", [1, 9, 576, 2048, 4096])
def test_rmsnorm_within_bound(dtype, n):
    a = num(dtype)
    rng = np.random.default_rng(n)
    x = a.rnd(rng.normal(0, 2.0, (4, n)))
    x[0] = 0.0                                   # a zero row: ms = 0, only eps remains
    g = a.rnd(rng.normal(1, 0.2, n))
    eps = float(a.const(1e-6))
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    ms = (x64**2).mean(axis=-1, keepdims=True)
    exact = x64 / np.sqrt(ms + eps) * g64
    u = a.u
    rel = 1.01 * (((sum_rounds(a, n, True) + 2) * u * ms / (ms + eps) + u) / 2 + rsqrt_bound(a) + 2 * u)
    assert (np.abs(a.rmsnorm(x, g, eps).astype(np.float64) - exact) <= rel * np.abs(exact)).all()


def test_numerics_follow_the_config():
    cfg = load_config("pim-gpt", {"asic.dtype": "bf16", "asic.exp_taylor_order": 6, "asic.lanes": 32})
    a = AsicNumerics.from_config(cfg.asic)
    assert (a.dtype, a.exp_taylor_order, a.lanes, a.recip_newton_iterations) == ("bf16", 6, 32, 2)
    with pytest.raises(ValueError, match="dtype"):
        AsicNumerics(dtype="fp16")


class Counting(AsicNumerics):
    """Counts the element-operations the numerics perform, by type."""

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "seen", {"add": 0, "mul": 0, "fma": 0})

    def _count(self, kind, r):
        self.seen[kind] += r.size
        return r

    def add(self, a, b):
        return self._count("add", super().add(a, b))

    def mul(self, a, b):
        return self._count("mul", super().mul(a, b))

    def fma(self, a, b, c):
        return self._count("fma", super().fma(a, b, c))


@pytest.mark.parametrize("kind", ["gelu", "silu"])
@pytest.mark.parametrize("order,iters", [(4, 2), (7, 1), (2, 3)])
def test_numerics_perform_the_operations_the_cycle_model_charges(kind, order, iters):
    from hw_configs.program import AsicOp
    from sim.system.asic import AsicModel

    cfg = load_config("pim-gpt", {"asic.exp_taylor_order": order, "asic.recip_newton_iterations": iters})
    c = Counting.from_config(cfg.asic)
    getattr(c, kind)(np.linspace(-3, 3, 1000))
    charged = AsicModel(cfg).op_counts(AsicOp(0, kind, "mlp", (), kind, 1000))
    assert c.seen == {t: charged[t] for t in ("add", "mul", "fma")}
