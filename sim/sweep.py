"""Design-space sweeps: a YAML spec expands into a grid of `simulate` calls, run on Dask, each
point saved as its own Parquet file so an interrupted sweep resumes without losing anything.

A spec (every key but `hw` and `models` may be left out):

    hw: pim-gpt                 # preset name or YAML path (relative to the spec's folder, else to the cwd)
    models: [gpt2-small]        # one name or a list
    prompt_len: 1               # one value or a list (each list is an axis of the grid)
    gen_len: [1, 2]
    modes: [overlap, serial]
    strategy: pim-gpt
    refresh: true               # default: the config's dram.refresh
    set: {dram.timing.nRP: 30}  # fixed overrides applied to every point
    grid:                       # dotted hardware keys, each a non-empty list
      dram.channels: [4, 8]
      asic.clock_mhz: [100, 1000]

Everything a spec can get wrong on its own (unknown key, empty list, a value of the wrong type
or out of its field's range, an unknown model or mode) is an error before anything runs, naming
the spec's line and the key. What only the whole configuration can reveal (a combination the
config's cross-field checks reject, a model that does not fit) fails that point alone: its row
says `failed` with the error, and the sweep goes on.

The dataset: DIR/point-<hash>.parquet, one row each, the hash taken over the resolved point
(hardware config, model shape, lengths, mode, strategy, refresh), so a point is found again
whatever spec or preset file produced it. A point whose file says `ok` is never run again;
failed points are retried (their cause may have been the worker, not the point).
DIR/00-columns.parquet holds no rows, only the union of every point's columns: pyarrow takes a
dataset's columns from its first file, and this one sorts first, so `pandas.read_parquet(DIR)`
sees every column. DIR/_sweep.json records the spec and its axes (pyarrow skips `_` files).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import sys
import tempfile
import time
import types
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from sim.config import (ConfigError, HardwareConfig, _UniqueKeyLoader, load_config, resolve_config_path)
from sim.results import project_version, write_json_atomic

COLUMNS_FILE = "00-columns.parquet"
SWEEP_FILE = "_sweep.json"
POINT_PREFIX = "point-"
HASH_CHARS = 20  # 80 bits of sha256: collisions are not a concern for grids of any size

SPEC_KEYS = ("hw", "models", "prompt_len", "gen_len", "modes", "strategy", "refresh", "set", "grid")
AXES = ("model", "prompt_len", "gen_len", "mode", "strategy")  # the run-level axes, in column order
AXIS_OF = {"models": "model", "prompt_len": "prompt_len", "gen_len": "gen_len", "modes": "mode",
           "strategy": "strategy"}
META_COLUMNS = ("status", "error", "config_hash", "version", "config", "elapsed_s")


class SweepSpecError(ConfigError):
    """A spec problem, located by file, line and key."""

    def __init__(self, path: str, line: int | None, key: str, message: str):
        source = f"{path}, line {line}" if line else path
        super().__init__(source, key, message)
        self.line = line


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Spec:
    path: str
    hw: str                                  # resolved path of the hardware YAML
    axes: dict[str, list]                    # run axes and grid keys -> values, in column order
    grid_keys: tuple[str, ...]               # the hardware keys among the axes
    fixed: dict[str, Any]                    # `set:` overrides for every point
    refresh: bool | None
    text: str

    @property
    def n_points(self) -> int:
        return math.prod(len(v) for v in self.axes.values())


def _line(node) -> int:
    return node.start_mark.line + 1


def _top_level(path: Path, text: str) -> dict[str, tuple[Any, Any]]:
    """key -> (key node, value node) of the spec's top-level mapping; YAML errors name the line."""
    loader = _UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise SweepSpecError(str(path), None, "", "the spec is empty; expected a mapping with at least "
                                 "'models' and 'grid' (see `pimsim sweep --help`)")
        if not isinstance(root, yaml.MappingNode):
            raise SweepSpecError(str(path), _line(root), "", "expected a mapping at the top level")
        loader.construct_document(root)  # duplicate keys anywhere are an error (with their line)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SweepSpecError(str(path), mark.line + 1 if mark else None, "", f"malformed YAML: {problem}") from None
    finally:
        loader.dispose()
    out = {}
    for k, v in root.value:
        key = yaml.safe_load(yaml.serialize(k)) if not isinstance(k, yaml.ScalarNode) else k.value
        out[str(key)] = (k, v)
    return out


def _value(node) -> Any:
    return yaml.load(yaml.serialize(node), Loader=_UniqueKeyLoader)


