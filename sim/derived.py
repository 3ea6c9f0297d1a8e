"""Figures that follow from a configuration alone: capacity, peak bandwidths, MAC throughput,
row-pass efficiency and refresh overhead. `pimsim validate` prints them; tests check them
against the numbers published for the device (REFERENCE section 2)."""
from __future__ import annotations

from dataclasses import dataclass

from sim.config import HardwareConfig
from sim.dram_spec import compile_standard


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    how: str


def derived_figures(cfg: HardwareConfig) -> list[Figure]:
    d, t = cfg.dram, cfg.dram.timing
    banks = d.channels * d.banks_per_channel
    cap = banks * d.rows_per_bank * d.row_bytes
    ext = d.channels * d.io_pins_per_channel * d.io_gbps_per_pin / 8
    figs = [
        Figure("capacity", cap / 2**30, "GiB", "channels x banks x rows x row_bytes"),
        Figure("banks", banks, "", "channels x banks_per_channel"),
        Figure("peak_external_bandwidth", ext, "GB/s", "channels x io_pins x io_gbps_per_pin / 8"),
    ]
    if "nBL" in t:
        figs.append(Figure("data_bus_bandwidth_from_timing", d.channels * d.column_bytes / (t["nBL"] * d.tck_ns),
                           "GB/s", "channels x column_bytes / (nBL x tck); should match the external bandwidth"))
    if cfg.pim is not None:
        std = compile_standard(cfg)
        gap = std.self_gap(std.cmd("MAC16"))  # cycles between back-to-back all-bank MACs
        mac_ns = gap * d.tck_ns
        cols = d.columns_per_row
        row_pass = max(t["nRCDRDMAC"] + (cols - 1) * gap + t["nRTP"], t["nRAS"]) + t["nRP"]
        figs += [
            Figure("peak_internal_bandwidth", banks * d.column_bytes / mac_ns, "GB/s",
                   "banks x column_bytes / (MAC16 spacing x tck): every bank reads one column per MAC16"),
            Figure("peak_mac_throughput", banks * cfg.pim.macs_per_bank * 2 / mac_ns / 1e3, "TFLOPS",
                   "banks x macs_per_bank x 2 FLOP / MAC16 spacing"),
            Figure("row_pass_cycles", row_pass, "cycles",
                   "max(nRCDRDMAC + (columns_per_row - 1) x MAC16 spacing + nRTP, nRAS) + nRP"),
            Figure("row_pass_mac_utilisation", cols * gap / row_pass, "",
                   "MAC cycles / row pass cycles (ACT and PRE not hidden)"),
            Figure("global_buffer_columns", cfg.pim.global_buffer_bytes // d.column_bytes, "columns",
                   "global_buffer_bytes / column_bytes"),
        ]
    if d.refresh and {"nRFC", "nREFI"} <= t.keys():
        figs.append(Figure("refresh_time_fraction", t["nRFC"] / t["nREFI"], "",
                           "nRFC / nREFI: the share of time no row can be activated (all-bank refresh)"))
    return figs
