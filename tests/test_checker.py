"""The independent schedule checker against hand-built schedules and programs. Expected cycles are
derived by hand from the presets' timing values (pim-gpt: nRCDRDMAC 56, nCCDS = nCCDL = nBL 2,
nRTP 12, nRP 32, nRAS 54, nRC 89, nRRDS 11, nMODCH 32, nRFC 210, nREFI 3333, nCLREG 0;
gddr6-14gbps: nRCDRD 30, nCCDS 2, nCCDL 4, nBL 2, nRRDS = nRRDL 11, nFAW 43, nRP 30)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from hw_configs.isa import (
    F_FLAGS, FLAG_BLOCKING, SCHEDULE_DTYPE, STANDARDS_DIR, barrier, column, program, raw, simple,
)
from sim.checker import (
    StandardFileError, assert_schedule_ok, check_counts, check_schedule, cycles_of, device, earliest_cycles,
    finish_cycle, schedule_counts,
)
from sim.config import load_config

N_MAC = 64
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pim():
    return device(load_config("pim-gpt", {"dram.channels": 2}), refresh=False)


@pytest.fixture(scope="module")
def gddr6():
    return device(load_config("gddr6-14gbps"), refresh=False)


def sched(dev, entries) -> np.ndarray:
    """entries: (name, cycle[, bank[, row[, instr[, channel[, col]]]]]); bank -1 = all banks.

    instr None (the default) numbers the entry as its own raw instruction (see `raw_program`);
    instr -1 marks a refresh-owned command."""
    out = np.zeros(len(entries), SCHEDULE_DTYPE)
    own = 0
    for i, e in enumerate(entries):
        name, cycle, bank, row, ins, channel, col = (tuple(e) + (-1, -1, None, 0, 0)[len(e) - 2:])[:7]
        c = dev.cmd(name)
        if ins is None:
            ins, own = own, own + 1
        out[i] = (c, channel, bank, row, col if dev.column[c] else -1, cycle, 0, ins, -1 if ins < 0 else 0)
    return out


def raw_program(dev, s: np.ndarray, blocking: set[int] = frozenset()) -> np.ndarray:
    """One raw instruction per program entry of `s`, in instruction order; those in `blocking`
    carry FLAG_BLOCKING (without it every instruction is released at the start cycle)."""
    rows = {}
    for e in s:
        if e["instr"] >= 0:
            i = int(e["instr"])
            rows[i] = raw(1 << int(e["channel"]), int(e["cmd"]), bank=int(e["bank"]), row=int(e["row"]),
                          col=max(int(e["col"]), 0))
            rows[i][F_FLAGS] = FLAG_BLOCKING if i in blocking else 0
    return program([rows[i] for i in sorted(rows)])


def with_timing(preset: str, **values):
    """A one-channel device with refresh on and some timing values replaced (the checker itself
    does not judge whether they are plausible; the config loader would reject nREFI <= nRFC)."""
    cfg = load_config(preset, {"dram.channels": 1})
    return device(cfg, timing={**cfg.dram.timing, **values}, refresh=True)


def check(dev, s, prog=None, **kw):
    return check_schedule(s, dev, raw_program(dev, s) if prog is None else prog, **kw)


def rules(violations, kind=None) -> list[tuple[str, str]]:
    """(cycles expression, scope) of each violated table row, e.g. ("nRCDRDMAC", "bank")."""
    out = []
    for v in violations:
        if kind is None or v.kind == kind:
            m = re.search(r"\(constraints\[\d+\] .*?: (.+?)(?:, window \d+)?, scope (\w+)\)", v.rule)
            out.append((m.group(1), m.group(2)) if m else (v.kind, ""))
    return sorted(out)


def kinds(violations) -> list[tuple[int, str]]:
    return [(v.index, v.kind) for v in violations]


def without_late(violations):
    return [v for v in violations if v.kind != "late"]


def row_pass_entries(row: int = 0, start: int = 0) -> list[tuple]:
    """ACT16, 64 MAC16 at nCCD spacing, PREA at the last MAC16 + nRTP (pim-gpt, all tight)."""
    macs = [("MAC16", start + 56 + 2 * k, -1, row, None, 0, k) for k in range(N_MAC)]
    return [("ACT16", start, -1, row), *macs, ("PREA", start + 56 + 2 * (N_MAC - 1) + 12)]


def base_entries() -> list[tuple]:
    """Row pass plus the next ACT16 at PREA + nRP: ACT16@0, MAC16@56..182, PREA@194, ACT16@226."""
    return [*row_pass_entries(0), ("ACT16", 226, -1, 1)]


def column_pass(instr: int, row: int, start: int, channel: int = 0, pre: bool = False) -> list[tuple]:
    """What the controller issues for column(MAC16, row, 64) on closed banks from `start`: [PREA,]
    ACT16, 64 MAC16; tagged as instruction `instr` (pim-gpt)."""
    head = [("PREA", start - 32, -1, -1, instr, channel)] if pre else []
    macs = [("MAC16", start + 56 + 2 * k, -1, row, instr, channel, k) for k in range(N_MAC)]
    return [*head, ("ACT16", start, -1, row, instr, channel), *macs]


# --------------------------------------------------------------------------- independence


def test_checker_shares_no_code_with_the_engine_or_the_standards_compiler():
    tree = ast.parse((REPO / "sim" / "checker.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not {m for m in imported if m and m.startswith("sim")}, imported
    assert "hw_configs.isa" in imported  # the instruction and schedule format only


def test_checker_reads_the_yaml_it_is_given(tmp_path, pim):
    # a copy of the AiM standard with ACT -> MAC nRCDRDMAC replaced by 50: MAC16@50 becomes legal
    text = (STANDARDS_DIR / "gddr6-aim.yaml").read_text()
    assert text.count("cycles: nRCDRDMAC}") == 1
    (tmp_path / "std.yaml").write_text(text.replace("cycles: nRCDRDMAC}", "cycles: 50}"))
    s = sched(pim, [("ACT16", 0, -1, 0), ("MAC16", 50, -1, 0)])
    assert rules(check(pim, s)) == [("nRCDRDMAC", "bank")]
    other = device(tmp_path / "std.yaml", timing=pim.timing, banks_per_channel=16, bank_groups=4, channels=2)
    assert check(other, s) == []


# --------------------------------------------------------------------------- reading the standard


@pytest.mark.parametrize("expr, value", [
    ("nCL + nBL + 3 - nCWL", 50 + 2 + 3 - 6), ("nCL+nBL+3-nCWL", 49), ("  nRP ", 32), (7, 7), ("0", 0),
    ("nCWL + nBL + nWR - 1", 6 + 2 + 33 - 1), ("- nCWL + nCL", 44), ("nCLREG + nBL + 3 - nCWLGB + nWPRE", 5),
])
def test_cycle_expressions(pim, expr, value):
    assert cycles_of(expr, pim.timing, "here") == value


@pytest.mark.parametrize("expr, msg", [
    ("nCL nBL", "expected \\+ or - at 'nBL'"), ("nCL +", "ends with an operator"), ("", "empty"),
    ("nCL * 2", "expected \\+ or - at '\\*'"), ("nXYZ + 1", "'nXYZ', which has no timing value"),
    ("+ - 3", "expected a name or an integer at '-'"), (True, "integer or a string"),
])
def test_bad_cycle_expressions_name_where(pim, expr, msg):
    with pytest.raises(ValueError, match=f"std.yaml: constraints\\[3\\].cycles: .*{msg}"):
        cycles_of(expr, pim.timing, "std.yaml: constraints[3].cycles")


def test_groups_and_flags_come_from_the_yaml(pim):
    # row 0: EXT_RD -> EXT_RD = [RD, RDMAC16, RDAF16], nBL, channel
    r = pim.rules[0]
    assert [pim.commands[c] for c in np.flatnonzero(r.after)] == ["RD", "RDMAC16", "RDAF16"]
    assert (r.scope, r.cycles, r.window) == ("channel", 2, None)
    assert [n for n, a in zip(pim.commands, pim.target_all) if not a] == ["ACT", "PRE", "RD", "WR", "MAC", "RDCP",
                                                                        "WRCP"]
    assert pim.commands[int(np.flatnonzero(pim.mode_change)[0])] == "TMOD"
    assert pim.commands[int(np.flatnonzero(pim.refresh)[0])] == "REFab"
    # done: RD nCL + nBL = 52, WRA16 nCWL + nBL + nWR + nRP = 73, REFab nRFC = 210
    assert [int(pim.done[pim.cmd(n)]) for n in ("RD", "WRA16", "REFab", "ACT", "MAC16")] == [52, 73, 210, 0, 1]
    assert [pim.mode[pim.cmd(n)] for n in ("MAC16", "WRGB", "ACT16")] == ["mem", "reg", "any"]


def _write_std(tmp_path, edit) -> Path:
    data = yaml.safe_load((STANDARDS_DIR / "gddr6.yaml").read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("edit, msg", [
    (lambda d: d["constraints"][0].update(after=["NOPE"]), r"constraints\[0\].after: 'NOPE' is neither"),
    (lambda d: d["groups"].update(PRES=["PRE", "XX"]), r"groups.PRES: member 'XX' is not a command"),
    (lambda d: d["commands"]["RD"].update(target="some"), r"commands.RD.target: expected bank or all"),
    (lambda d: d["commands"]["RD"].update(colour=True), r"commands.RD: unknown key\(s\) \['colour'\]"),
    (lambda d: d["commands"]["RD"].update(column="yes"), r"commands.RD.column: expected true or false"),
    (lambda d: d["constraints"][1].update(scope="rank"), r"constraints\[1\].scope: expected one of"),
    (lambda d: d["constraints"][2].update(cycles="nBL + nFOO"), r"constraints\[2\].cycles: .*'nFOO'"),
    (lambda d: d["constraints"][2].update(window=0), r"constraints\[2\].window: expected an integer >= 1"),
    (lambda d: d.pop("constraints"), r"constraints: missing"),
])
def test_bad_standard_files_name_file_and_key(tmp_path, edit, msg):
    path = _write_std(tmp_path, edit)
    cfg = load_config("gddr6-14gbps")
    with pytest.raises(ValueError, match=f"bad.yaml: {msg}"):
        device(path, timing=dict(cfg.dram.timing), banks_per_channel=16, bank_groups=4)


def test_missing_standard_file(tmp_path):
    with pytest.raises(StandardFileError, match="nothere.yaml: cannot read the standard"):
        device(tmp_path / "nothere.yaml", timing={}, banks_per_channel=16, bank_groups=4)
    with pytest.raises(ValueError, match="needs timing, banks_per_channel"):
        device(tmp_path / "nothere.yaml")


# --------------------------------------------------------------------------- the row pass


def test_row_pass_is_legal_and_tight(pim):
    s = sched(pim, base_entries())
    assert s["cycle"][-2:].tolist() == [194, 226] and s["cycle"][N_MAC] == 182
    assert check(pim, s) == []
    assert_schedule_ok(s, pim, raw_program(pim, s))


@pytest.mark.parametrize("pos, expected", [
    (1, [("nRCDRDMAC", "bank")]),                       # first MAC16 at 55
    (2, [("nCCDL", "bankgroup"), ("nCCDS", "channel")]),  # MAC16 after MAC16 by 1
    (40, [("nCCDL", "bankgroup"), ("nCCDS", "channel")]),
    (N_MAC, [("nCCDL", "bankgroup"), ("nCCDS", "channel")]),
    (N_MAC + 1, [("nRTP", "bank")]),                    # PREA at 193
    (N_MAC + 2, [("nRP", "bank")]),                     # ACT16 at 225
])
def test_one_cycle_early_is_reported_with_its_rule(pim, pos, expected):
    s = sched(pim, base_entries())
    s["cycle"][pos] -= 1
    found = without_late(check(pim, s))
    assert {v.index for v in found} == {pos}
    assert all(v.kind == "timing" for v in found)
    assert rules(found) == sorted(expected)
    assert f"@{s['cycle'][pos]} needs" in found[0].rule


def test_early_message_names_both_commands(pim):
    s = sched(pim, base_entries())
    s["cycle"][1] = 55
    (v,) = without_late(check(pim, s))
    assert v.command == "MAC16" and v.cycle == 55 and v.channel == 0
    assert v.rule.startswith("ACT16@0 -> MAC16@55 needs 56 cycles") and "has 55" in v.rule


@pytest.mark.parametrize("pos", [0, 1, 30, N_MAC + 1, N_MAC + 2])
def test_one_cycle_late_is_reported_by_tightness_only(pim, pos):
    s = sched(pim, base_entries())
    s["cycle"][pos:] += 1  # the suffix moves with it, so nothing after becomes early or late
    found = check(pim, s)
    assert kinds(found) == [(pos, "late")]
    assert "1 cycle(s) earlier" in found[0].rule
    assert check(pim, s, tight=False) == []


def test_late_message_names_the_binding_rule(pim):
    s = sched(pim, base_entries())
    s["cycle"][-1] += 5
    (v,) = check(pim, s)
    assert v.kind == "late" and "could issue at 226" in v.rule and "nRP" in v.rule


def test_several_row_passes_in_sequence(pim):
    entries = []
    for k in range(3):
        entries += row_pass_entries(row=k, start=226 * k)
    assert check(pim, sched(pim, entries)) == []


# --------------------------------------------------------------------------- release from the program


def test_the_recorded_release_field_is_ignored(pim):
    s = sched(pim, base_entries())
    for lie in (0, 10**6, -5):
        s["release"] = lie
        assert check(pim, s) == []
    s["release"][1:] = s["cycle"][1:] + 1  # "released" after issue: would be a release violation
    assert check(pim, s) == []


def test_start_cycle_is_every_channels_release(pim):
    s = sched(pim, base_entries())
    s["cycle"] += 1000
    assert check(pim, s, start_cycle=1000) == []
    assert kinds(check(pim, s, start_cycle=999)) == [(0, "late")]
    (v,) = check(pim, s, start_cycle=1001)
    assert (v.index, v.kind) == (0, "release") and "released at 1001" in v.rule


def test_a_timeline_of_runs(pim):
    """Two runs of one program: row 0 from cycle 0, then row 1 started at 500 (the second run
    holds channel 0 until then): PREA at 500, ACT16 at 532. As one run, that PREA is late."""
    s = sched(pim, column_pass(0, 0, 0) + column_pass(1, 1, 532, pre=True))
    prog = _pass_program(pim, 2)
    assert check_schedule(s, pim, prog, runs=[(0, 0), (1, 500)]) == []
    assert kinds(check_schedule(s, pim, prog)) == [(N_MAC + 1, "late")]
    (v,) = check_schedule(s, pim, prog, runs=[(0, 0), (1, 501)])
    assert v.kind == "release" and "released at 501" in v.rule
    with pytest.raises(ValueError, match="runs must start at instruction 0"):
        check_schedule(s, pim, prog, runs=[(1, 0)])


def _blocking_read_case(dev, mask_read: int):
    """ch0: row pass (MAC16 x 64 on row 0), then a blocking RDMAC16 on `mask_read`; ch1 then runs a
    row pass. RDMAC16 needs register mode: TMOD (bus, after the last MAC16 at 182) at 183,
    RDMAC16 at TMOD + nMODCH = 215, done at 215 + nCLREG + nBL = 217."""
    mac, rd = dev.cmd("MAC16"), dev.cmd("RDMAC16")
    prog = program([column(0b01, mac, row=0, count=N_MAC), simple(mask_read, rd, blocking=True),
                    column(0b10, mac, row=0, count=N_MAC)])
    ch0 = [*column_pass(0, 0, 0), ("TMOD", 183, -1, -1, 1), ("RDMAC16", 215, -1, -1, 1)]
    return prog, ch0


def test_a_blocking_read_holds_back_only_the_channels_of_its_mask(pim):
    prog, ch0 = _blocking_read_case(pim, 0b01)
    ok = sched(pim, ch0 + column_pass(2, 0, 0, channel=1))  # channel 1 is not held: ACT16 at 0
    assert check(pim, ok, prog) == []
    one_front = sched(pim, ch0 + column_pass(2, 0, 217, channel=1))  # one front end for all channels
    found = check(pim, one_front, prog)
    assert kinds(found)[0][1] == "late" and "could issue at 0" in found[0].rule


def test_a_blocking_read_on_two_channels_waits_for_both(pim):
    prog, ch0 = _blocking_read_case(pim, 0b11)
    # ch1: TMOD@0, RDMAC16@32 (done 34); the front of both becomes max(217, 34) = 217; ch1 then
    # needs memory mode again: TMOD@217, ACT16@249 (TMOD + nMODCH), MAC16 from 305
    ch1 = [("TMOD", 0, -1, -1, 1, 1), ("RDMAC16", 32, -1, -1, 1, 1), ("TMOD", 217, -1, -1, 2, 1)]
    ok = sched(pim, ch0 + ch1 + column_pass(2, 0, 249, channel=1))
    assert check(pim, ok, prog) == []
    early = sched(pim, ch0 + [*ch1[:2], ("TMOD", 216, -1, -1, 2, 1)] + column_pass(2, 0, 248, channel=1))
    found = check(pim, early, prog)
    assert ("release", "released at 217 (derived from the program)") == (found[0].kind, found[0].rule)
    # a controller ignoring the blocking flag: ch1 goes on right after its own RDMAC16
    unblocked = sched(pim, ch0 + [*ch1[:2], ("TMOD", 34, -1, -1, 2, 1)] + column_pass(2, 0, 66, channel=1))
    assert "release" in {v.kind for v in check(pim, unblocked, prog)}


@pytest.mark.parametrize("mask, ch1_start", [(0b11, 183), (0b10, 0)])
def test_a_barrier_waits_for_completion_on_its_channels(pim, mask, ch1_start):
    mac = pim.cmd("MAC16")
    prog = program([column(0b01, mac, row=0, count=N_MAC), barrier(mask), column(0b10, mac, row=0, count=N_MAC)])
    # last MAC16 on ch0 at 182, done (1 cycle) at 183
    ok = sched(pim, column_pass(0, 0, 0) + column_pass(2, 0, ch1_start, channel=1))
    assert check(pim, ok, prog) == []
    if mask == 0b11:  # a barrier that waits for the issue, not the completion
        early = sched(pim, column_pass(0, 0, 0) + column_pass(2, 0, 182, channel=1))
        assert [v.kind for v in check(pim, early, prog)][:1] == ["release"]


def test_refresh_does_not_count_toward_a_barrier():
    """nREFI = 30. TMOD@0, WRGB@32 (done 32 + nCWLGB + nBL = 35); the barrier releases the next
    WRGB at 35, when the refresh due at 30 is owed: REFab at 33 (bus), then WRGB at 35. A barrier
    that waited for the refresh (done 33 + nRFC = 243) would make it late."""
    dev = with_timing("pim-gpt", nREFI=30)
    prog = program([simple(1, dev.cmd("WRGB")), barrier(1), simple(1, dev.cmd("WRGB"))])
    head = [("TMOD", 0, -1, -1, 0), ("WRGB", 32, -1, -1, 0), ("REFab", 33, -1, -1, -1)]
    assert check_schedule(sched(dev, head + [("WRGB", 35, -1, -1, 2)]), dev, prog) == []
    late = check_schedule(sched(dev, head + [("WRGB", 243, -1, -1, 2)]), dev, prog)
    assert kinds(late) == [(3, "late")] and "could issue at 35" in late[0].rule
    no_refresh = check_schedule(sched(dev, [*head[:2], ("WRGB", 35, -1, -1, 2)]), dev, prog)
    assert [v.kind for v in no_refresh] == ["refresh"]


# --------------------------------------------------------------------------- instructions: nothing missing, nothing extra


def _pass_program(dev, n_rows: int):
    return program([column(1, dev.cmd("MAC16"), row=r, count=N_MAC) for r in range(n_rows)])


def _passes(n_rows: int) -> list[tuple]:
    out = []
    for r in range(n_rows):
        out += column_pass(r, r, 226 * r, pre=r > 0)
    return out


def test_row_passes_of_column_instructions(pim):
    assert check_schedule(sched(pim, _passes(3)), pim, _pass_program(pim, 3)) == []


def test_a_dropped_mac16_is_missing(pim):
    # 63 MAC16 at 56..180 and everything after moved up: legal and tight, but one command short
    entries = _passes(2)
    del entries[N_MAC]  # the last MAC16 of row 0 (at 182)
    s = sched(pim, entries)
    s["cycle"][N_MAC:] -= 2
    (v,) = check_schedule(s, pim, _pass_program(pim, 2))
    assert v.kind == "missing" and "instruction 0 (column MAC16 x 64) issued 63 of its 64 MAC16" in v.rule


def test_an_extra_mac16(pim):
    entries = column_pass(0, 0, 0) + [("MAC16", 56 + 2 * N_MAC, -1, 0, 0, 0, N_MAC)]
    (v,) = check_schedule(sched(pim, entries), pim, _pass_program(pim, 1))
    assert v.kind == "extra" and "this is one more" in v.rule


def test_own_commands_must_address_the_instruction(pim):
    s = sched(pim, column_pass(0, 0, 0))
    s["col"][11] = 12  # MAC16 number 10 (entry 11, after the ACT16) must read column 10
    (v,) = check_schedule(s, pim, _pass_program(pim, 1))
    assert v.kind == "extra" and "expected (-1, 0, 10)" in v.rule


def test_a_channel_the_schedule_never_mentions(pim):
    prog = program([column(0b11, pim.cmd("MAC16"), row=0, count=N_MAC)])
    found = check_schedule(sched(pim, column_pass(0, 0, 0)), pim, prog)
    assert [(v.channel, v.kind) for v in found] == [(1, "missing")]


def test_an_unneeded_activate_pair_is_extra(pim):
    # a closed-page controller: PREA and ACT16 again before row 0's second burst (a row hit)
    prog = program([column(1, pim.cmd("MAC16"), row=0, count=2), column(1, pim.cmd("MAC16"), row=0, count=2, col=2)])
    hit = sched(pim, [("ACT16", 0, -1, 0, 0), ("MAC16", 56, -1, 0, 0, 0, 0), ("MAC16", 58, -1, 0, 0, 0, 1),
                      ("MAC16", 60, -1, 0, 1, 0, 2), ("MAC16", 62, -1, 0, 1, 0, 3)])
    assert check_schedule(hit, pim, prog) == []
    closed_page = sched(pim, [("ACT16", 0, -1, 0, 0), ("MAC16", 56, -1, 0, 0, 0, 0), ("MAC16", 58, -1, 0, 0, 0, 1),
                              ("PREA", 70, -1, -1, 1), ("ACT16", 102, -1, 0, 1),
                              ("MAC16", 158, -1, 0, 1, 0, 2), ("MAC16", 160, -1, 0, 1, 0, 3)])
    found = check_schedule(closed_page, pim, prog)
    assert kinds(found)[0] == (3, "extra") and "precharge not needed" in found[0].rule


def test_helpers_must_match_the_instruction(pim):
    prog = program([column(1, pim.cmd("MAC"), row=4, count=1, bank=3)])
    assert check_schedule(sched(pim, [("ACT", 0, 3, 4, 0), ("MAC", 56, 3, 4, 0)]), pim, prog) == []
    wrong_bank = sched(pim, [("ACT", 0, 5, 4, 0), ("ACT", 11, 3, 4, 0), ("MAC", 67, 3, 4, 0)])
    assert kinds(check_schedule(wrong_bank, pim, prog))[0] == (0, "extra")
    all_bank = sched(pim, [("ACT16", 0, -1, 4, 0), ("MAC", 56, 3, 4, 0)])
    assert kinds(check_schedule(all_bank, pim, prog))[0] == (0, "extra")
    dangling = sched(pim, [("ACT", 0, 3, 4, 0), ("MAC", 56, 3, 4, 0), ("PRE", 68, 3, -1, 0)])
    assert kinds(check_schedule(dangling, pim, prog)) == [(2, "extra")]


def test_mode_change_only_when_needed_and_first(pim):
    prog = program([simple(1, pim.cmd("WRGB"), count=2)])
    assert check_schedule(sched(pim, [("TMOD", 0, -1, -1, 0), ("WRGB", 32, -1, -1, 0), ("WRGB", 34, -1, -1, 0)]),
                          pim, prog) == []
    found = check_schedule(sched(pim, [("TMOD", 0, -1, -1, 0), ("WRGB", 32, -1, -1, 0), ("TMOD", 33, -1, -1, 0),
                                       ("TMOD", 65, -1, -1, 0), ("WRGB", 97, -1, -1, 0)]), pim, prog)
    assert kinds(found)[0] == (2, "extra") and "mode change not needed" in found[0].rule
    mac = program([column(1, pim.cmd("MAC16"), row=0, count=1)])
    # in register mode: TMOD first, then ACT16 (the AiM model's order), not the other way round
    good = sched(pim, [("TMOD", 0, -1, -1, 0), ("ACT16", 32, -1, 0, 0), ("MAC16", 88, -1, 0, 0)])
    assert check_schedule(good, pim, mac, initial_mode="reg") == []
    swapped = sched(pim, [("ACT16", 0, -1, 0, 0), ("TMOD", 1, -1, -1, 0), ("MAC16", 56, -1, 0, 0)])
    assert kinds(check_schedule(swapped, pim, mac, initial_mode="reg")) == [(1, "order")]


def test_instructions_issue_in_program_order(pim):
    s = sched(pim, [("ACT", 0, 0, 0), ("ACT", 11, 4, 0)])
    s["instr"] = [1, 0]
    found = check_schedule(s, pim, raw_program(pim, sched(pim, [("ACT", 0, 4, 0), ("ACT", 11, 0, 0)])))
    assert (1, "order") in kinds(found)


def test_precharge_instruction_must_close_every_bank(pim):
    prog = program([column(1, pim.cmd("MAC16"), row=0, count=1), [3, 1, -1, -1, -1, 0, 1, 0, 0]])
    ok = sched(pim, [("ACT16", 0, -1, 0, 0), ("MAC16", 56, -1, 0, 0), ("PREA", 68, -1, -1, 1)])
    assert check_schedule(ok, pim, prog) == []
    found = check_schedule(sched(pim, [("ACT16", 0, -1, 0, 0), ("MAC16", 56, -1, 0, 0)]), pim, prog)
    assert [v.kind for v in found] == ["missing"] and "left bank(s)" in found[0].rule


def test_close_rows_adds_a_final_precharge(pim):
    prog = program([column(1, pim.cmd("MAC16"), row=0, count=1)])
    s = sched(pim, [("ACT16", 0, -1, 0, 0), ("MAC16", 56, -1, 0, 0), ("PREA", 68, -1, -1, 1)])
    assert check_schedule(s, pim, prog, close_rows=True) == []
    assert [v.kind for v in check_schedule(s, pim, prog)] == ["format"]  # no instruction 1
    assert [v.kind for v in check_schedule(s[:2], pim, prog, close_rows=True)] == ["missing"]


def test_op_ids_must_match_the_program(pim):
    prog = program([column(1, pim.cmd("MAC16"), row=0, count=1, opid=3)])
    s = sched(pim, [("ACT16", 0, -1, 0, 0), ("MAC16", 56, -1, 0, 0)])
    s["opid"] = 3
    assert check_schedule(s, pim, prog) == []
    s["opid"][1] = 2
    found = check_schedule(s, pim, prog)
    assert kinds(found) == [(1, "format")] and "op id 2 but instruction 0 has op id 3" in found[0].rule


# --------------------------------------------------------------------------- refresh obligations


@pytest.fixture(scope="module")
def pim_ref():
    return device(load_config("pim-gpt", {"dram.channels": 1}), refresh=True)


def _hundred_passes(dev):
    """100 row passes and the closing precharge: 22,600 cycles (PREA at 22,568 + nRP)."""
    return sched(dev, _passes(100) + [("PREA", 226 * 99 + 194, -1, -1, 100)]), _pass_program(dev, 100)


def test_zero_refreshes_over_22600_cycles_are_rejected(pim_ref):
    s, prog = _hundred_passes(pim_ref)
    assert finish_cycle(s, pim_ref) == 22600
    assert check_schedule(s, pim_ref, prog, close_rows=True, refresh=False) == []
    found = check_schedule(s, pim_ref, prog, close_rows=True)
    assert {v.kind for v in found} == {"refresh"}
    # row 14 starts at 226 x 14 = 3164, its MAC16 #56 at 3164 + 56 + 112 = 3332: MAC16 #57 could
    # not issue before 3333, the due cycle, so the refresh belongs before it
    assert found[0].cycle == 3334 and "refresh 1 (due at 3333) not issued" in found[0].rule


def _refresh_case(n_refi: int):
    """nREFI = n_refi; column(MAC16 x 64) on rows 0 and 1. Row 1's MAC16 #59 would issue at
    282 + 2 x 59 = 400 >= the due cycle 400, so the controller refreshes first: PREA at
    MAC16@398 + nRTP = 410, REFab at PREA + nRP = 442, ACT16 at REFab + nRFC = 652, MAC16 #59 at
    652 + nRCDRDMAC = 708."""
    dev = with_timing("pim-gpt", nREFI=n_refi)
    head = column_pass(0, 0, 0) + column_pass(1, 1, 226, pre=True)[:1 + 1 + 59]
    tail = [("PREA", 410, -1, -1, -1), ("REFab", 442, -1, -1, -1), ("ACT16", 652, -1, 1, 1)]
    tail += [("MAC16", 708 + 2 * j, -1, 1, 1, 0, 59 + j) for j in range(5)]
    return dev, sched(dev, head + tail), _pass_program(dev, 2)


def test_a_refresh_when_due_is_accepted(pim_ref):
    dev, s, prog = _refresh_case(400)
    assert s["cycle"][N_MAC + 3 + 58] == 398
    assert check_schedule(s, dev, prog) == []


def test_a_refresh_before_it_is_due(pim_ref):
    dev, s, prog = _refresh_case(450)  # the same schedule, due at 450: REFab@442 is early
    found = check_schedule(s, dev, prog)
    assert [v.kind for v in found] == ["refresh"] and "refresh 1 of the channel is due at 450" in found[0].rule


def test_refresh_with_an_open_bank(pim_ref):
    dev, s, prog = _refresh_case(400)
    s = s[s["cmd"] != dev.cmd("PREA")]  # the refresh-owned PREA dropped
    found = check_schedule(s, dev, prog)
    assert "refresh with open bank(s)" in " ".join(v.rule for v in found if v.kind == "state")


def test_refresh_owned_commands(pim_ref):
    dev, s, prog = _refresh_case(400)
    assert {v.kind for v in check_schedule(s, dev, prog, refresh=False)} == {"refresh"}
    lone = s.copy()
    lone["cmd"][lone["cycle"] == 442] = dev.cmd("TMOD")  # the refresh replaced by another command
    found = check_schedule(lone, dev, prog, tight=False)
    assert any("precharge not immediately followed by the refresh" in v.rule for v in found)
    assert any("refresh control issues only a refresh" in v.rule for v in found)


def _postponed_case():
    """nREFI = 250 (just above nRFC = 210): row 1's first MAC16 (at 282 >= 250) waits for refresh 1
    (PREA at ACT16@226 + nRAS = 280, REFab at ACT16 + nRC = 315) and ACT16 at REFab + nRFC = 525,
    MAC16 at 581: refresh 2 fell due (500) while that request waited, so it may wait for it; the
    next MAC16 could issue at 583 >= 500, so refresh 2 goes before it: PREA at MAC16 + nRTP = 593,
    REFab at 625, ACT16 at 835, MAC16 at 891; likewise refresh 3 before the third MAC16."""
    dev = with_timing("pim-gpt", nREFI=250)
    prog = program([column(1, dev.cmd("MAC16"), row=0, count=N_MAC), column(1, dev.cmd("MAC16"), row=1, count=3)])
    entries = column_pass(0, 0, 0) + [("PREA", 194, -1, -1, 1), ("ACT16", 226, -1, 1, 1)]
    for j, (pre, ref, act) in enumerate([(280, 315, 525), (593, 625, 835), (903, 935, 1145)]):
        entries += [("PREA", pre, -1, -1, -1), ("REFab", ref, -1, -1, -1), ("ACT16", act, -1, 1, 1),
                    ("MAC16", act + 56, -1, 1, 1, 0, j)]
    return dev, prog, entries


def test_a_refresh_may_wait_for_a_request_it_fell_due_behind():
    dev, prog, entries = _postponed_case()
    assert check_schedule(sched(dev, entries), dev, prog) == []


def test_a_refresh_may_not_wait_for_the_next_request():
    dev, prog, entries = _postponed_case()
    prog[1, 6] = 2  # two MAC16 on row 1; the second issued at 583 without refresh 2 (due 500)
    first = entries.index(("MAC16", 581, -1, 1, 1, 0, 0))
    found = check_schedule(sched(dev, entries[:first + 1] + [("MAC16", 583, -1, 1, 1, 0, 1)]), dev, prog)
    assert kinds(found) == [(first + 1, "refresh")] and "refresh 2 (due at 500) not issued" in found[0].rule


def test_at_most_eight_refreshes_are_owed(gddr6):
    # a raw stream of PRE to bank 0 (no rule between PREs on GDDR6): one per cycle; nREFI = 100
    dev = with_timing("gddr6-14gbps", nREFI=100)
    prog = program([raw(1, dev.cmd("PRE"), bank=0, count=901)])
    s = sched(dev, [("PRE", k, 0, -1, 0) for k in range(901)])
    found = check_schedule(s, dev, prog)
    # the PRE at 900 is the first command issued with 9 refreshes owed (due at 100 ... 900)
    assert kinds(found) == [(900, "refresh")] and "9 refreshes owed" in found[0].rule
    assert check_schedule(s, dev, prog, refresh=False) == []
    # the controller refreshes when the 9th falls due: REFab at PRE@899 + nRP 30 = 929
    fixed = sched(dev, [("PRE", k, 0, -1, 0) for k in range(900)] + [("REFab", 929, -1, -1, -1), ("PRE", 930, 0, -1, 0)])
    assert check_schedule(fixed, dev, prog) == []


def test_a_refresh_inside_a_raw_stream_reopens_its_rows():
    """GDDR6, nREFI = 400: ACT b0 row 5, then raw RDs (no refresh inside a raw stream) until the
    9th refresh falls due at 3600; then the controller refreshes inside the stream: PREA, REFab and
    ACT b0 row 5 again, so the user's next RD is legal."""
    dev = with_timing("gddr6-14gbps", nREFI=400)
    rd = dev.cmd("RD")
    prog = program([raw(1, dev.cmd("ACT"), bank=0, row=5), raw(1, rd, bank=0, row=5, count=895)])
    # ACT@0, RD k at 30 + 4 k (nCCDL): RD 892 at 3598, RD 893 would be at 3602 with 9 owed; PREA at
    # RD@3598 + nRTP 4 = 3602, REFab at PREA + nRP 30 = 3632, ACT at REFab + nRFC 211 = 3843,
    # RD 893 at ACT + nRCDRD 30 = 3873 (8 owed)
    reads = [("RD", 30 + 4 * k, 0, 5, 1, 0, k) for k in range(893)]
    tail = [("PREA", 3602, -1, -1, -1), ("REFab", 3632, -1, -1, -1), ("ACT", 3843, 0, 5, -1),
            ("RD", 3873, 0, 5, 1, 0, 893), ("RD", 3877, 0, 5, 1, 0, 894)]
    s = sched(dev, [("ACT", 0, 0, 5, 0)] + reads + tail)
    assert check_schedule(s, dev, prog) == []
    wrong_row = s.copy()
    wrong_row["row"][1 + len(reads) + 2] = 6
    assert any("does not re-open a row the refresh closed" in v.rule for v in check_schedule(wrong_row, dev, prog))
    unbounded = sched(dev, [("ACT", 0, 0, 5, 0)] + reads + [("RD", 3602, 0, 5, 1, 0, 893), ("RD", 3606, 0, 5, 1, 0, 894)])
    found = check_schedule(unbounded, dev, prog)
    assert [v.kind for v in found] == ["refresh"] * 2 and "9 refreshes owed" in found[0].rule


