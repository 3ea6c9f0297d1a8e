"""Plots of saved results: a single run (the JSON of `pimsim run --json`) or a sweep (its Parquet
folder), drawn again from the files alone, never by simulating.

Every function returns a matplotlib Figure (object-oriented API on the Agg canvas, no pyplot
state), so a test can read its titles and labels and a notebook can show it. A plot must be
readable without a caption: its title names the model, the hardware and the run, and every axis
label carries its unit.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ACCURACY_COLUMNS = ("top1_agreement", "max_abs_logit_error", "mean_abs_logit_error")
ACCURACY_LABELS = {"top1_agreement": "top-1 agreement with the reference (fraction)",
                   "max_abs_logit_error": "max |logit error|", "mean_abs_logit_error": "mean |logit error|"}
RUN_AXES = ("model", "prompt_len", "gen_len", "mode", "strategy")
UNIT_SUFFIXES = (("_gbps_per_pin", "Gb/s per pin"), ("_pj_per_bit", "pJ/bit"), ("_mhz", "MHz"), ("_ns", "ns"),
                 ("_bytes", "bytes"), ("_gbps", "Gb/s"), ("_pj", "pJ"), ("_mw", "mW"), ("_len", "tokens"))


class ReportError(ValueError):
    """Saved results that cannot be plotted (named by file)."""


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def key_label(key: str) -> str:
    """A swept key as an axis label, with its unit read off the key's name (units are in the names)."""
    if key.startswith("dram.timing."):
        return f"{key} (cycles)"
    leaf = key.rsplit(".", 1)[-1]
    for suffix, unit in UNIT_SUFFIXES:
        if leaf.endswith(suffix):
            return f"{key} ({unit})"
    return key


def run_title(config: dict) -> str:
    """'gpt2-small on pim-gpt (8 channels), overlap, prompt 1 + 2 generated'."""
    hw = config["hardware"]
    return (f"{config['model']['name']} on {hw['name']} ({hw['dram']['channels']} channels), mode {config['mode']}, "
            f"prompt {config['prompt_len']} + {config['gen_len']} generated")


# --------------------------------------------------------------------------- one run


def energy_parts(breakdown: dict) -> dict[str, float]:
    """Energy per token by component, J: DRAM/PIM commands one by one, background, I/O, ASIC."""
    parts = {f"DRAM {k}": v for k, v in breakdown.get("pim_commands", {}).items()}
    parts |= {f"background {k}": v for k, v in breakdown.get("background", {}).items()}
    parts["I/O"] = breakdown.get("io", 0.0)
    parts |= {f"ASIC {k}": v for k, v in breakdown.get("asic", {}).items()}
    return parts


def breakdown_figure(summary: dict, config: dict) -> Figure:
    """Where a token's time and energy go: latency by op, energy by component (means per token)."""
    fig = _figure(11, 5)
    ax_t, ax_e = fig.subplots(1, 2)
    lat = summary["breakdown_latency_s"]
    names = list(lat)[::-1]
    ax_t.barh(names, [lat[k] * 1e6 for k in names], color="tab:blue")
    ax_t.set_title("Latency per token by op")
    ax_t.set_xlabel("latency per token (µs)")
    en = {k: v for k, v in energy_parts(summary["breakdown_energy_j"]).items() if v > 0}
    enames = list(en)[::-1]
    ax_e.barh(enames, [en[k] * 1e6 for k in enames], color="tab:orange")
    ax_e.set_title("Energy per token by component")
    ax_e.set_xlabel("energy per token (µJ)")
    fig.suptitle(f"Breakdown per token\n{run_title(config)}\n"
                 f"{summary['latency_s_per_token_mean'] * 1e3:.3f} ms and "
                 f"{summary['energy_j_per_token_mean'] * 1e3:.3f} mJ per token")
    return fig


