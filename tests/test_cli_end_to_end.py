"""Every `pimsim` command end to end in a subprocess, as a user runs it, on small real jobs; the
figures checked are derived by hand (GPT-2 small shapes, the AiM preset's organisation), not read
from the code under test. Commands with tests of their own elsewhere: run --plot and report
(test_report.py), sweep (test_sweep.py), accuracy (test_functional.py), baselines
(test_baselines.py), export-trace --format perfetto (test_timeline.py)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))

# GPT-2 small: 12 layers of d = 768 (QKV 768 x 2304, output 768 x 768, MLP 768 x 3072 twice) and
# the tied LM head 768 x 50257: multiply-accumulates per token at one position, plus q.k and p.v
MATMUL_MACS = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 768 * 50257
# pim-gpt.yaml: 8 channels x 16 banks x 2048-byte rows
ROW_BYTES_ALL_BANKS = 8 * 16 * 2048


def pimsim(*args, timeout=900) -> str:
    out = subprocess.run([sys.executable, "-m", "sim.cli", *map(str, args)], capture_output=True, text=True,
                         cwd=ROOT, env=ENV, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_validate_derives_the_presets_figures():
    text = pimsim("validate", "pim-gpt")
    # 8 x 16 banks x 16384 rows x 2 KB = 4 GiB; 128 banks x 32 B per MAC16 every 2 x 0.5 ns = 4096 GB/s
    figures = {line.split()[0]: line.split()[1] for line in text.splitlines()[1:] if line.strip()}
    assert figures["capacity"] == "4" and figures["peak_internal_bandwidth"] == "4,096"
    # row pass: nRCDRDMAC 56 + 63 x nCCDL 2 + nRTP 12 + nRP 32
    assert figures["row_pass_cycles"] == str(56 + 63 * 2 + 12 + 32)


def test_models_lists_gpt2_small_with_its_parameter_count(tmp_path):
    (row,) = json.loads(pimsim("models", "--model", "gpt2-small", "--format", "json"))
    # HF openai-community/gpt2: 124,439,808 parameters; KV per position 2 x 12 x 768 x 2 bytes
    assert row["params"] == 124_439_808 and row["kv_bytes_per_position"] == 2 * 12 * 768 * 2


def test_place_fills_whole_rows_and_reserves_the_kv_cache(tmp_path):
    out = tmp_path / "place.json"
    pimsim("place", "--model", "gpt2-small", "--context", "1024", "--json", out)
    s = json.loads(out.read_text())["summary"]
    assert s["kv_cache_bytes"] == 2 * 12 * 1024 * 768 * 2
    assert s["allocated_bytes"] == s["rows_used"] * ROW_BYTES_ALL_BANKS
    assert s["payload_bytes"] == s["weight_bytes"] + s["kv_cache_bytes"]


def test_compile_export_trace_and_run_trace_agree_on_the_work(tmp_path):
    comp = tmp_path / "step.json"
    pimsim("compile", "--model", "gpt2-small", "--position", "0", "--json", comp)
    total = json.loads(comp.read_text())["total"]
    assert total["macs"] == MATMUL_MACS + 2 * 12 * 768 * 1
    trace = tmp_path / "step.trace"
    pimsim("export-trace", "--format", "aim", "--model", "gpt2-small", "--position", "0", "-o", trace)
    res = tmp_path / "trace.json"
    pimsim("run-trace", trace, "--front-end", "pim-gpt", "--json", res)
    assert json.loads(res.read_text())["commands"]["MAC16"] == total["mac16"]


def test_run_writes_per_token_records_and_a_summary(tmp_path):
    out = tmp_path / "run.json"
    text = pimsim("run", "--model", "gpt2-small", "--prompt-len", "1", "--gen-len", "1", "--no-progress",
                  "--front-end", "aim", "--json", out)
    doc = json.loads(out.read_text())
    assert "latency per token" in text and doc["config"]["front_end"] == "aim"
    assert [t["position"] for t in doc["tokens"]] == [0, 1]
    s = doc["summary"]
    assert s["latency_s_per_token_mean"] >= s["pim_only_s_per_token"] * 0.98 >= s["bound_s_per_token"]


def test_accuracy_sweep_writes_one_row_per_knob_value(tmp_path):
    table = tmp_path / "sweep.csv"
    pimsim("accuracy-sweep", "--model", "gpt2-small", "--weights", "random", "--tokens", "2", "--prompt-len", "1",
           "--gen-len", "0", "--knob", "asic.exp_taylor_order=2,6", "--csv", table)
    rows = list(csv.DictReader(table.open()))
    values = sorted(r.get("value", "") for r in rows)
    assert len(rows) >= 2 and {"2", "6"} <= set(values), rows
    assert all(0.0 <= float(r["top1_agreement"]) <= 1.0 for r in rows)
