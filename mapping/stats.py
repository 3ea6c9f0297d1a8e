"""Statistics of a compiled step: what its instructions ask for, and how that compares with the
row-pass floor. Counts here come from the instructions alone; timing and the commands the
controller adds (activations, mode changes) come from a timing run the caller passes in
(`sim` is not imported here).

Definitions
- row passes: per channel, the runs of MAC16 to one all-bank row (a new run starts at another
  row, after a precharge, or after any other column command on the channel). The step's
  `row_pass_floor_cycles` = row passes of the busiest channel x the standard's all-bank
  row-pass time (nothing else: no reads, no mode changes, no writes, no refresh). A row pass
  over fewer columns than a row is shorter than that, so `row_pass_floor_exact_cycles` also
  gives each pass its own length (max(nRCDRDMAC + (columns - 1) x MAC16 spacing + nRTP, nRAS)
  + nRP): the stricter floor.
- row-hit rate: column accesses that found their row open, over all column accesses; an
  access is a miss when the row had to be activated for it, by the controller or by an
  explicit ACT, so `1 - activations / column accesses`.
- padding: MAC lanes that multiply padding (the last column of a short vector, idle banks of a
  partial block) = 1 - useful MACs / (MAC16 x banks x elements per column).
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from hw_configs.isa import F_CHMASK, F_CMD, F_COUNT, F_OP, F_ROW, OP_COLUMN, OP_PRECHARGE, OP_RAW, OP_SIMPLE
from hw_configs.program import AsicOp, IoOp, PimOp, Program

from .device import Device

COUNTED = ("MAC16", "WRGB", "RDMAC16", "WR", "RD")
EXTERNAL = ("WRGB", "RDMAC16", "WR", "RD")  # commands whose data crosses the channel's I/O


def _popcount(masks: np.ndarray) -> np.ndarray:
    m = masks.astype(np.uint64)
    n = np.zeros(len(m), np.int64)
    while m.any():
        n += (m & np.uint64(1)).astype(np.int64)
        m >>= np.uint64(1)
    return n


def instruction_counts(ins: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
    """Commands an instruction block asks for, over all channels of each mask (the controller's
    own ACT/PRE/TMOD excluded); explicit precharges and activations counted apart."""
    out = Counter()
    if len(ins) == 0:
        return {k: 0 for k in COUNTED + ("explicit_precharges", "explicit_activations")}
    chans = _popcount(ins[:, F_CHMASK])
    work = np.isin(ins[:, F_OP], (OP_COLUMN, OP_SIMPLE))
    n = ins[:, F_COUNT] * chans
    for name in COUNTED:
        if name in names:
            out[name] = int(n[work & (ins[:, F_CMD] == names.index(name))].sum())
    out["explicit_precharges"] = int(chans[ins[:, F_OP] == OP_PRECHARGE].sum())
    out["explicit_activations"] = int(n[ins[:, F_OP] == OP_RAW].sum())
    return {k: out.get(k, 0) for k in COUNTED + ("explicit_precharges", "explicit_activations")}


def row_pass_columns(ins: np.ndarray, dev: Device) -> list[np.ndarray]:
    """Per channel: the MAC16 columns of each of its row passes, in issue order (see the module
    docstring for what makes a row pass)."""
    mac = dev.cmd("MAC16")
    out = []
    for c in range(dev.channels):
        sel = ins[(ins[:, F_CHMASK] >> c) & 1 == 1]
        is_mac = (sel[:, F_OP] == OP_COLUMN) & (sel[:, F_CMD] == mac)
        breaks = (sel[:, F_OP] == OP_PRECHARGE) | ((sel[:, F_OP] == OP_COLUMN) & ~is_mac)
        keep = is_mac | breaks
        sel, is_mac = sel[keep], is_mac[keep]
        prev_mac = np.r_[False, is_mac[:-1]]
        prev_row = np.r_[-2, sel[:-1, F_ROW]]
        new = is_mac & ~(prev_mac & (prev_row == sel[:, F_ROW]))
        run = np.cumsum(new) - 1
        out.append(np.bincount(run[is_mac], weights=sel[is_mac, F_COUNT], minlength=int(new.sum())).astype(np.int64))
    return out


def row_passes(ins: np.ndarray, dev: Device) -> np.ndarray:
    """Per channel: the number of row passes."""
    return np.array([len(p) for p in row_pass_columns(ins, dev)], np.int64)


def row_hit_rate(command_totals: dict[str, int], column_commands: tuple[str, ...]) -> float | None:
    """1 - activations / column accesses, from a timing run's command totals (None: no access)."""
    cols = sum(command_totals.get(c, 0) for c in column_commands)
    acts = command_totals.get("ACT", 0) + command_totals.get("ACT16", 0)
    return 1.0 - acts / cols if cols else None


