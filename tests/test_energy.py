"""Energy model: a hand-computed total from the published power figures (REFERENCE 4, Horowitz) equals
the model's, the breakdown sums to its total, and every missing or impossible entry is named."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from hw_configs.program import AsicOp
from sim.config import HW_CONFIG_DIR, ConfigError, load_config
from sim.dram_spec import compile_standard
from sim.system.energy import EnergyModel


def setup(cfg=None):
    cfg = cfg or load_config("pim-gpt")
    names = compile_standard(cfg).command_names
    return cfg, names, EnergyModel(cfg, names)


def counts_of(names, channels, per_channel: dict[int, dict[str, int]]):
    c = np.zeros((channels, len(names)), np.int64)
    for ch, cmds in per_channel.items():
        for n, k in cmds.items():
            c[ch, names.index(n)] = k
    return c


def leaves(d):
    return [x for v in d.values() for x in leaves(v)] if isinstance(d, dict) else [d]


def tiny_case(names):
    """One GEMV row pass on channel 0 (vector into the global buffer, 64 MAC16, result read out),
    a refresh on channel 1, one IoOp of 4 KB, and two ASIC ops, over 400 DRAM cycles."""
    counts = counts_of(names, 8, {
        0: {"TMOD": 2, "WRGB": 64, "ACT16": 1, "MAC16": 64, "PREA": 1, "RDMAC16": 1},
        1: {"REFab": 1},
    })
    active = np.array([300] + [0] * 7)
    precharged = np.array([100] + [400] * 7)
    ops = [AsicOp(0, "reduce", "reductions", (), "reduce", 16, 1, 8),
           AsicOp(1, "scale", "attention_scores", (0,), "scale", 16)]
    return dict(command_counts=counts, active_cycles=active, precharged_cycles=precharged,
                link_bytes=4096, asic_ops=ops, duration_cycles=400)


def test_hand_computed_total_equals_the_model():
    cfg, names, em = setup()
    got = em.breakdown(**tiny_case(names))
    # Typed from the sources, not from the YAML (pJ):
    act16 = 16 * 66.3 * 44.5              # ACT 66.3 mW x tRC 44.5 ns per bank, 16 banks
    mac16 = 3 * 438.15 * 1.0              # 3 x RD power over tCCDL = 1 ns
    wrgb = 553.15 * 1.25                  # as a WR burst (assumption in the YAML)
    rdmac16 = 438.15 * 1.25               # as a RD burst
    refab = 16 * 66.3 * 44.5              # one row per bank (assumption in the YAML)
    commands = act16 + 64 * mac16 + 64 * wrgb + rdmac16 + refab  # PREA inside ACT16, TMOD standby
    background = 300 * 0.5 * 263.75 + (100 + 7 * 400) * 0.5 * 183.15   # cycles x 0.5 ns x mW
    io = (64 * 32 + 32 + 4096) * 8 * 5.5  # WRGB and RDMAC16 bursts of 32 B + the IoOp, 5.5 pJ/bit
    s = 0.622                              # 45 nm -> 28 nm
    asic = (16 * 7 * 0.9 + 16 * 9 * 10.0) * s + (16 * 3.7 + 16 * 2 * 10.0) * s  # adds, muls, SRAM
    leakage = 75.0 * 400 * 0.5            # 75 mW (assumption in the YAML) x 200 ns
    total = commands + background + io + asic + leakage
    assert got["total"] == pytest.approx(total * 1e-12, rel=1e-12)
    assert got["pim_commands"]["MAC16"] == pytest.approx(64 * mac16 * 1e-12, rel=1e-12)
    assert got["pim_commands"]["PREA"] == 0.0 and got["pim_commands"]["TMOD"] == 0.0
    assert got["background"]["active"] == pytest.approx(300 * 0.5 * 263.75e-12, rel=1e-12)
    assert got["io"] == pytest.approx(io * 1e-12, rel=1e-12)
    assert got["asic"]["dynamic"] == pytest.approx(asic * 1e-12, rel=1e-12)
    assert got["asic"]["leakage"] == pytest.approx(leakage * 1e-12, rel=1e-12)


def test_breakdown_is_nested_and_sums_to_total():
    _, names, em = setup()
    got = em.breakdown(**tiny_case(names))
    assert set(got) == {"pim_commands", "background", "io", "asic", "total"}
    assert set(got["background"]) == {"active", "precharged"} and set(got["asic"]) == {"dynamic", "leakage"}
    assert set(got["pim_commands"]) == {"TMOD", "WRGB", "ACT16", "MAC16", "PREA", "RDMAC16", "REFab"}
    parts = [v for k, v in got.items() if k != "total"]
    assert got["total"] == pytest.approx(sum(sum(leaves(p)) if isinstance(p, dict) else p for p in parts),
                                         rel=1e-15)
    assert all(v >= 0 for v in leaves(got))


def test_terms_scale_with_their_inputs():
    cfg, names, em = setup()
    one = counts_of(names, 8, {3: {"MAC16": 1}})
    assert em.command_pj(one) == {"MAC16": pytest.approx(3 * 438.15)}
    assert em.command_pj(one.sum(axis=0)) == em.command_pj(one)       # [n_cmd] or [channels, n_cmd]
    assert em.dq_bytes(counts_of(names, 8, {0: {"RD": 2, "WR": 1, "MAC16": 9, "WRGB": 1}})) == 4 * 32
    assert em.io_pj(1) == pytest.approx(8 * 5.5)
    bg = em.background_pj(np.full(8, 10), np.zeros(8, np.int64))
    assert bg == {"active": pytest.approx(8 * 10 * 0.5 * 263.75), "precharged": 0.0}


@pytest.mark.parametrize("drop,key", [("MAC16", "energy.command_pj.MAC16"), ("REFab", "energy.command_pj.REFab")])
def test_command_without_energy_entry_is_named(tmp_path, drop, key):
    d = yaml.safe_load((HW_CONFIG_DIR / "pim-gpt.yaml").read_text())
    del d["energy"]["command_pj"][drop]
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(d))
    cfg = load_config(p)
    with pytest.raises(ConfigError) as err:
        EnergyModel(cfg, compile_standard(cfg).command_names)
    assert err.value.key == key and f"no energy entry for command '{drop}'" in str(err.value)
    assert str(p) in str(err.value)


def test_entry_for_a_command_the_standard_lacks_is_named():
    cfg = load_config("pim-gpt")
    with pytest.raises(ConfigError) as err:
        EnergyModel(cfg, ("ACT", "PRE", "PREA", "RD", "WR", "REFab"))  # plain GDDR6's command table
    assert err.value.key == "energy.command_pj.ACT16" and "not a command of standard" in str(err.value)


@pytest.mark.parametrize("edit,key,words", [
    (lambda e: e["command_pj"].update(ACT16=0), "energy.command_pj.ACT16", "greater than 0"),
    (lambda e: e["command_pj"].update(RD=-5.0), "energy.command_pj.RD", "greater than 0"),
    (lambda e: e.update(active_standby_mw=0), "energy.active_standby_mw", "greater than 0"),
    (lambda e: e.update(precharged_standby_mw=-1.0), "energy.precharged_standby_mw", "greater than 0"),
    (lambda e: e.update(io_pj_per_bit=0), "energy.io_pj_per_bit", "greater than 0"),
    (lambda e: e["counted_elsewhere"].update(PRE="ACT17"), "energy", "counted_elsewhere.PRE = 'ACT17'"),
    (lambda e: e["counted_elsewhere"].update(RD="ACT"), "energy", "'RD' also has an entry in command_pj"),
    (lambda e: e.update(io_commands=["RD", "FOO"]), "energy", "io_commands: 'FOO' has no entry"),
    (lambda e: e.update(refresh_mw=3.0), "energy.refresh_mw", "unknown key"),
])
def test_bad_energy_config_names_the_key(tmp_path, edit, key, words):
    d = yaml.safe_load((HW_CONFIG_DIR / "pim-gpt.yaml").read_text())
    edit(d["energy"])
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert err.value.key == key and words in str(err.value)


def test_bad_run_inputs_are_errors():
    _, names, em = setup()
    case = tiny_case(names)
    with pytest.raises(ValueError, match="channels \\[0\\] do not"):
        em.breakdown(**{**case, "active_cycles": np.array([299] + [0] * 7)})
    with pytest.raises(ValueError, match="last axis of 19"):
        em.command_pj(np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="non-negative integers"):
        em.command_pj(-np.ones(len(names), np.int64))
    with pytest.raises(ValueError, match="8 non-negative integers"):
        em.background_pj(np.zeros(4, np.int64), np.zeros(4, np.int64))
    with pytest.raises(ConfigError, match="gddr6-14gbps.yaml: energy: this hardware config has no energy section"):
        setup(load_config("gddr6-14gbps"))
