"""Sweeps: the grid expands to the expected rows (checked against direct simulate() calls and
the grid itself), a killed sweep resumes without recomputing finished points, an impossible
point fails alone, and a bad spec is rejected before anything runs, naming its line and key."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

import pandas as pd
import pytest

from sim.compose import simulate
from sim.config import load_config
from sim.results import project_version
from sim.sweep import COLUMNS_FILE, SweepSpecError, load_spec, run_sweep

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def client():
    """A local 2-worker cluster shared by the in-process sweeps of this module."""
    from distributed import Client, LocalCluster

    simulate("gpt2-small", "pim-gpt", 1, 0)  # compile (or load) numba's cache once, before the workers load it
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def point_files(out: Path) -> dict[str, tuple[int, int]]:
    """point file -> (inode, mtime_ns): a rewritten file changes at least one."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("point-*.parquet")}


GRID_SPEC = """\
hw: pim-gpt
models: [gpt2-small]
prompt_len: 1
gen_len: 1
grid:
  dram.channels: [4, 8]
  asic.clock_mhz: [100, 1000]
"""


def test_sweep_rows_match_the_grid_and_direct_simulate(tmp_path, client):
    out = tmp_path / "res"
    res = run_sweep(write(tmp_path, GRID_SPEC), out, client=client, progress=False)
    assert (res.total, res.skipped, res.computed, res.failed) == (4, 0, 4, 0)
    df = pd.read_parquet(out)
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    assert sorted(zip(df["dram.channels"], df["asic.clock_mhz"])) == sorted(product([4, 8], [100.0, 1000.0]))
    assert set(df["model"]) == {"gpt2-small"} and set(df["mode"]) == {"overlap"}
    assert set(df["version"]) == {project_version()}
    assert df["config_hash"].is_unique
    assert {f"point-{h}.parquet" for h in df["config_hash"]} == set(point_files(out))
    for _, r in df.iterrows():
        cfg = json.loads(r["config"])
        assert cfg["hardware"]["dram"]["channels"] == r["dram.channels"]
        assert cfg["hardware"]["asic"]["clock_mhz"] == r["asic.clock_mhz"]
        assert r["tokens"] == 2  # prompt 1 + generated 1, one decode step each
        assert r["tokens_per_s"] == pytest.approx(1 / r["latency_s_per_token_mean"])
    # each row is what simulate() gives for that point directly
    for ch, mhz in [(4, 1000.0), (8, 100.0)]:
        r = df[(df["dram.channels"] == ch) & (df["asic.clock_mhz"] == mhz)].iloc[0]
        g = simulate("gpt2-small", load_config("pim-gpt", {"dram.channels": ch, "asic.clock_mhz": mhz}), 1, 1)
        s = g.summary
        assert r["latency_s_per_token_mean"] == s["latency_s_per_token_mean"]
        assert r["energy_j_per_token_mean"] == s["energy_j_per_token_mean"]
        assert r["breakdown_latency_s.mlp"] == s["breakdown_latency_s"]["mlp"]
        assert r["breakdown_energy_j.pim_commands.MAC16"] == s["breakdown_energy_j"]["pim_commands"]["MAC16"]
        assert r["dram_commands.MAC16"] == s["dram_commands"]["MAC16"]
    # twice the channels, half the rows per channel: faster at either ASIC clock
    for mhz in (100.0, 1000.0):
        lat = df[df["asic.clock_mhz"] == mhz].set_index("dram.channels")["latency_s_per_token_mean"]
        assert lat[8] < lat[4]
    assert (out / COLUMNS_FILE).exists() and (out / "_sweep.json").exists()
    # the same points spelled otherwise (refresh given as the config's own value, the preset by its
    # path, channels listed in another order) are found again: the hash is over the resolved point
    again = write(tmp_path, GRID_SPEC.replace("hw: pim-gpt", f"hw: {ROOT / 'hw_configs' / 'pim-gpt.yaml'}")
                  .replace("[4, 8]", "[8, 4]") + "refresh: true\n", "again.yaml")
    res = run_sweep(again, out, client=client, progress=False)
    assert (res.total, res.skipped, res.computed) == (4, 4, 0)