def _items(path: Path, key: str, node, allow_scalar: bool = True) -> list[tuple[Any, int]]:
    """The values of an axis with their lines: a list, or (when allowed) one scalar."""
    if isinstance(node, yaml.SequenceNode):
        if not node.value:
            raise SweepSpecError(str(path), _line(node), key, "empty list: an axis with no values has no points")
        return [(_value(n), _line(n)) for n in node.value]
    if isinstance(node, yaml.MappingNode) or not allow_scalar:
        raise SweepSpecError(str(path), _line(node), key,
                             f"expected {'a value or ' if allow_scalar else ''}a list of values, got "
                             f"{'a mapping' if isinstance(node, yaml.MappingNode) else repr(_value(node))}")
    return [(_value(node), _line(node))]


def _unwrap(annotation):
    """`X | None` -> X (optional sections)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(t) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def hardware_key(key: str, base: dict) -> TypeAdapter:
    """A validator for one dotted hardware key, found in HardwareConfig's schema.

    Field-level checks only (type, range): cross-field checks need the whole point and run when it
    is resolved. Keys inside a free-form mapping (dram.timing, energy.command_pj) must exist in the
    base config. Raises KeyError with the reason."""
    t: Any = HardwareConfig
    node: Any = base
    done: list[str] = []
    ann, meta = None, []
    for part in key.split("."):
        where = ".".join(done) or "the config"
        if _is_model(t):
            fields = {k: f for k, f in t.model_fields.items() if k != "source"}
            if part not in fields:
                raise KeyError(f"unknown key '{part}' in {where}; known keys: {', '.join(fields)}")
            f = fields[part]
            ann, meta = f.annotation, list(f.metadata)
            t = _unwrap(ann)
        elif get_origin(t) is dict:
            if not isinstance(node, dict) or part not in node:
                known = ", ".join(node) if isinstance(node, dict) and node else "(none)"
                raise KeyError(f"unknown key '{part}' in {where}; known keys: {known}")
            ann, meta = get_args(t)[1], []
            t = _unwrap(ann)
        else:
            raise KeyError(f"'{where}' is a value, not a section")
        node = node.get(part) if isinstance(node, dict) else None
        done.append(part)
    if _is_model(t) or get_origin(t) is dict:
        raise KeyError(f"'{key}' is a section; sweep one of its keys")
    return TypeAdapter(Annotated[(ann, *meta)] if meta else ann, config=ConfigDict(strict=True))


def _check_value(path: Path, key: str, adapter: TypeAdapter, value: Any, line: int) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise SweepSpecError(str(path), line, key, f"{e['msg']}, got {value!r}") from None


def _hw_path(path: Path, hw: str, line: int) -> str:
    """A preset name, a path relative to the spec's folder, or a path relative to the cwd."""
    for candidate in (path.parent / hw, Path(hw)):
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            return str(candidate)
    try:
        return str(resolve_config_path(hw))
    except ConfigError as exc:
        raise SweepSpecError(str(path), line, "hw", exc.message) from None