def op_stats(op, dev: Device, names: tuple[str, ...]) -> dict:
    """Counts of one op from its instructions (PIM) or its sizes (ASIC, I/O)."""
    base = {"id": op.id, "name": op.name, "tag": op.tag, "type": type(op).__name__, "layer": op.layer}
    if isinstance(op, PimOp):
        c = instruction_counts(op.instructions, names)
        base.update(kind=op.kind, instructions=len(op.instructions), macs=op.macs,
                    mac16=c["MAC16"], gb_writes=c["WRGB"], mac_reads=c["RDMAC16"], kv_writes=c["WR"], reads=c["RD"],
                    explicit_precharges=c["explicit_precharges"], explicit_activations=c["explicit_activations"],
                    io_bytes=sum(c[k] for k in EXTERNAL) * dev.column_bytes,
                    lane_macs=c["MAC16"] * dev.banks * dev.col_elems)
    elif isinstance(op, AsicOp):
        base.update(kind=op.kind, asic_elements=op.elements, asic_inputs=op.inputs)
    elif isinstance(op, IoOp):
        base.update(kind=op.direction, io_bytes=op.nbytes)
    return base


def step_statistics(program: Program, dev: Device, row_pass_cycles: int, pass_cycles=None) -> dict:
    """Per-op counts and totals of one step (no timing). `pass_cycles(columns)` (optional, numpy
    vectorised) is the time of an all-bank row pass of that many columns: it gives the stricter
    `row_pass_floor_exact_cycles`, each row pass at its own length."""
    names = program.command_names
    ops = [op_stats(op, dev, names) for op in program.ops]
    total = defaultdict(int)
    for s in ops:
        for k in ("macs", "mac16", "gb_writes", "mac_reads", "kv_writes", "reads", "io_bytes", "asic_elements",
                  "lane_macs", "explicit_precharges", "explicit_activations", "instructions"):
            total[k] += s.get(k, 0)
    total["pim_ops"] = sum(isinstance(op, PimOp) for op in program.ops)
    total["asic_ops"] = sum(isinstance(op, AsicOp) for op in program.ops)
    total["io_ops"] = sum(isinstance(op, IoOp) for op in program.ops)
    cols = row_pass_columns(program.pim_instructions(), dev)
    passes = np.array([len(c) for c in cols], np.int64)
    total["row_passes_busiest_channel"] = int(passes.max()) if len(passes) else 0
    total["row_passes_all_channels"] = int(passes.sum())
    total["row_pass_cycles"] = int(row_pass_cycles)
    total["row_pass_floor_cycles"] = int(passes.max()) * int(row_pass_cycles)
    if pass_cycles is not None:
        total["row_pass_floor_exact_cycles"] = max(int(np.sum(pass_cycles(c))) for c in cols)
    total["compute_padding"] = 1.0 - total["macs"] / total["lane_macs"] if total["lane_macs"] else 0.0
    by_tag = defaultdict(lambda: defaultdict(int))
    for s in ops:
        for k in ("macs", "mac16", "gb_writes", "mac_reads", "kv_writes", "reads", "io_bytes", "asic_elements"):
            by_tag[s["tag"]][k] += s.get(k, 0)
        by_tag[s["tag"]]["ops"] += 1
    return {"ops": ops, "total": dict(total), "by_tag": {k: dict(v) for k, v in by_tag.items()}}


def add_timing(stats: dict, cycles: int, command_totals: dict[str, int], column_commands: tuple[str, ...],
               mode_change: str, refresh_command: str | None, tck_ns: float, per_op: dict[int, dict] | None = None) -> dict:
    """Fold a timing run of the step's PIM part (back to back) into `stats`."""
    t = stats["total"]
    t["pim_cycles"] = int(cycles)
    t["pim_time_us"] = cycles * tck_ns / 1e3
    t["pim_over_floor"] = cycles / t["row_pass_floor_cycles"] if t["row_pass_floor_cycles"] else None
    if t.get("row_pass_floor_exact_cycles"):
        t["pim_over_exact_floor"] = cycles / t["row_pass_floor_exact_cycles"]
    t["row_activations"] = command_totals.get("ACT16", 0) + command_totals.get("ACT", 0)
    t["mode_changes"] = command_totals.get(mode_change, 0)
    t["refreshes"] = command_totals.get(refresh_command, 0) if refresh_command else 0
    t["row_hit_rate"] = row_hit_rate(command_totals, column_commands)
    t["commands"] = dict(command_totals)
    if per_op:
        for s in stats["ops"]:
            s.update(per_op.get(s["id"], {}))
    return stats