def test_refreshes_in_the_idle_gap_before_the_run():
    """start_cycle 700, nREFI 300: the refreshes due at 300 and 600 are issued in the idle gap
    (instr -2) at their due cycles; the run's first command then owes none."""
    dev = with_timing("pim-gpt", nREFI=300)
    prog = program([simple(1, dev.cmd("WRGB"))])
    idle = [("REFab", 300, -1, -1, -2), ("REFab", 600, -1, -1, -2)]
    run = [("TMOD", 700, -1, -1, 0), ("WRGB", 732, -1, -1, 0)]
    assert check_schedule(sched(dev, idle + run), dev, prog, start_cycle=700) == []
    found = check_schedule(sched(dev, idle[:1] + run), dev, prog, start_cycle=700)
    assert [v.kind for v in found] == ["refresh"] and "refresh 2 (due at 600) not issued" in found[0].rule


def test_a_raw_refresh_meets_an_obligation():
    # a user's REFab (raw, at 5) counts: the controller's next one is refresh 2, due at 2 x nREFI
    dev = with_timing("pim-gpt", nREFI=300)
    prog = program([raw(1, dev.cmd("REFab")), raw(1, dev.cmd("PRE"), bank=0)])
    ok = sched(dev, [("REFab", 5, -1, -1, 0), ("REFab", 600, -1, -1, -1), ("PRE", 601, 0, -1, 1)])
    assert check_schedule(ok, dev, prog, tight=False) == []
    early = sched(dev, [("REFab", 5, -1, -1, 0), ("REFab", 300, -1, -1, -1), ("PRE", 301, 0, -1, 1)])
    found = check_schedule(early, dev, prog, tight=False)
    assert [v.kind for v in found] == ["refresh"] and "refresh 2 of the channel is due at 600" in found[0].rule


