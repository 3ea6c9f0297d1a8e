"""The README's configuration reference is current, complete and sourced."""
from __future__ import annotations

from pathlib import Path

import yaml

from sim import config_reference as ref

ROOT = Path(__file__).resolve().parent.parent


def _leaves(node, prefix=""):
    """Dotted keys of every scalar or list leaf of a YAML mapping (independent of the schema walk)."""
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _leaves(v, key + ".")
        else:
            yield key, v


def test_readme_reference_is_what_the_generator_writes():
    section = ref.readme_section((ROOT / "README.md").read_text())
    assert section is not None, "README.md lost its configuration-reference markers"
    assert section == ref.markdown(), "stale: run python -m sim.config_reference --write"


def test_every_key_of_the_default_preset_has_a_row_with_its_value():
    preset = yaml.safe_load((ROOT / "hw_configs" / "pim-gpt.yaml").read_text())
    table = {r["key"]: r for r in ref.rows()}
    leaves = dict(_leaves(preset))
    assert len(leaves) > 90
    for key, value in leaves.items():
        assert key in table, key
        shown = ", ".join(map(str, value)) if isinstance(value, list) else (
            ("true" if value else "false") if isinstance(value, bool) else str(value))
        assert table[key]["default"] == shown, key


def test_every_number_in_the_reference_says_where_it_comes_from():
    """A number without a source comment (or the standard's meaning for a timing) is a finding."""
    for r in ref.rows():
        if r["default"] and r["default"].replace(".", "", 1).isdigit():
            assert r["meaning"], f"{r['key']} = {r['default']} has no source or meaning"


def test_units_follow_the_key_names():
    table = {r["key"]: r["unit"] for r in ref.rows()}
    assert table["dram.tck_ns"] == "ns"
    assert table["asic.clock_mhz"] == "MHz"
    assert table["energy.io_pj_per_bit"] == "pJ/bit"
    assert table["dram.timing.nRCDRDMAC"].startswith("command-clock cycles")
    assert table["energy.command_pj.MAC16"] == "pJ per command"


def test_comments_with_continuation_lines_are_read_whole(tmp_path):
    f = tmp_path / "h.yaml"
    f.write_text("a:\n  b: 1   # first part\n         # second part\n  c: 2\n# top-level note\nd: 3 # d's\n")
    got = ref.preset_comments(f)
    assert got == {"a": "", "a.b": "first part second part", "a.c": "", "d": "d's"}
