"""Mapping: place a transformer on a PIM device and compile its decode steps into Programs.

- `placement`: where every weight element and KV-cache entry lives (strategies `pim-gpt`, `naive`),
  capacity errors that say what would fit.
- `kernels`, `compile`: one decode step -> `hw_configs.program.Program` (PIM instruction blocks in
  the `hw_configs.isa` format, ASIC ops, I/O), cached by shape.
- `executor`: the exact numpy executor that runs a Program on a memory image (the proof);
  `accuracy`: the reference and a decoder (the exact executor, or numerics passed in by the
  composition root) on the same tokens, teacher-forced.
- `stats`, `export`: program statistics (row passes, floors, padding) and the AiM trace writer.

May import `hw_configs` and `workloads`; never `sim` (the Program is the contract).
"""