# --------------------------------------------------------------------------- command bus


def test_two_commands_in_one_cycle(pim):
    # PRE b0 and ACT b4 share no bank: only the one-command-per-cycle bus rule applies
    s = sched(pim, [("PRE", 0, 0), ("ACT", 0, 4, 0)])
    (v,) = check(pim, s)
    assert (v.kind, v.index) == ("bus", 1) and "out of order" not in v.rule
    s["cycle"][1] = 1
    assert check(pim, s) == []


def test_out_of_order_cycles(pim):
    s = sched(pim, [("PRE", 5, 0, -1), ("ACT", 3, 4, 0)])
    found = check(pim, s, tight=False)
    assert [v.kind for v in found] == ["bus"] and "out of order" in found[0].rule


def test_out_of_order_command_still_checked_against_old_commands(pim):
    # ACT16@200 after WRGB@250: out of order, and 10 cycles short of REFab@0 + nRFC = 210
    s = sched(pim, [("REFab", 0), ("WRGB", 250, -1, -1), ("ACT16", 200, -1, 0)])
    for exhaustive in (False, True):
        found = check(pim, s, initial_mode="reg", exhaustive=exhaustive, tight=False)
        assert [v.kind for v in found] == ["bus", "timing"] and rules(found, "timing") == [("nRFC", "bank")]


