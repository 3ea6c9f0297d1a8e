"""Write the PIM part of a step as a trace of the public AiM simulator (arkhadem/aim_simulator).

Format as that simulator reads it (REFERENCE section 2a): one ISR per line, fields in its fixed
order, channel-mask bit i = channel 31 - i, `opsize` consecutive column requests per ISR, RD_MAC
blocking, EOC at the end. Per instruction:

  MAC16 all banks, n columns of row r     -> AiM MAC_ABK n <mask> r
  WRGB, n columns                         -> AiM WR_GB n 0 <mask>
  RDMAC16 (blocking)                      -> AiM RD_MAC 0 <mask>
  WR / RD of bank b, row r, n columns     -> n x AiM WR_SBK / RD_SBK 0 <mask> b r
  barrier on every channel                -> AiM SYNC

That format has no start column (an ISR always covers columns 0..opsize-1) and none is needed
for timing: the timing of a column burst does not depend on where in the row it starts. It has
no precharge or activate ISR either, so only programs whose rows are left to the controller
(`row_commands="controller"`) can be written; anything else is an error naming the instruction.
"""
from __future__ import annotations

from hw_configs.isa import (
    ALL_BANKS, F_BANK, F_CHMASK, F_CMD, F_COUNT, F_FLAGS, F_OP, F_ROW, FLAG_BLOCKING, OP_BARRIER, OP_COLUMN,
    OP_NAMES, OP_SIMPLE,
)
from hw_configs.program import PimOp, Program

from .device import MappingError

AIM_MASK_BITS = 32


def aim_mask(chmask: int) -> int:
    """Engine mask (bit c = channel c) -> that simulator's mask (bit 31 - c = channel c)."""
    if chmask >> AIM_MASK_BITS:
        raise MappingError(f"channel mask {chmask:#x} reaches channel {chmask.bit_length() - 1}; an AiM trace "
                           f"addresses channels 0..{AIM_MASK_BITS - 1} only")
    return sum(1 << (AIM_MASK_BITS - 1 - c) for c in range(AIM_MASK_BITS) if chmask >> c & 1)


def _lines(op: PimOp, names: tuple[str, ...], n_channels: int) -> list[str]:
    out = []
    for k, ins in enumerate(op.instructions):
        opc, mask = int(ins[F_OP]), int(ins[F_CHMASK])
        where = f"op {op.id} ({op.name}) instruction {k} ({OP_NAMES.get(opc, opc)})"
        if opc == OP_BARRIER:
            if mask != (1 << n_channels) - 1:
                raise MappingError(f"{where}: a barrier on some channels only has no AiM ISR (SYNC waits for all)")
            out.append("AiM SYNC")
            continue
        if opc not in (OP_COLUMN, OP_SIMPLE):
            raise MappingError(f"{where}: the AiM trace format has no precharge or activate ISR; compile the step "
                               "with row_commands='controller' to export it")
        name, m, n = names[int(ins[F_CMD])], f"{aim_mask(mask):#010x}", int(ins[F_COUNT])
        row, bank = int(ins[F_ROW]), int(ins[F_BANK])
        if name == "MAC16" and bank == ALL_BANKS:
            out.append(f"AiM MAC_ABK {n} {m} {row}")
        elif name == "WRGB":
            out.append(f"AiM WR_GB {n} 0 {m}")
        elif name == "RDMAC16":
            if not ins[F_FLAGS] & FLAG_BLOCKING or n != 1:
                raise MappingError(f"{where}: RD_MAC reads the MAC registers once and blocks; the instruction must "
                                   "be a single blocking RDMAC16")
            out.append(f"AiM RD_MAC 0 {m}")
        elif name in ("WR", "RD") and bank != ALL_BANKS:
            out += [f"AiM {name}_SBK 0 {m} {bank} {row}"] * n
        else:
            raise MappingError(f"{where}: command {name} has no AiM ISR")
    return out


def aim_trace(program: Program, n_channels: int) -> str:
    """The PIM part of `program`, in program order, as AiM trace text (ending with EOC)."""
    head = [f"# pimsim export: {program.model} on {program.hardware}, decode step at position {program.position}, "
            f"strategy {program.strategy}, rows {program.meta.get('row_commands', '?')}",
            "# columns of an ISR start at 0 in this format (timing does not depend on the start column)"]
    body = []
    for op in program.ops:
        if isinstance(op, PimOp):
            body.append(f"# op {op.id} {op.name}")
            body += _lines(op, program.command_names, n_channels)
    return "\n".join(head + body + ["AiM EOC"]) + "\n"
