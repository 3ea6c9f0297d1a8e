"""The hardware as the mapping layer sees it: organisation numbers read from a config object.

The config is duck-typed (`cfg.dram.*`, `cfg.pim.*`), so mapping never imports `sim`; command
ids come from the standard's YAML through `hw_configs.isa.command_names_of`.
"""
from __future__ import annotations

from dataclasses import dataclass

from hw_configs.isa import MAX_CHANNELS, command_names_of

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "int8": 1}
# Commands a compiled step uses; a standard without them cannot run a transformer step.
NEEDED_COMMANDS = ("ACT16", "MAC16", "WRGB", "RDMAC16", "WR", "RD")


class MappingError(ValueError):
    """A model cannot be mapped onto a hardware configuration as asked."""


@dataclass(frozen=True)
class Device:
    """Organisation of a PIM device: channels x banks x rows x columns x lanes (elements)."""

    name: str
    channels: int
    banks: int
    rows: int
    row_bytes: int
    column_bytes: int
    elem_bytes: int
    gb_bytes: int
    command_names: tuple[str, ...]

    @property
    def col_elems(self) -> int:
        """Elements per column access = MAC lanes of one bank per MAC16."""
        return self.column_bytes // self.elem_bytes

    @property
    def row_cols(self) -> int:
        return self.row_bytes // self.column_bytes

    @property
    def row_elems(self) -> int:
        return self.row_cols * self.col_elems

    @property
    def gb_cols(self) -> int:
        return self.gb_bytes // self.column_bytes

    @property
    def tile_cols(self) -> int:
        """Columns one row pass can use: the global buffer and the row must both hold them."""
        return min(self.gb_cols, self.row_cols)

    @property
    def tile_elems(self) -> int:
        return self.tile_cols * self.col_elems

    @property
    def lanes(self) -> int:
        """Banks of all channels: each holds one output of a row pass."""
        return self.channels * self.banks

    @property
    def all_mask(self) -> int:
        return (1 << self.channels) - 1

    @property
    def row_index_bytes(self) -> int:
        """Bytes under one row index across every bank of every channel."""
        return self.lanes * self.row_bytes

    @property
    def capacity_bytes(self) -> int:
        return self.rows * self.row_index_bytes

    def cmd(self, name: str) -> int:
        return self.command_names.index(name)


def device_of(cfg) -> Device:
    """Read the organisation from a hardware config (duck-typed); errors say what is missing."""
    source = getattr(cfg, "source", getattr(cfg, "name", "<config>"))
    if getattr(cfg, "pim", None) is None:
        raise MappingError(f"{source}: hardware '{cfg.name}' has no `pim` section: a transformer step "
                           "needs PIM banks (MAC units and a global buffer)")
    d, pim = cfg.dram, cfg.pim
    if pim.mac_dtype not in DTYPE_BYTES:
        raise MappingError(f"{source}: pim.mac_dtype '{pim.mac_dtype}' unknown; expected one of {sorted(DTYPE_BYTES)}")
    elem = DTYPE_BYTES[pim.mac_dtype]
    if d.column_bytes % elem:
        raise MappingError(f"{source}: dram.column_bytes {d.column_bytes} is not a multiple of the "
                           f"{pim.mac_dtype} element size {elem}")
    if pim.global_buffer_bytes < d.column_bytes or pim.global_buffer_bytes % d.column_bytes:
        raise MappingError(f"{source}: pim.global_buffer_bytes {pim.global_buffer_bytes} must be a positive "
                           f"multiple of dram.column_bytes {d.column_bytes}")
    if d.channels > MAX_CHANNELS:
        raise MappingError(f"{source}: {d.channels} channels; channel masks hold at most {MAX_CHANNELS}")
    names = command_names_of(cfg)
    missing = [c for c in NEEDED_COMMANDS if c not in names]
    if missing:
        raise MappingError(f"{source}: DRAM standard '{d.standard}' lacks command(s) {missing}, which a "
                           f"compiled step needs ({', '.join(NEEDED_COMMANDS)})")
    return Device(name=cfg.name, channels=d.channels, banks=d.banks_per_channel, rows=d.rows_per_bank,
                  row_bytes=d.row_bytes, column_bytes=d.column_bytes, elem_bytes=elem,
                  gb_bytes=pim.global_buffer_bytes, command_names=names)


def with_channels(dev: Device, channels: int) -> Device:
    """The same device with another channel count (for capacity suggestions)."""
    return Device(dev.name, channels, dev.banks, dev.rows, dev.row_bytes, dev.column_bytes, dev.elem_bytes,
                  dev.gb_bytes, dev.command_names)
