"""Roofline baselines against figures worked out by hand from the datasheet numbers, the measured
CSV's validation, and `pimsim baselines` end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.baselines import (
    MEASURED_CSV, BaselineError, Device, compare, load_devices, load_measured, roofline, roofline_step_s,
)
from workloads import get_spec

ROOT = Path(__file__).resolve().parent.parent

# GPT2-small by hand (REFERENCE 5): per layer 4 x 768^2 (qkv + out) + 2 x 768 x 3072 (MLP) =
# 7,077,888 weights, x 12 layers = 84,934,656, + LM head 768 x 50257 = 38,597,376 -> 123,532,032.
# K and V per position: 2 x 12 layers x 768 = 18,432 elements.
GPT2S_WEIGHTS = 123_532_032
GPT2S_KV_PER_POS = 18_432
# GPT3-XL: per layer 4 x 2048^2 + 2 x 2048 x 8192 = 50,331,648, x 24 = 1,207,959,552,
# + 2048 x 50257 = 102,926,336 -> 1,310,885,888; KV 2 x 24 x 2048 = 98,304 per position.
GPT3XL_WEIGHTS = 1_310_885_888
GPT3XL_KV_PER_POS = 98_304


@pytest.fixture(scope="module")
def devices():
    return load_devices()


def test_devices_carry_the_datasheet_numbers_with_sources(devices):
    assert set(devices) == {"t4", "a100-40gb", "xeon-gold-6154"}
    t4, a100, xeon = devices["t4"], devices["a100-40gb"], devices["xeon-gold-6154"]
    assert (t4.peak_flops, t4.bandwidth_bytes_per_s, t4.power_w) == (65e12, 320e9, 70.0)      # REFERENCE 7
    assert (a100.bandwidth_bytes_per_s, xeon.bandwidth_bytes_per_s, xeon.power_w) == (1555e9, 128e9, 200.0)
    assert xeon.peak_flops == 18 * 3.0e9 * 32  # 18 cores x 3.0 GHz x 32 fp32 FLOP/cycle
    for d in devices.values():
        assert set(d.sources) == {"peak_flops", "bandwidth_bytes_per_s", "power_w", "weight_bytes"}
        assert all(s.strip() for s in d.sources.values())


def test_t4_gpt2_small_first_step_is_memory_bound_by_hand(devices):
    spec = get_spec("gpt2-small")
    assert spec.matmul_params_per_token == GPT2S_WEIGHTS
    b = roofline(spec, devices["t4"], prompt_len=1, gen_len=0)
    bytes_ = (GPT2S_WEIGHTS + GPT2S_KV_PER_POS * 1) * 2  # fp16: 247,100,928 bytes
    assert bytes_ == 247_100_928
    assert b.latency_s_per_token == pytest.approx(247_100_928 / 320e9, rel=1e-12)  # 0.772 ms
    assert b.latency_s_per_token == pytest.approx(7.7219040e-4, rel=1e-7)
    assert b.energy_j_per_token == pytest.approx(70 * 7.7219040e-4, rel=1e-7)  # 54.05 mJ
    assert b.bound == "memory"


def test_xeon_reads_fp32_and_a100_gpt3_xl_by_hand(devices):
    x = roofline(get_spec("gpt2-small"), devices["xeon-gold-6154"], 1, 0)
    assert x.latency_s_per_token == pytest.approx((GPT2S_WEIGHTS + GPT2S_KV_PER_POS) * 4 / 128e9, rel=1e-12)
    assert x.latency_s_per_token == pytest.approx(3.860952e-3, rel=1e-7)
    assert x.energy_j_per_token == pytest.approx(200 * 3.860952e-3, rel=1e-7)
    spec = get_spec("gpt3-xl")
    assert spec.matmul_params_per_token == GPT3XL_WEIGHTS
    a = roofline(spec, devices["a100-40gb"], 1, 0)
    assert a.latency_s_per_token == pytest.approx(2_621_968_384 / 1555e9, rel=1e-12)  # 1.686 ms
    assert a.energy_j_per_token == pytest.approx(400 * 2_621_968_384 / 1555e9, rel=1e-12)


def test_mean_over_positions_reads_the_growing_kv_cache(devices):
    # positions 0, 1, 2 attend to 1, 2, 3 positions: the mean reads 2 positions of K and V
    b = roofline(get_spec("gpt2-small"), devices["t4"], prompt_len=2, gen_len=1)
    assert b.latency_s_per_token == pytest.approx((GPT2S_WEIGHTS + 2 * GPT2S_KV_PER_POS) * 2 / 320e9, rel=1e-12)
    assert b.steps == 3


def test_a_slow_core_makes_the_step_compute_bound():
    slow = Device("slow", "slow", peak_flops=1e9, bandwidth_bytes_per_s=1e15, power_w=1.0, weight_bytes=2, sources={})
    t, bound = roofline_step_s(get_spec("gpt2-small"), slow, context=1)
    # FLOPs: 2 x (weights + q.K and p.V MACs: 2 x 12 layers x 768 x 1) = 247,100,928
    assert bound == "compute"
    assert t == pytest.approx(247_100_928 / 1e9, rel=1e-12)


def test_compare_is_the_papers_ratio(devices):
    b = roofline(get_spec("gpt2-small"), devices["t4"], 1, 0)
    r = compare(b, pim_latency_s_per_token=7.7219040e-6, pim_energy_j_per_token=54.053328e-3 / 300)
    assert r["speedup"] == pytest.approx(100.0, rel=1e-7)
    assert r["energy_efficiency"] == pytest.approx(300.0, rel=1e-7)
    with pytest.raises(ValueError):
        compare(b, 0.0, 1.0)


# --------------------------------------------------------------------------- devices YAML errors


def _yaml(tmp_path, text: str) -> Path:
    p = tmp_path / "dev.yaml"
    p.write_text(text)
    return p


GOOD_DEVICE = """devices:
  g:
    name: G
    peak_flops: {value: 1.0e+12, source: "x"}
    bandwidth_bytes_per_s: {value: 1.0e+11, source: "x"}
    power_w: {value: 10, source: "x"}
    weight_bytes: {value: 2, source: "x"}
