"""Result files: every file carries the resolved configuration and the producing version, and is
written atomically so an interrupted run never leaves a half-written result behind."""
from __future__ import annotations

import json
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sim.config import HardwareConfig


def project_version() -> str:
    try:
        return version("pimsim")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def provenance(cfg: HardwareConfig, **extra: Any) -> dict[str, Any]:
    return {"pimsim_version": project_version(), "config_file": cfg.source, "config": cfg.resolved(), **extra}


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