def load_spec(path: str | Path) -> Spec:
    """Read and check a sweep spec; every problem names the spec's line and key."""
    from sim.compose import strategies
    from sim.system.model import MODES
    from workloads import get_spec
    from workloads.spec import SpecError

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepSpecError(str(path), None, "", f"cannot read the spec: {exc.strerror or exc}") from None
    top = _top_level(path, text)
    for key, (knode, _) in top.items():
        if key not in SPEC_KEYS:
            raise SweepSpecError(str(path), _line(knode), key, f"unknown key; a spec has: {', '.join(SPEC_KEYS)}")
    if "models" not in top:
        raise SweepSpecError(str(path), None, "models", "required key is missing (a model name or a list of them)")

    hw_value, hw_line = ("pim-gpt", None) if "hw" not in top else (_value(top["hw"][1]), _line(top["hw"][1]))
    if not isinstance(hw_value, str):
        raise SweepSpecError(str(path), hw_line, "hw", f"expected a preset name or YAML path, got {hw_value!r}")
    hw = _hw_path(path, hw_value, hw_line)

    fixed: dict[str, Any] = {}
    set_lines: dict[str, int] = {}
    if "set" in top:
        node = top["set"][1]
        if not isinstance(node, yaml.MappingNode):
            raise SweepSpecError(str(path), _line(node), "set", "expected a mapping of dotted keys to values")
        for k, v in node.value:
            fixed[str(_value(k))] = _value(v)
            set_lines[str(_value(k))] = _line(k)
    try:
        base_cfg = load_config(hw, fixed or None)
    except ConfigError as exc:
        key = f"set.{exc.key}" if exc.key in fixed else (exc.key or "hw")
        raise SweepSpecError(str(path), set_lines.get(exc.key, hw_line), key, str(exc)) from None
    base = base_cfg.resolved()

    axes: dict[str, list] = {}
    defaults = {"modes": ["overlap"], "strategy": ["pim-gpt"], "prompt_len": [8], "gen_len": [32]}
    for spec_key, axis in AXIS_OF.items():
        if spec_key not in top:
            axes[axis] = list(defaults[spec_key])
            continue
        items = _items(path, spec_key, top[spec_key][1])
        values = []
        for v, line in items:
            if spec_key == "models":
                if not isinstance(v, str):
                    raise SweepSpecError(str(path), line, spec_key, f"expected a model name or YAML file, got {v!r}")
                model_path = path.parent / v
                name = str(model_path) if model_path.suffix in (".yaml", ".yml") and model_path.is_file() else v
                try:
                    get_spec(name)
                except SpecError as exc:
                    raise SweepSpecError(str(path), line, spec_key, str(exc)) from None
                v = name
            elif spec_key in ("prompt_len", "gen_len"):
                low = 1 if spec_key == "prompt_len" else 0
                if not isinstance(v, int) or isinstance(v, bool) or v < low:
                    raise SweepSpecError(str(path), line, spec_key, f"expected an integer >= {low}, got {v!r}")
            elif spec_key == "modes":
                if v not in MODES:
                    raise SweepSpecError(str(path), line, spec_key, f"unknown mode {v!r}; expected one of {', '.join(MODES)}")
            elif spec_key == "strategy":
                if v not in strategies():
                    raise SweepSpecError(str(path), line, spec_key,
                                         f"unknown strategy {v!r}; expected one of {', '.join(strategies())}")
            if v in values:
                raise SweepSpecError(str(path), line, spec_key, f"{v!r} is listed twice")
            values.append(v)
        axes[axis] = values

    refresh = None
    if "refresh" in top:
        refresh = _value(top["refresh"][1])
        if refresh is not None and not isinstance(refresh, bool):
            raise SweepSpecError(str(path), _line(top["refresh"][1]), "refresh", f"expected true or false, got {refresh!r}")

    grid_keys: list[str] = []
    if "grid" in top:
        node = top["grid"][1]
        if not isinstance(node, yaml.MappingNode):
            raise SweepSpecError(str(path), _line(node), "grid", "expected a mapping of dotted hardware keys to lists")
        if not node.value:
            raise SweepSpecError(str(path), _line(node), "grid", "empty grid: give at least one key, or leave 'grid' out")
        for knode, vnode in node.value:
            key = str(_value(knode))
            where = f"grid.{key}"
            if key in fixed:
                raise SweepSpecError(str(path), _line(knode), where, "also fixed in 'set'; give it in one place")
            if key in AXES or key in AXIS_OF:
                top_key = next(k for k, a in AXIS_OF.items() if key in (k, a))
                raise SweepSpecError(str(path), _line(knode), where,
                                     f"not a hardware key; give it at the top level as '{top_key}:'")
            try:
                adapter = hardware_key(key, base)
            except KeyError as exc:
                raise SweepSpecError(str(path), _line(knode), where, exc.args[0]) from None
            values = []
            for v, line in _items(path, where, vnode, allow_scalar=False):
                v = _check_value(path, where, adapter, v, line)
                if v in values:
                    raise SweepSpecError(str(path), line, where, f"{v!r} is listed twice")
                values.append(v)
            axes[key] = values
            grid_keys.append(key)
    return Spec(path=str(path), hw=hw, axes=axes, grid_keys=tuple(grid_keys), fixed=fixed, refresh=refresh, text=text)


# --------------------------------------------------------------------------- points


@dataclass
class Point:
    values: dict[str, Any]                   # axis -> value (the row's swept columns)
    overrides: dict[str, Any]
    cfg: HardwareConfig | None = None        # None: the config was rejected when resolved
    error: str | None = None
    key: str = ""                            # config hash
    resolved: dict = field(default_factory=dict)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(resolved: dict) -> str:
    return hashlib.sha256(_canonical(resolved).encode()).hexdigest()[:HASH_CHARS]


