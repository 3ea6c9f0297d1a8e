"""Perfetto timelines: valid trace-event JSON, one slice per op and component, tracks without
overlaps, the step's cycles, refresh where the controller issued it, and the CLI end to end."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from hw_configs.program import AsicOp, IoOp, PimOp
from sim.config import load_config
from sim.timeline import (
    PID_ASIC, PID_IO, PID_PIM, PID_STEPS, TimelineMismatch, record_timeline, ref_times, trace_document,
)

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt2-small"
EPS_US = 1e-9  # float rounding of microsecond timestamps; one cycle is 5e-4 us


def _programs(cfg, n: int):
    from mapping.compile import compiler_for
    from workloads import get_spec

    comp = compiler_for(get_spec(MODEL), cfg, "pim-gpt", n)
    return [comp.compile(p) for p in range(n)]


@pytest.fixture(scope="module")
def cfg():
    return load_config("pim-gpt")


@pytest.fixture(scope="module")
def programs(cfg):
    return _programs(cfg, 2)


@pytest.fixture(scope="module")
def overlap(cfg, programs):
    tl = record_timeline(cfg, programs, mode="overlap")
    return tl, trace_document(tl, {})["traceEvents"]


@pytest.fixture(scope="module")
def serial(cfg, programs):
    tl = record_timeline(cfg, programs, mode="serial")
    return tl, trace_document(tl, {})["traceEvents"]


def _slices(events, pid=None):
    return [e for e in events if e["ph"] == "X" and (pid is None or e["pid"] == pid)]


def _op_slices(events):
    return [e for e in _slices(events) if e["pid"] in (PID_PIM, PID_ASIC, PID_IO) and e["cat"] != "refresh"]


def test_trace_events_have_the_required_keys_and_round_trip_as_json(overlap):
    _, events = overlap
    back = json.loads(json.dumps({"traceEvents": events}, allow_nan=False))["traceEvents"]
    assert back == events
    for e in events:
        assert {"ph", "pid", "tid", "name"} <= set(e)
        if e["ph"] == "X":
            assert {"ts", "dur"} <= set(e) and e["dur"] >= 0 and e["ts"] >= 0
        else:
            assert e["ph"] == "M" and e["name"] in ("process_name", "process_sort_index", "thread_name",
                                                  "thread_sort_index")
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names[(PID_PIM, 0)] == "channel 0" and names[(PID_PIM, 15)] == "channel 7 refresh"
    assert names[(PID_ASIC, 0)] == "vector unit" and names[(PID_STEPS, 0)] == "steps"


def test_one_slice_per_op_on_each_component_it_holds(overlap, cfg):
    tl, events = overlap
    seen = Counter((e["args"]["position"], e["args"]["op_id"]) for e in _op_slices(events))
    tracks = defaultdict(set)
    for e in _op_slices(events):
        tracks[e["args"]["position"], e["args"]["op_id"]].add((e["pid"], e["tid"]))
    for st in tl.steps:
        p = st.program.position
        assert {i for (q, i) in seen if q == p} == set(range(len(st.program.ops)))
        for op in st.program.ops:
            if isinstance(op, PimOp):
                want = {(PID_PIM, 2 * c) for c in range(cfg.dram.channels) if op.chmask >> c & 1}
            elif isinstance(op, AsicOp):
                want = {(PID_ASIC, 0)}
            else:
                want = {(PID_IO, 0)} if op.chmask == 0 else {(PID_IO, c + 1) for c in range(8) if op.chmask >> c & 1}
            assert tracks[p, op.id] == want, op.name
            assert seen[p, op.id] == len(want)  # no track holds it twice
    names = {e["name"] for e in _op_slices(events)}
    assert "L0.qkv.t0.c0" in names and "L11.ln_2" in names  # named by layer and op


def test_slices_of_a_track_never_overlap(overlap, serial):
    for _, events in (overlap, serial):
        by_track = defaultdict(list)
        for e in _slices(events):
            by_track[e["pid"], e["tid"]].append(e)
        assert len(by_track) > 10
        for track, ev in by_track.items():
            ev.sort(key=lambda e: e["ts"])
            for a, b in zip(ev, ev[1:]):
                assert b["ts"] >= a["ts"] + a["dur"] - EPS_US, (track, a["name"], b["name"])
                # as Perfetto imports them: nanoseconds = round(us x 1000)
                assert round(b["ts"] * 1000) >= round(a["ts"] * 1000) + round(a["dur"] * 1000), (track, a, b)


def test_timestamps_are_whole_nanoseconds(overlap):
    for e in _slices(overlap[1]):
        for k in ("ts", "dur"):
            assert abs(e[k] * 1000 - round(e[k] * 1000)) < 1e-6, e


def test_timestamps_are_cycles_times_tck(overlap):
    tl, events = overlap
    # pim-gpt.yaml tck_ns 0.5: cycle c is at c / 2 ns, rounded down to whole nanoseconds
    for e in _op_slices(events):
        a = e["args"]
        s_ns, f_ns = a["start_cycle"] // 2, a["finish_cycle"] // 2
        assert e["ts"] == pytest.approx(s_ns / 1000, abs=1e-12)
        assert e["dur"] == pytest.approx((f_ns - s_ns) / 1000, abs=1e-12)
        assert a["cycles"] == a["finish_cycle"] - a["start_cycle"]


def test_steps_match_the_simulation(overlap, serial):
    from sim.compose import simulate

    for mode, (tl, events) in (("overlap", overlap), ("serial", serial)):
        gen = simulate(MODEL, "pim-gpt", prompt_len=1, gen_len=1, mode=mode)
        steps = sorted(_slices(events, PID_STEPS), key=lambda e: e["ts"])
        assert [s["args"]["cycles"] for s in steps] == [t.cycles for t in gen.tokens]
        for s, tok in zip(steps, gen.tokens):
            assert s["dur"] == pytest.approx(tok.latency_s * 1e6, abs=1e-3)  # within the 1 ns rounding
            ops = [e for e in _op_slices(events) if e["args"]["position"] == tok.position]
            first = min(e["ts"] for e in ops)
            last = max(e["ts"] + e["dur"] for e in ops)
            assert first == pytest.approx(s["ts"], abs=EPS_US) and last == pytest.approx(s["ts"] + s["dur"], abs=EPS_US)
            if mode == "serial":  # one op at a time, each starting when the previous finished
                once = {e["args"]["op_id"]: e["args"]["cycles"] for e in ops}
                assert sum(once.values()) == s["args"]["cycles"]
    # overlap hides work: its steps are shorter than serial ones
    assert sum(s.result.cycles for s in overlap[0].steps) < sum(s.result.cycles for s in serial[0].steps)


def test_refresh_slices_are_the_refreshes_the_engine_counted(overlap, cfg):
    tl, events = overlap
    nrfc = cfg.dram.timing["nRFC"]
    refs = [e for e in _slices(events, PID_PIM) if e["cat"] == "refresh"]
    assert refs and all(e["tid"] % 2 == 1 for e in refs)
    assert all(e["args"]["cycles"] == nrfc and e["dur"] == pytest.approx(nrfc * 0.5e-3) for e in refs)
    for st in tl.steps:
        p = st.program.position
        mine = [e for e in refs if e["args"]["position"] == p]
        during = [e for e in mine if e["args"]["when"] == "during an op"]
        assert len(during) == st.result.refreshes
        # the step's command counts hold every refresh of the step: those issued while an op runs
        # and those that fell due while a channel was idle (channels 1-7 during the embedding read
        # on channel 0, and up to the step's end)
        per_ch = Counter(e["args"]["channel"] for e in mine)
        ref = list(st.program.command_names).index("REFab")
        assert [per_ch[c] for c in range(8)] == list(st.result.command_counts_per_channel[:, ref])
        # a refresh at the nREFI rate: about step cycles / nREFI per channel
        expect = st.result.cycles / cfg.dram.timing["nREFI"]
        assert all(abs(per_ch[c] - expect) <= 2 for c in range(cfg.dram.channels))


def test_no_refresh_means_no_refresh_slices(cfg, programs):
    tl = record_timeline(cfg, programs[:1], mode="overlap", refresh=False)
    events = trace_document(tl, {})["traceEvents"]
    assert not [e for e in events if e.get("cat") == "refresh"]
    assert not [e for e in events if e["name"] == "thread_name" and "refresh" in e["args"]["name"]]


def test_a_disagreeing_system_model_is_an_error(cfg, programs):
    from sim.engine import Engine
    from sim.system.model import SystemModel

    system = SystemModel(cfg, mode="overlap")
    rec = Engine(cfg)
    before = system.engine.snapshot()
    step = system.run_step(programs[0])
    i = next(op.id for op in programs[0].ops if isinstance(op, PimOp) and len(op.instructions))
    bad = copy.copy(step)
    bad.op_finish = step.op_finish.copy()
    bad.op_finish[i] += 1
    rec.restore(before)
    with pytest.raises(TimelineMismatch, match=f"op {i} "):
        ref_times(rec, programs[0], bad)
    rec.restore(before)
    ch, cyc, idle = ref_times(rec, programs[0], step)  # the true figures pass
    assert len(ch) == len(cyc) == len(idle)


def test_simpy_kernel_gives_the_same_timeline(cfg, programs, overlap):
    tl = record_timeline(cfg, programs[:1], mode="overlap", kernel="simpy")
    want = [e for e in overlap[1] if e["ph"] == "X" and e["args"]["position"] == 0]
    got = [e for e in trace_document(tl, {})["traceEvents"] if e["ph"] == "X"]
    assert got == want


# --------------------------------------------------------------------------- CLI


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sim.cli", "export-trace", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


def test_cli_writes_a_perfetto_trace(tmp_path, overlap):
    out = tmp_path / "t.json"
    r = _cli("--format", "perfetto", "--model", MODEL, "--hw", "pim-gpt", "--tokens", "1", "--prompt-len", "1",
             "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "ui.perfetto.dev" in r.stdout
    with out.open() as fh:
        doc = json.load(fh)
    assert "displayTimeUnit" not in doc  # ts are microseconds, as the format says
    assert doc["metadata"]["config"]["dram"]["channels"] == 8 and doc["metadata"]["pimsim_version"]
    assert doc["traceEvents"] == overlap[1]  # the same timeline as recorded in process
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary file left
    r = _cli("--format", "perfetto", "--model", MODEL, "--tokens", "0", "--mode", "serial", "--no-refresh",
             "--set", "dram.channels=4", "-o", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["metadata"]["refresh"] is False and doc["metadata"]["mode"] == "serial"
    assert not [e for e in doc["traceEvents"] if e.get("cat") == "refresh"]
    chans = {e["tid"] for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == PID_PIM}
    assert chans == {0, 2, 4, 6}  # four channels, op tracks only
    assert len([e for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == PID_STEPS]) == 1


def test_cli_argument_errors(tmp_path):
    out = tmp_path / "t.json"
    r = _cli("--format", "perfetto", "--model", MODEL, "--tokens", "1", "--position", "3", "-o", str(out))
    assert r.returncode == 2 and "--position applies to --format aim" in r.stderr
    r = _cli("--format", "perfetto", "--model", MODEL, "-o", str(out))
    assert r.returncode == 2 and "needs --tokens" in r.stderr
    r = _cli("--format", "aim", "--model", MODEL, "--tokens", "2", "--position", "0", "-o", str(out))
    assert r.returncode == 2 and "--tokens apply to --format perfetto" in r.stderr
    r = _cli("--format", "perfetto", "--model", MODEL, "--tokens", "1", "--mode", "fast", "-o", str(out))
    assert r.returncode == 2 and "unknown mode 'fast'" in r.stderr
    r = _cli("--format", "perfetto", "--model", MODEL, "--tokens", "1024", "-o", str(out))
    assert r.returncode == 2 and "1025 positions exceeds the model's context of 1024" in r.stderr
    r = _cli("--format", "perfetto", "--model", MODEL, "--tokens", "-1", "-o", str(out))
    assert r.returncode == 2 and "tokens >= 0" in r.stderr
    r = _cli("--format", "perfetto", "--model", MODEL, "--tokens", "1", "-o", str(tmp_path / "no" / "t.json"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert not out.exists()


def test_both_modes_share_a_file_one_above_the_other(serial, overlap):
    doc = trace_document([serial[0], overlap[0]], {})
    ev = doc["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in ev if e["name"] == "process_name"}
    assert names == {1: "serial: decode steps", 2: "serial: PIM channels", 3: "serial: ASIC", 4: "serial: I/O links",
                     11: "overlap: decode steps", 12: "overlap: PIM channels", 13: "overlap: ASIC",
                     14: "overlap: I/O links"}
    low = [e for e in ev if e["ph"] == "X" and e["pid"] < 10]
    high = [{**e, "pid": e["pid"] - 10} for e in ev if e["ph"] == "X" and e["pid"] >= 10]
    assert low == _slices(serial[1]) and high == _slices(overlap[1])  # each mode's own slices, untouched
