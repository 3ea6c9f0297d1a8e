"""The functional core: the PIM datapath (numba, bf16) and the ASIC's numerics on a memory image,
executing the Programs the timing path times (see executor.py)."""