def expand(spec: Spec) -> list[Point]:
    """Every point of the grid, each resolved (config loaded) and keyed by its hash."""
    from workloads import get_spec

    points = []
    names = list(spec.axes)
    for combo in itertools.product(*spec.axes.values()):
        values = dict(zip(names, combo))
        overrides = {**spec.fixed, **{k: values[k] for k in spec.grid_keys}}
        run = {"model": asdict(get_spec(values["model"])), "prompt_len": values["prompt_len"],
               "gen_len": values["gen_len"], "mode": values["mode"], "strategy": values["strategy"],
               "refresh": spec.refresh}
        try:
            cfg = load_config(spec.hw, overrides)
        except ConfigError as exc:
            resolved = {"hardware_file": spec.hw, "overrides": overrides, **run}
            points.append(Point(values, overrides, None, f"{type(exc).__name__}: {exc}", config_hash(resolved), resolved))
            continue
        # refresh as it will run (unset: the config's), so both spellings of one point share a hash
        run["refresh"] = cfg.dram.refresh if spec.refresh is None else spec.refresh
        resolved = {"hardware": cfg.resolved(), **run}
        points.append(Point(values, overrides, cfg, None, config_hash(resolved), resolved))
    return points


# --------------------------------------------------------------------------- one point (runs on a worker)


def run_point(cfg: HardwareConfig, model: str, prompt_len: int, gen_len: int, mode: str, strategy: str,
              refresh: bool | None) -> dict:
    """simulate() one point; a failure is a result (status and message), not an exception."""
    from sim.compose import simulate

    t0 = time.perf_counter()
    try:
        gen = simulate(model, cfg, prompt_len, gen_len, mode=mode, strategy=strategy, refresh=refresh)
    except Exception as exc:  # recorded in the point's row; the sweep goes on
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "elapsed_s": time.perf_counter() - t0}
    return {"status": "ok", "error": None, "summary": gen.summary, "config": gen.config,
            "elapsed_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- rows and files


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: nested breakdowns as columns."""
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _plain(v: Any) -> Any:
    """numpy scalars -> Python; non-scalar swept values (lists) -> JSON text."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        v = v.item()
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def make_row(point: Point, result: dict) -> dict[str, Any]:
    """One dataset row: swept columns, summary figures (flattened), status, error, hash, version, config."""
    row = {k: _plain(v) for k, v in point.values.items()}
    row["hw"] = point.cfg.name if point.cfg is not None else None
    if result.get("summary"):
        for k, v in flatten(result["summary"]).items():
            if k not in row:
                row[k] = _plain(v)
    row["status"] = result["status"]
    row["error"] = result.get("error")
    row["config_hash"] = point.key
    row["version"] = project_version()
    row["config"] = _canonical(result.get("config") or point.resolved)
    row["elapsed_s"] = float(result.get("elapsed_s", 0.0))
    return row


def _arrow_type(value: Any, column: str):
    import pyarrow as pa

    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    if isinstance(value, str) or column in ("error", "hw") or column in META_COLUMNS:
        return pa.string()
    return pa.float64()  # an undefined figure (None), e.g. row_hit_rate with no row accesses


def row_table(row: dict):
    import pyarrow as pa

    schema = pa.schema([(k, _arrow_type(v, k)) for k, v in row.items()])
    return pa.Table.from_pylist([row], schema=schema)


def write_parquet_atomic(path: Path, table) -> Path:
    """Write to a hidden temporary file beside `path`, then rename: readers never see half a file."""
    import pyarrow.parquet as pq

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def point_path(out: Path, key: str) -> Path:
    return out / f"{POINT_PREFIX}{key}.parquet"


def finished(out: Path, key: str) -> bool:
    """Whether the point's file exists and says ok (a failed point is retried)."""
    import pyarrow.parquet as pq

    p = point_path(out, key)
    if not p.exists():
        return False
    try:
        status = pq.read_table(p, columns=["status"]).column("status").to_pylist()
    except Exception:  # unreadable (e.g. written by something else): run it again
        return False
    return status == ["ok"]


class Columns:
    """The union of the points' columns, kept in DIR/00-columns.parquet (rewritten when it grows)."""

    def __init__(self, out: Path):
        import pyarrow.parquet as pq

        self.path = out / COLUMNS_FILE
        self.schema = None
        if self.path.exists():  # a superset of every point's columns: it is written before the point
            self.schema = pq.read_schema(self.path)
            return
        for p in sorted(out.glob(f"{POINT_PREFIX}*.parquet")):
            self.add(pq.read_schema(p), write=False)
        if self.schema is not None:
            self._write()

    def add(self, schema, write: bool = True) -> None:
        import pyarrow as pa

        merged = schema if self.schema is None else pa.unify_schemas([self.schema, schema], promote_options="permissive")
        if self.schema is None or not merged.equals(self.schema):
            self.schema = merged
            if write:
                self._write()

    def _write(self) -> None:
        write_parquet_atomic(self.path, self.schema.empty_table())


def read_results(out: str | Path):
    """The sweep's rows as a DataFrame (every column of every point)."""
    import pandas as pd

    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: not a sweep results folder")
    if not any(out.glob(f"{POINT_PREFIX}*.parquet")):
        raise ValueError(f"{out}: holds no sweep points ({POINT_PREFIX}*.parquet)")
    return pd.read_parquet(out)


# --------------------------------------------------------------------------- the sweep


@dataclass
class Outcome:
    total: int
    skipped: int          # finished before this run
    computed: int         # run now (ok or failed)
    failed: int           # failed now (including points rejected when resolved)
    wall_s: float
    out: Path


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out}: exists and is not a folder")
    if not out.parent.exists():
        raise FileNotFoundError(f"--out {out}: parent folder '{out.parent}' does not exist (it is not created)")
    out.mkdir(exist_ok=True)
    for stale in out.glob(".*.tmp"):  # a killed run's unfinished write
        stale.unlink(missing_ok=True)