def token_latency_figure(tokens: list[dict], config: dict) -> Figure:
    """Latency of every position: prompt positions shaded; the PIM-alone time and the bounds
    per position when the run file has them."""
    fig = _figure()
    ax = fig.subplots()
    pos = [t["position"] for t in tokens]
    ax.plot(pos, [t["latency_s"] * 1e3 for t in tokens], "o-", label="achieved")
    for key, label, style in (("pim_only_s", "PIM part alone", "s--"), ("row_pass_floor_s", "row-pass floor", ":"),
                              ("bound_s", "bandwidth bound", "-.")):
        if tokens and all(key in t for t in tokens):
            ax.plot(pos, [t[key] * 1e3 for t in tokens], style, label=label)
    prompt = config["prompt_len"]
    ax.axvspan(-0.5, prompt - 0.5, color="0.9", zorder=0, label=f"prompt ({prompt} positions)")
    ax.set_xlim(-0.5, max(pos) + 0.5 if pos else 0.5)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("token position (prompt, then generated tokens)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"Latency per token position\n{run_title(config)}")
    ax.legend()
    return fig


def bounds_figure(summary: dict, config: dict) -> Figure:
    """Achieved latency beside what bounds it: the PIM part alone, the row-pass floor (busiest
    channel's row activations x one row pass) and the bandwidth bound (bytes / peak internal bandwidth)."""
    fig = _figure()
    ax = fig.subplots()
    bars = [("achieved", summary["latency_s_per_token_mean"]), ("PIM part alone", summary["pim_only_s_per_token"]),
            ("row-pass floor", summary["row_pass_floor_s_per_token"]),
            ("bandwidth bound", summary["bound_s_per_token"])]
    ms = [v * 1e3 for _, v in bars]
    rects = ax.bar([n for n, _ in bars], ms, color=["tab:blue", "tab:cyan", "tab:gray", "tab:green"])
    ach = summary["latency_s_per_token_mean"]
    for r, (_, v) in zip(rects, bars):
        ax.annotate(f"{v * 1e3:.3g} ms\n(achieved / this = {ach / v:.2f})" if v > 0 else "0",
                    (r.get_x() + r.get_width() / 2, r.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("latency per token (ms)")
    ax.set_ylim(0, max(ms) * 1.25 if max(ms) > 0 else 1)
    ax.set_title(f"Achieved latency vs bounds\n{run_title(config)}")
    return fig


def run_figures(run: dict) -> dict[str, Figure]:
    """The single-run plots, by file stem."""
    for key in ("config", "tokens", "summary"):
        if key not in run:
            raise ReportError(f"not a run result: no '{key}' (expected the JSON of `pimsim run --json`)")
    return {"breakdown": breakdown_figure(run["summary"], run["config"]),
            "token_latency": token_latency_figure(run["tokens"], run["config"]),
            "bounds": bounds_figure(run["summary"], run["config"])}


# --------------------------------------------------------------------------- sweeps


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def swept_keys(df, axes: list[str] | None = None) -> list[str]:
    """The axes that take more than one value among the plotted rows."""
    candidates = axes or [c for c in df.columns if c in RUN_AXES or ("." in c and c.split(".")[0] in
                                                                     ("dram", "pim", "asic", "energy", "system"))]
    return [k for k in candidates if k in df.columns and df[k].nunique(dropna=False) > 1]


def _fmt(v: Any) -> str:
    return f"{v:g}" if _is_number(v) else str(v)


def _fixed_text(df, axes: list[str]) -> str:
    """The axes that do not vary, as a title line: 'gpt2-small on pim-gpt, prompt 1 + 2 generated, overlap'."""
    one = {k: df[k].iloc[0] for k in list(RUN_AXES) + ["hw"] + axes if k in df.columns and df[k].nunique() == 1}
    parts = []
    if "model" in one:
        parts.append(f"{one['model']}" + (f" on {one['hw']}" if "hw" in one else ""))
    elif "hw" in one:
        parts.append(f"on {one['hw']}")
    if "prompt_len" in one and "gen_len" in one:
        parts.append(f"prompt {one['prompt_len']} + {one['gen_len']} generated")
    if "mode" in one:
        parts.append(f"mode {one['mode']}")
    parts += [f"{k}={_fmt(one[k])}" for k in axes if k in one and k not in RUN_AXES]
    return ", ".join(parts)


METRICS = (("latency_s_per_token_mean", 1e3, "latency per token (ms)", "Latency"),
           ("energy_j_per_token_mean", 1e3, "energy per token (mJ)", "Energy"),
           ("tokens_per_j", 1.0, "tokens per joule (tokens/J)", "Tokens/J"))


def sweep_figure(df, x: str, axes: list[str]) -> Figure:
    """Latency, energy and tokens/J against swept key `x`; one line per combination of the other
    swept keys. `df` holds the ok rows (with a tokens_per_j column)."""
    others = [k for k in axes if k != x]
    fig = _figure(14, 4.8)
    panels = fig.subplots(1, 3)
    numeric = all(_is_number(v) for v in df[x])
    cats = list(dict.fromkeys(df[x])) if not numeric else None
    groups = df.groupby(others, sort=True, dropna=False) if others else [((), df)]
    for name, g in groups:
        g = g.sort_values(x) if numeric else g.assign(_pos=[cats.index(v) for v in g[x]]).sort_values("_pos")
        xs = list(g[x]) if numeric else list(g["_pos"])
        name = name if isinstance(name, tuple) else (name,)
        label = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(others, name)) or None
        for ax, (col, scale, _, _) in zip(panels, METRICS):
            ax.plot(xs, list(g[col] * scale), "o-", label=label)
    for ax, (_, _, ylabel, what) in zip(panels, METRICS):
        ax.set_xlabel(key_label(x))
        ax.set_ylabel(ylabel)
        ax.set_title(f"{what} vs {x}")
        if numeric:
            lo, hi = df[x].min(), df[x].max()
            if lo > 0 and hi / lo >= 10:
                ax.set_xscale("log")
            values = sorted(set(df[x]))
            if len(values) <= 12:  # ticks at the swept values themselves
                ax.set_xticks(values, [_fmt(v) for v in values])
                ax.minorticks_off()
        else:
            ax.set_xticks(range(len(cats)), [str(c) for c in cats])
        ax.set_ylim(bottom=0)
    if others:
        panels[0].legend(fontsize=8)
    fig.suptitle(f"Sweep over {x}: {_fixed_text(df, axes)}")
    return fig


def accuracy_figure(df, axes: list[str]) -> Figure | None:
    """Accuracy against energy per token, one point per sweep point (None without accuracy columns)."""
    cols = [c for c in ACCURACY_COLUMNS if c in df.columns and df[c].notna().any()]
    if not cols:
        return None
    fig = _figure(6 * len(cols), 4.8)
    panels = fig.subplots(1, len(cols), squeeze=False)[0]
    for ax, col in zip(panels, cols):
        g = df[df[col].notna()]
        ax.plot(g["energy_j_per_token_mean"] * 1e3, g[col], "o")
        for _, r in g.iterrows():
            text = ", ".join(f"{k}={_fmt(r[k])}" for k in axes if k in g.columns)
            ax.annotate(text, (r["energy_j_per_token_mean"] * 1e3, r[col]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel("energy per token (mJ)")
        ax.set_ylabel(ACCURACY_LABELS[col])
        ax.set_title(f"{col} vs energy per token")
    fig.suptitle(f"Accuracy vs energy: {_fixed_text(df, axes)}")
    return fig


def sweep_figures(df, axes: list[str] | None = None) -> dict[str, Figure]:
    """One figure per swept key, and the accuracy-energy figure when accuracy columns exist."""
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    if df.empty:
        raise ReportError("no finished points to plot (every point failed or none has run)")
    df = df.assign(tokens_per_j=1.0 / df["energy_j_per_token_mean"])
    keys = swept_keys(df, axes)
    figs = {f"sweep_{k}": sweep_figure(df, k, keys) for k in keys}
    acc = accuracy_figure(df, keys)
    if acc is not None:
        figs["accuracy_energy"] = acc
    if not figs:
        raise ReportError("nothing to plot: no key takes more than one value among the finished points, "
                          "and there are no accuracy columns")
    return figs


# --------------------------------------------------------------------------- files


def save_figures(figs: dict[str, Figure], out: str | Path) -> list[Path]:
    """PNG per figure in folder `out` (created if its parent exists), each written atomically."""
    out = Path(out)
    if not out.parent.exists():
        raise FileNotFoundError(f"{out}: parent folder '{out.parent}' does not exist (it is not created)")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    out.mkdir(exist_ok=True)
    paths = []
    for name, fig in figs.items():
        path = out / f"{name}.png"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=out)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format="png", dpi=110)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths


def load_run(path: str | Path) -> dict:
    from sim.results import read_run_json

    return read_run_json(path, ReportError)


def figures_for(path: str | Path) -> dict[str, Figure]:
    """The plots of a saved result: a run JSON file or a sweep folder."""
    from sim.sweep import SWEEP_FILE, read_results

    path = Path(path)
    if path.is_dir():
        axes = None
        meta = path / SWEEP_FILE
        if meta.exists():
            axes = json.loads(meta.read_text()).get("axes")
        return sweep_figures(read_results(path), axes)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder (expected a run JSON or a sweep folder)")
    try:
        return run_figures(load_run(path))
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None


def default_plot_dir(path: str | Path) -> Path:
    """Beside the results: DIR -> DIR-plots, run.json -> run-plots (never inside a Parquet folder)."""
    path = Path(path)
    return path.with_name(f"{path.stem if path.is_file() else path.name}-plots")