def test_impossible_points_fail_alone_and_are_retried_while_finished_ones_are_not(tmp_path, client):
    # rows_per_bank 64: gpt2-small does not fit (found when placing); bank_groups 3: 16 banks do not
    # split into 3 groups (found when the point's config is resolved)
    spec = write(tmp_path, """\
models: gpt2-small
prompt_len: 1
gen_len: 1
grid:
  dram.rows_per_bank: [16384, 64]
  dram.bank_groups: [4, 3]
""")
    out = tmp_path / "res"
    res = run_sweep(spec, out, client=client, progress=False)
    assert (res.total, res.computed, res.failed) == (4, 4, 3)
    df = pd.read_parquet(out).set_index(["dram.rows_per_bank", "dram.bank_groups"])
    assert df.loc[(16384, 4), "status"] == "ok" and pd.isna(df.loc[(16384, 4), "error"])
    assert df.loc[(16384, 4), "latency_s_per_token_mean"] > 0
    assert df.loc[(64, 4), "status"] == "failed"
    assert "does not fit" in df.loc[(64, 4), "error"]
    for rows in (16384, 64):
        assert df.loc[(rows, 3), "status"] == "failed"
        assert "multiple of bank_groups" in df.loc[(rows, 3), "error"]
        assert pd.isna(df.loc[(rows, 3), "latency_s_per_token_mean"])
    before = point_files(out)
    stale = out / ".point-0.parquet.x1.tmp"  # what a write killed midway leaves
    stale.write_bytes(b"PAR1")
    ok_file = f"point-{df.loc[(16384, 4), 'config_hash']}.parquet"
    again = run_sweep(spec, out, scheduler=client.scheduler.address, progress=False)  # as --scheduler ADDRESS
    assert (again.skipped, again.computed, again.failed) == (1, 3, 3)
    assert client.submit(sum, [1, 2]).result() == 3  # that cluster is still up
    assert point_files(out)[ok_file] == before[ok_file]  # the finished point was not rewritten
    assert len(pd.read_parquet(out)) == 4
    assert not stale.exists()


def test_killed_sweep_resumes_without_recomputing_finished_points(tmp_path, client):
    spec = write(tmp_path, """\
models: [gpt2-small]
prompt_len: 1
gen_len: [1, 2]
modes: [overlap, serial]
grid:
  dram.channels: [2, 4, 6, 8]
""")
    out = tmp_path / "res"
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "sweep", str(spec), "--out", str(out),
                             "--workers", "1", "--no-progress"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("point-*.parquet")):
            assert proc.poll() is None, "the sweep ended before any point finished"
            assert time.monotonic() < deadline, "no point finished within 120 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its scheduler and its worker
        proc.wait()
    done = point_files(out)
    assert 0 < len(done) < 16, f"{len(done)} points finished before the kill"
    res = run_sweep(spec, out, client=client, progress=False)
    assert (res.total, res.skipped, res.computed, res.failed) == (16, len(done), 16 - len(done), 0)
    after = point_files(out)
    assert {k: after[k] for k in done} == done  # finished files untouched
    df = pd.read_parquet(out)
    assert len(df) == 16 and set(df["status"]) == {"ok"}
    assert sorted(zip(df["gen_len"], df["mode"], df["dram.channels"])) == \
        sorted(product([1, 2], ["overlap", "serial"], [2, 4, 6, 8]))
    assert not list(out.glob(".*.tmp"))


