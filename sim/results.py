"""Result files: every file carries the resolved configuration and the producing version, is
strict JSON (no NaN or Infinity: an undefined figure is null), and is written atomically so an
interrupted run never leaves a half-written result behind."""
from __future__ import annotations

import json
import math
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sim.config import HardwareConfig

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


class OutputPathError(ValueError):
    """A result cannot be written where the user asked (checked before any work is done)."""


def project_version() -> str:
    """The installed version, or the source tree's own (pyproject.toml) when run from a checkout."""
    try:
        return version("pimsim")
    except PackageNotFoundError:
        pass
    try:
        import tomllib

        return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def provenance(cfg: HardwareConfig, **extra: Any) -> dict[str, Any]:
    return {"pimsim_version": project_version(), "config_file": cfg.source, "config": cfg.resolved(), **extra}


def finite_or_none(value: float | None) -> float | None:
    """A figure for a result file: None (JSON null) when it is undefined (NaN) or infinite."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def check_output_path(path: str | Path) -> Path:
    """Fail now, before a long run, if a result file cannot be created at `path`.

    The folder must exist: a mistyped folder is an error, not a new folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write results to '{path}': it is a directory; "
                              f"give a file name such as '{path / 'result.json'}'")
    parent = path.parent
    if not parent.exists():
        raise OutputPathError(f"cannot write results to '{path}': directory '{parent}' does not exist "
                              "(it is not created; make it first)")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write results to '{path}': '{parent}' is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write results to '{path}': directory '{parent}' is not writable")
    return path


def _non_finite(obj: Any, where: str = "") -> str | None:
    """The dotted key of the first NaN/Infinity in `obj`, if any."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "<top level>"
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = _non_finite(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _file_mode(path: Path) -> int:
    """The mode a new file gets from the user's umask (an existing file keeps its mode)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        pass
    try:  # Linux: read it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_json_atomic(path: str | Path, payload: dict[str, Any], compact: bool = False) -> Path:
    """Write strict JSON to a temporary file in the same folder, then rename over the target
    (`compact`: no indentation or spaces, for large files such as timelines)."""
    path = check_output_path(path)
    bad = _non_finite(payload)
    if bad:
        raise ValueError(f"result for '{path}': '{bad}' is not a finite number; strict JSON has no "
                         "NaN/Infinity (an undefined figure must be None)")
    text = (json.dumps(payload, separators=(",", ":"), allow_nan=False) if compact
            else json.dumps(payload, indent=2, sort_keys=False, allow_nan=False)) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode(path))  # mkstemp makes 0600
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_run_json(path: str | Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """A result file written by `pimsim run --json`, as a dict; `error` (naming the file) when
    it cannot be read, is not JSON or is not a JSON object."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise error(f"{path}: expected a JSON object written by `pimsim run --json`")
    return doc
