"""Baselines to compare PIM-GPT with: roofline models of GPUs and CPUs, and measured latencies.

Roofline method (batch 1, one decode step at a time, as PIM-GPT is simulated): a step at
position p reads every GEMV weight once and the KV cache of p + 1 positions, and performs
`ModelSpec.flops_per_token(p + 1)` FLOPs; its time is max(bytes / bandwidth, FLOPs / peak).
Norms, softmax, activations and kernel-launch overheads are left out, so the roofline is a
lower bound of what the device takes (a measured latency is usually well above it).
Energy = power x time, with the device drawing its rated power for the whole step (an
assumption: an upper bound for a memory-bound step on a GPU, which idles most of its cores).

Comparison, the paper's way: speedup = baseline time / PIM-GPT time for the same tokens;
energy efficiency = baseline energy / PIM-GPT energy for the same tokens.

Devices: hw_configs/baselines/devices.yaml (every number with its source). Measured latencies:
a CSV with one row per measurement (MEASURED_COLUMNS), hw_configs/baselines/measured.csv holds
the ones REFERENCE section 7 lists.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

BASELINES_DIR = Path(__file__).resolve().parent.parent / "hw_configs" / "baselines"
DEVICES_YAML = BASELINES_DIR / "devices.yaml"
MEASURED_CSV = BASELINES_DIR / "measured.csv"
DEVICE_KEYS = ("peak_flops", "bandwidth_bytes_per_s", "power_w", "weight_bytes")
ROOFLINE_METHOD = ("roofline: per decode step max(bytes / bandwidth, FLOPs / peak); bytes = GEMV weights + KV "
                   "cache read at the device's precision; energy = rated power x time")
# column -> (required, what it holds)
MEASURED_COLUMNS = {
    "device": (True, "a device key of devices.yaml, or any name when power_w is given"),
    "model": (True, "a model zoo name (e.g. gpt3-xl)"),
    "prompt_len": (True, "prompt tokens of the measured run (integer >= 1)"),
    "gen_len": (True, "generated tokens of the measured run (integer >= 0)"),
    "latency_ms": (True, "end-to-end time of the run in milliseconds (> 0): prompt and generation"),
    "power_w": (False, "power drawn during the run in watts (> 0); blank: the device's power_w"),
    "source": (True, "where the number comes from (non-empty)"),
}


class BaselineError(ValueError):
    """Bad baseline input; the message names the file and the key, line or column."""


@dataclass(frozen=True)
class Device:
    key: str
    name: str
    peak_flops: float
    bandwidth_bytes_per_s: float
    power_w: float
    weight_bytes: int
    sources: dict


@dataclass(frozen=True)
class Baseline:
    """One baseline's time and energy for the decode steps at `positions` of a model."""

    device: str
    model: str
    method: str                 # "roofline" or "measured"
    prompt_len: int
    gen_len: int
    latency_s_per_token: float  # mean over the run's decode steps (prompt and generated)
    energy_j_per_token: float
    bound: str                  # roofline: "memory" or "compute" (of most steps); measured: its source

    @property
    def steps(self) -> int:
        return self.prompt_len + self.gen_len