# --------------------------------------------------------------------------- bank-group scope


def _rd_case(dev, rd_cycles):
    """ACT b0@0, ACT b1@11 (same group, nRRDL), ACT b4@22 (other group, nRRDS); a blocking RD b4 at
    ACT b4 + nRCDRD = 52, done at 52 + nCL + nBL = 78, releases the reads of b0, b1, b4 at 78."""
    b0, b1, b4 = rd_cycles
    s = sched(dev, [("ACT", 0, 0, 3), ("ACT", 11, 1, 3), ("ACT", 22, 4, 3), ("RD", 52, 4, 3),
                    ("RD", b0, 0, 3), ("RD", b1, 1, 3), ("RD", b4, 4, 3)])
    return s, raw_program(dev, s, blocking={3})


def test_bankgroup_spacing_is_legal_and_tight(gddr6):
    # RD b0 at the release 78; RD b1 (same group) nCCDL = 4 later; RD b4 (other group) nCCDS = 2
    assert check(gddr6, *_rd_case(gddr6, (78, 82, 84))) == []


def test_same_bankgroup_read_needs_nccdl(gddr6):
    found = check(gddr6, *_rd_case(gddr6, (78, 81, 83)))
    assert kinds(found) == [(5, "timing")]  # RD b4 at 83 is then tight again
    assert rules(found) == [("nCCDL", "bankgroup")]


