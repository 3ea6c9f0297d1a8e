"""The system level: what happens around the DRAM timing engine when a Program runs.

- `asic`:      cycles and energy of the ASIC's vector ops (AsicOp), from the config's `asic:` section.
- `asic_math`: the same algorithms on numbers (numpy; fp32 or emulated bf16), for the functional path.
- `energy`:    energy of a run, every term separately (DRAM commands, background, I/O, ASIC).
- `model`:     the event-driven system model (ASIC, PIM channel controllers, links) driving the engine.

May import: numpy, simpy, `hw_configs` (the Program contract, the instruction format), `workloads`
(model shapes), and `sim.config`, `sim.dram_spec`, `sim.engine`. Never `mapping` (the Program is
the only contract between the two) and never `sim.cli` (the composition root imports us).
"""