"""


def test_device_yaml_errors_name_the_key(tmp_path):
    assert load_devices(_yaml(tmp_path, GOOD_DEVICE))["g"].power_w == 10.0
    with pytest.raises(BaselineError, match=r"devices\.g\.power_w.*source"):
        load_devices(_yaml(tmp_path, GOOD_DEVICE.replace('power_w: {value: 10, source: "x"}', "power_w: {value: 10}")))
    with pytest.raises(BaselineError, match=r"devices\.g\.peak_flops\.value: expected a positive number"):
        load_devices(_yaml(tmp_path, GOOD_DEVICE.replace("1.0e+12", "-1")))
    with pytest.raises(BaselineError, match=r"unknown key.*tdp"):
        load_devices(_yaml(tmp_path, GOOD_DEVICE + '    tdp: {value: 1, source: "x"}\n'))
    with pytest.raises(BaselineError, match="devices:"):
        load_devices(_yaml(tmp_path, "gpus: []\n"))


# --------------------------------------------------------------------------- measured CSV


def test_shipped_measurements_are_end_to_end_runs():
    rows = load_measured(MEASURED_CSV)
    assert [(r.device, r.model, r.prompt_len, r.gen_len) for r in rows] == [
        ("a100-40gb", "gpt3-xl", 128, 8), ("a100-40gb", "gpt3-xl", 512, 32)]
    assert rows[0].latency_s_per_token == pytest.approx(36.76e-3 / 136, rel=1e-12)  # per decode step
    assert rows[0].energy_j_per_token == pytest.approx(400 * 36.76e-3 / 136, rel=1e-12)  # the A100's power_w


def _csv(tmp_path, text: str) -> Path:
    p = tmp_path / "m.csv"
    p.write_text(text)
    return p


HEADER = "device,model,prompt_len,gen_len,latency_ms,power_w,source\n"


@pytest.mark.parametrize("body, pattern", [
    ("t4,gpt2-small,1,1,abc,,s\n", r"line 2, column 'latency_ms': expected a positive number, got 'abc'"),
    ("t4,gpt2-small,1,1,2.0,,s\nt4,gpt2-small,0,1,2.0,,s\n", r"line 3, column 'prompt_len': expected an integer >= 1"),
    ("t4,gpt9,1,1,2.0,,s\n", r"line 2, column 'model': unknown model"),
    ("h100,gpt2-small,1,1,2.0,,s\n", r"line 2, column 'power_w': empty, and device 'h100' is not in devices.yaml"),
    ("t4,gpt2-small,1,1,2.0,-5,s\n", r"line 2, column 'power_w': expected a positive number"),
    ("t4,gpt2-small,1,1,2.0,,\n", r"line 2, column 'source': empty"),
    ("t4,gpt2-small,1,1,2.0,,s,extra\n", r"line 2: more fields"),
    ("", r"no data rows"),
])
def test_csv_errors_name_file_line_and_column(tmp_path, body, pattern):
    p = _csv(tmp_path, HEADER + body)
    with pytest.raises(BaselineError, match=pattern) as e:
        load_measured(p)
    assert str(p) in str(e.value)


def test_csv_header_errors(tmp_path):
    with pytest.raises(BaselineError, match=r"line 1: unknown column\(s\) \['watts'\]"):
        load_measured(_csv(tmp_path, "device,model,prompt_len,gen_len,latency_ms,watts,source\n"))
    with pytest.raises(BaselineError, match=r"line 1: missing column\(s\) \['source'\]"):
        load_measured(_csv(tmp_path, "device,model,prompt_len,gen_len,latency_ms\n"))
    with pytest.raises(BaselineError, match="empty file"):
        load_measured(_csv(tmp_path, ""))


def test_csv_power_column_overrides_the_device(tmp_path):
    (row,) = load_measured(_csv(tmp_path, HEADER + "h100,gpt2-small,2,2,8.0,350,lab\n"))
    assert row.latency_s_per_token == pytest.approx(2e-3) and row.energy_j_per_token == pytest.approx(0.7)


# --------------------------------------------------------------------------- CLI


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim.cli", "baselines", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_cli_table_and_json(tmp_path):
    out = tmp_path / "b.json"
    r = _cli("--model", "gpt2-small", "gpt3-small", "--model", "gpt2-small", "--prompt-len", "1", "--gen-len", "0", "--csv", str(MEASURED_CSV),
             "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "t4" in r.stdout and "0.7722" in r.stdout  # the hand-derived 0.772 ms
    doc = json.loads(out.read_text())
    assert [x["model"] for x in doc["rows"]] == ["gpt2-small"] * 3 + ["gpt3-small"] * 3  # each model once
    rows = {(x["device"], x["method"]): x for x in doc["rows"] if x["model"] == "gpt2-small"}
    assert set(rows) == {("t4", "roofline"), ("a100-40gb", "roofline"), ("xeon-gold-6154", "roofline")}
    assert rows["t4", "roofline"]["latency_ms_per_token"] == pytest.approx(0.77219040, rel=1e-7)
    assert doc["pimsim_version"] and "roofline" in doc["method"]


def test_cli_bad_csv_is_an_error_naming_the_line(tmp_path):
    p = _csv(tmp_path, HEADER + "t4,gpt2-small,1,1,fast,,s\n")
    r = _cli("--model", "gpt2-small", "--csv", str(p))
    assert r.returncode == 2
    assert f"{p}: line 2, column 'latency_ms'" in r.stderr


def test_cli_compare_gives_speedup_over_the_simulated_run(tmp_path):
    from sim.compose import simulate

    # simulated here first: on a cold numba cache this compiles the system engine once, in this
    # process, and the CLI below loads it instead of compiling it again under the timeout
    s = simulate("gpt2-small", "pim-gpt", 1, 0).summary
    out = tmp_path / "c.json"
    r = _cli("--model", "gpt2-small", "--prompt-len", "1", "--gen-len", "0", "--compare", "--json", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    for row in doc["rows"]:
        assert row["pim_latency_ms_per_token"] == pytest.approx(s["latency_s_per_token_mean"] * 1e3, rel=1e-12)
        assert row["speedup"] == pytest.approx(row["latency_ms_per_token"] / row["pim_latency_ms_per_token"])
        assert row["energy_efficiency"] == pytest.approx(row["energy_mj_per_token"] / row["pim_energy_mj_per_token"])
    assert doc["config"]["dram"]["channels"] == 8


def _run_json(tmp_path, latency_s=7.7219040e-6, energy_j=54.053328e-3 / 300, name="run.json", drop=None) -> Path:
    doc = {"version": "x", "config": {"model": {"name": "gpt2-small"}, "prompt_len": 1, "gen_len": 0},
           "summary": {"latency_s_per_token_mean": latency_s, "energy_j_per_token_mean": energy_j}}
    if drop:
        del doc["summary"][drop]
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def test_cli_compares_a_saved_run_without_simulating(tmp_path):
    # a hand-made result 100x faster than the T4 roofline of GPT2-small's first step (0.77219040 ms)
    # and with 1/300 of its energy (54.053328 mJ)
    out = tmp_path / "b.json"
    r = _cli("--result", str(_run_json(tmp_path)), "--json", str(out))
    assert r.returncode == 0, r.stderr
    rows = {x["device"]: x for x in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"t4", "a100-40gb", "xeon-gold-6154"}
    assert rows["t4"]["speedup"] == pytest.approx(100.0, rel=1e-7)
    assert rows["t4"]["energy_efficiency"] == pytest.approx(300.0, rel=1e-7)
    # the Xeon roofline: fp32 at 128 GB/s, 3.860952 ms at 200 W
    assert rows["xeon-gold-6154"]["speedup"] == pytest.approx(3.860952e-3 / 7.7219040e-6, rel=1e-7)
    assert "100.00" in r.stdout


def test_cli_bad_result_names_the_key(tmp_path):
    p = _run_json(tmp_path, drop="energy_j_per_token_mean")
    r = _cli("--result", str(p))
    assert r.returncode == 2 and f"{p}: missing key 'summary.energy_j_per_token_mean'" in r.stderr
    p = _run_json(tmp_path, latency_s=-1.0, name="neg.json")
    r = _cli("--result", str(p))
    assert r.returncode == 2 and "summary.latency_s_per_token_mean: expected a positive number" in r.stderr
