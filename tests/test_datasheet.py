"""Datasheet-style timing tests that never read the constraint table.

For every timing parameter of both standards, a hand-written expectation of the gap it imposes
between the commands it governs, written as a datasheet states it (ACT16 -> MAC16 of the same bank
= nRCDRDMAC; WR -> PRE = nCWL + nBL + nWR; WR -> RD of the same bank group = nCWL + nBL + nWTRL),
checked on a short program run through the engine, with the issue cycles read from the recorded
schedule. Each expectation is also checked with every parameter it names moved by one cycle, so a
parameter that does not actually bind (a tie with another rule) fails here instead of passing by
luck. Parameters no rule uses have a test saying so, so a rule added later needs a test here.

Timing values: hw_configs/pim-gpt.yaml (AiM) and hw_configs/gddr6-14gbps.yaml; where two
parameters are equal in the preset (nCCDS = nCCDL, nRRDS = nRRDL, ...) a case overrides them to
tell them apart, and says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from hw_configs.isa import (
    ALL_BANKS, F_FLAGS, FLAG_BLOCKING, STANDARDS_DIR, column, command_names_of, program, raw, simple,
)
from sim.config import ConfigError, load_config
from sim.engine import Engine

PRESET = {"gddr6-aim": "pim-gpt", "gddr6": "gddr6-14gbps"}


@dataclass(frozen=True)
class Case:
    """`steps`: raw commands separated by ';', each `NAME [bN] [rN] [!]` (bank, row, blocking);
    the gap measured is cycle(steps[b]) - cycle(steps[a]); `expect` states it from the timing."""

    what: str
    steps: str
    expect: object  # lambda t: <expression of named parameters>
    pair: tuple[int, int] = (-2, -1)
    overrides: dict = field(default_factory=dict)

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(n for n in self.expect.__code__.co_names if n.startswith("n"))


def _program(names: tuple[str, ...], steps: str) -> np.ndarray:
    rows = []
    for step in steps.split(";"):
        words = step.split()
        bank, row, blocking = ALL_BANKS, -1, False
        for w in words[1:]:
            if w == "!":
                blocking = True
            elif w[0] == "b":
                bank = int(w[1:])
            elif w[0] == "r":
                row = int(w[1:])
            else:
                raise ValueError(f"step '{step}': unknown word '{w}'")
        r = raw(1, names.index(words[0]), bank=bank, row=row)
        r[F_FLAGS] = FLAG_BLOCKING if blocking else 0
        rows.append(r)
    return program(rows)


@lru_cache(maxsize=None)
def _base(standard: str):
    cfg = load_config(PRESET[standard], {"dram.channels": 1})
    return cfg, command_names_of(cfg)


def _config(standard: str, values: dict):
    """The preset (one channel) with some timing values replaced; validated when an Engine is built."""
    cfg, _ = _base(standard)
    dram = cfg.dram.model_copy(update={"timing": {**cfg.dram.timing, **values}})
    return cfg.model_copy(update={"dram": dram})


def _cycles(standard: str, steps: str, values: dict) -> np.ndarray:
    cfg = _config(standard, values)
    prog = _program(_base(standard)[1], steps)
    s = Engine(cfg, refresh=False).run(prog, record=True, close_rows=False).schedule
    assert len(s) == len(prog), "a raw program issues exactly its own commands"
    return s["cycle"]


def _timing(standard: str, values: dict) -> SimpleNamespace:
    return SimpleNamespace(**_config(standard, values).dram.timing)


def _valid(standard: str, values: dict) -> bool:
    try:
        Engine(_config(standard, values), refresh=False)
    except ConfigError:
        return False
    return True


def _nudged(standard: str, case: Case):
    """The case's overrides with each named parameter moved by +1 (or -1 where +1 is not a valid
    config, e.g. nCCDS above nCCDL)."""
    base = _config(standard, case.overrides).dram.timing
    assert _valid(standard, case.overrides), f"{case.what}: overrides {case.overrides} are not a valid config"
    for p in case.params:
        for delta in (1, -1):
            values = {**case.overrides, p: base[p] + delta}
            if values[p] >= 0 and _valid(standard, values):
                yield p, values
                break
        else:
            raise AssertionError(f"{case.what}: no valid config with {p} moved by one cycle")


def _check(standard: str, case: Case) -> None:
    for label, values in [("as given", case.overrides), *_nudged(standard, case)]:
        cyc = _cycles(standard, case.steps, values)
        a, b = case.pair
        want = case.expect(_timing(standard, values))
        assert cyc[b] - cyc[a] == want, (f"{case.what} ({label}, overrides {values}): gap {cyc[b] - cyc[a]}, "
                                         f"datasheet {want}; cycles {cyc.tolist()}")


SPLIT_CCD = {"nCCDS": 3, "nCCDL": 5}  # preset nCCDS = nCCDL (= nBL on AiM); told apart here
SPLIT_RRD = {"nRRDS": 7, "nRRDL": 13}  # preset nRRDS = nRRDL = 11
FAST_MODE = {"nMODCH": 1}  # a mode change that does not hide the turnaround behind it

AIM_CASES = [
    # activate to column
    Case("ACT16 -> MAC16, same bank", "ACT16 r0; MAC16 r0", lambda t: t.nRCDRDMAC),
    Case("ACT -> MAC, same bank", "ACT b3 r0; MAC b3 r0", lambda t: t.nRCDRDMAC),
    Case("ACT -> RD", "ACT b0 r0; RD b0 r0", lambda t: t.nRCDRD),
    Case("ACT -> WR", "ACT b0 r0; WR b0 r0", lambda t: t.nRCDWR),
    Case("ACT16 -> WRA16", "ACT16 r0; WRA16 r0", lambda t: t.nRCDWR),
    Case("ACT16 -> AF16", "ACT16 r0; AF16 r0", lambda t: t.nRCDRDAF),
    Case("ACT16 -> EWMUL16", "ACT16 r0; EWMUL16 r0", lambda t: t.nRCDEWMUL),
    Case("ACT -> RDCP", "ACT b5 r0; RDCP b5 r0", lambda t: t.nRCDRDCP),
    Case("ACT -> WRCP", "ACT b5 r0; WRCP b5 r0", lambda t: t.nRCDWRCP),
    # row commands
    Case("ACT -> PRE, same bank", "ACT b0 r0; PRE b0", lambda t: t.nRAS),
    Case("ACT16 -> PREA", "ACT16 r0; PREA", lambda t: t.nRAS),
    Case("PRE -> ACT, same bank", "PRE b2; ACT b2 r0", lambda t: t.nRP),
    Case("PRE -> PRE, same bank", "PRE b2; PRE b2", lambda t: t.nRP),
    Case("PREA -> PRE", "PREA; PRE b9", lambda t: t.nRP),
    Case("PRE -> PRE, other bank: only the command bus", "PRE b2; PRE b3", lambda t: 1),
    Case("ACT -> ACT, same bank (tRC)", "ACT b0 r0; PRE b0; ACT b0 r1", lambda t: t.nRC, (0, 2)),
    Case("ACT16 -> ACT, same bank (tRC)", "ACT16 r0; PRE b5; ACT b5 r1", lambda t: t.nRC, (0, 2)),
    Case("ACT -> ACT16 (tRC)", "ACT b5 r0; PRE b5; ACT16 r1", lambda t: t.nRC, (0, 2)),
    Case("ACT16 -> ACT16 (tRC)", "ACT16 r0; PREA; ACT16 r1", lambda t: t.nRC, (0, 2)),
    Case("ACT -> ACT, same bank group", "ACT b0 r0; ACT b1 r0", lambda t: t.nRRDL, overrides=SPLIT_RRD),
    Case("ACT -> ACT, other bank group", "ACT b0 r0; ACT b4 r0", lambda t: t.nRRDS, overrides=SPLIT_RRD),
    Case("ACT16 -> ACT16 after a write with auto-precharge", "ACT16 r0; WRA16 r0; ACT16 r1",
         lambda t: t.nCWL + t.nBL + t.nWR + t.nRP),
    # column to precharge
    Case("MAC16 -> PREA", "ACT16 r0; MAC16 r0; PREA", lambda t: t.nRTP),
    Case("AF16 -> PRE of one bank", "ACT16 r0; AF16 r0; PRE b6", lambda t: t.nRTP),
    Case("WR -> PRE, same bank", "ACT b0 r0; WR b0 r0; PRE b0", lambda t: t.nCWL + t.nBL + t.nWR),
    Case("WRCP -> PRE, same bank", "ACT b0 r0; WRCP b0 r0; PRE b0", lambda t: t.nCWL + t.nBL + t.nWR),
    Case("EWMUL16 -> PREA", "ACT16 r0; EWMUL16 r0; PREA", lambda t: t.nCWL + t.nWR),
    # column to column
    Case("RD -> RD, other bank group", "ACT16 r0; RD b0 r0; RD b4 r0", lambda t: t.nCCDS, overrides=SPLIT_CCD),
    Case("RD -> RD, same bank group", "ACT16 r0; RD b0 r0; RD b1 r0", lambda t: t.nCCDL, overrides=SPLIT_CCD),
    Case("RD -> RD, data bus", "ACT16 r0; RD b0 r0; RD b4 r0", lambda t: t.nBL, overrides={"nBL": 4}),
    Case("MAC -> MAC, other bank group", "ACT16 r0; MAC b0 r0; MAC b4 r0", lambda t: t.nCCDS, overrides=SPLIT_CCD),
    Case("MAC16 -> MAC16", "ACT16 r0; MAC16 r0; MAC16 r0", lambda t: t.nCCDL, overrides=SPLIT_CCD),
    Case("WR -> WR, other bank group", "ACT16 r0; WR b0 r0; WR b4 r0", lambda t: t.nCCDS, overrides=SPLIT_CCD),
    Case("WR -> WR, same bank group", "ACT16 r0; WR b0 r0; WR b1 r0", lambda t: t.nCCDL, overrides=SPLIT_CCD),
    Case("WRGB -> WRGB, data bus", "TMOD; WRGB; WRGB", lambda t: t.nBL, overrides={"nBL": 4}),
    Case("RDMAC16 -> RDMAC16, data bus", "TMOD; RDMAC16; RDMAC16", lambda t: t.nBL, overrides={"nBL": 4}),
    # write to read
    Case("WR -> RD, other bank group", "ACT16 r0; WR b0 r0; RD b4 r0", lambda t: t.nCWL + t.nBL + t.nWTRS),
    Case("WR -> RD, same bank group", "ACT16 r0; WR b0 r0; RD b1 r0", lambda t: t.nCWL + t.nBL + t.nWTRL),
    Case("WRA16 -> RDMAC16", "ACT16 r0; WRA16 r0; TMOD; RDMAC16", lambda t: t.nCWL + t.nBL + t.nWTRL, (1, 3),
         overrides=FAST_MODE),
    Case("WRGB -> RDMAC16", "TMOD; WRGB; RDMAC16", lambda t: t.nCWLGB + t.nBL + t.nWTRS),
    Case("WRMAC16 -> RDMAC16", "TMOD; WRMAC16; RDMAC16", lambda t: t.nCWLREG + t.nBL + t.nWTRL),
    Case("WRMAC16 -> RD (after mode change)", "ACT16 r0; RD b0 r0 !; TMOD; WRMAC16; TMOD; RD b4 r0",
         lambda t: t.nCWLREG + t.nBL + t.nWTRL, (3, 5), overrides=FAST_MODE),
    # read to write (the "+ 3" is the AiM model's fixed turnaround)
    Case("RD -> WR", "ACT16 r0; RD b0 r0; WR b4 r0", lambda t: t.nCL + t.nBL + 3 - t.nCWL + t.nWPRE),
    Case("RD -> WRGB", "ACT16 r0; RD b0 r0; TMOD; WRGB", lambda t: t.nCL + t.nBL + 3 - t.nCWLGB + t.nWPRE, (1, 3)),
    Case("RD -> WRMAC16", "ACT16 r0; RD b0 r0; TMOD; WRMAC16", lambda t: t.nCL + t.nBL + 3 - t.nCWLREG + t.nWPRE,
         (1, 3)),
    Case("RDMAC16 -> WRGB", "TMOD; RDMAC16; WRGB", lambda t: t.nCLREG + t.nBL + 3 - t.nCWLGB + t.nWPRE),
    Case("RDAF16 -> WRMAC16", "TMOD; RDAF16; WRMAC16", lambda t: t.nCLREG + t.nBL + 3 - t.nCWLREG + t.nWPRE),
    Case("RDMAC16 -> WR (after mode change)", "ACT16 r0; TMOD; RDMAC16; TMOD; WR b0 r0",
         lambda t: t.nCLREG + t.nBL + 3 - t.nCWL + t.nWPRE, (2, 4), overrides={"nMODCH": 1, "nCLREG": 40}),
    # refresh and mode change
    Case("ACT16 -> REFab (tRC)", "ACT16 r0; PREA; REFab", lambda t: t.nRC, (0, 2)),
    Case("PREA -> REFab", "ACT16 r0; MAC16 r0; PREA; REFab", lambda t: t.nRP),
    Case("PRE -> REFab", "PRE b7; REFab", lambda t: t.nRP),
    Case("WRA16 -> REFab", "ACT16 r0; WRA16 r0; REFab", lambda t: t.nCWL + t.nBL + t.nWR + t.nRP),
    Case("REFab -> ACT16", "REFab; ACT16 r0", lambda t: t.nRFC),
    Case("REFab -> ACT", "REFab; ACT b11 r0", lambda t: t.nRFC),
    Case("REFab -> REFab", "REFab; REFab", lambda t: t.nRFC),
    Case("TMOD -> WRGB", "TMOD; WRGB", lambda t: t.nMODCH),
    Case("TMOD -> ACT16", "TMOD; ACT16 r0", lambda t: t.nMODCH),
]

# GDDR6: banks opened first, then a blocking RD (done nCL + nBL later) holds the front end so the
# measured pair starts with every bank long open ("... RD b0 r0 !; ...").
GDDR6_CASES = [
    Case("ACT -> RD", "ACT b0 r0; RD b0 r0", lambda t: t.nRCDRD),
    Case("ACT -> WR", "ACT b0 r0; WR b0 r0", lambda t: t.nRCDWR),
    Case("ACT -> PRE", "ACT b0 r0; PRE b0", lambda t: t.nRAS),
    Case("PRE -> ACT", "PRE b0; ACT b0 r0", lambda t: t.nRP),
    # preset nRC = nRAS + nRP exactly; nRC 95 makes tRC itself visible
    Case("ACT -> ACT, same bank (tRC)", "ACT b0 r0; PRE b0; ACT b0 r1", lambda t: t.nRC, (0, 2), {"nRC": 95}),
    Case("ACT -> ACT, same bank group", "ACT b0 r0; ACT b1 r0", lambda t: t.nRRDL, overrides=SPLIT_RRD),
    Case("ACT -> ACT, other bank group", "ACT b0 r0; ACT b4 r0", lambda t: t.nRRDS, overrides=SPLIT_RRD),
    Case("five ACTs (tFAW)", "ACT b0 r0; ACT b4 r0; ACT b8 r0; ACT b12 r0; ACT b1 r0", lambda t: t.nFAW, (0, 4),
         {"nRRDS": 4, "nRRDL": 6}),  # 4 x nRRDS < nFAW, so the window binds
    Case("RD -> PRE", "ACT b0 r0; RD b0 r0; PRE b0", lambda t: t.nRTP, overrides={"nRAS": 30}),
    Case("WR -> PRE", "ACT b0 r0; WR b0 r0; PRE b0", lambda t: t.nCWL + t.nBL + t.nWR, overrides={"nRAS": 40}),
    Case("RD -> RD, same bank group", "ACT b0 r0; ACT b1 r0; RD b0 r0 !; RD b0 r0; RD b1 r0", lambda t: t.nCCDL),
    Case("RD -> RD, other bank group", "ACT b0 r0; ACT b4 r0; RD b0 r0 !; RD b0 r0; RD b4 r0", lambda t: t.nCCDS,
         overrides={"nCCDS": 3}),
    Case("RD -> RD, data bus", "ACT b0 r0; ACT b4 r0; RD b0 r0 !; RD b0 r0; RD b4 r0", lambda t: t.nBL,
         overrides={"nBL": 3}),
    Case("WR -> WR, same bank group", "ACT b0 r0; ACT b1 r0; RD b0 r0 !; WR b0 r0; WR b1 r0", lambda t: t.nCCDL),
    Case("WR -> WR, other bank group", "ACT b0 r0; ACT b4 r0; RD b0 r0 !; WR b0 r0; WR b4 r0", lambda t: t.nCCDS,
         overrides={"nCCDS": 3}),
    Case("WR -> WR, data bus", "ACT b0 r0; ACT b4 r0; RD b0 r0 !; WR b0 r0; WR b4 r0", lambda t: t.nBL,
         overrides={"nBL": 3}),
    Case("WR -> RD, other bank group", "ACT b0 r0; ACT b4 r0; RD b4 r0 !; WR b0 r0; RD b4 r0",
         lambda t: t.nCWL + t.nBL + t.nWTRS),
    Case("WR -> RD, same bank group", "ACT b0 r0; ACT b1 r0; RD b1 r0 !; WR b0 r0; RD b1 r0",
         lambda t: t.nCWL + t.nBL + t.nWTRL),
    Case("RD -> WR", "ACT b0 r0; ACT b4 r0; RD b0 r0; WR b4 r0", lambda t: t.nCL + t.nBL + 3 - t.nCWL + t.nWPRE),
    Case("ACT -> REFab (tRC)", "ACT b0 r0; PRE b0; REFab", lambda t: t.nRC, (0, 2), {"nRC": 95}),
    Case("PRE -> REFab", "PRE b0; REFab", lambda t: t.nRP),
    Case("REFab -> ACT", "REFab; ACT b3 r0", lambda t: t.nRFC),
    Case("REFab -> REFab", "REFab; REFab", lambda t: t.nRFC),
]

CASES = {"gddr6-aim": AIM_CASES, "gddr6": GDDR6_CASES}

# named in the standard, used by no rule and no `done`: stated here so that adding a rule makes
# the coverage test below ask for a datasheet case
UNUSED = {
    "gddr6-aim": {"nFAW": "the AiM model drops the four-activate window",
                  "nRFCpb": "no per-bank refresh command", "nRREFD": "no per-bank refresh command",
                  "nCLGB": "no command reads the global buffer onto the bus"},
    "gddr6": {"nRFCpb": "no per-bank refresh command"},
}
REFRESH_INTERVAL = {"gddr6-aim", "gddr6"}  # nREFI: test_refresh_interval_* below


def _ids(cases):
    return [c.what for c in cases]


@pytest.mark.parametrize("case", AIM_CASES, ids=_ids(AIM_CASES))
def test_aim_datasheet(case):
    _check("gddr6-aim", case)


@pytest.mark.parametrize("case", GDDR6_CASES, ids=_ids(GDDR6_CASES))
def test_gddr6_datasheet(case):
    _check("gddr6", case)


def test_refresh_interval_aim():
    """A WRGB stream keeps the bus busy (one per nBL): REFab k issues at exactly k x nREFI (no bank
    is open, and refresh does not block register writes); nREFI 500 keeps the run short."""
    cfg = load_config("pim-gpt", {"dram.channels": 1, "dram.timing.nREFI": 500})
    names = command_names_of(cfg)
    res = Engine(cfg, refresh=True).run(program([simple(1, names.index("WRGB"), count=500)]), record=True)
    s = res.schedule
    refs = s[s["cmd"] == names.index("REFab")]["cycle"]
    t = cfg.dram.timing
    assert refs.tolist() == [k * t["nREFI"] for k in range(1, len(refs) + 1)] and len(refs) == 2


def test_refresh_interval_gddr6():
    """A read stream on one open row (one RD per nCCDL): the RD that would issue at or after the due
    cycle k x nREFI waits for PREA (last RD + nRTP) and REFab (PREA + nRP)."""
    cfg = load_config("gddr6-14gbps", {"dram.channels": 1, "dram.timing.nREFI": 500})
    names = command_names_of(cfg)
    rd = names.index("RD")
    prog = program([column(1, rd, row=0, count=64, bank=0), column(1, rd, row=0, count=64, bank=0)] * 4)
    s = Engine(cfg, refresh=True).run(prog, record=True, close_rows=False).schedule
    t = cfg.dram.timing
    refs = s[s["cmd"] == names.index("REFab")]["cycle"]
    rds = s[s["cmd"] == rd]["cycle"]
    assert len(refs) >= 2
    for k, ref in enumerate(refs[:2], start=1):
        last_rd = rds[rds < ref].max()
        assert last_rd < k * t["nREFI"] <= last_rd + t["nCCDL"]
        assert ref == last_rd + t["nRTP"] + t["nRP"]


@pytest.mark.parametrize("standard", sorted(CASES))
def test_every_timing_parameter_has_a_datasheet_case(standard):
    data = yaml.safe_load((STANDARDS_DIR / f"{standard}.yaml").read_text())
    named = set(data["timing_parameters"])
    covered = {p for c in CASES[standard] for p in c.params}
    covered |= {"nREFI"} if standard in REFRESH_INTERVAL else set()
    assert named - covered - set(UNUSED[standard]) == set(), "parameters without a datasheet case"
    assert covered <= named and set(UNUSED[standard]) <= named
    assert not covered & set(UNUSED[standard])


@pytest.mark.parametrize("standard", sorted(CASES))
def test_unused_parameters_are_unused(standard):
    """No constraint row and no `done` names them, and a stream of every case runs to the same
    cycles with each of them tripled."""
    data = yaml.safe_load((STANDARDS_DIR / f"{standard}.yaml").read_text())
    texts = [str(r["cycles"]) for r in data["constraints"]] + [str(c.get("done", 0)) for c in data["commands"].values()]
    words = {w for t in texts for w in t.replace("+", " ").replace("-", " ").split()}
    preset = load_config(PRESET[standard]).dram.timing
    for p in UNUSED[standard]:
        assert p not in words, f"{p} is used by a rule now: write its datasheet case"
        for case in CASES[standard]:
            base = _cycles(standard, case.steps, case.overrides)
            assert np.array_equal(_cycles(standard, case.steps, {**case.overrides, p: 3 * preset[p] + 1}), base)
