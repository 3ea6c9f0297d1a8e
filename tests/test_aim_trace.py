"""Reading traces of the public AiM simulator (arkhadem/aim_simulator) into engine instructions.

Expected instruction rows are written out by hand from the trace format (see sim/aim_trace.py's
docstring): OP COLUMN=1 / SIMPLE=2 / BARRIER=4, then CHMASK, CMD, BANK, ROW, COL, COUNT, FLAGS.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sim.aim_trace import (
    AF_ROW_BASE,
    AimOp,
    TraceError,
    TraceLimits,
    aim_mask_channels,
    aim_mask_to_chmask,
    chmask_to_aim_mask,
    generate_gemv,
    generate_row_passes,
    load_aim_trace,
    parse_trace,
    trace_to_program,
)
from sim.checker import assert_schedule_ok
from sim.config import load_config
from sim.dram_spec import compile_standard
from sim.engine import Engine

DATA = Path(__file__).parent / "data" / "aim"
ROOT = Path(__file__).resolve().parent.parent
ALL32 = 0xFFFF_FFFF  # engine mask of channels 0..31


@pytest.fixture(scope="module")
def cfg():
    return load_config("aim-32ch")


@pytest.fixture(scope="module")
def cfg8():
    return load_config("aim-32ch", overrides={"dram.channels": 8})


@pytest.fixture(scope="module")
def std(cfg):
    return compile_standard(cfg)


def rows_of(text, cfg):
    return load_aim_trace(text, cfg).tolist()


def C(std, name):
    return std.cmd(name)


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("aim_mask, channels", [
    (0x8000_0000, (0,)),
    (0x0000_0001, (31,)),
    (0x0000_FFFF, tuple(range(16, 32))),
    (0xFFFF_0000, tuple(range(0, 16))),
    (0xC000_0000, (0, 1)),
    (0xFFFF_FFFF, tuple(range(32))),
])
def test_mask_bit_order(aim_mask, channels):
    assert aim_mask_channels(aim_mask) == channels
    assert aim_mask_to_chmask(aim_mask) == sum(1 << c for c in channels)
    assert chmask_to_aim_mask(channels) == aim_mask


def test_mask_conversion_in_program(cfg, std):
    rows = rows_of("AiM WR_BIAS 0 0x80000000\nAiM WR_BIAS 0 0x0000ffff\n", cfg)
    assert rows[0][1] == 0x1
    assert rows[1][1] == 0xFFFF_0000


# --------------------------------------------------------------------------- every ISR


def expected_rows(std):
    """(trace line, instruction rows), by hand."""
    M = C(std, "MAC16")
    return [
        ("AiM MAC_ABK 64 0xffffffff 5", [[1, ALL32, M, -1, 5, 0, 64, 0, 0]]),
        ("AiM ISR_MAC_ABK 8 0x80000000 16383", [[1, 0x1, M, -1, 16383, 0, 8, 0, 0]]),
        ("AiM MAC_SBK 3 0x40000000 7 9", [[1, 0x2, C(std, "MAC"), 7, 9, 0, 3, 0, 0]]),
        ("AiM WR_GB 64 2 0x0000ffff", [[2, 0xFFFF_0000, C(std, "WRGB"), -1, -1, 0, 64, 0, 0]]),
        ("AiM WR_BIAS 4 0xf0000000", [[2, 0xF, C(std, "WRMAC16"), -1, -1, 0, 1, 0, 0]]),
        ("AiM RD_MAC 8 0xf0000000", [[2, 0xF, C(std, "RDMAC16"), -1, -1, 0, 1, 1, 0]]),
        ("AiM RD_AF 12 0xf0000000", [[2, 0xF, C(std, "RDAF16"), -1, -1, 0, 1, 1, 0]]),
        ("AiM WR_ABK 0 0x00000001 33", [[1, 1 << 31, C(std, "WRA16"), -1, 33, 0, 1, 0, 0]]),
        ("AiM WR_SBK 0 0x20000000 2 8", [[1, 0x4, C(std, "WR"), 2, 8, 0, 1, 0, 0]]),
        ("AiM RD_SBK 20 0xa0000000 15 0", [[1, 0x5, C(std, "RD"), 15, 0, 0, 1, 0, 0]]),
        ("AiM COPY_BKGB 2 0xf0000000 0 4", [[1, 0xF, C(std, "RDCP"), 0, 4, 0, 2, 0, 0]]),
        ("AiM COPY_GBBK 2 0xf0000000 1 4", [[1, 0xF, C(std, "WRCP"), 1, 4, 0, 2, 0, 0]]),
        ("AiM AF 0xf0000000", [[1, 0xF, C(std, "AF16"), -1, AF_ROW_BASE, 0, 1, 0, 0]]),
        ("AiM EWMUL 2 0xf0000000 6", [[1, 0xF, C(std, "EWMUL16"), -1, 6, 0, 2, 0, 0]]),
        ("AiM EWADD 4 8 12", []),
        ("AiM SYNC", [[4, ALL32, -1, -1, -1, 0, 1, 0, 0]]),
        ("W MEM 3 2 11", [[1, 1 << 3, C(std, "WR"), 2, 11, 0, 1, 0, 0]]),
        ("R MEM 31 0 0", [[1, 1 << 31, C(std, "RD"), 0, 0, 0, 1, 0, 0]]),
        ("W GPR 0", []),
        ("R GPR 32", []),
        ("W CFR 0 1", []),
        ("W CFR 1 0", []),
        ("R CFR 2 0", []),
        ("AiM EOC", [[4, ALL32, -1, -1, -1, 0, 1, 0, 0]]),
    ]


def test_every_isr_kind(cfg, std):
    for line, want in expected_rows(std):
        assert rows_of(line + "\n", cfg) == want, line


def test_whole_trace_is_the_concatenation(cfg, std):
    cases = expected_rows(std)
    text = "\n".join(line for line, _ in cases) + "\n"
    want = [r for _, rows in cases for r in rows]
    got = load_aim_trace(text, cfg)
    assert got.dtype == np.int64 and got.shape == (len(want), 9)
    assert got.tolist() == want


@pytest.mark.parametrize("refresh", [False, True])
def test_every_isr_kind_runs_to_a_schedule_the_checker_accepts(refresh):
    """The trace of every ISR kind, five times over, timed by the engine: the independent checker
    (its own reading of the standard, releases and expected commands from the program) accepts
    the schedule; with nREFI 500 refresh falls due inside the trace."""
    cfg = load_config("aim-32ch", {"dram.timing.nREFI": 500})
    std = compile_standard(cfg)
    text = "\n".join(line for line, _ in expected_rows(std) if "EOC" not in line) + "\n"
    prog = load_aim_trace(text * 5, cfg)
    res = Engine(cfg, refresh=refresh).run(prog, record=True)
    assert_schedule_ok(res.schedule, cfg, prog, refresh=refresh, close_rows=True)
    assert (res.command_totals().get("REFab", 0) > 0) == refresh


def test_parsed_fields(cfg):
    ops = parse_trace("AiM WR_GB 0x40 3 0x80000001\nR MEM 2 5 7\nW CFR 2 3\n")
    assert ops == [
        AimOp("WR_GB", opsize=64, gpr=3, mask=0x8000_0001),
        AimOp("R_MEM", channel=2, bank=5, row=7),
        AimOp("W_CFR", cfr=2, data=3),
    ]
    assert [op.lineno for op in ops] == [1, 2, 3]


def test_af_row_follows_af_mode(cfg, std):
    text = "AiM AF 0x80000000\nW CFR 2 5\nAiM AF 0x80000000\nW CFR 2 0\nAiM AF 0x80000000\n"
    assert [r[4] for r in rows_of(text, cfg)] == [AF_ROW_BASE, AF_ROW_BASE + 5, AF_ROW_BASE]


def test_sync_covers_every_channel_of_the_config(cfg8):
    assert rows_of("AiM MAC_ABK 1 0x80000000 0\nAiM SYNC\n", cfg8)[1][1] == 0xFF


# --------------------------------------------------------------------------- layout of the text


def test_comments_blank_lines_and_whitespace(cfg, std):
    text = ("# a comment\n\n   \n#no space after the hash\n\tAiM  MAC_ABK\t64   0xffffffff 1  \r\n"
            "# AiM MAC_ABK 64 0xffffffff 2\nAiM EOC\r\n")
    assert rows_of(text, cfg) == [[1, ALL32, C(std, "MAC16"), -1, 1, 0, 64, 0, 0], [4, ALL32, -1, -1, -1, 0, 1, 0, 0]]


def test_eoc_stops_reading(cfg):
    text = "AiM MAC_ABK 64 0xffffffff 1\nAiM EOC\nAiM NOT_AN_OPCODE\nAiM MAC_ABK 64 0xffffffff 2\n"
    ops = parse_trace(text)
    assert [op.name for op in ops] == ["MAC_ABK", "EOC"]
    rows = rows_of(text, cfg)
    assert len(rows) == 2 and rows[-1][0] == 4


def test_translation_stops_at_eoc_even_in_a_hand_built_list(cfg, std):
    ops = [AimOp("MAC_ABK", opsize=1, mask=0x80000000, row=0), AimOp("EOC"),
           AimOp("MAC_ABK", opsize=1, mask=0x80000000, row=1)]
    prog = trace_to_program(ops, std, 32, 16, 16384, 64)
    assert prog[:, 0].tolist() == [1, 4]


def test_trace_without_eoc_ends_at_its_last_line(cfg):
    assert len(rows_of("AiM MAC_ABK 64 0xffffffff 1\n", cfg)) == 1


def test_empty_trace_is_an_empty_program(cfg):
    assert load_aim_trace("# nothing\n", cfg).shape == (0, 9)


def test_spreadsheet_csv_equals_space_separated(cfg):
    csv = load_aim_trace(DATA / "mixed_spreadsheet.csv", cfg)
    spaces = load_aim_trace(str(DATA / "mixed_spaces.trace"), cfg)
    assert csv.tolist() == spaces.tolist()
    assert len(csv) == 7  # WR_BIAS, WR_GB, 2 x MAC_ABK, RD_MAC, W MEM, EOC


def test_file_lines_are_named_in_errors(tmp_path, cfg):
    path = tmp_path / "bad.trace"
    path.write_text("# header\nAiM MAC_ABK 64 0xffffffff 0\nAiM MAC_ABK 64 0xffffffff\n")
    with pytest.raises(TraceError) as info:
        load_aim_trace(path, cfg)
    assert str(info.value) == (f"{path}:3: 'AiM MAC_ABK 64 0xffffffff': missing fields: "
                               "expected 'AiM MAC_ABK <opsize> <channel_mask> <row>'")


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        parse_trace("no/such/trace.txt")


# --------------------------------------------------------------------------- malformed lines

BAD_LINES = [
    # (line, words the message must contain)
    ("AiM FOO 1 0x1", ["unknown AiM opcode 'FOO'"]),
    ("XYZ MAC_ABK 1 0x1 0", ["unknown instruction type 'XYZ'"]),
    ("AiM", ["expected an opcode"]),
    ("R DISK 1", ["MEM, GPR or CFR"]),
    ("AiM MAC_ABK 64 0xffffffff", ["missing fields", "AiM MAC_ABK <opsize> <channel_mask> <row>"]),
    ("AiM MAC_ABK 64 0xffffffff 1 2", ["extra fields", "AiM MAC_ABK <opsize> <channel_mask> <row>"]),
    ("AiM WR_GB 64 0xffffffff", ["missing fields", "AiM WR_GB <opsize> <gpr> <channel_mask>"]),
    ("AiM RD_MAC 0", ["missing fields", "AiM RD_MAC <gpr> <channel_mask>"]),
    ("AiM SYNC 1", ["extra fields"]),
    ("W MEM 1 2", ["missing fields", "W MEM <channel> <bank> <row>"]),
    ("AiM MAC_ABK 64 0xffffffff row7", ["<row> is 'row7'", "integer"]),
    ("AiM MAC_ABK 6x4 0xffffffff 1", ["<opsize> is '6x4'"]),
    ("AiM MAC_ABK 64 0xfffffffg 1", ["<channel_mask> is '0xfffffffg'"]),
    ("AiM MAC_ABK -1 0xffffffff 1", ["<opsize> is '-1'"]),
    ("AiM MAC_ABK 1.5 0xffffffff 1", ["<opsize> is '1.5'"]),
    ("AiM MAC_ABK 0 0xffffffff 1", ["opsize 0 out of range"]),
    ("AiM MAC_ABK 65 0xffffffff 1", ["opsize 65 out of range 1..64"]),
    ("AiM WR_GB 100 0 0x80000000", ["opsize 100 out of range 1..64"]),
    ("AiM MAC_ABK 64 0xffffffff 16384", ["row 16384 out of range 0..16383"]),
    ("AiM MAC_SBK 1 0x80000000 16 0", ["bank 16 out of range 0..15"]),
    ("R MEM 0 99 0", ["bank 99 out of range"]),
    ("AiM MAC_ABK 64 0x0 1", ["channel_mask 0x0"]),
    ("AiM MAC_ABK 64 0x100000000 1", ["channel_mask 0x100000000"]),
    ("AiM WR_ABK 0 0xc0000000 1", ["WR_ABK needs exactly one channel"]),
    ("AiM WR_ABK 0 0xffffffff 1", ["WR_ABK needs exactly one channel"]),
    ("AiM WR_AFLUT 4", ["WR_AFLUT is not supported"]),
    ("R MEM 32 0 0", ["channel 32 out of range 0..31"]),
    ("W CFR 7 1", ["unknown CFR 7"]),
    ("W CFR 2 9", ["CFR 2 value 9 out of range 0..7"]),
    ("AiM,MAC_ABK,,0xffffffff,1", ["empty field"]),
]


@pytest.mark.parametrize("line, words", BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_malformed_line_names_its_line(line, words, cfg):
    text = f"# header\nAiM WR_BIAS 0 0xffffffff\n{line}\nAiM EOC\n"
    with pytest.raises(TraceError) as info:
        parse_trace(text, TraceLimits.from_config(cfg), source="trace.txt")
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.source, err.lineno, err.line) == ("trace.txt", 3, line)
    assert str(err).startswith(f"trace.txt:3: {line!r}: ")
    for w in words:
        assert w in str(err)


@pytest.mark.parametrize("line, words", [
    ("AiM MAC_ABK 64 0x00800000 1", ["selects channel(s) 8", "has channels 0..7"]),
    ("AiM WR_BIAS 0 0x0000ffff", ["selects channel(s) 16, 17"]),
    ("R MEM 8 0 0", ["channel 8 does not exist", "0..7"]),
])
def test_channels_beyond_the_config(line, words, cfg8, std):
    text = f"AiM MAC_ABK 64 0xff000000 0\n\n{line}\n"
    with pytest.raises(TraceError) as info:  # caught while parsing against the config ...
        parse_trace(text, TraceLimits.from_config(cfg8))
    assert info.value.lineno == 3 and all(w in str(info.value) for w in words)
    ops = parse_trace(text)  # ... and when translating ops parsed without it
    with pytest.raises(TraceError) as info:
        trace_to_program(ops, std, 8, 16, 16384, 64)
    assert info.value.lineno == 3 and all(w in str(info.value) for w in words)


def test_config_checks_apply_to_translation(std):
    ops = parse_trace("AiM MAC_ABK 64 0xffffffff 0\nAiM MAC_ABK 64 0xffffffff 1024\n")
    with pytest.raises(TraceError, match=r"<text>:2: .*row 1024 out of range 0..1023"):
        trace_to_program(ops, std, 32, 16, 1024, 64)
    with pytest.raises(TraceError, match=r"<text>:1: .*opsize 64 out of range 1..32"):
        trace_to_program(ops, std, 32, 16, 16384, 32)


def test_standard_without_aim_commands():
    plain = load_config("gddr6-14gbps")
    with pytest.raises(TraceError, match=r"<text>:2: .*MAC_ABK needs command MAC16"):
        ops = parse_trace("W MEM 0 0 0\nAiM MAC_ABK 1 0x80000000 0\n")
        trace_to_program(ops, compile_standard(plain), plain.dram.channels, plain.dram.banks_per_channel,
                         plain.dram.rows_per_bank, plain.dram.columns_per_row)


# --------------------------------------------------------------------------- example traces


def test_generate_row_passes(cfg, std):
    prog = load_aim_trace(generate_row_passes(5), cfg)
    mac = [[1, ALL32, C(std, "MAC16"), -1, r, 0, 64, 0, 0] for r in range(5)]
    assert prog.tolist() == mac + [[4, ALL32, -1, -1, -1, 0, 1, 0, 0]]


def test_generate_gemv(cfg, std):
    prog = load_aim_trace(generate_gemv(3, 2, mask=0xC0000000), cfg)
    cmds = prog[:, 2].tolist()
    assert cmds == ([C(std, "WRMAC16")] + [C(std, "WRGB"), C(std, "MAC16")] * 2 + [C(std, "RDMAC16")]) * 3 + [-1]
    assert set(prog[:-1, 1].tolist()) == {0b11}
    mac_rows = prog[prog[:, 2] == C(std, "MAC16"), 4].tolist()
    assert mac_rows == list(range(6))
    assert prog[prog[:, 2] == C(std, "RDMAC16"), 7].tolist() == [1, 1, 1]


def test_bench_script_writes_a_trace(tmp_path, cfg):
    spec = importlib.util.spec_from_file_location("make_aim_trace", ROOT / "bench" / "make_aim_trace.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "rp.trace"
    assert mod.main(["--channels", "0-3,31", "-o", str(out), "rowpass", "4"]) == 0
    ops = parse_trace(out)
    assert [op.row for op in ops[:-1]] == [0, 1, 2, 3]
    assert ops[0].mask == 0xF000_0001 and ops[-1].name == "EOC"
