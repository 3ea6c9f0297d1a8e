"""Compact DRAM/PIM instructions: the input format of the timing engine.

The format is defined in `hw_configs/isa.py`, beside the hardware description, because the
mapping layer writes it and may not import `sim`; this module re-exports it for sim's users.
"""
from hw_configs.isa import (  # noqa: F401
    ALL_BANKS, F_BANK, F_CHMASK, F_CMD, F_COL, F_COUNT, F_FLAGS, F_OP, F_OPID, F_ROW, FLAG_BLOCKING,
    MAX_CHANNELS, N_FIELDS, OP_BARRIER, OP_COLUMN, OP_NAMES, OP_PRECHARGE, OP_RAW, OP_SIMPLE,
    PSEUDO_ROW_BASE, SCHEDULE_DTYPE, barrier, channel_mask, column, command_names_of, instr,
    precharge, program, raw, simple, standard_file,
)