def test_other_bankgroup_read_needs_nccds(gddr6):
    found = check(gddr6, *_rd_case(gddr6, (78, 82, 83)))
    assert {v.index for v in found} == {6}
    assert rules(found) == [("nBL", "channel"), ("nCCDS", "channel")]


def test_reads_before_the_blocking_read_completes(gddr6):
    found = check(gddr6, *_rd_case(gddr6, (77, 81, 83)))
    assert kinds(found) == [(4, "release")] and "released at 78" in found[0].rule


def test_bankgroup_of_an_all_bank_command_overlaps_every_group(pim):
    # MAC b4 (group 1) right after MAC16: the all-bank MAC16 uses every group's bus -> nCCDL
    s = sched(pim, [("ACT16", 0, -1, 2), ("MAC16", 56, -1, 2), ("MAC", 57, 4, 2)])
    assert rules(check(pim, s)) == [("nCCDL", "bankgroup"), ("nCCDS", "channel")]


def test_all_bank_command_waits_for_single_bank_activates(pim):
    # 16 single-bank ACTs at nRRDS = 11 spacing; MAC16 waits nRCDRDMAC after the last (bank 15)
    acts = [("ACT", 11 * b, b, 4) for b in range(16)]
    s = sched(pim, [*acts, ("MAC16", 165 + 56, -1, 4)])
    assert check(pim, s) == []
    s["cycle"][-1] -= 1
    (v,) = check(pim, s)
    assert v.rule.startswith("ACT[b15]@165 -> MAC16@220 needs 56") and rules([v]) == [("nRCDRDMAC", "bank")]


