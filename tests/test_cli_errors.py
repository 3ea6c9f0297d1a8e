"""Bad input and first-use rough edges, as a new user meets them: the command line, result
files, `--set`, the weight loaders and the example-trace generator. Each test is one case
that went wrong (a misleading message, a silent success, a late failure)."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

import sim.cli as cli_mod
from sim.aim_trace import load_aim_trace, parse_trace
from sim.cli import COMPILE_NOTICE, main as cli
from sim.config import ConfigError, load_config
from sim.results import OutputPathError, finite_or_none, write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
ROW_PASS_8CH = "AiM MAC_ABK 64 0xff000000 1\nAiM EOC\n"  # channels 0..7: fits the default pim-gpt


def run(capsys, *argv):
    rc = cli(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def strict_json(path: Path):
    """json.loads that rejects NaN/Infinity, as strict parsers (JavaScript, jq, Go) do."""
    def reject(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


@pytest.fixture
def row_pass(tmp_path):
    path = tmp_path / "rp.trace"
    path.write_text(ROW_PASS_8CH)
    return path


# --------------------------------------------------------------------------- the trace is a file


def test_trace_name_without_a_suffix_that_does_not_exist(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, "run-trace", "nosuchfile")
    assert rc == 2
    assert "nosuchfile: trace file does not exist" in err
    assert "unknown instruction" not in err and "<text>" not in err


def test_directory_as_trace(tmp_path, capsys):
    rc, _, err = run(capsys, "run-trace", str(tmp_path))
    assert rc == 2 and f"{tmp_path}: is a directory, not a trace file" in err


def test_binary_trace_names_the_file(tmp_path, capsys):
    path = tmp_path / "prog.bin"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00>\x00")
    rc, _, err = run(capsys, "run-trace", str(path))
    assert rc == 2
    assert f"{path}:1: column 8: a NUL byte: this is a binary file, not a text trace" in err


def test_non_utf8_trace_names_file_line_and_byte(tmp_path, capsys):
    path = tmp_path / "latin1.trace"
    path.write_bytes("AiM SYNC\n# caf\xe9\n".encode("latin-1"))
    rc, _, err = run(capsys, "run-trace", str(path))
    assert rc == 2 and f"{path}:2: column 6: byte 0xe9 is not UTF-8 text" in err


def test_python_callers_may_still_pass_trace_text():
    cfg = load_config("pim-gpt")
    assert load_aim_trace(ROW_PASS_8CH, cfg).shape == (2, 9)
    assert [op.name for op in parse_trace(ROW_PASS_8CH)] == ["MAC_ABK", "EOC"]


# --------------------------------------------------------------------------- empty traces, strict JSON


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "AiM EWADD 4 1 2\nW GPR 3\n", "AiM SYNC\nAiM EOC\n"])
def test_trace_without_dram_work_is_an_error(tmp_path, capsys, text):
    path = tmp_path / "empty.trace"
    path.write_text(text)
    out = tmp_path / "res.json"
    rc, stdout, err = run(capsys, "run-trace", str(path), "--json", str(out))
    assert rc == 2 and f"{path}: no DRAM work to time" in err
    assert "NaN" not in stdout and not out.exists()


def test_undefined_row_hit_rate_is_null(tmp_path, capsys):
    """A trace with commands but no row access (global-buffer writes): the hit rate is undefined."""
    path = tmp_path / "wrgb.trace"
    path.write_text("AiM WR_GB 64 0 0xff000000\n")
    out = tmp_path / "res.json"
    rc, stdout, _ = run(capsys, "run-trace", str(path), "--json", str(out))
    assert rc == 0
    assert "row_hit_rate=n/a" in stdout and "nan" not in stdout.lower()
    res = strict_json(out)
    assert res["row_hit_rate"] is None and res["commands"]["WRGB"] == 64 * 8


def test_result_files_are_strict_json(tmp_path):
    target = tmp_path / "r.json"
    with pytest.raises(ValueError, match=r"'a\.b\.1' is not a finite number"):
        write_json_atomic(target, {"a": {"b": [1.0, float("nan")]}})
    with pytest.raises(ValueError, match=r"'x' is not a finite number"):
        write_json_atomic(target, {"x": float("inf")})
    assert not target.exists() and not list(tmp_path.iterdir())
    assert finite_or_none(float("nan")) is None and finite_or_none(float("-inf")) is None
    assert finite_or_none(0.25) == 0.25
    write_json_atomic(target, {"rate": finite_or_none(float("nan"))})
    assert strict_json(target) == {"rate": None}


# --------------------------------------------------------------------------- --json OUT


class NoEngine:
    """Stands in for the timing engine: the run must fail before it is built."""

    def __init__(self, *a, **k):
        raise AssertionError("the simulation started although the output path is unusable")


def test_json_to_a_directory_fails_before_simulating(row_pass, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sim.engine.Engine", NoEngine)
    rc, _, err = run(capsys, "run-trace", str(row_pass), "--json", str(tmp_path))
    assert rc == 2 and f"cannot write results to '{tmp_path}': it is a directory" in err


def test_json_in_a_missing_folder_is_an_error_and_no_folder_is_made(row_pass, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sim.engine.Engine", NoEngine)
    target = tmp_path / "no" / "such" / "res.json"
    rc, _, err = run(capsys, "run-trace", str(row_pass), "--json", str(target))
    assert rc == 2 and f"directory '{target.parent}' does not exist" in err
    assert not (tmp_path / "no").exists()
    with pytest.raises(OutputPathError):
        write_json_atomic(target, {"a": 1})
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_result_file_mode_follows_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_json_atomic(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_rewritten_result_file_keeps_its_mode(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{}")
    path.chmod(0o640)
    write_json_atomic(path, {"a": 1})
    assert path.stat().st_mode & 0o777 == 0o640 and json.loads(path.read_text()) == {"a": 1}


# --------------------------------------------------------------------------- --set


def test_bad_set_value_names_the_option_and_the_value(capsys):
    rc, _, err = run(capsys, "validate", "--set", "dram.channels=abc")
    assert rc == 2
    assert "--set dram.channels=abc: Input should be a valid integer, got 'abc'" in err
    assert not re.search(r"pim-gpt\.yaml: dram\.channels", err)  # the preset is not blamed


@pytest.mark.parametrize("override, words", [
    ({"dram.channels": "16"}, "--set dram.channels='16': Input should be a valid integer, got '16'"),
    ({"dram.channels": 99}, "--set dram.channels=99: Input should be less than or equal to 63"),
    ({"dram.chanels": 4}, "--set dram.chanels=4: unknown key 'chanels'"),
    ({"dram.timing.nRC": 10}, "--set dram.timing.nRC=10: inconsistent timing: nRC (10) < nRAS + nRP"),
    ({"dram.bank_groups": 3}, "--set dram.bank_groups=3: dram: banks_per_channel (16) must be a multiple of bank_groups"),
])
def test_override_errors_name_set(override, words):
    with pytest.raises(ConfigError) as info:
        load_config("pim-gpt", override)
    assert words in str(info.value) and str(info.value).endswith("pim-gpt.yaml)")


def test_headers_describe_the_overridden_config(row_pass, capsys):
    rc, out, _ = run(capsys, "validate", "--set", "dram.channels=16")
    head = out.splitlines()[0]
    assert rc == 0 and "with --set dram.channels=16" in head and "16 channels x 16 banks" in head
    assert "8 x GDDR6-AiM" not in head  # the preset's description names its own 8 channels
    assert re.search(r"capacity\s+8 GiB", out)  # 16 x 16 banks x 16384 rows x 2 KB
    rc, out, _ = run(capsys, "run-trace", str(row_pass), "--set", "dram.channels=16")
    assert rc == 0 and "with --set dram.channels=16 (16 channels x 16 banks" in out.splitlines()[0]


# --------------------------------------------------------------------------- version, defaults, help


def test_version(capsys):
    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"pimsim {want}"


def test_run_trace_and_validate_use_one_default_preset(row_pass, tmp_path, capsys):
    rc, out, _ = run(capsys, "validate")
    assert rc == 0 and out.startswith(str(ROOT / "hw_configs" / "pim-gpt.yaml"))
    target = tmp_path / "r.json"
    rc, out, _ = run(capsys, "run-trace", str(row_pass), "--json", str(target))
    assert rc == 0 and " on pim-gpt (8 channels" in out
    assert strict_json(target)["config"]["name"] == "pim-gpt"


@pytest.mark.parametrize("command", ["validate", "run-trace"])
def test_help_shows_the_default_preset(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli([command, "--help"])
    assert info.value.code == 0 and "(default: pim-gpt)" in re.sub(r"\s+", " ", capsys.readouterr().out)


# --------------------------------------------------------------------------- first-run compile notice


def test_cold_engine_cache_is_seen_without_compiling(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "from sim.cli import engine_cache_is_warm as w; print(w())"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False" and time.perf_counter() - t0 < 30  # a compile would take ~45 s


def test_loaded_engine_is_warm():
    from sim.engine import Engine

    Engine(load_config("pim-gpt")).warm_up()
    assert cli_mod.engine_cache_is_warm() is True


@pytest.mark.parametrize("warm, notices", [(False, 1), (True, 0)])
def test_compile_notice_once_when_cold(row_pass, capsys, monkeypatch, warm, notices):
    monkeypatch.setattr(cli_mod, "engine_cache_is_warm", lambda: warm)
    rc, out, err = run(capsys, "run-trace", str(row_pass))
    assert rc == 0 and err.count(COMPILE_NOTICE) == notices and COMPILE_NOTICE not in out


class SlowEngine:
    def __init__(self, seconds):
        self.seconds = seconds

    def warm_up(self):
        time.sleep(self.seconds)


@pytest.mark.parametrize("seconds, notices", [(0.5, 1), (0.0, 0)])
def test_compile_notice_by_time_when_the_cache_cannot_be_read(monkeypatch, seconds, notices):
    monkeypatch.setattr(cli_mod, "engine_cache_is_warm", lambda: None)
    monkeypatch.setattr(cli_mod, "COMPILE_NOTICE_AFTER_S", 0.1)
    stream = io.StringIO()
    cli_mod.warm_up_engine(SlowEngine(seconds), stream)
    time.sleep(0.2)  # a late timer would print now
    assert stream.getvalue().count(COMPILE_NOTICE) == notices


# --------------------------------------------------------------------------- weight files


@pytest.fixture
def safetensors_file(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": np.arange(16, dtype=np.float32).reshape(4, 4)}, str(path))
    return path


def test_good_safetensors_still_reads(safetensors_file):
    from workloads.weights import read_safetensors

    assert read_safetensors(safetensors_file)["w"][3, 3] == 15.0


@pytest.mark.parametrize("damage, words", [
    (lambda d: d[:-10], "truncated safetensors file: tensor 'w' ends at byte 64 of the data, but the file holds 54"),
    (lambda d: d[:20], "truncated safetensors file: the header needs"),
    (lambda d: b"", "truncated or not a safetensors file: 0 bytes"),
    (lambda d: b"hello, this is a text file\n", "not a safetensors file"),
    (lambda d: b"GGUF" + bytes(60), "a GGUF file, not safetensors"),
    (lambda d: d[:8] + b"{not json" + d[17:], "its header is not valid JSON"),
])
def test_bad_safetensors_names_the_file_and_what_is_wrong(safetensors_file, damage, words):
    from workloads.weights import WeightsError, read_safetensors

    safetensors_file.write_bytes(damage(safetensors_file.read_bytes()))
    with pytest.raises(WeightsError) as info:
        read_safetensors(safetensors_file)
    assert str(info.value).startswith(f"{safetensors_file}: ") and words in str(info.value)


@pytest.mark.parametrize("weights", ["auto", "random"])
def test_single_safetensors_file_is_not_read_as_gguf(safetensors_file, weights):
    from workloads import WeightsError, load_model

    with pytest.raises(WeightsError) as info:
        load_model(str(safetensors_file), weights)
    msg = str(info.value)
    assert msg.startswith(f"{safetensors_file}: a single .safetensors file holds no model configuration")
    assert "GGUF" not in msg and "config.json" in msg


def test_named_model_with_a_safetensors_file(safetensors_file):
    from workloads import WeightsError, load_model

    with pytest.raises(WeightsError, match="a single .safetensors file holds no model configuration"):
        load_model("gpt2-small", safetensors_file)


def test_file_that_is_not_gguf(tmp_path):
    from workloads import WeightsError, load_model

    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(WeightsError, match=rf"{re.escape(str(path))}: not a GGUF file: it does not start with b'GGUF'"):
        load_model(str(path))


# --------------------------------------------------------------------------- bench/make_aim_trace.py


def make_trace_module():
    spec = importlib.util.spec_from_file_location("make_aim_trace", ROOT / "bench" / "make_aim_trace.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docstring_examples_work(tmp_path, monkeypatch):
    mod = make_trace_module()
    examples = [line.split()[2:] for line in mod.__doc__.splitlines() if line.strip().startswith("python bench/")]
    assert len(examples) == 2
    monkeypatch.chdir(tmp_path)
    cfg = load_config("aim-32ch")
    for args in examples:
        assert mod.main(args) == 0, args
        out = Path(args[args.index("-o") + 1])
        assert len(load_aim_trace(out, cfg)) > 1
    gemv = parse_trace(tmp_path / "gemv.trace")
    assert {op.mask for op in gemv if op.mask is not None} == {0xFF00_0000}  # --channels 0-7 after the kind


@pytest.mark.parametrize("args, words", [
    (["--channels", "x", "rowpass", "2"], "argument --channels: 'x' is not a channel list such as 0-7,16"),
    (["rowpass", "2", "--channels", "0-40"], "channels are 0..31"),
    (["gemv", "-1", "2"], "argument out_blocks: -1 is not at least 1"),
    (["gemv", "2", "0"], "argument k_tiles: 0 is not at least 1"),
    (["rowpass", "2", "--opsize", "65"], "--opsize 65: an AiM row has 64 columns"),
    (["rowpass", "16385"], "rowpass needs rows 0..16384, but an AiM bank has 16384 rows"),
])
def test_generator_usage_errors(tmp_path, capsys, args, words):
    mod = make_trace_module()
    out = tmp_path / "t.trace"
    with pytest.raises(SystemExit) as info:
        mod.main(args + ["-o", str(out)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and words in err and "Traceback" not in err
    assert not out.exists()


# --------------------------------------------------------------------------- bench/trace_parse.py


def test_trace_parse_bench_prints_its_figure_line():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "trace_parse.py"), "--lines", "3000"],
                         capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
    m = re.fullmatch(r"stream=trace_parse lines=3000 wall_s=[\d.]+ lines_per_s=\d+ peak_rss_mb=\d+ instructions=(\d+)"
                     r" cpu_s=[\d.]+\n", out)
    assert m, out
    # 3000 lines = 176 periods of 17 lines (14 make a row; W CFR, EWADD and the comment do not),
    # then the first 7 lines of a period (all rows) and EOC
    assert int(m.group(1)) == 176 * 14 + 7 + 1


def test_every_command_has_help_and_every_config_reader_takes_set():
    """One framework for every subcommand: `pimsim X --help` works in a subprocess for each, names
    the command, and a command that reads a hardware config (`--hw`) also takes `--set`."""
    import os

    from sim.cli import SUBCOMMANDS

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in SUBCOMMANDS:
        out = subprocess.run([sys.executable, "-m", "sim.cli", name, "--help"], capture_output=True, text=True,
                             cwd=ROOT, env=env, timeout=120)
        assert out.returncode == 0, (name, out.stderr)
        text = out.stdout
        assert f"pimsim {name}" in text, name
        if "--hw" in text:
            assert "--set" in text, f"pimsim {name} reads a hardware config but has no --set"
    top = subprocess.run([sys.executable, "-m", "sim.cli", "--help"], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=120)
    assert top.returncode == 0 and all(name in top.stdout for name in SUBCOMMANDS)