def _client(scheduler: str | None, workers: int):
    """(client, cluster we own or None)."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    return Client(cluster), cluster


def _compile_here(point: Point, refresh: bool | None) -> None:
    """One token of a point in this process before local workers start: numba compiles the timing
    kernels once and caches them on disk, and the workers load that cache instead of each compiling
    (minutes each in a fresh checkout; about a second here when the cache is warm)."""
    from sim.compose import simulate

    v = point.values
    try:
        simulate(v["model"], point.cfg, 1, 0, mode=v["mode"], strategy=v["strategy"], refresh=refresh)
    except Exception:  # this point fails on a worker too and is recorded there; the cache may stay cold
        pass


def run_sweep(spec: Spec | str | Path, out: str | Path, *, scheduler: str | None = None, workers: int = 2,
              client=None, progress: bool = True, stream=None) -> Outcome:
    """Run every unfinished point of `spec` on Dask and save each as it completes."""
    t0 = time.perf_counter()
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    points = expand(spec)  # every config resolved before anything runs
    _prepare_out(out)
    write_json_atomic(out / SWEEP_FILE, {"version": project_version(), "spec_file": spec.path, "spec": spec.text,
                                         "axes": list(spec.axes), "grid_keys": list(spec.grid_keys),
                                         "hardware_file": spec.hw, "points": spec.n_points})
    columns = Columns(out)
    todo = [p for p in points if not finished(out, p.key)]
    skipped = len(points) - len(todo)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(points), initial=skipped, desc=f"sweep {Path(spec.path).name}", unit="point",
                   file=stream or sys.stderr)
    failed = 0

    def save(point: Point, result: dict) -> None:
        nonlocal failed
        table = row_table(make_row(point, result))
        columns.add(table.schema)
        write_parquet_atomic(point_path(out, point.key), table)
        failed += result["status"] != "ok"
        if bar is not None:
            bar.update(1)

    for p in todo:
        if p.cfg is None:
            save(p, {"status": "failed", "error": p.error})
    runnable = [p for p in todo if p.cfg is not None]
    own_client, own_cluster = None, None
    if runnable:
        from distributed import as_completed

        if client is None:
            if not scheduler:
                _compile_here(runnable[0], spec.refresh)
            own_client, own_cluster = _client(scheduler, workers)
            client = own_client
        try:
            futures = {}
            run_id = uuid.uuid4().hex[:8]  # task keys unique to this run on a shared scheduler
            for p in runnable:
                v = p.values
                fut = client.submit(run_point, p.cfg, v["model"], v["prompt_len"], v["gen_len"], v["mode"],
                                    v["strategy"], spec.refresh, key=f"point-{p.key}-{run_id}")
                futures[fut] = p
            for fut in as_completed(futures):
                p = futures[fut]
                try:
                    result = fut.result()
                except Exception as exc:  # the worker died or could not run the task at all
                    result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                save(p, result)
        finally:
            if own_client is not None:  # an existing cluster (--scheduler) keeps running
                own_client.close()
            if own_cluster is not None:
                own_cluster.close()
    if bar is not None:
        bar.close()
    return Outcome(total=len(points), skipped=skipped, computed=len(todo), failed=failed,
                   wall_s=time.perf_counter() - t0, out=out)