# --------------------------------------------------------------------------- tFAW window


def test_faw_is_dominated_by_nrrd_in_the_gddr6_preset(gddr6):
    # 4 x nRRDS = 44 > nFAW = 43: the fifth ACT is held by nRRDS, never by the window
    acts = [("ACT", 11 * k, b, 0) for k, b in enumerate([0, 4, 8, 12, 1])]
    s = sched(gddr6, acts)
    assert check(gddr6, s) == []
    s["cycle"][4] = 43
    assert rules(check(gddr6, s)) == [("nRRDS", "channel")]


@pytest.fixture(scope="module")
def gddr6_fast_rrd():
    return device(load_config("gddr6-14gbps", {"dram.timing.nRRDS": 4, "dram.timing.nRRDL": 6}), refresh=False)


@pytest.mark.parametrize("fifth, found_kinds", [(43, []), (42, ["window"]), (44, ["late"])])
def test_fifth_activate_waits_for_faw(gddr6_fast_rrd, fifth, found_kinds):
    # ACTs at 0, 4, 8, 12 to four groups; the fifth (bank 1) must be >= first + nFAW = 43
    acts = [("ACT", 0, 0, 0), ("ACT", 4, 4, 0), ("ACT", 8, 8, 0), ("ACT", 12, 12, 0), ("ACT", fifth, 1, 0)]
    found = check(gddr6_fast_rrd, sched(gddr6_fast_rrd, acts))
    assert [v.kind for v in found] == found_kinds
    if found_kinds == ["window"]:
        assert rules(found) == [("nFAW", "channel")] and found[0].index == 4
        assert "ACT[b0]@0" in found[0].rule
    if found_kinds == ["late"]:
        assert "could issue at 43" in found[0].rule and "nFAW" in found[0].rule


