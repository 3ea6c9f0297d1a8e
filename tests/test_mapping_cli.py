"""`pimsim compile / place / accuracy / export-trace`: figures checked against independent runs
of the engine and hand-derived numbers; export-trace then run-trace reproduces the step."""
from __future__ import annotations

import json

import pytest

from mapping.compile import compile_step
from sim.cli import main as cli
from sim.config import load_config
from sim.engine import Engine
from workloads import get_spec

ROW_PASS = 56 + 63 * 2 + 12 + 32  # nRCDRDMAC + 63 x nCCDL + nRTP + nRP of the AiM preset = 226

ODD = """family: llama
n_layers: 2
d_model: 44
n_heads: 6
n_kv_heads: 2
d_head: 18
d_ff: 90
vocab_size: 101
max_context: 32
"""


@pytest.fixture()
def odd_model(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text(ODD)
    return str(path)


def test_compile_reports_engine_cycles_floor_and_counts(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert cli(["compile", "--model", "gpt2-small", "--hw", "pim-gpt", "--position", "130", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pim_cycles=" in text and "row_pass_floor_cycles=" in text and "row_hit_rate=" in text
    data = json.loads(out.read_text())
    t = data["total"]
    cfg = load_config("pim-gpt")
    prog = compile_step(get_spec("gpt2-small"), cfg, 130)
    res = Engine(cfg).run(prog.pim_instructions())  # refresh as configured (on)
    assert t["pim_cycles"] == res.cycles and data["refresh"] is True
    assert t["mac16"] == res.command_totals()["MAC16"] and t["mode_changes"] == res.command_totals()["TMOD"]
    assert t["row_pass_cycles"] == ROW_PASS
    assert t["row_pass_floor_cycles"] == t["row_passes_busiest_channel"] * ROW_PASS
    # gpt2-small weights: 12 x (18 x 1 + 6 x 1 + 24 x 1 + 6 x 3) + LM head 393 x 1 = 1185 row passes of GEMV;
    # attention at 131 positions (2 blocks of 128 lanes): 2 score rows (12 heads x 4 columns fit one row), and
    # V: 12 heads x 64 / 16 banks = 48 units over 8 channels = 6 rows of one 1024-position chunk
    assert t["row_passes_busiest_channel"] == 12 * (18 + 6 + 24 + 6 * 3) + 393 + 12 * (2 + 6)
    # each pass at its own length, max(nRCDRDMAC + (cols - 1) x nCCDL + nRTP, nRAS) + nRP: 48 columns (d = 768,
    # and 12 heads x 4 columns of K) = 194, 64 = 226, the context's ceil(131 / 16) = 9 columns = 116;
    # per layer 48 GEMV passes of 48 columns, 18 of 64 (the 3-tile down projection), 2 score rows, 6 V rows
    per_layer = 48 * 194 + 18 * 226 + 2 * 194 + 6 * 116
    assert t["row_pass_floor_exact_cycles"] == 12 * per_layer + 393 * 194
    assert t["macs"] == get_spec("gpt2-small").matmul_params_per_token + 2 * 12 * 768 * 131
    assert len(data["ops"]) == len(prog.ops) and data["config"]["name"] == "pim-gpt"
    assert 0.9 < t["row_hit_rate"] < 1 and t["pim_over_floor"] > 1


def test_compile_per_op_engine_figures_add_up(tmp_path):
    out = tmp_path / "c.json"
    assert cli(["compile", "--model", "smollm2-135m", "--position", "40", "--no-refresh", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    ops = [o for o in data["ops"] if "first_issue_cycle" in o]
    assert sum(o["row_activations"] for o in ops) == data["total"]["row_activations"]  # no refresh re-opens
    assert sum(o["mode_changes"] for o in ops) == data["total"]["mode_changes"]
    assert max(o["finish_cycle"] for o in ops) == data["total"]["pim_cycles"]
    assert all(o["type"] == "PimOp" for o in ops)


def test_place_table_and_capacity_error(tmp_path, capsys, odd_model):
    out = tmp_path / "p.json"
    assert cli(["place", "--model", odd_model, "--hw", "pim-gpt", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert sum(r["rows"] for r in data["regions"]) == data["summary"]["rows_used"]
    assert {r["kind"] for r in data["regions"]} == {"gemv", "table", "k_cache", "v_cache"}
    assert "L1.v_cache" in capsys.readouterr().out
    assert cli(["place", "--model", "llama2-7b", "--hw", "pim-gpt"]) == 2
    err = capsys.readouterr().err
    assert "does not fit pim-gpt" in err and "4,294,967,296" in err and "channels" in err


def test_accuracy_writes_summary(tmp_path, capsys, odd_model):
    out = tmp_path / "a.json"
    assert cli(["accuracy", "--model", odd_model, "--weights", "random", "--tokens", "5", "--numerics", "exact",
                "--strategy", "naive", "--json", str(out)]) == 0
    s = json.loads(out.read_text())["summary"]
    assert s["max_abs_logit_error"] < 1e-4 and s["top1_agreement"] == 1.0
    assert s["tokens"] == 5 and s["numerics"] == "exact" and s["strategy"] == "naive"
    with pytest.raises(SystemExit):  # argparse names the allowed choices
        cli(["accuracy", "--model", odd_model, "--numerics", "fp8"])
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


@pytest.mark.parametrize("model,position", [("gpt2-small", 300), ("smollm2-135m", 130)])
def test_export_trace_then_run_trace_reproduces_the_step(tmp_path, capsys, model, position):
    trace, out = tmp_path / "step.trace", tmp_path / "r.json"
    assert cli(["export-trace", "--format", "aim", "--model", model, "--hw", "pim-gpt", "--position", str(position),
                "-o", str(trace)]) == 0
    assert cli(["run-trace", str(trace), "--hw", "pim-gpt", "--no-refresh", "--front-end", "pim-gpt", "--json", str(out)]) == 0
    back = json.loads(out.read_text())
    cfg = load_config("pim-gpt")
    prog = compile_step(get_spec(model), cfg, position, row_commands="controller")
    direct = Engine(cfg, refresh=False).run(prog.pim_instructions())
    assert back["commands"]["MAC16"] == direct.command_totals()["MAC16"]
    assert back["cycles"] == direct.cycles
    first = next(line for line in trace.read_text().splitlines() if line.startswith("AiM"))
    assert first.split()[1] in ("RD_SBK", "WR_GB")  # the step starts by reading its token's embedding row


def test_export_refuses_explicit_row_commands():
    from mapping.device import MappingError
    from mapping.export import aim_trace

    prog = compile_step(get_spec("gpt2-small"), load_config("pim-gpt"), 3, row_commands="explicit")
    with pytest.raises(MappingError, match="no precharge or activate ISR"):
        aim_trace(prog, 8)
