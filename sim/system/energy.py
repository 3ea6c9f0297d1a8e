"""Energy of a run, every term separately (config `energy:` and `asic:`).

    E = sum_cmd count[cmd] x command_pj[cmd]                        (DRAM/PIM commands)
      + sum_ch (active_cycles x active_standby_mw + precharged_cycles x precharged_standby_mw) x tCK
      + (DQ bytes of io_commands + link bytes) x 8 x io_pj_per_bit   (external I/O)
      + sum_op ASIC dynamic energy (sim.system.asic) + leakage_mw x duration

Units: pJ inside (mW x ns = pJ), J in `breakdown`. Commands listed in `counted_elsewhere` (PRE
inside ACT's tRC energy, TMOD as standby time) cost nothing by themselves, so nothing is counted twice.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from hw_configs.program import AsicOp
from sim.config import ConfigError, HardwareConfig
from sim.system.asic import AsicModel

PJ_PER_J = 1e12


class EnergyModel:
    """Energy terms of one hardware config for one standard's command table (`command_names`)."""

    def __init__(self, cfg: HardwareConfig, command_names: Sequence[str]):
        if cfg.energy is None:
            raise ConfigError(cfg.source, "energy", "this hardware config has no energy section")
        e = cfg.energy
        self.cfg, self.energy = cfg, e
        self.command_names = tuple(command_names)
        for name in self.command_names:
            if name not in e.command_pj and name not in e.counted_elsewhere:
                raise ConfigError(cfg.source, f"energy.command_pj.{name}",
                                  f"no energy entry for command '{name}' of standard '{cfg.dram.standard}'; "
                                  f"give it a pJ value, or list it in energy.counted_elsewhere")
        known = set(self.command_names)
        for section, names in (("command_pj", e.command_pj), ("counted_elsewhere", e.counted_elsewhere)):
            for name in names:
                if name not in known:
                    raise ConfigError(cfg.source, f"energy.{section}.{name}",
                                      f"'{name}' is not a command of standard '{cfg.dram.standard}' "
                                      f"({', '.join(self.command_names)})")
        self.cmd_pj = np.array([e.command_pj.get(n, 0.0) for n in self.command_names])       # [n_cmd]
        self.cmd_dq_bytes = np.array([cfg.dram.column_bytes if n in e.io_commands else 0
                                      for n in self.command_names], np.int64)                # [n_cmd]
        self.asic = AsicModel(cfg) if cfg.asic is not None else None

    # ---- terms, pJ ----------------------------------------------------------------------------------
    def _totals(self, counts) -> np.ndarray:
        """[..., n_cmd] counts (e.g. EngineResult.counts, [channels, n_cmd]) -> [n_cmd] totals."""
        c = np.asarray(counts)
        if c.ndim == 0 or c.shape[-1] != len(self.command_names):
            raise ValueError(f"command counts must have a last axis of {len(self.command_names)} "
                             f"({', '.join(self.command_names)}), got shape {c.shape}")
        if not np.issubdtype(c.dtype, np.integer) or (c < 0).any():
            raise ValueError("command counts must be non-negative integers")
        return c.reshape(-1, c.shape[-1]).sum(axis=0)

    def command_pj(self, counts) -> dict[str, float]:
        """Per-command energy of the commands issued (every command with a non-zero count)."""
        tot = self._totals(counts)
        return {n: float(tot[i] * self.cmd_pj[i]) for i, n in enumerate(self.command_names) if tot[i]}

    def background_pj(self, active_cycles, precharged_cycles) -> dict[str, float]:
        """Standby power x time per bank state, from per-channel cycle counts ([channels] each)."""
        act, pre = (np.asarray(x) for x in (active_cycles, precharged_cycles))
        n_ch = self.cfg.dram.channels
        for name, x in (("active_cycles", act), ("precharged_cycles", pre)):
            if x.shape != (n_ch,) or not np.issubdtype(x.dtype, np.integer) or (x < 0).any():
                raise ValueError(f"{name} must be {n_ch} non-negative integers (one per channel), got {x!r}")
        tck = self.cfg.dram.tck_ns
        return {"active": float(act.sum()) * tck * self.energy.active_standby_mw,
                "precharged": float(pre.sum()) * tck * self.energy.precharged_standby_mw}

    def dq_bytes(self, counts) -> int:
        """Bytes the commands move over the channels' DQ pins (io_commands, column_bytes each)."""
        return int(self._totals(counts) @ self.cmd_dq_bytes)

    def io_pj(self, nbytes: int) -> float:
        if nbytes < 0:
            raise ValueError(f"I/O bytes must be >= 0, got {nbytes}")
        return nbytes * 8 * self.energy.io_pj_per_bit

    def asic_dynamic_pj(self, ops: Iterable[AsicOp]) -> float:
        ops = list(ops)
        if self.asic is None:
            if ops:
                raise ConfigError(self.cfg.source, "asic", f"{len(ops)} ASIC ops but the config has no asic section")
            return 0.0
        return sum(self.asic.dynamic_pj(op) for op in ops)

    def asic_leakage_pj(self, duration_cycles: int) -> float:
        """ASIC leakage over `duration_cycles` DRAM cycles (0 without an asic section)."""
        if self.asic is None:
            return 0.0
        return self.asic.leakage_pj(duration_cycles * self.cfg.dram.tck_ns)

    # ---- everything ---------------------------------------------------------------------------------
    def breakdown(self, *, command_counts, active_cycles, precharged_cycles, link_bytes: int,
                  asic_ops: Iterable[AsicOp], duration_cycles: int, asic_dynamic_pj: float | None = None) -> dict:
        """All terms in joules, nested; `total` is the sum of the leaves.

        command_counts: [..., n_cmd] commands issued; active/precharged_cycles: [channels] cycles each
        channel spent with some bank open / all banks precharged, summing to `duration_cycles` (the
        run's length in DRAM cycles); link_bytes: bytes of transfers that are not DRAM commands
        (IoOps; the DQ data of io_commands is derived from the counts). `asic_dynamic_pj`, when
        given, replaces the sum over `asic_ops` (a caller that already summed cached per-shape
        energies).
        """
        act, pre = np.asarray(active_cycles), np.asarray(precharged_cycles)
        if act.shape != pre.shape:
            raise ValueError(f"active_cycles {act.shape} and precharged_cycles {pre.shape} differ in shape")
        bad = np.flatnonzero(act + pre != duration_cycles).tolist()
        if bad:
            raise ValueError(f"each channel's active + precharged cycles must equal the duration "
                             f"({duration_cycles}); channels {bad} do not")
        j = 1 / PJ_PER_J
        out = {
            "pim_commands": {n: v * j for n, v in self.command_pj(command_counts).items()},
            "background": {k: v * j for k, v in self.background_pj(act, pre).items()},
            "io": self.io_pj(self.dq_bytes(command_counts) + link_bytes) * j,
            "asic": {"dynamic": (self.asic_dynamic_pj(asic_ops) if asic_dynamic_pj is None else asic_dynamic_pj) * j,
                     "leakage": self.asic_leakage_pj(duration_cycles) * j},
        }
        out["total"] = sum(_leaves(out))
        return out


def _leaves(d) -> list[float]:
    if isinstance(d, dict):
        return [x for v in d.values() for x in _leaves(v)]
    return [float(d)]