def test_faw_counts_only_the_four_most_recent(gddr6_fast_rrd):
    # sixth ACT: the 4th most recent before it is ACT@4, so it needs >= 4 + 43 = 47
    acts = [("ACT", c, b, 0) for c, b in [(0, 0), (4, 4), (8, 8), (12, 12), (43, 1), (47, 5)]]
    s = sched(gddr6_fast_rrd, acts)
    assert check(gddr6_fast_rrd, s) == []
    s["cycle"][5] = 46
    assert ("nFAW", "channel") in rules(check(gddr6_fast_rrd, s))


# --------------------------------------------------------------------------- bank state


def test_activate_of_an_open_bank(pim):
    # at ACT + nRC = 89, so that only the bank state is wrong
    found = check(pim, sched(pim, [("ACT", 0, 0, 1), ("ACT", 89, 0, 2)]), tight=False)
    assert kinds(found) == [(1, "state")] and "open bank(s) [0]" in found[0].rule


def test_all_bank_activate_with_one_bank_open(pim):
    found = check(pim, sched(pim, [("ACT", 0, 2, 1), ("ACT16", 89, -1, 1)]), tight=False)
    assert kinds(found) == [(1, "state")] and "[2]" in found[0].rule


def test_mac16_with_one_bank_closed(pim):
    s = sched(pim, [("ACT16", 0, -1, 5), ("PRE", 54, 3), ("MAC16", 56, -1, 5)])
    found = check(pim, s)
    assert kinds(found) == [(2, "state")] and "closed bank(s) [3]" in found[0].rule


def test_column_row_must_match_open_row(pim):
    found = check(pim, sched(pim, [("ACT16", 0, -1, 5), ("MAC16", 56, -1, 6)]))
    assert kinds(found) == [(1, "state")] and "addresses row 6" in found[0].rule


def test_single_bank_column_command(pim):
    ok = sched(pim, [("ACT", 0, 3, 7), ("MAC", 56, 3, 7)])
    assert check(pim, ok) == []
    other_bank = sched(pim, [("ACT", 0, 3, 7), ("MAC", 1, 4, 7)])  # no timing row links b3 and b4
    assert kinds(check(pim, other_bank)) == [(1, "state")]


def test_refresh_command_with_an_open_row(pim):
    found = check(pim, sched(pim, [("ACT16", 0, -1, 5), ("REFab", 89)]))  # ACT -> REFab nRC = 89
    assert kinds(found) == [(1, "state")] and "refresh" in found[0].rule


def test_refresh_after_precharge(pim):
    # REFab: max(ACT16 + nRC = 89, PREA + nRP = 86); ACT16 after REFab + nRFC = 299
    s = sched(pim, [("ACT16", 0, -1, 5), ("PREA", 54), ("REFab", 89), ("ACT16", 299, -1, 6)])
    assert check(pim, s) == []
    s["cycle"][3] = 298
    assert rules(check(pim, s)) == [("nRFC", "bank")]


def test_precharge_of_a_closed_bank_is_harmless(pim):
    assert check(pim, sched(pim, [("PRE", 0, 0)])) == []


def test_write_with_autoprecharge_closes_the_row(pim):
    # WRA16 at nRCDWR = 28; the next ACT16 waits nCWL + nBL + nWR + nRP = 6 + 2 + 33 + 32 = 73
    s = sched(pim, [("ACT16", 0, -1, 1), ("WRA16", 28, -1, 1), ("ACT16", 101, -1, 2)])
    assert check(pim, s) == []
    s["cycle"][2] = 100
    assert rules(check(pim, s)) == [("nCWL + nBL + nWR + nRP", "bank")]
    mac_after = sched(pim, [("ACT16", 0, -1, 1), ("WRA16", 28, -1, 1), ("MAC16", 56, -1, 1)])
    found = check(pim, mac_after)
    assert kinds(found) == [(2, "state")] and "closed bank(s)" in found[0].rule


def test_register_command_needs_register_mode(pim):
    found = check(pim, sched(pim, [("WRGB", 0)]))
    assert kinds(found) == [(0, "state")] and "needs reg mode" in found[0].rule
    assert check(pim, sched(pim, [("WRGB", 0)]), initial_mode="reg") == []


