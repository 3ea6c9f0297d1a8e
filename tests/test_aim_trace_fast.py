"""The vectorised trace reader (`load_aim_trace`) against the line-by-line reader it replaces.

The oracle is `load_aim_trace_reference` (parse_trace + trace_to_program, one AimOp per line):
on random traces, valid and broken, both must give the same program or the same error (type,
message, line). Traces are built from the grammar in sim/aim_trace.py's docstring and then
roughened: every separator and line break the reference accepts, spreadsheet padding,
comments, numbers at and past every limit, and damaged tokens.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim.aim_trace as aim_trace
from sim.aim_trace import TraceError, load_aim_trace, load_aim_trace_reference
from sim.config import load_config
from sim.dram_spec import compile_standard


@pytest.fixture(scope="module")
def cfgs():
    """32 and 8 channels of AiM (masks beyond the config), and plain GDDR6 (no AiM commands)."""
    return [load_config("aim-32ch"), load_config("aim-32ch", overrides={"dram.channels": 8}),
            load_config("gddr6-14gbps")]


def outcome(fn, *args):
    """A program, or the error as (type, message, line number)."""
    try:
        return ("ok", fn(*args).tolist())
    except (TraceError, OSError) as exc:
        return ("error", type(exc).__name__, str(exc), getattr(exc, "lineno", None))


# --------------------------------------------------------------------------- random traces

FIELDS = {**aim_trace.AIM_FIELDS, **{f"{k} {n}": f for n, f in aim_trace.HOST_FIELDS.items() for k in "RW"}}
# Values around every limit the checks know (columns 64, banks 16, rows 16384, channels 8/32, CFR).
EDGE = [0, 1, 2, 3, 6, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 255, 1023, 16383, 16384, 65535,
        0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 10 ** 8 - 1, 10 ** 8, 10 ** 18, 10 ** 19, 2 ** 64]
MASKS = [0x80000000, 0x00000001, 0xFF000000, 0x00FF0000, 0xF0000000, 0xFFFFFFFF, 0x0000FFFF, 0xC0000000,
         0x00800000, 0, 0x1_0000_0000]


LIMITS = {"row": 16384, "opsize": 65, "bank": 16, "channel": 8, "cfr": 3, "data": 8, "gpr": 100, "gpr1": 100}
CLEAN_MASKS = [0x80000000, 0xFF000000, 0xF0000000, 0xC0000000, 0x01000000, 0x40000000]  # channels 0..7


def number(rng, field, clean):
    if field == "mask":
        v = rng.choice(CLEAN_MASKS if clean else MASKS)
    elif field == "data" and clean:
        v = rng.randint(0, 1)
    elif not clean and rng.randint(0, 3) == 0:
        v = rng.choice(EDGE)
    elif clean:
        v = rng.randint(1 if field == "opsize" else 0, LIMITS[field] - 1)
    else:
        v = rng.randint(0, LIMITS[field] + 2)
    style = rng.randint(0, 5)
    if style == 0 or (field == "mask" and style < 4):
        digits = f"{v:x}"
        if rng.random() < 0.5:
            digits = digits.upper()
        return rng.choice(["0x", "0X"]) + "0" * rng.randint(0, 2) + digits
    return "0" * rng.choice([0, 0, 0, 1, 9, 18]) + str(v)


DAMAGE = ["", "-1", "1.5", "12abc", "0x", "x1", "0xg", "+3", "1_0", "AiM", "#", "\x00", "é", "\u00a0",
          "\x1f", "0x" + "f" * 16, "9" * 19, "٣", "¹"]


def instruction(rng, clean):
    names = sorted(n for n in FIELDS if n not in ("WR_AFLUT", "EOC")) if clean else sorted(FIELDS)
    name = rng.choice(names)
    fields = [number(rng, f, clean) for f in FIELDS[name]]
    head = name.split(" ") if " " in name else ["AiM", rng.choice(["", "", "ISR_"]) + name]
    toks = head + fields
    roll = 9 if clean else rng.randint(0, 9)
    if roll == 0:  # a damaged token
        i = rng.randint(0, len(toks) - 1)
        toks[i] = rng.choice(DAMAGE + [toks[i] + t for t in DAMAGE] + [toks[i].lower(), toks[i][:-1]])
    elif roll == 1:  # a field too many or too few
        if toks[2:] and rng.random() < 0.5:
            toks.pop()
        else:
            toks.append(number(rng, "row", clean))
    elif roll == 2 and toks[0] == "AiM":
        toks[1] = rng.choice(["WR_AFLUT", "FOO", "ISR_ISR_EOC", "mac_abk", "SYNC ", "EO"])
    if name == "WR_ABK" and clean:
        toks[3] = "0x80000000"  # exactly one channel
    return toks


SPACES = [" ", "  ", "\t", " \t ", "\x1f", "\u3000", "\u00a0"]
BREAKS = ["\n"] * 12 + ["\r\n"] * 3 + ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
COMMENTS = ["# comment", "#no space", "  # indented", "# µs and ×", "#,spreadsheet,comment,,", ",# lead",
            "# AiM MAC_ABK 64 0xffffffff 1", "\u3000# wide space first"]
BAD_COMMENTS = [",,#two leading", " , , #spaced"]


def line(rng, clean):
    kind = rng.randint(0, 19)
    if kind == 0:
        return rng.choice(COMMENTS if clean else COMMENTS + BAD_COMMENTS)
    if kind == 1:
        return rng.choice(["", "   ", "\t", ",,,,", " , , ", ","])
    if kind == 2 and not clean:
        return rng.choice(["AiM EOC", "AiM SYNC", "AiM ISR_EOC"])
    toks = instruction(rng, clean)
    if rng.randint(0, 3) == 0:  # spreadsheet CSV
        sep = rng.choice([",", ", ", " ,", ",\t"])
        lead = rng.choice(["", "", ",", " ,"] + ([] if clean else [",,"]))
        trail = rng.choice(["", ",", ",,,", ", ,"])
        body = sep.join(toks)
        if not clean and rng.randint(0, 5) == 0:  # an empty field in the middle
            body = body.replace(sep, sep + sep, 1)
        text = lead + body + trail
    else:
        text = rng.choice(SPACES[:5] if rng.randint(0, 5) else SPACES).join(toks)
    pad = rng.choice(["", "", " ", "\t", "  "])
    return pad + text + rng.choice(["", "", " ", "\t"] + ([] if clean else [" # trailing"]))


def trace_lines(seed: int) -> list[str]:
    """Clean traces (valid for 8 and 32 channels; long, so pieces split them) or rough ones;
    each line with its line break."""
    rng = random.Random(seed)
    clean = rng.random() < 0.5
    lines = [line(rng, clean) for _ in range(rng.randint(0, 150 if clean else 30))]
    if clean and rng.random() < 0.5:
        lines.insert(rng.randint(0, len(lines)), line(rng, False))  # one rough line somewhere
    if clean and rng.random() < 0.3:
        lines += ["AiM EOC", "AiM NOT READ after EOC"]
    out = [ln + rng.choice(BREAKS) for ln in lines]
    if out and rng.random() < 0.5:
        out[-1] = lines[-1]  # no line break at the end
    return out


def smallest_failing(lines: list[str], fails) -> str:
    """Drop lines while the failure stays (a readable counterexample in the message)."""
    i = 0
    while i < len(lines):
        trial = lines[:i] + lines[i + 1:]
        if fails("".join(trial)):
            lines = trial
        else:
            i += 1
    return "".join(lines)


def with_chunk(chunk: int, fn, *args):
    old = aim_trace.CHUNK_BYTES
    aim_trace.CHUNK_BYTES = chunk
    try:
        return outcome(fn, *args)
    finally:
        aim_trace.CHUNK_BYTES = old


SETTINGS = settings(max_examples=300, deadline=None)
SEEDS = st.integers(0, 2 ** 32 - 1)


@SETTINGS
@given(seed=SEEDS, which=st.integers(0, 2), chunk=st.sampled_from([16, 64, 512, 1 << 19]))
def test_fast_reader_equals_reference_on_text(cfgs, seed, which, chunk):
    cfg = cfgs[which]

    def fails(text):
        return with_chunk(chunk, load_aim_trace, text, cfg) != outcome(load_aim_trace_reference, text, cfg)

    lines = trace_lines(seed)
    assert not fails("".join(lines)), f"fast and reference readers differ on {smallest_failing(lines, fails)!r}"


def write_temp(data: bytes) -> Path:
    fd, name = tempfile.mkstemp(suffix=".trace")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


@SETTINGS
@given(seed=SEEDS, which=st.integers(0, 1), chunk=st.sampled_from([16, 100, 1 << 19]),
       garbage=st.sampled_from([b"", b"", b"\x00", b"\xff", b"\xc3", b"\xe2\x80", b"ok\x00\x01"]),
       where=st.floats(0, 1))
def test_fast_reader_equals_reference_on_files(cfgs, seed, which, chunk, garbage, where):
    """Files add the text checks: a NUL byte or bytes that are not UTF-8, anywhere in the file."""
    data = "".join(trace_lines(seed)).encode("utf-8")
    cut = int(where * len(data))
    path = write_temp(data[:cut] + garbage + data[cut:])
    try:
        want = outcome(load_aim_trace_reference, path, cfgs[which])
        assert with_chunk(chunk, load_aim_trace, path, cfgs[which]) == want
    finally:
        path.unlink()


def test_generated_traces_are_mostly_long_and_often_valid(cfgs):
    """The property tests see programs of many rows and errors of every kind."""
    results = [outcome(load_aim_trace_reference, "".join(trace_lines(seed)), cfgs[0]) for seed in range(300)]
    ok = [r for r in results if r[0] == "ok"]
    assert len(ok) > 100 and np.mean([len(r[1]) for r in ok]) > 15
    messages = " ".join(r[2] for r in results if r[0] == "error")
    for words in ("empty field", "unknown AiM opcode", "extra fields", "missing fields", "out of range",
                  "not a non-negative decimal", "channel_mask"):
        assert words in messages, words


# --------------------------------------------------------------------------- by hand


def test_valid_mixed_trace_across_piece_boundaries(cfgs):
    cfg = cfgs[0]
    body = ["AiM WR_BIAS 0 0xffffffff", "AiM WR_GB 64 0 0xffffffff", "AiM MAC_ABK 64 0xffffffff 17",
            "W CFR 2 3", "AiM AF 0x80000000", "AiM RD_MAC 0 0xffffffff", "W MEM 3 2 11", "R MEM 31 15 16383",
            "AiM MAC_SBK 8 0x80000000 3 99", "AiM COPY_BKGB 2 0x0000ffff 1 4", "AiM EWADD 4 8 12",
            "AiM ISR_EWMUL 2 0xf0000000 6", "AiM WR_ABK 0 0x00000001 33", "AiM SYNC", "W CFR 2 0", "AiM AF 0x1"]
    text = "\n".join(body * 50) + "\nAiM EOC\nAiM this is never read\n"
    want = load_aim_trace_reference(text, cfg)
    assert len(want) == 13 * 50 + 1  # W CFR and EWADD make no rows
    for chunk in (7, 64, 1000, 1 << 19):
        assert with_chunk(chunk, load_aim_trace, text, cfg) == ("ok", want.tolist())


def test_well_formed_lines_make_no_objects(cfgs, monkeypatch):
    """The fast path never builds an AimOp for a line it can read itself."""
    calls = []
    real = aim_trace._parse_raw_line
    monkeypatch.setattr(aim_trace, "_parse_raw_line", lambda *a: calls.append(a) or real(*a))
    text = "".join(f"AiM MAC_ABK 64 0xffffffff {r}\nAiM WR_GB 64 0 0xffffffff\n" for r in range(500))
    prog = load_aim_trace(text + ",AiM,RD_MAC,0,0xffffffff,,\n", cfgs[0])
    assert len(prog) == 1001 and calls == []


def test_error_in_a_late_piece_names_its_line(cfgs, tmp_path):
    path = tmp_path / "long.trace"
    lines = ["AiM MAC_ABK 64 0xffffffff 1"] * 30000 + ["AiM MAC_ABK 64 0xffffffff 16384"]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError) as info:
        with_chunk_raise(1 << 12, load_aim_trace, path, cfgs[0])
    assert info.value.lineno == 30001 and "row 16384 out of range 0..16383" in str(info.value)


def with_chunk_raise(chunk, fn, *args):
    old = aim_trace.CHUNK_BYTES
    aim_trace.CHUNK_BYTES = chunk
    try:
        return fn(*args)
    finally:
        aim_trace.CHUNK_BYTES = old


def test_progress_is_shown_on_request_and_for_long_traces(cfgs, capsys, monkeypatch):
    text = "AiM MAC_ABK 64 0xffffffff 1\n" * 100
    load_aim_trace(text, cfgs[0])
    assert capsys.readouterr().err == ""  # short: silent
    load_aim_trace(text, cfgs[0], progress=True)
    assert "reading <text>" in capsys.readouterr().err
    monkeypatch.setattr(aim_trace, "PROGRESS_MIN_BYTES", 1000)
    load_aim_trace(text, cfgs[0])
    assert "reading <text>" in capsys.readouterr().err
    load_aim_trace(text, cfgs[0], progress=False)
    assert capsys.readouterr().err == ""


def test_missing_command_error_comes_after_every_parse_error(cfgs):
    plain = cfgs[2]
    text = "W MEM 0 0 0\nAiM MAC_ABK 1 0x80000000 0\nAiM MAC_ABK 1 0x80000000 99999\n"
    with pytest.raises(TraceError, match=r"<text>:3: .*row 99999 out of range"):
        load_aim_trace(text, plain)
    with pytest.raises(TraceError, match=r"<text>:2: .*MAC_ABK needs command MAC16, which DRAM standard"):
        load_aim_trace(text.rsplit("\n", 2)[0] + "\n", plain, compile_standard(plain))


def test_numbers_of_every_width(cfgs):
    """Decimal and hex of 1..18 / 1..15 digits (word-at-a-time and digit-by-digit paths)."""
    cfg = cfgs[0]
    for digits in range(1, 19):
        text = f"AiM MAC_ABK 1 0x80000000 {'0' * (digits - 1)}7\nAiM WR_GB 0x{'0' * (min(digits, 15) - 1)}9 0 0x1\n"
        got = load_aim_trace(text, cfg)
        assert got[:, 4].tolist()[0] == 7 and got[1, 6] == 9, digits
    big = f"AiM EWADD {10 ** 17} {10 ** 40} 0x{'f' * 40}\nAiM SYNC\n"  # EWADD fields are never bounded
    assert load_aim_trace(big, cfg).tolist() == load_aim_trace_reference(big, cfg).tolist()
    assert np.array_equal(load_aim_trace("", cfg), np.zeros((0, 9), np.int64))
