"""The built-in model zoo (models.yaml) and user model files in the same format."""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import fields
from pathlib import Path

import yaml
from pydantic import ValidationError

from .spec import ModelSpec, SpecError

ZOO_PATH = Path(__file__).with_name("models.yaml")
SPEC_KEYS = tuple(f.name for f in fields(ModelSpec))


def _explain(err: ValidationError) -> str:
    """One line per problem: 'key: message', unknown keys listed with the allowed ones."""
    lines = []
    for e in err.errors():
        key = ".".join(str(part) for part in e["loc"]) or "<model>"
        if e["type"] == "unexpected_keyword_argument":
            lines.append(f"unknown key {key!r} (allowed: {', '.join(SPEC_KEYS)})")
        elif e["type"] in ("missing", "missing_argument"):
            lines.append(f"missing key {key!r}")
        elif e["type"] == "value_error" and isinstance(e.get("ctx", {}).get("error"), SpecError):
            lines.append(str(e["ctx"]["error"]).split(": ", 1)[-1])  # drop the repeated "model 'x': "
        else:
            lines.append(f"{key}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(lines)


def spec_from_mapping(name: str, entry: object, origin: str) -> ModelSpec:
    """Validate one model's fields; errors name the origin (file) and the model."""
    if not isinstance(entry, dict):
        raise SpecError(f"{origin}: model {name!r}: expected a mapping of fields, got {type(entry).__name__}")
    entry = dict(entry)
    entry.setdefault("name", name)
    try:
        return ModelSpec(**entry)
    except ValidationError as err:
        raise SpecError(f"{origin}: model {name!r}: {_explain(err)}") from None
    except SpecError as err:
        raise SpecError(f"{origin}: {err}") from None


def load_yaml_specs(path: str | Path) -> dict[str, ModelSpec]:
    """Read a model file: either `models: {name: {fields}}` or one model's fields at top level
    (its name from a `name:` key, else the file stem)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"model file {str(path)!r} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: expected a mapping at top level, got {type(doc).__name__}")
    if "models" in doc:
        extra = sorted(set(doc) - {"models", "packaged_weights"})
        if extra:
            raise SpecError(f"{path}: unknown top-level key(s) {extra} (allowed: 'models', 'packaged_weights')")
        if not isinstance(doc["models"], dict) or not doc["models"]:
            raise SpecError(f"{path}: 'models' must be a non-empty mapping of name -> fields")
        return {name: spec_from_mapping(name, entry, str(path)) for name, entry in doc["models"].items()}
    spec = spec_from_mapping(str(doc.get("name", path.stem)), doc, str(path))
    return {spec.name: spec}


@functools.cache
def builtin_specs() -> dict[str, ModelSpec]:
    return load_yaml_specs(ZOO_PATH)


@functools.cache
def _packaged_weights() -> dict[str, dict]:
    return yaml.safe_load(ZOO_PATH.read_text()).get("packaged_weights", {})


def builtin_names() -> list[str]:
    return list(builtin_specs())


def get_spec(name_or_path: str | Path) -> ModelSpec:
    """A built-in model by name, or the single model described by a YAML file."""
    zoo = builtin_specs()
    if str(name_or_path) in zoo:
        return zoo[str(name_or_path)]
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        specs = load_yaml_specs(path)
        if len(specs) != 1:
            raise SpecError(f"{path}: describes {len(specs)} models ({', '.join(specs)}); "
                            "use load_yaml_specs() or give one model per file")
        return next(iter(specs.values()))
    raise SpecError(f"unknown model {str(name_or_path)!r}: not a built-in name "
                    f"({', '.join(zoo)}) nor a .yaml model file")


def packaged_weights_path(name: str) -> Path | None:
    """The weights file an installed package ships for a built-in model, else None.

    The package is located without importing it (its own dependencies need not be installed).
    """
    entry = _packaged_weights().get(name)
    if entry is None:
        return None
    found = importlib.util.find_spec(entry["package"])
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        candidate = Path(folder) / entry["file"]
        if candidate.is_file():
            return candidate
    return None


def packaged_weights_hint(name: str) -> str | None:
    entry = _packaged_weights().get(name)
    return None if entry is None else f"`{entry['install']}` (ships {entry['file']})"