def test_tmod_switches_mode_and_costs_nmodch(pim):
    s = sched(pim, [("TMOD", 0), ("WRGB", 32)])
    assert check(pim, s) == []
    s["cycle"][1] = 31
    assert rules(check(pim, s)) == [("nMODCH", "channel")]
    back = sched(pim, [("TMOD", 0), ("TMOD", 32), ("WRGB", 64)])  # second TMOD returns to mem
    assert kinds(check(pim, back)) == [(2, "state")]


# --------------------------------------------------------------------------- format, channels, counts


@pytest.mark.parametrize("entry", [("MAC16", 0, 3, 0), ("ACT", 0, -1, 0), ("ACT", 0, 16, 0), ("ACT", 0, 0, -1),
                                   ("ACT", 0, 0, 0, 0, 2), ("ACT", 0, 0, 0, -3)])
def test_malformed_entries(pim, entry):
    s = sched(pim, [entry])
    found = check_schedule(s, pim, program([raw(1, 0, bank=0, row=0)]))
    assert [v.kind for v in found] == ["format"]


def test_entry_on_a_channel_outside_its_instruction(pim):
    s = sched(pim, [("ACT", 0, 0, 0, 0, 1)])
    (v,) = check_schedule(s, pim, program([raw(1, pim.cmd("ACT"), bank=0, row=0)]))
    assert v.kind == "format" and "does not run on channel 1" in v.rule


def test_interleaved_channels_are_checked_independently(pim):
    ch0 = [(*e, *(-1, -1, None, 0, 0)[len(e) - 2:])[:7] for e in base_entries()]
    ch1 = [(n, c + 7, b, r, None, 1, col) for n, c, b, r, _, _, col in ch0]  # released at 0: late
    entries = sorted(ch0 + ch1, key=lambda e: e[1])
    s = sched(pim, entries)
    assert check(pim, s, tight=False) == []
    assert {v.channel for v in check(pim, s)} == {1}
    victim = int(np.flatnonzero((s["channel"] == 1) & (s["cmd"] == pim.cmd("PREA")))[0])
    s["cycle"][victim] -= 1
    found = check(pim, s, tight=False)
    assert [(v.index, v.channel) for v in found] == [(victim, 1)] and rules(found) == [("nRTP", "bank")]


def test_empty_schedule(pim):
    assert check_schedule(np.zeros(0, SCHEDULE_DTYPE), pim, program([])) == []
    assert check_schedule(np.zeros(0, SCHEDULE_DTYPE), pim, tight=False) == []


def test_earliest_cycles_is_the_largest_bound(pim):
    s = sched(pim, base_entries())
    prog = raw_program(pim, s)
    assert np.array_equal(earliest_cycles(s, pim, prog), s["cycle"])  # tight everywhere
    s["cycle"][-1] += 7
    s["cycle"][1] -= 1
    ear = earliest_cycles(s, pim, prog)
    assert ear[-1] == 226 and ear[1] == 56  # ACT16 at PREA + nRP; MAC16 at ACT16 + nRCDRDMAC
    assert earliest_cycles(s, pim, prog, start_cycle=300)[0] == 300


def test_legality_only_without_a_program(pim):
    s = sched(pim, base_entries())
    s["cycle"][-1] += 3  # late, but legal
    assert check_schedule(s, pim, tight=False) == []
    with pytest.raises(ValueError, match="tightness needs the program"):
        check_schedule(s, pim)


def test_counts(pim):
    s = sched(pim, base_entries())
    counts = schedule_counts(s, 2, len(pim.commands))
    assert counts[0, pim.cmd("MAC16")] == N_MAC and counts[1].sum() == 0
    assert check_counts(s, counts, pim.commands) == []
    counts[0, pim.cmd("PREA")] += 1
    (msg,) = check_counts(s, counts, pim.commands)
    assert "PREA" in msg and "reported 2" in msg
    assert check_counts(s, counts[:, :3]) != []  # entries outside the reported shape


def test_assert_schedule_ok_lists_violations(pim):
    s = sched(pim, base_entries())
    s["cycle"][1:N_MAC + 1] -= 1
    with pytest.raises(AssertionError, match=r"violation\(s\) in 67 commands[\s\S]*nRCDRDMAC"):
        assert_schedule_ok(s, pim, raw_program(pim, s))


# --------------------------------------------------------------------------- two methods for the row bounds


def refresh_passes(n_passes: int) -> list[tuple]:
    """Row passes separated by refresh and register writes (pim-gpt), all tight.

    REFab = PREA@194 + nRP = 226 (ACT16 + nRC = 89 is earlier); TMOD to register mode at 227,
    WRGB at 259 = TMOD + nMODCH and at 261 (nBL), TMOD back to memory mode at 262 (bus; the last
    TMOD's nMODCH ended at 259); the next ACT16 at REFab + nRFC = 436, so the widest rule (nRFC)
    binds across unrelated commands, far past the bus bound.
    """
    entries, start = [], 0
    for k in range(n_passes):
        entries += row_pass_entries(row=k, start=start)
        ref = start + 226
        entries += [("REFab", ref), ("TMOD", ref + 1)]
        entries += [("WRGB", ref + 33, -1, -1), ("WRGB", ref + 35), ("TMOD", ref + 36)]
        start = ref + 210
    return entries


def test_refresh_passes_are_legal(pim):
    assert check(pim, sched(pim, refresh_passes(2)), tight=False) == []


@pytest.mark.parametrize("shift", [-1, 1])
def test_running_maxima_match_pairwise_at_every_row_command(pim, shift):
    # every non-MAC entry moved by one cycle (alone): the two methods report the same
    base = sched(pim, refresh_passes(3))
    prog = raw_program(pim, base)
    for pos in np.flatnonzero(base["cmd"] != pim.cmd("MAC16")):
        s = base.copy()
        s["cycle"][pos] += shift
        full = check(pim, s, prog, exhaustive=True, tight=False)
        assert check(pim, s, prog, tight=False) == full
        if shift < 0:
            assert len(full) > 0


@pytest.mark.parametrize("seed", range(4))
def test_running_maxima_match_pairwise_on_random_perturbations(pim, gddr6_fast_rrd, seed):
    rng = np.random.default_rng(seed)
    s = sched(pim, refresh_passes(3))
    prog = raw_program(pim, s)
    idx = rng.choice(len(s), 8, replace=False)
    s["cycle"][idx] += rng.integers(-40, 40, 8)
    full = check(pim, s, prog, exhaustive=True)
    assert check(pim, s, prog) == full and len(full) > 0
    banks = rng.permutation(16)[:12]
    cycles = np.cumsum(rng.integers(0, 20, 12))
    acts = sched(gddr6_fast_rrd, [("ACT", int(c), int(b), 0) for c, b in zip(cycles, banks)])
    assert check(gddr6_fast_rrd, acts) == check(gddr6_fast_rrd, acts, exhaustive=True)