BAD_SPECS = [
    ("models: [gpt2-small]\ngrid:\n  dram.channels: [4, 8]\n  dram.chanels: [4]\n", 4, "grid.dram.chanels",
     "unknown key 'chanels' in dram"),
    ("models: [gpt2-small]\ngrid:\n  dram.channels: []\n", 3, "grid.dram.channels", "empty list"),
    ("models: [gpt2-small]\ngrid: {}\n", 2, "grid", "empty grid"),
    ("models: [gpt2-small]\ngrid:\n  asic.clock_mhz:\n    - 100\n    - fast\n", 5, "grid.asic.clock_mhz",
     "valid number, got 'fast'"),
    ("models: [gpt2-small]\ngrid:\n  dram.channels: [4, '8']\n", 3, "grid.dram.channels", "valid integer"),
    ("models: [gpt2-small]\ngrid:\n  dram.channels: [0, 8]\n", 3, "grid.dram.channels", "greater than 0"),
    ("models: [gpt2-small]\ngrid:\n  dram.channels: 8\n", 3, "grid.dram.channels", "a list of values"),
    ("models: [gpt2-small]\ngrid:\n  dram.timing.nXYZ: [1]\n", 3, "grid.dram.timing.nXYZ", "unknown key 'nXYZ'"),
    ("models: [gpt2-small]\ngrid:\n  dram: [1]\n", 3, "grid.dram", "is a section"),
    ("models: [gpt2-small]\ngrid:\n  mode: [serial]\n", 3, "grid.mode", "top level as 'modes:'"),
    ("models:\n  - gpt2-small\n  - gpt9\n", 3, "models", "unknown model 'gpt9'"),
    ("models: gpt2-small\nmodes: [overlap, fast]\n", 2, "modes", "unknown mode 'fast'"),
    ("models: gpt2-small\ngen_len: [1, -1]\n", 2, "gen_len", "integer >= 0"),
    ("models: gpt2-small\ngird:\n  dram.channels: [4]\n", 2, "gird", "unknown key"),
    ("models: gpt2-small\nset:\n  dram.tck_ns: fast\n", 3, "set.dram.tck_ns", "valid number"),
]


@pytest.mark.parametrize("text,line,key,message", BAD_SPECS)
def test_bad_spec_names_line_and_key(tmp_path, text, line, key, message):
    with pytest.raises(SweepSpecError) as err:
        load_spec(write(tmp_path, text))
    assert err.value.line == line and err.value.key == key
    assert f"line {line}: {key}: " in str(err.value) and message in str(err.value)


def test_bad_spec_fails_before_anything_runs(tmp_path):
    out = tmp_path / "res"
    with pytest.raises(SweepSpecError):
        run_sweep(write(tmp_path, "models: [gpt2-small]\ngrid:\n  dram.channels: [4, eight]\n"), out)
    assert not out.exists()


def test_cli_sweep_end_to_end(tmp_path):
    spec = write(tmp_path, "models: gpt2-small\nprompt_len: 1\ngen_len: 1\ngrid:\n  dram.channels: [4, 8]\n")
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "sim.cli", "sweep", str(spec), "--out", str(out), "--workers", "2"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "2 points: 0 finished before, 2 run now, 0 failed" in p.stdout
    assert "2/2" in p.stderr  # the progress bar counted the points
    df = pd.read_parquet(out)
    assert sorted(df["dram.channels"]) == [4, 8] and set(df["status"]) == {"ok"}
    p = subprocess.run(cmd + ["--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "2 points: 2 finished before, 0 run now" in p.stdout
    assert "point/s" not in p.stderr
    bad = write(tmp_path, "models: gpt2-small\ngrid:\n  dram.channels: [4]\n  asic.clock: [1]\n", "bad.yaml")
    p = subprocess.run([sys.executable, "-m", "sim.cli", "sweep", str(bad), "--out", str(tmp_path / "never")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert f"{bad}, line 4: grid.asic.clock: unknown key 'clock' in asic" in p.stderr
    assert not (tmp_path / "never").exists()
