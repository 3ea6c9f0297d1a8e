"""The system model (ASIC + PIM channels + links, SimPy) and token generation.

Hand-derived goldens use the AiM timing preset (REFERENCE 2), the energy values of
hw_configs/pim-gpt.yaml as typed from REFERENCE 4 (AiM/CENT power model), and the ASIC defaults
(1 GHz, 512 lanes, 2 cycles per op overhead).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hw_configs.isa import column, program, simple
from hw_configs.program import AsicOp, PimOp, Program
from sim.compose import simulate
from sim.config import ConfigError, load_config
from sim.dram_spec import compile_standard
from sim.system.model import SystemModel


@pytest.fixture(scope="module")
def pim():
    cfg = load_config("pim-gpt")
    return cfg, compile_standard(cfg)


def gemv_program(std, n_asic: int = 1, chain: bool = True) -> Program:
    """One GEMV tile on channel 0 (fill the global buffer, one row pass, read the MAC registers),
    then `n_asic` residual adds of 16 elements (a chain, or all depending only on the tile)."""
    ins = program([simple(1, std.cmd("WRGB"), count=64), column(1, std.cmd("MAC16"), row=0, count=64),
                   simple(1, std.cmd("RDMAC16"), blocking=True)])
    ops = [PimOp(0, "tile", "qkv", (), 1, ins, macs=64 * 16 * 16)]
    for k in range(n_asic):
        dep = (k,) if chain else (0,)
        ops.append(AsicOp(k + 1, f"add{k}", "residual", dep, "residual_add", 16, inputs=2))
    return Program(tuple(ops), std.command_names, "tiny", "pim-gpt", 0, "hand")


# PIM tile, by hand: TMOD @0, WRGB @32 + 2k (last @158), TMOD @159, ACT16 @191 (nMODCH),
# MAC16 @247 (nRCDRDMAC) .. 373 (nCCDL), TMOD @374, RDMAC16 @406, data back @406 + nCLREG 0 + nBL 2.
TILE_CYCLES = 408
# residual add of 16 elements on 512 lanes: one pass + 2 cycles overhead = 3 ns = 6 DRAM cycles
ADD_CYCLES = 6


def test_one_gemv_op_and_its_asic_op_take_the_hand_formula(pim):
    cfg, std = pim
    sm = SystemModel(cfg, mode="overlap", refresh=False)
    r = sm.run_step(gemv_program(std))
    assert r.cycles == TILE_CYCLES + ADD_CYCLES
    assert r.op_start.tolist() == [0, TILE_CYCLES] and r.critical.all()
    assert r.latency_cycles_by_tag == {"qkv": TILE_CYCLES, "residual": ADD_CYCLES}


def test_serial_never_faster_and_equal_on_a_chain(pim):
    cfg, std = pim
    for chain in (True, False):
        prog = gemv_program(std, n_asic=4, chain=chain)
        serial = SystemModel(cfg, mode="serial", refresh=False).run_step(prog)
        overlap = SystemModel(cfg, mode="overlap", refresh=False).run_step(prog)
        assert serial.cycles >= overlap.cycles
        if chain:
            assert serial.cycles == overlap.cycles == TILE_CYCLES + 4 * ADD_CYCLES


def test_overlap_runs_independent_pim_and_asic_work_at_once(pim):
    """Two tiles on different channels and ASIC work that depends on the first only: in overlap
    mode the second tile runs while the ASIC works; serial mode adds them up."""
    cfg, std = pim
    ins = lambda ch: program([simple(1 << ch, std.cmd("WRGB"), count=64),
                              column(1 << ch, std.cmd("MAC16"), row=0, count=64),
                              simple(1 << ch, std.cmd("RDMAC16"), blocking=True)])
    ops = (PimOp(0, "t0", "mlp", (), 1, ins(0)), AsicOp(1, "a", "residual", (0,), "residual_add", 16, inputs=2),
           PimOp(2, "t1", "mlp", (), 2, ins(1)))
    prog = Program(ops, std.command_names, "tiny", "pim-gpt", 0, "hand")
    assert SystemModel(cfg, mode="overlap", refresh=False).run_step(prog).cycles == TILE_CYCLES + ADD_CYCLES
    assert SystemModel(cfg, mode="serial", refresh=False).run_step(prog).cycles == 2 * TILE_CYCLES + ADD_CYCLES


def test_energy_of_a_tiny_program_by_hand(pim):
    """Every term typed from REFERENCE 4 (and the YAML's stated assumptions), summed by hand."""
    cfg, std = pim
    r = SystemModel(cfg, mode="overlap", refresh=False).run_step(gemv_program(std))
    e = r.energy_j
    ns = 0.5 * r.cycles                                       # 414 cycles of 0.5 ns
    commands_pj = 64 * 691.4375 + 47205.6 + 64 * 1314.45 + 547.6875   # WRGB, ACT16, MAC16, RDMAC16
    io_pj = 65 * 32 * 8 * 5.5                                 # 64 WRGB + 1 RDMAC16 bursts of 32 B
    active_ns = 0.5 * (r.finish_cycle - 191)                   # channel 0 has row 0 open from ACT16 @191
    background_pj = active_ns * 263.75 + (ns - active_ns) * 183.15 + 7 * ns * 183.15
    asic_pj = (16 * 0.9 + 48 * 10.0) * 0.622                  # 16 fp32 adds + 48 SRAM accesses, 28 nm
    leakage_pj = 75.0 * ns
    expected_j = (commands_pj + io_pj + background_pj + asic_pj + leakage_pj) * 1e-12
    assert e["total"] == pytest.approx(expected_j, rel=1e-9)
    parts = sum(e["pim_commands"].values()) + sum(e["background"].values()) + e["io"] + sum(e["asic"].values())
    assert parts == pytest.approx(e["total"], rel=1e-12)


def test_bad_mode_and_front_end_name_the_key(pim):
    cfg, _ = pim
    with pytest.raises(ConfigError, match="mode"):
        SystemModel(cfg, mode="parallel")
    with pytest.raises(ConfigError, match="front end"):
        SystemModel(cfg, front_end="magic")


# --------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def small_run():
    return simulate("gpt2-small", "pim-gpt", prompt_len=2, gen_len=2)


def test_generation_times_every_position_and_respects_the_bound(small_run):
    g = small_run
    assert [t.position for t in g.tokens] == [0, 1, 2, 3]
    s = g.summary
    for t in g.tokens:
        assert t.latency_s >= t.bound_s
    assert s["latency_s_per_token_mean"] >= s["bound_s_per_token"]
    assert s["latency_s_per_token_mean"] >= s["pim_only_s_per_token"] * 0.999
    assert sum(s["breakdown_latency_s"].values()) == pytest.approx(s["latency_s_per_token_mean"], rel=1e-9)
    e = s["breakdown_energy_j"]
    total = sum(e["pim_commands"].values()) + sum(e["background"].values()) + e["io"] + sum(e["asic"].values())
    assert total == pytest.approx(s["energy_j_per_token_mean"], rel=1e-9)


def test_result_json_is_strict_and_carries_config_and_version(small_run, tmp_path):
    doc = small_run.to_json()
    text = json.dumps(doc, allow_nan=False)
    back = json.loads(text)
    assert back["version"] and back["config"]["hardware"]["name"] == "pim-gpt"
    assert back["config"]["model"]["name"] == "gpt2-small" and len(back["tokens"]) == 4
    for key in ("latency_s_per_token_mean", "tokens_per_s", "energy_j_per_token_mean", "bound_s_per_token",
                "row_pass_floor_s_per_token", "pim_only_s_per_token", "row_hit_rate", "mac_utilization",
                "dram_commands", "breakdown_latency_s", "breakdown_energy_j"):
        assert key in back["summary"], key


def test_gen_len_past_the_context_is_an_error():
    with pytest.raises(ConfigError, match="context of 1024"):
        simulate("gpt2-small", prompt_len=8, gen_len=2000)


def test_a_model_that_does_not_fit_gets_the_capacity_error():
    with pytest.raises(ValueError, match="bytes"):
        simulate("llama2-7b", prompt_len=1, gen_len=0)


# --------------------------------------------------------------------------- the paper's results


def one_token(model, mode="overlap", **over):
    g = simulate(model, "pim-gpt", prompt_len=1, gen_len=0, mode=mode, overrides=over or None)
    return g.summary


def test_gpt3_xl_serial_non_pim_share_is_small_and_rows_hit():
    s = one_token("gpt3-xl", mode="serial")
    print(f"gpt3-xl serial: non-PIM share {s['non_pim_latency_share']:.4f}, row hits {s['row_hit_rate']:.4f}")
    assert s["non_pim_latency_share"] < 0.05   # the paper: 1.16 %
    assert s["row_hit_rate"] >= 0.98           # the paper: ~98 %


def test_slow_asic_costs_at_most_20_percent():
    fast = one_token("gpt3-xl", mode="serial")["latency_s_per_token_mean"]
    slow = one_token("gpt3-xl", mode="serial", **{"asic.clock_mhz": 100.0})["latency_s_per_token_mean"]
    print(f"gpt3-xl serial: ASIC 100 MHz / 1 GHz = {slow / fast:.4f}")
    assert fast < slow <= 1.20 * fast


def test_channels_scale_near_linearly():
    lat = {c: one_token("gpt2-medium", **{"dram.channels": c})["latency_s_per_token_mean"] for c in (4, 8, 16)}
    for a, b in ((4, 8), (8, 16)):
        eff = lat[a] / lat[b] / (b / a)
        print(f"gpt2-medium {a} -> {b} channels: efficiency {eff:.3f}")
        assert eff >= 0.85


def test_overlap_hides_asic_and_io_behind_pim_on_gpt2_xl():
    s = one_token("gpt2-xl")
    assert s["latency_s_per_token_mean"] <= 1.02 * s["pim_only_s_per_token"]


def test_pimsim_run_writes_the_result_and_checks_its_path_first(tmp_path, capsys):
    from sim.cli import main as cli

    out = tmp_path / "run.json"
    assert cli(["run", "--model", "gpt2-small", "--prompt-len", "1", "--gen-len", "1", "--no-progress",
                "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [t["position"] for t in doc["tokens"]] == [0, 1] and doc["config"]["mode"] == "overlap"
    assert "latency per token" in capsys.readouterr().out
    assert cli(["run", "--model", "gpt2-small", "--json", str(tmp_path)]) == 2       # a directory
    assert cli(["run", "--model", "gpt2-small", "--mode", "fast", "--no-progress"]) == 2
    assert "unknown mode 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize("kernel", ["compiled", "simpy"])
def test_aim_front_end_in_the_system_model_delays_the_second_channel_by_hand(pim, kernel):
    """One op of four 64-MAC16 lines alternating channel 0, 1, 0, 1 (rows 0, 0, 1, 1), refresh off.

    pim-gpt front end (both channels fed at once): ACT16 @0, MAC16 @56 + 2m, PREA @182 + nRTP 12
    = 194, ACT16 @226, last MAC16 @282 + 126 = 408 on both channels.
    aim front end (tests/test_aim_frontend.py derives it line by line): channel 0's full 33-entry
    queue holds back channel 1's lines; channel 1's last MAC16 issues @601. Both finish one MAC16
    completion after the last MAC16, so the op ends 601 - 408 = 193 cycles later with aim."""
    cfg, std = pim
    mac = std.cmd("MAC16")
    ins = program([column(1, mac, row=0, count=64), column(2, mac, row=0, count=64),
                   column(1, mac, row=1, count=64), column(2, mac, row=1, count=64)])
    prog = Program((PimOp(0, "alternating", "mlp", (), 0b11, ins),), std.command_names, "tiny", "pim-gpt", 0, "hand")
    finish = {}
    for fe in ("pim-gpt", "aim"):
        r = SystemModel(cfg, refresh=False, front_end=fe, kernel=kernel).run_step(prog)
        finish[fe] = int(r.op_finish[0])
    assert finish["aim"] - finish["pim-gpt"] == 193


def test_row_pass_floor_is_every_pass_at_its_own_length_plus_refresh():
    """Floor by hand from the instructions (not the engine's counts): each all-bank row pass of k
    columns at nRCDRDMAC + (k - 1) x nCCDL + nRTP + nRP = 56 + 2(k - 1) + 12 + 32 cycles, the
    busiest channel's sum, times nREFI / (nREFI - nRFC) = 3333 / 3123; a lower bound of the PIM alone."""
    from mapping.compile import compiler_for
    from mapping.device import device_of
    from mapping.stats import row_pass_columns
    from workloads import get_spec

    gen = simulate("gpt2-small", "pim-gpt", prompt_len=1, gen_len=2)
    cfg = load_config("pim-gpt")
    comp = compiler_for(get_spec("gpt2-small"), cfg, "pim-gpt", 3)
    for r in gen.tokens:
        cols = row_pass_columns(comp.compile(r.position).pim_instructions(), device_of(cfg))
        by_hand = max(sum(56 + 2 * (int(k) - 1) + 12 + 32 for k in c) for c in cols)
        assert r.floor_cycles == pytest.approx(by_hand * 3333 / 3123, rel=1e-12)
        assert r.floor_cycles <= r.pim_only_cycles <= r.cycles


def test_row_passes_match_the_mapping_definition_on_random_streams():
    """sim.compose.row_passes (compiled, one pass over the step) against mapping/stats.py's
    numpy definition, on random streams of MAC16 / other column / precharge / raw / simple rows."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hw_configs.isa import F_CHMASK, F_CMD, F_COUNT, F_OP, F_ROW, N_FIELDS, OP_COLUMN, OP_PRECHARGE, OP_RAW, OP_SIMPLE
    from mapping.device import device_of
    from mapping.stats import row_pass_columns
    from sim.compose import row_passes

    cfg = load_config("pim-gpt")
    dev = device_of(cfg)
    mac, wr, wrgb = dev.cmd("MAC16"), dev.cmd("WR"), dev.cmd("WRGB")
    row = st.tuples(st.sampled_from([OP_COLUMN, OP_COLUMN, OP_PRECHARGE, OP_RAW, OP_SIMPLE]),
                    st.sampled_from([mac, mac, wr, wrgb]), st.integers(1, 255), st.integers(0, 3), st.integers(1, 64))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(row, max_size=60))
    def check(rows):
        ins = np.zeros((len(rows), N_FIELDS), np.int64)
        for i, (op, cmd, mask, r, n) in enumerate(rows):
            ins[i, F_OP], ins[i, F_CMD], ins[i, F_CHMASK], ins[i, F_ROW], ins[i, F_COUNT] = op, cmd, mask, r, n
        passes, cols = row_passes(ins, dev.channels, mac)
        want = row_pass_columns(ins, dev)
        assert passes.tolist() == [len(c) for c in want]
        assert cols.tolist() == [int(c.sum()) for c in want]

    check()


def test_every_refresh_is_in_some_step_and_charged():
    """Refreshes a channel issues in an idle gap (waiting for the ASIC) belong to the step they
    fall in: the steps' REFab counts add up to the engine's total, which cannot fall more than
    the 8 postponable refreshes behind one per nREFI (3333 cycles) of the timeline."""
    from mapping.compile import compiler_for
    from workloads import get_spec

    cfg = load_config("pim-gpt")
    comp = compiler_for(get_spec("gpt2-small"), cfg, "pim-gpt", 4)
    for kernel in ("compiled", "simpy"):
        sm = SystemModel(cfg, kernel=kernel)
        ref = sm.engine.std.cmd("REFab")
        steps = [sm.run_step(comp.compile(p)) for p in range(3)]
        per_channel = sum(st.command_counts_per_channel[:, ref] for st in steps)
        assert per_channel.tolist() == sm.engine.counts[:, ref].tolist()
        assert per_channel.min() >= steps[-1].finish_cycle // 3333 - 8
        pj = cfg.energy.command_pj["REFab"] * 1e-12
        assert sum(st.energy_j["pim_commands"]["REFab"] for st in steps) == pytest.approx(per_channel.sum() * pj)
