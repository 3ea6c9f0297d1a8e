"""Hardware configuration: YAML presets loaded into validated, frozen pydantic models.

Every error names the file and the dotted key, because a sweep user editing one of forty
keys needs to know which one is wrong, not that "validation failed".
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

HW_CONFIG_DIR = Path(__file__).resolve().parent.parent / "hw_configs"
STANDARDS_DIR = HW_CONFIG_DIR / "standards"

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "int8": 1}


class ConfigError(ValueError):
    """A configuration problem, located by file and dotted key."""

    def __init__(self, source: str, key: str, message: str):
        self.source, self.key, self.message = source, key, message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


class _Frozen(BaseModel):
    # strict: `true` or "30" where a number belongs is an error, not a silent 1 or 30
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DramConfig(_Frozen):
    standard: str = Field(description="name of a file in hw_configs/standards/ (without .yaml)")
    channels: int = Field(gt=0, le=63)  # channel masks are int64 bit sets
    bank_groups: int = Field(gt=0)
    banks_per_channel: int = Field(gt=0, le=64)
    rows_per_bank: int = Field(gt=0)
    row_bytes: int = Field(gt=0)
    column_bytes: int = Field(gt=0)
    tck_ns: float = Field(gt=0)
    io_pins_per_channel: int = Field(gt=0)
    io_gbps_per_pin: float = Field(gt=0)
    refresh: bool = True
    timing: dict[str, int]

    @model_validator(mode="after")
    def _organisation(self) -> "DramConfig":
        if self.banks_per_channel % self.bank_groups:
            raise ValueError(
                f"banks_per_channel ({self.banks_per_channel}) must be a multiple of bank_groups ({self.bank_groups})"
            )
        if self.row_bytes % self.column_bytes:
            raise ValueError(f"row_bytes ({self.row_bytes}) must be a multiple of column_bytes ({self.column_bytes})")
        return self

    @property
    def banks_per_group(self) -> int:
        return self.banks_per_channel // self.bank_groups

    @property
    def columns_per_row(self) -> int:
        return self.row_bytes // self.column_bytes


class PimConfig(_Frozen):
    macs_per_bank: int = Field(gt=0, description="multipliers per bank, each one MAC per column access")
    mac_dtype: Literal["bf16", "fp16", "fp32", "int8"] = "bf16"
    global_buffer_bytes: int = Field(gt=0)
    accumulate_dtype: Literal["fp32", "bf16"] = Field(
        "fp32", description="precision of the adder tree and the MAC register (every addition rounds to it)")
    adder_tree: Literal["pairwise", "sequential"] = Field(
        "pairwise", description="order in which one MAC's products are added: a balanced tree of adjacent pairs, "
                                "then into the register; or one after another into the register")


PositivePj = Annotated[float, Field(gt=0)]
ASIC_OP_TYPES = ("add", "mul", "fma", "cmp", "int", "sram")


class AsicOpEnergy(_Frozen):
    """Energy of one elementary ASIC operation on one element, pJ (45 nm figures, scaled by the config)."""

    add: float = Field(gt=0)
    mul: float = Field(gt=0)
    fma: float = Field(gt=0)
    cmp: float = Field(gt=0)
    int: float = Field(gt=0, description="integer/bit operation: rounding, exponent add, seed subtract")
    sram: float = Field(gt=0, description="one element read or written in the SRAM buffer")


class AsicConfig(_Frozen):
    """The ASIC's vector unit: clock, width, buffer, number format and the paper's algorithms with their knobs."""

    clock_mhz: float = Field(gt=0)
    lanes: int = Field(gt=0, description="vector lanes, each one elementary operation per cycle")
    sram_bytes: int = Field(gt=0)
    dtype: Literal["fp32", "bf16"]
    op_overhead_cycles: int = Field(ge=0, description="fixed cycles per op: first operand read, last write")
    exp_algorithm: Literal["taylor"]
    exp_taylor_order: int = Field(ge=1, le=20)
    recip_algorithm: Literal["newton_raphson"]
    recip_newton_iterations: int = Field(ge=0, le=10)
    rsqrt_algorithm: Literal["fast_inverse_sqrt"]
    rsqrt_newton_iterations: int = Field(ge=0, le=10)
    op_pj_45nm: dict[Literal["fp32", "bf16"], AsicOpEnergy]
    scale_45nm_to_28nm: float = Field(gt=0)
    leakage_mw: float = Field(gt=0)

    @model_validator(mode="after")
    def _energy_for_dtype(self) -> "AsicConfig":
        if self.dtype not in self.op_pj_45nm:
            raise ValueError(f"op_pj_45nm has no entry for dtype '{self.dtype}' (has: {', '.join(self.op_pj_45nm)})")
        return self

    def op_pj(self) -> dict[str, float]:
        """pJ per elementary operation at this dtype and process."""
        table = self.op_pj_45nm[self.dtype]
        return {k: getattr(table, k) * self.scale_45nm_to_28nm for k in ASIC_OP_TYPES}


class EnergyConfig(_Frozen):
    """DRAM/PIM energy: per command, background by bank state, external I/O."""

    command_pj: dict[str, PositivePj] = Field(description="energy of one command of the DRAM standard")
    counted_elsewhere: dict[str, str] = Field(
        default_factory=dict, description="command -> the command_pj entry (or 'background') that already counts it")
    io_commands: list[str] = Field(default_factory=list, description="commands whose column burst crosses the DQ pins")
    active_standby_mw: float = Field(gt=0, description="per channel, while any bank has an open row")
    precharged_standby_mw: float = Field(gt=0, description="per channel, while every bank is precharged")
    io_pj_per_bit: float = Field(gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> "EnergyConfig":
        for cmd, where in self.counted_elsewhere.items():
            if cmd in self.command_pj:
                raise ValueError(f"counted_elsewhere.{cmd}: '{cmd}' also has an entry in command_pj; give it one or the other")
            if where != "background" and where not in self.command_pj:
                raise ValueError(f"counted_elsewhere.{cmd} = '{where}': expected a command of command_pj or 'background'")
        for cmd in self.io_commands:
            if cmd not in self.command_pj:
                raise ValueError(f"io_commands: '{cmd}' has no entry in command_pj")
        return self


class SystemConfig(_Frozen):
    """How the ASIC talks to the outside world (the PIM channels' links are in `dram`)."""

    host_link_gbps: float = Field(gt=0, description="ASIC <-> host link, Gb/s (token ids in, tokens out)")


class HardwareConfig(_Frozen):
    name: str = Field(description="the preset's name, printed with every result")
    description: str = Field(default="", description="one line saying what the hardware is")
    dram: DramConfig
    pim: PimConfig | None = None
    asic: AsicConfig | None = None
    energy: EnergyConfig | None = None
    system: SystemConfig | None = None
    source: str = Field(default="<memory>", exclude=True)

    def resolved(self) -> dict[str, Any]:
        """Plain-data form (for result files): every key with its value."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; every failure is a ConfigError naming the file (and line)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), "", f"malformed YAML: {where}{problem}") from None


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A preset name (`pim-gpt`) or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        return p
    candidate = HW_CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise ConfigError(str(name_or_path), "", f"no such file or preset; presets are: {', '.join(list_presets())}")


def parse_override(text: str) -> tuple[str, Any]:
    """`dram.timing.nRP=30` -> ("dram.timing.nRP", 30); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError("--set", text, "expected KEY=VALUE, e.g. dram.timing.nRP=30")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError("--set", text, "empty key")
    try:
        return key, yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError("--set", key, f"value '{raw}' is not valid YAML") from None


class OverrideError(ConfigError):
    """A `--set KEY=VALUE` that the configuration rejects: names the option and the value given."""

    def __init__(self, overrides: dict[str, Any], keys: list[str], message: str, config_source: str):
        shown = " ".join(f"--set {k}={show_value(overrides[k])}" for k in keys)
        ValueError.__init__(self, f"{shown}: {message} (applied to {config_source})")
        self.source, self.key, self.message = "--set", keys[0], message


def show_value(value: Any) -> str:
    """A value as it would be written after `--set KEY=` (text that YAML reads otherwise is quoted)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
    return text.removesuffix("...").strip()  # YAML ends a lone scalar with a '...' marker


def apply_overrides(data: dict, overrides: dict[str, Any], source: str) -> dict:
    """Set dotted keys in a raw config dict; a key must already exist unless its parent is a mapping of timings."""
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise OverrideError(overrides, [key], f"unknown key '{'.'.join(parts[: depth + 1])}'", source)
            node = node[part]
        if not isinstance(node, dict):
            raise OverrideError(overrides, [key], f"'{'.'.join(parts[:-1])}' is not a mapping", source)
        leaf = parts[-1]
        if leaf not in node and parts[:-1] != ["dram", "timing"]:
            known = ", ".join(sorted(node)) if node else "(none)"
            raise OverrideError(overrides, [key], f"unknown key '{leaf}'; known keys here: {known}", source)
        node[leaf] = value
    return data


def _blamed(overrides: dict[str, Any] | None, key: str) -> list[str]:
    """The overrides an error at dotted `key` comes from: the key itself, a parent of it that was
    replaced, or (for a check of a whole section) the overrides inside that section."""
    if not overrides or not key:
        return []
    return [k for k in overrides if k == key or key.startswith(k + ".") or k.startswith(key + ".")]


def _validation_error(source: str, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")  # pydantic's wording for a validator's ValueError
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif "input" in first and not isinstance(first["input"], (dict, list)):
        msg += f", got {first['input']!r}"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(source, key, msg)


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> HardwareConfig:
    """Load, override, validate: the config plus its DRAM standard compiled against its timings."""
    path = resolve_config_path(name_or_path)
    raw = read_yaml(path)
    source = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(source, "", "expected a mapping at the top level")
    if overrides:
        raw = apply_overrides(raw, overrides, source)
    try:
        try:
            cfg = HardwareConfig(**raw, source=source)
        except ValidationError as exc:
            raise _validation_error(source, exc) from None
        except TypeError as exc:  # e.g. a key that collides with the model's own arguments
            raise ConfigError(source, "", str(exc)) from None
        # Validates timings against the standard (missing/unknown/impossible values).
        from sim.dram_spec import compile_standard

        compile_standard(cfg)
        _check_pim(cfg)
    except ConfigError as exc:
        blamed = _blamed(overrides, exc.key) if exc.source == source else []
        if blamed:
            message = exc.message if exc.key in blamed else f"{exc.key}: {exc.message}"
            raise OverrideError(overrides, blamed, message, source) from None
        raise
    return cfg


def _check_pim(cfg: HardwareConfig) -> None:
    if cfg.pim is None:
        return
    from sim.dram_spec import compile_standard

    if "MAC16" not in compile_standard(cfg).command_names:
        raise ConfigError(cfg.source, "pim", f"a pim section needs a standard with all-bank MAC16; "
                                             f"'{cfg.dram.standard}' has none")
    feed_bytes = cfg.pim.macs_per_bank * DTYPE_BYTES[cfg.pim.mac_dtype]
    if feed_bytes != cfg.dram.column_bytes:
        raise ConfigError(
            cfg.source,
            "pim.macs_per_bank",
            f"{cfg.pim.macs_per_bank} x {cfg.pim.mac_dtype} = {feed_bytes} B per MAC, but one column access "
            f"delivers dram.column_bytes = {cfg.dram.column_bytes} B",
        )
    if cfg.pim.global_buffer_bytes % cfg.dram.column_bytes:
        raise ConfigError(cfg.source, "pim.global_buffer_bytes", "must be a multiple of dram.column_bytes")


def list_presets() -> list[str]:
    return sorted(p.stem for p in HW_CONFIG_DIR.glob("*.yaml"))