def load_devices(path: str | Path = DEVICES_YAML) -> dict[str, Device]:
    """Devices by key; every number must be a positive number with a non-empty `source`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BaselineError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("devices"), dict) or not raw["devices"]:
        raise BaselineError(f"{path}: expected a top-level 'devices:' mapping of device keys")
    out = {}
    for key, d in raw["devices"].items():
        if not isinstance(d, dict):
            raise BaselineError(f"{path}: devices.{key}: expected a mapping with name, {', '.join(DEVICE_KEYS)}")
        unknown = set(d) - {"name", *DEVICE_KEYS}
        if unknown:
            raise BaselineError(f"{path}: devices.{key}: unknown key(s) {sorted(unknown)}; expected name, "
                                f"{', '.join(DEVICE_KEYS)}")
        vals, sources = {}, {}
        for k in DEVICE_KEYS:
            item = d.get(k)
            where = f"{path}: devices.{key}.{k}"
            if not isinstance(item, dict) or "value" not in item or not str(item.get("source", "")).strip():
                raise BaselineError(f"{where}: expected {{value: NUMBER, source: TEXT}}")
            v = item["value"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise BaselineError(f"{where}.value: expected a positive number, got {v!r}")
            vals[k], sources[k] = v, item["source"]
        if int(vals["weight_bytes"]) != vals["weight_bytes"]:
            raise BaselineError(f"{path}: devices.{key}.weight_bytes.value: expected a whole number of bytes")
        out[key] = Device(key, str(d.get("name", key)), float(vals["peak_flops"]), float(vals["bandwidth_bytes_per_s"]),
                          float(vals["power_w"]), int(vals["weight_bytes"]), sources)
    return out


# --------------------------------------------------------------------------- roofline


def step_bytes(spec, context: int, weight_bytes: int) -> int:
    """Bytes a decode step attending to `context` positions reads: GEMV weights + the KV cache."""
    kv_elements = 2 * spec.n_layers * spec.kv_dim * context  # K and V, every layer
    return (spec.matmul_params_per_token + kv_elements) * weight_bytes


def roofline_step_s(spec, dev: Device, context: int) -> tuple[float, str]:
    """(seconds, "memory" | "compute") of one decode step attending to `context` positions."""
    t_mem = step_bytes(spec, context, dev.weight_bytes) / dev.bandwidth_bytes_per_s
    t_cmp = spec.flops_per_token(context) / dev.peak_flops
    return (t_mem, "memory") if t_mem >= t_cmp else (t_cmp, "compute")


def roofline(spec, dev: Device, prompt_len: int, gen_len: int) -> Baseline:
    """The roofline over the decode steps at positions 0 .. prompt_len + gen_len - 1."""
    _check_lengths(prompt_len, gen_len, "roofline")
    per = [roofline_step_s(spec, dev, p + 1) for p in range(prompt_len + gen_len)]
    t = math.fsum(s for s, _ in per) / len(per)
    n_mem = sum(b == "memory" for _, b in per)
    return Baseline(dev.key, spec.name, "roofline", prompt_len, gen_len, t, dev.power_w * t,
                    "memory" if 2 * n_mem >= len(per) else "compute")


def _check_lengths(prompt_len: int, gen_len: int, where: str) -> None:
    if prompt_len < 1 or gen_len < 0:
        raise BaselineError(f"{where}: need prompt_len >= 1 and gen_len >= 0, got {prompt_len}, {gen_len}")


# --------------------------------------------------------------------------- measured


def load_measured(path: str | Path, devices: dict[str, Device] | None = None) -> list[Baseline]:
    """Measured baselines from a CSV (MEASURED_COLUMNS); errors name the file, line and column."""
    from workloads import get_spec
    from workloads.spec import SpecError

    path = Path(path)
    devices = load_devices() if devices is None else devices
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise BaselineError(f"{path}: not a UTF-8 text file") from None
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = reader.fieldnames
    if not header:
        raise BaselineError(f"{path}: empty file; expected a header line with {', '.join(MEASURED_COLUMNS)}")
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in MEASURED_COLUMNS]
    if unknown:
        raise BaselineError(f"{path}: line 1: unknown column(s) {unknown}; expected {', '.join(MEASURED_COLUMNS)}")
    missing = [c for c, (req, _) in MEASURED_COLUMNS.items() if req and c not in header]
    if missing:
        raise BaselineError(f"{path}: line 1: missing column(s) {missing}")
    reader.fieldnames = header
    rows = []
    for rec in reader:
        line = reader.line_num
        if None in rec:
            raise BaselineError(f"{path}: line {line}: more fields than the header's {len(header)}")
        cell = {k: (v or "").strip() for k, v in rec.items()}
        if not any(cell.values()):
            continue

        def bad(col: str, what: str):
            return BaselineError(f"{path}: line {line}, column '{col}': {what}, got {cell.get(col, '')!r}")

        for c, (req, what) in MEASURED_COLUMNS.items():
            if req and not cell.get(c):
                raise bad(c, f"empty; expected {what}")
        try:
            spec = get_spec(cell["model"])
        except SpecError:
            raise bad("model", "unknown model; expected a model zoo name") from None
        ints = {}
        for c, lo in (("prompt_len", 1), ("gen_len", 0)):
            try:
                ints[c] = int(cell[c])
            except ValueError:
                raise bad(c, f"expected an integer >= {lo}") from None
            if ints[c] < lo:
                raise bad(c, f"expected an integer >= {lo}")
        floats = {}
        for c in ("latency_ms", "power_w"):
            if not cell.get(c):
                continue
            try:
                floats[c] = float(cell[c])
            except ValueError:
                raise bad(c, "expected a positive number") from None
            if not math.isfinite(floats[c]) or floats[c] <= 0:
                raise bad(c, "expected a positive number")
        dev = devices.get(cell["device"])
        power = floats.get("power_w", dev.power_w if dev is not None else None)
        if power is None:
            raise bad("power_w", f"empty, and device {cell['device']!r} is not in devices.yaml "
                                 f"({', '.join(devices)}) to take its power from; expected the power in watts")
        steps = ints["prompt_len"] + ints["gen_len"]
        t = floats["latency_ms"] * 1e-3 / steps
        rows.append(Baseline(cell["device"], spec.name, "measured", ints["prompt_len"], ints["gen_len"], t, power * t,
                             cell["source"]))
    if not rows:
        raise BaselineError(f"{path}: no data rows after the header")
    return rows


# --------------------------------------------------------------------------- comparison


def compare(base: Baseline, pim_latency_s_per_token: float, pim_energy_j_per_token: float) -> dict:
    """Speedup and energy efficiency of a PIM-GPT run over the same decode steps as `base`
    (per-step means over the same tokens, so the ratios are those of the whole runs)."""
    if pim_latency_s_per_token <= 0 or pim_energy_j_per_token <= 0:
        raise ValueError(f"PIM figures must be positive, got {pim_latency_s_per_token} s, {pim_energy_j_per_token} J")
    return {"speedup": base.latency_s_per_token / pim_latency_s_per_token,
            "energy_efficiency": base.energy_j_per_token / pim_energy_j_per_token}


@dataclass(frozen=True)
class RunFigures:
    """The per-token figures of a saved `pimsim run --json` result."""

    model: str
    prompt_len: int
    gen_len: int
    latency_s_per_token: float
    energy_j_per_token: float


def load_run_result(path: str | Path) -> RunFigures:
    """Model, lengths and per-token figures of a `pimsim run --json` file; errors name the key."""
    from sim.results import read_run_json

    path = Path(path)
    doc = read_run_json(path, BaselineError)

    def get(*keys):
        v = doc
        for i, k in enumerate(keys):
            if not isinstance(v, dict) or k not in v:
                raise BaselineError(f"{path}: missing key '{'.'.join(keys[:i + 1])}'; expected a `pimsim run --json` "
                                    "result")
            v = v[k]
        return v

    fig = RunFigures(str(get("config", "model", "name")), get("config", "prompt_len"), get("config", "gen_len"),
                     get("summary", "latency_s_per_token_mean"), get("summary", "energy_j_per_token_mean"))
    for k in ("prompt_len", "gen_len"):
        v = getattr(fig, k)
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if k == "prompt_len" else 0):
            raise BaselineError(f"{path}: config.{k}: expected an integer >= {1 if k == 'prompt_len' else 0}, got {v!r}")
    for k, key in (("latency_s_per_token", "latency_s_per_token_mean"), ("energy_j_per_token", "energy_j_per_token_mean")):
        v = getattr(fig, k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise BaselineError(f"{path}: summary.{key}: expected a positive number, got {v!r}")
    return fig


PAPER_MODELS = ("gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-small", "gpt3-medium", "gpt3-large",
                "gpt3-xl")  # the 8 GPT models of the evaluation (REFERENCE sections 1 and 5)


def baseline_table(models, prompt_len: int, gen_len: int, devices: dict[str, Device] | None = None,
                   measured: list[Baseline] = (), pim=None) -> list[dict]:
    """Rows (one per model and baseline) of roofline baselines at the given lengths plus the
    measured ones for these models. `pim(model, prompt_len, gen_len) -> (s/token, J/token) | None`,
    when given, adds PIM-GPT's figures and the speedup and efficiency over each baseline (where it
    has figures for the baseline's model and lengths)."""
    from workloads import get_spec

    devices = load_devices() if devices is None else devices
    rows = []
    for m in models:
        spec = get_spec(m)
        bases = [roofline(spec, d, prompt_len, gen_len) for d in devices.values()]
        bases += [b for b in measured if b.model == spec.name]
        for b in bases:
            row = {"model": spec.name, "device": b.device, "method": b.method, "prompt_len": b.prompt_len,
                   "gen_len": b.gen_len, "latency_ms_per_token": b.latency_s_per_token * 1e3,
                   "energy_mj_per_token": b.energy_j_per_token * 1e3, "bound": b.bound}
            got = pim(spec.name, b.prompt_len, b.gen_len) if pim is not None else None
            if got is not None:
                t, e = got
                row |= {"pim_latency_ms_per_token": t * 1e3, "pim_energy_mj_per_token": e * 1e3, **compare(b, t, e)}
            rows.append(row)
    return rows
