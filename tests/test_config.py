"""Hardware configs: presets load, derived figures match the published device numbers, and every
kind of bad input is an error naming the file and the key."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from sim.cli import main as cli
from sim.config import HW_CONFIG_DIR, ConfigError, list_presets, load_config
from sim.derived import derived_figures

ROOT = Path(__file__).resolve().parent.parent


def figures(cfg):
    return {f.name: f.value for f in derived_figures(cfg)}


def test_presets_exist_and_load():
    assert {"pim-gpt", "aim-32ch", "gddr6-14gbps"} <= set(list_presets())
    for name in list_presets():
        assert load_config(name).name == name


def test_pim_gpt_derived_figures_match_the_aim_device():
    """REFERENCE 2: 512 GB/s internal and 32 GB/s external per channel, 32 GFLOPS per bank,
    1 TFLOPS per 2-channel chip; 8 channels x 16 banks x 16384 rows x 2 KB = 4 GiB."""
    f = figures(load_config("pim-gpt"))
    assert f["banks"] == 128
    assert f["capacity"] == pytest.approx(4.0)
    assert f["peak_internal_bandwidth"] == pytest.approx(8 * 512)
    assert f["peak_external_bandwidth"] == pytest.approx(8 * 32)
    assert f["data_bus_bandwidth_from_timing"] == pytest.approx(8 * 32)
    assert f["peak_mac_throughput"] == pytest.approx(128 * 32 / 1000)  # TFLOPS
    assert f["row_pass_cycles"] == 226
    assert f["row_pass_mac_utilisation"] == pytest.approx(128 / 226)
    assert f["refresh_time_fraction"] == pytest.approx(210 / 3333)
    chip = figures(load_config("pim-gpt", {"dram.channels": 2}))
    assert chip["peak_mac_throughput"] == pytest.approx(1.024)


def test_gddr6_bus_bandwidth_from_timing_matches_pin_rate():
    f = figures(load_config("gddr6-14gbps"))
    # 32 B per nBL = 2 cycles of 0.570 ns = 28.07 GB/s per channel; 16 pins x 14 Gb/s = 28 GB/s
    assert f["data_bus_bandwidth_from_timing"] == pytest.approx(2 * 32 / (2 * 0.570))
    assert f["peak_external_bandwidth"] == pytest.approx(2 * 28.0)
    assert "peak_mac_throughput" not in f


def test_overrides_reach_the_config():
    cfg = load_config("pim-gpt", {"dram.timing.nRP": 30, "dram.channels": 4, "pim.macs_per_bank": 16})
    assert cfg.dram.timing["nRP"] == 30 and cfg.dram.channels == 4


def write(tmp_path, text, name="hw.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def preset_dict():
    return yaml.safe_load((HW_CONFIG_DIR / "pim-gpt.yaml").read_text())


@pytest.mark.parametrize("edit,key,words", [
    (lambda d: d["dram"].update(colour="red"), "dram.colour", "unknown key"),
    (lambda d: d.update(cooling={"fans": 2}), "cooling", "unknown key"),
    (lambda d: d["dram"]["timing"].pop("nRCDRDMAC"), "dram.timing.nRCDRDMAC", "missing timing"),
    (lambda d: d["dram"]["timing"].update(nFOO=3), "dram.timing.nFOO", "unknown timing"),
    (lambda d: d["dram"]["timing"].update(nRP=-1), "dram.timing.nRP", "negative"),
    (lambda d: d["dram"]["timing"].update(nRC=80), "dram.timing.nRC", "nRC (80) < nRAS + nRP (54 + 32)"),
    (lambda d: d["dram"]["timing"].update(nREFI=200), "dram.timing.nREFI", "refresh would never end"),
    (lambda d: d["dram"]["timing"].update(nCCDL=1), "dram.timing.nCCDL", "nCCDL (1) < nCCDS (2)"),
    (lambda d: d["dram"].update(channels=0), "dram.channels", "greater than 0"),
    (lambda d: d["dram"].update(channels="eight"), "dram.channels", "integer"),
    (lambda d: d["dram"].pop("rows_per_bank"), "dram.rows_per_bank", "missing"),
    (lambda d: d["dram"].update(banks_per_channel=15), "dram", "multiple of bank_groups"),
    (lambda d: d["pim"].update(macs_per_bank=8), "pim.macs_per_bank", "column access"),
    (lambda d: d["dram"]["timing"].update(nCWL=10), "dram.timing", "= -4 < 0 (impossible timing)"),
    (lambda d: d["dram"]["timing"].update(nRP=True), "dram.timing.nRP", "valid integer"),
    (lambda d: d["dram"]["timing"].update(nRP="30"), "dram.timing.nRP", "valid integer"),
    (lambda d: d["dram"]["timing"].update(nRP=30.0), "dram.timing.nRP", "valid integer"),
    (lambda d: d["dram"].update(refresh="yes"), "dram.refresh", "valid boolean"),
    (lambda d: d["dram"]["timing"].update(nRFC=2**40), "dram.timing.nRFC", "beyond 2147483647"),
    (lambda d: d["dram"].update(channels=64), "dram.channels", "less than or equal to 63"),
])
def test_bad_config_names_file_and_key(tmp_path, edit, key, words):
    d = preset_dict()
    edit(d)
    p = write(tmp_path, yaml.safe_dump(d))
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert words in msg
    assert err.value.key == key
    assert err.value.source == str(p) and msg.startswith(f"{p}: {key}: ")


def test_unknown_standard_names_the_standard(tmp_path):
    d = preset_dict()
    d["dram"]["standard"] = "hbm9"
    with pytest.raises(ConfigError, match="DRAM standard 'hbm9' not found; known standards: gddr6, gddr6-aim"):
        load_config(write(tmp_path, yaml.safe_dump(d)))


@pytest.mark.parametrize("text,words", [
    ("", "a DRAM standard is a YAML mapping"),
    ("- 1\n- 2\n", "a DRAM standard is a YAML mapping"),
    ("name: s\ntiming_parameters: {}\ncommands: {}\nconstraints: []\ncolour: red\n", "colour: unknown key"),
])
def test_bad_standard_file_is_named(tmp_path, text, words):
    (tmp_path / "std.yaml").write_text(text)
    d = preset_dict()
    d["dram"]["standard"] = "std.yaml"
    with pytest.raises(ConfigError, match=words) as err:
        load_config(write(tmp_path, yaml.safe_dump(d)))
    assert str(tmp_path / "std.yaml") in str(err.value)


def test_pim_section_needs_a_pim_standard(tmp_path):
    d = yaml.safe_load((HW_CONFIG_DIR / "gddr6-14gbps.yaml").read_text())
    d["pim"] = {"macs_per_bank": 16, "global_buffer_bytes": 2048}
    with pytest.raises(ConfigError, match="pim: a pim section needs a standard with all-bank MAC16; 'gddr6' has none"):
        load_config(write(tmp_path, yaml.safe_dump(d)))


def test_duplicate_key_is_an_error(tmp_path):
    p = write(tmp_path, (HW_CONFIG_DIR / "pim-gpt.yaml").read_text().replace("    nRP: 32\n", "    nRP: 32\n    nRP: 30\n"))
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: duplicate key 'nRP'"):
        load_config(p)


def test_malformed_yaml_names_the_line(tmp_path):
    p = write(tmp_path, "name: x\ndram:\n  channels: [8\n  banks_per_channel: 16\n")
    with pytest.raises(ConfigError, match=r"malformed YAML: line \d+, column \d+") as err:
        load_config(p)
    assert str(p) in str(err.value)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="presets are: .*pim-gpt"):
        load_config("no-such-preset")


def test_directory_named_like_a_preset_does_not_shadow_it(tmp_path, monkeypatch):
    (tmp_path / "pim-gpt").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config("pim-gpt").dram.channels == 8


@pytest.mark.parametrize("override,words", [
    ({"dram.chanels": 4}, "unknown key 'chanels'"),
    ({"drum.channels": 4}, "unknown key 'drum'"),
    ({"dram.timing.nXYZ": 4}, "unknown timing"),
])
def test_bad_override_is_named(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config("pim-gpt", override)


def test_cli_validate_prints_figures_and_errors(capsys):
    assert cli(["validate", "pim-gpt"]) == 0
    out = capsys.readouterr().out
    assert "peak_internal_bandwidth" in out and "4,096" in out
    assert cli(["validate", "pim-gpt", "--set", "dram.timing.nRC=10"]) == 2
    err = capsys.readouterr().err
    assert "dram.timing.nRC" in err and "pim-gpt.yaml" in err
    assert cli(["validate", "pim-gpt", "--set", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert cli(["validate", "pim-gpt", "--set", "dram.channels=[8"]) == 2
    assert "dram.channels: value '[8' is not valid YAML" in capsys.readouterr().err


def test_cli_run_trace_golden_and_json(tmp_path, capsys):
    """4 all-bank row passes on 2 channels: 4 x 226 cycles, refresh off; JSON carries the config."""
    trace = write(tmp_path, "# four row passes\n" + "".join(f"AiM MAC_ABK 64 0xc0000000 {r}\n" for r in range(4)),
                  "t.trace")
    out = tmp_path / "res.json"
    assert cli(["run-trace", str(trace), "--hw", "aim-32ch", "--no-refresh", "--front-end", "pim-gpt", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["cycles"] == 4 * 226
    assert res["commands"] == {"ACT16": 8, "PREA": 8, "MAC16": 512}
    assert res["config"]["dram"]["channels"] == 32 and res["pimsim_version"]
    assert not list(tmp_path.glob(".res.json.*"))  # no temporary file left behind


def test_cli_run_trace_bad_line_names_line(tmp_path, capsys):
    trace = write(tmp_path, "AiM MAC_ABK 64 0xffffffff 0\nAiM MAC_ABK 64 0xffffffff\n", "bad.trace")
    out = tmp_path / "res.json"
    assert cli(["run-trace", str(trace), "--hw", "aim-32ch", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.trace:2" in err and "expected" in err
    assert not out.exists()
    good = write(tmp_path, "AiM MAC_ABK 64 0xffffffff 0\n", "good.trace")
    assert cli(["run-trace", str(good), "--json", str(tmp_path)]) == 2  # a directory: an error, no traceback
    assert "error" in capsys.readouterr().err


def test_sim_and_mapping_do_not_import_each_other():
    """The compiled program is the only contract between mapping and sim (DESIGN)."""
    def imports(pkg):
        found = set()
        for path in (ROOT / pkg).rglob("*.py"):
            if pkg == "sim" and path.name in ("cli.py", "compose.py"):  # composition roots wire everything
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    found.add(node.module.split(".")[0])
        return found

    assert "mapping" not in imports("sim")
    assert "sim" not in imports("mapping")
