"""Accuracy next to cost: a sweep over the numeric knobs (Taylor order, Newton-Raphson iterations,
accumulation precision, ASIC dtype), each point's accuracy from the functional core beside the
latency and energy the system simulator reports for the same config; a table and a plot.

The sweep varies one knob at a time around the base config (the base itself is the first row).
Measuring is left to callables (sim/compose.py wires the mapping, the functional core and the
timing path), so this module needs neither.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sim.results import _file_mode, check_output_path

# knobs a sweep may vary: they change numbers or ASIC cost, never where data is placed
KNOBS = ("asic.exp_taylor_order", "asic.recip_newton_iterations", "asic.rsqrt_newton_iterations", "asic.dtype",
         "pim.accumulate_dtype", "pim.adder_tree", "asic.lanes")
DEFAULT_GRID = {
    "asic.exp_taylor_order": [1, 2, 3, 4, 5, 6],
    "asic.recip_newton_iterations": [0, 1, 2, 3],
    "asic.rsqrt_newton_iterations": [0, 1, 2, 3],
    "pim.accumulate_dtype": ["fp32", "bf16"],
    "asic.dtype": ["fp32", "bf16"],
}
COLUMNS = ("knob", "value", "label", "top1_agreement", "max_abs_logit_error", "mean_abs_logit_error",
           "perplexity_reference", "perplexity_numerics", "latency_s_per_token", "energy_j_per_token",
           "asic_energy_j_per_token", "tokens_per_s")


def parse_knob(text: str) -> tuple[str, list[Any]]:
    """`asic.exp_taylor_order=2,3,4` -> ("asic.exp_taylor_order", [2, 3, 4]); values read as YAML."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not values.strip():
        raise ValueError(f"--knob '{text}': expected KEY=V1,V2,..., e.g. asic.exp_taylor_order=2,3,4")
    if key not in KNOBS:
        raise ValueError(f"--knob '{text}': '{key}' cannot be swept; sweepable knobs: {', '.join(KNOBS)}")
    return key, [yaml.safe_load(v) for v in values.split(",")]


def base_value(cfg, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def sweep_points(grid: dict[str, list], cfg) -> list[tuple[str, Any, dict]]:
    """(knob, value, overrides) per point: the base config first ('base', None, {}), then every
    value of every knob that differs from the base."""
    points = [("base", None, {})]
    for key, values in grid.items():
        for v in values:
            if v != base_value(cfg, key):
                points.append((key, v, {key: v}))
    return points


def run_sweep(points, accuracy_of: Callable[[dict], dict], cost_of: Callable[[dict], dict],
              progress: Callable[[str], None] | None = None) -> list[dict]:
    """One table row per point: accuracy_of(overrides) figures beside cost_of(overrides) figures."""
    rows = []
    for knob, value, ov in points:
        label = "base" if knob == "base" else f"{knob.split('.')[-1]}={value}"
        if progress:
            progress(label)
        rows.append({"knob": knob, "value": value, "label": label, **accuracy_of(ov), **cost_of(ov)})
    return rows


def _write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """write(tmp_path) into a temporary file in the target's folder, then rename over the target."""
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    text = table_csv(rows)
    return _write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def plot(path: str | Path, rows: list[dict], title: str = "") -> Path:
    """Mean |logit error| against latency, energy and ASIC energy per token, one point per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=True)
    knobs = list(dict.fromkeys(r["knob"] for r in rows))
    colours = {k: plt.cm.tab10(i % 10) for i, k in enumerate(knobs)}
    for ax, key, scale, unit in ((axes[0], "latency_s_per_token", 1e6, "latency per token (us)"),
                                 (axes[1], "energy_j_per_token", 1e6, "energy per token (uJ)"),
                                 (axes[2], "asic_energy_j_per_token", 1e6, "ASIC energy per token (uJ)")):
        for k in knobs:
            pts = [r for r in rows if r["knob"] == k]
            ax.scatter([r[key] * scale for r in pts], [r["mean_abs_logit_error"] for r in pts], color=colours[k],
                       label=k, marker="*" if k == "base" else "o", s=120 if k == "base" else 40)
            for r in pts:
                ax.annotate(r["label"] if k != "base" else "base", (r[key] * scale, r["mean_abs_logit_error"]),
                            fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(unit)
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("mean |logit error| vs fp32 reference")
    axes[2].legend(fontsize=8, loc="best")
    fig.suptitle(title or "accuracy vs cost")
    fig.tight_layout()

    def save(tmp: str) -> None:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")

    try:
        return _write_atomic(path, save)
    finally:
        plt.close(fig)
