"""Plots: each figure shows the numbers of the result it was drawn from (bar lengths and line
points read back from the figure objects), carries a title naming the run and units on its
axes, and is saved as a PNG; `pimsim report` draws from saved files alone."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sim.compose
from sim.compose import simulate
from sim.report import (accuracy_figure, figures_for, key_label, run_figures, save_figures, sweep_figures)

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run():
    return simulate("gpt2-small", "pim-gpt", prompt_len=1, gen_len=2).to_json()


def bar_lengths(ax, horizontal: bool) -> dict[str, float]:
    labels = [t.get_text() for t in (ax.get_yticklabels() if horizontal else ax.get_xticklabels())]
    sizes = [p.get_width() if horizontal else p.get_height() for p in ax.patches]
    return dict(zip(labels, sizes))


def test_breakdown_bars_are_the_summary_per_token(run):
    fig = run_figures(run)["breakdown"]
    ax_t, ax_e = fig.axes
    title = fig._suptitle.get_text()
    assert "Breakdown per token" in title and "gpt2-small on pim-gpt (8 channels)" in title
    assert "prompt 1 + 2 generated" in title
    assert ax_t.get_xlabel() == "latency per token (µs)" and ax_e.get_xlabel() == "energy per token (µJ)"
    s = run["summary"]
    lat = bar_lengths(ax_t, horizontal=True)
    assert lat.keys() == s["breakdown_latency_s"].keys()
    for k, v in s["breakdown_latency_s"].items():
        assert lat[k] == pytest.approx(v * 1e6)
    en = bar_lengths(ax_e, horizontal=True)
    e = s["breakdown_energy_j"]
    assert en["DRAM MAC16"] == pytest.approx(e["pim_commands"]["MAC16"] * 1e6)
    assert en["I/O"] == pytest.approx(e["io"] * 1e6)
    assert en["ASIC leakage"] == pytest.approx(e["asic"]["leakage"] * 1e6)
    # every non-zero component is drawn, so the bars add up to the energy per token
    assert sum(en.values()) == pytest.approx(s["energy_j_per_token_mean"] * 1e6, rel=1e-9)


def test_latency_against_position(run):
    ax = run_figures(run)["token_latency"].axes[0]
    assert ax.get_title().startswith("Latency per token position\ngpt2-small on pim-gpt")
    assert ax.get_xlabel().startswith("token position") and ax.get_ylabel() == "latency (ms)"
    lines = {l.get_label(): l for l in ax.get_lines()}
    assert list(lines["achieved"].get_xdata()) == [0, 1, 2]
    assert list(lines["achieved"].get_ydata()) == pytest.approx([t["latency_s"] * 1e3 for t in run["tokens"]])
    assert list(lines["bandwidth bound"].get_ydata()) == pytest.approx([t["bound_s"] * 1e3 for t in run["tokens"]])
    assert {"PIM part alone", "row-pass floor"} <= lines.keys()


def test_achieved_next_to_bounds(run):
    ax = run_figures(run)["bounds"].axes[0]
    assert ax.get_title().startswith("Achieved latency vs bounds\ngpt2-small on pim-gpt")
    assert ax.get_ylabel() == "latency per token (ms)"
    s = run["summary"]
    bars = bar_lengths(ax, horizontal=False)
    assert bars == pytest.approx({"achieved": s["latency_s_per_token_mean"] * 1e3,
                                  "PIM part alone": s["pim_only_s_per_token"] * 1e3,
                                  "row-pass floor": s["row_pass_floor_s_per_token"] * 1e3,
                                  "bandwidth bound": s["bound_s_per_token"] * 1e3})


def sweep_frame() -> pd.DataFrame:
    """A hand-made sweep: 2 channel counts x 2 modes, one failed point that must not be drawn."""
    rows = []
    for ch, mode, lat_ms, e_mj in [(4, "serial", 0.4, 2.0), (8, "serial", 0.2, 2.5), (4, "overlap", 0.3, 2.0),
                                   (8, "overlap", 0.15, 2.5)]:
        rows.append({"model": "gpt2-small", "hw": "pim-gpt", "prompt_len": 1, "gen_len": 1, "mode": mode,
                     "strategy": "pim-gpt", "dram.channels": ch, "status": "ok",
                     "latency_s_per_token_mean": lat_ms / 1e3, "energy_j_per_token_mean": e_mj / 1e3})
    rows.append({"model": "gpt2-small", "hw": None, "prompt_len": 1, "gen_len": 1, "mode": "serial",
                 "strategy": "pim-gpt", "dram.channels": 16, "status": "failed",
                 "latency_s_per_token_mean": None, "energy_j_per_token_mean": None})
    return pd.DataFrame(rows)


def test_sweep_curves_one_line_per_other_key():
    figs = sweep_figures(sweep_frame())
    assert set(figs) == {"sweep_mode", "sweep_dram.channels"}
    fig = figs["sweep_dram.channels"]
    assert fig._suptitle.get_text() == "Sweep over dram.channels: gpt2-small on pim-gpt, prompt 1 + 1 generated"
    lat, en, tpj = fig.axes
    assert [a.get_ylabel() for a in fig.axes] == ["latency per token (ms)", "energy per token (mJ)",
                                                   "tokens per joule (tokens/J)"]
    assert [a.get_title() for a in fig.axes] == ["Latency vs dram.channels", "Energy vs dram.channels",
                                                 "Tokens/J vs dram.channels"]
    assert all(a.get_xlabel() == "dram.channels" for a in fig.axes)
    lines = {l.get_label(): l for l in lat.get_lines()}
    assert set(lines) == {"mode=serial", "mode=overlap"}  # the failed 16-channel point is not drawn
    assert list(lines["mode=serial"].get_xdata()) == [4, 8]
    assert list(lines["mode=serial"].get_ydata()) == pytest.approx([0.4, 0.2])
    tpj_lines = {l.get_label(): l for l in tpj.get_lines()}
    assert list(tpj_lines["mode=overlap"].get_ydata()) == pytest.approx([500.0, 400.0])  # 1 / (2 mJ), 1 / (2.5 mJ)
    # a categorical key: ticks name the values
    mode_ax = figs["sweep_mode"].axes[0]
    assert [t.get_text() for t in mode_ax.get_xticklabels()] == ["serial", "overlap"]


def test_accuracy_against_energy_only_with_accuracy_columns():
    df = sweep_frame()
    assert "accuracy_energy" not in sweep_figures(df)
    df["top1_agreement"] = [1.0, 0.75, 1.0, 0.5, None]
    fig = sweep_figures(df)["accuracy_energy"]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "energy per token (mJ)"
    assert ax.get_ylabel() == "top-1 agreement with the reference (fraction)"
    assert fig._suptitle.get_text().startswith("Accuracy vs energy: gpt2-small on pim-gpt")
    (pts,) = ax.get_lines()
    assert list(pts.get_xdata()) == pytest.approx([2.0, 2.5, 2.0, 2.5])
    assert list(pts.get_ydata()) == pytest.approx([1.0, 0.75, 1.0, 0.5])
    assert accuracy_figure(df.drop(columns="top1_agreement"), []) is None


def test_key_labels_carry_units():
    assert key_label("asic.clock_mhz") == "asic.clock_mhz (MHz)"
    assert key_label("dram.timing.nRP") == "dram.timing.nRP (cycles)"
    assert key_label("dram.tck_ns") == "dram.tck_ns (ns)"
    assert key_label("dram.io_gbps_per_pin") == "dram.io_gbps_per_pin (Gb/s per pin)"
    assert key_label("gen_len") == "gen_len (tokens)"
    assert key_label("dram.channels") == "dram.channels"


def test_pngs_are_written(tmp_path, run):
    paths = save_figures(run_figures(run), tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["bounds.png", "breakdown.png", "token_latency.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert not list((tmp_path / "plots").glob(".*"))  # no temporary files left


def test_report_draws_from_the_file_not_a_simulation(tmp_path, run, monkeypatch):
    edited = json.loads(json.dumps(run))
    for t in edited["tokens"]:
        t["latency_s"] *= 3  # a result simulate() would never give: the plot must show it
    path = tmp_path / "run.json"
    path.write_text(json.dumps(edited))

    def no_simulation(*a, **k):
        raise AssertionError("report simulated")

    monkeypatch.setattr(sim.compose, "simulate", no_simulation)
    ax = figures_for(path)["token_latency"].axes[0]
    achieved = next(l for l in ax.get_lines() if l.get_label() == "achieved")
    assert list(achieved.get_ydata()) == pytest.approx([t["latency_s"] * 3e3 for t in run["tokens"]])


def test_cli_run_plot_and_report(tmp_path):
    res, plots = tmp_path / "run.json", tmp_path / "plots"
    p = subprocess.run([sys.executable, "-m", "sim.cli", "run", "--model", "gpt2-small", "--prompt-len", "1",
                        "--gen-len", "1", "--no-progress", "--json", str(res), "--plot", str(plots)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    names = ["bounds.png", "breakdown.png", "token_latency.png"]
    assert sorted(x.name for x in plots.iterdir()) == names
    p = subprocess.run([sys.executable, "-m", "sim.cli", "report", str(res)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    again = tmp_path / "run-plots"
    assert sorted(x.name for x in again.iterdir()) == names
    assert all((again / n).read_bytes().startswith(PNG_MAGIC) for n in names)
    p = subprocess.run([sys.executable, "-m", "sim.cli", "report", str(tmp_path / "missing.json")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "missing.json: no such file or folder" in p.stderr
    p = subprocess.run([sys.executable, "-m", "sim.cli", "run", "--model", "gpt2-small", "--plot",
                        str(tmp_path / "no" / "plots")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_cli_report_of_a_sweep_folder(tmp_path):
    """A sweep folder written by hand in the dataset's format (one Parquet file per point)."""
    out = tmp_path / "res"
    out.mkdir()
    for i, (_, row) in enumerate(sweep_frame().iterrows()):
        pd.DataFrame([row]).to_parquet(out / f"point-{i:020x}.parquet")
    (out / "_sweep.json").write_text(json.dumps({"axes": ["model", "prompt_len", "gen_len", "mode", "strategy",
                                                          "dram.channels"]}))
    p = subprocess.run([sys.executable, "-m", "sim.cli", "report", str(out), "--out", str(tmp_path / "figs")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in (tmp_path / "figs").iterdir()) == ["sweep_dram.channels.png", "sweep_mode.png"]


def test_a_bad_run_file_is_an_error_naming_it(tmp_path):
    """Report and baselines read run files with one reader: not JSON, not an object, missing."""
    from sim.baselines import BaselineError, load_run_result
    from sim.report import ReportError, load_run

    broken, listed = tmp_path / "broken.json", tmp_path / "list.json"
    broken.write_text("{not json")
    listed.write_text("[1, 2]")
    for load, err in ((load_run, ReportError), (load_run_result, BaselineError)):
        with pytest.raises(err, match=r"broken\.json: not valid JSON \(.*line 1\)"):
            load(broken)
        with pytest.raises(err, match=r"list\.json: expected a JSON object"):
            load(listed)
        with pytest.raises(err, match=r"missing\.json: cannot read"):
            load(tmp_path / "missing.json")
