"""Timelines of decode steps as Chrome/Perfetto trace-event JSON (opens in ui.perfetto.dev).

Why: a table says how long a token took; a timeline shows which component was busy when, so a
reader sees where the overlap mode hides ASIC and I/O work behind PIM work, and where refresh
stalls a channel.

Layout (trace-event "complete" slices, ph "X"; timestamps in microseconds):
- process "PIM channels": per channel a track of its ops (a PimOp appears on every channel of
  its mask, since it holds those channels' controllers) and a track of its refreshes (one slice
  of nRFC per all-bank refresh, at the cycle the controller issued it; a track of its own
  because a refresh issued in an idle gap may straddle the start of the next op);
- process "ASIC": one track, the vector unit;
- process "I/O links": a track per link an op used (the host link, channel c's link);
- process "decode steps": one slice per step (token position).
Mode "both" writes the serial and the overlap timelines of the same steps one above the other
(processes named "serial: ..." and "overlap: ..."), so the steps' lengths compare at a glance.

Refresh times: the system model reports how many refreshes a step took, not when. The timeline
re-times each step's PIM ops on a second engine, started from the step's initial device state,
with command recording on, each op from the cycle the system model started it, and checks that
every op finishes at the cycle the system model says (an error otherwise); the recorded REF
commands are the refresh slices.

Time: a cycle c is at c x tCK, computed exactly from the configured tCK (a decimal) and rounded
down to whole nanoseconds, the resolution of Perfetto's timeline (it imports ts x 1000 rounded
to an integer); "ts" and "dur" are those nanoseconds / 1000 (microseconds, the trace-event unit),
and a slice's "dur" is the difference of its rounded ends, so slices that meet in cycles meet in
the file and never overlap after import. The exact cycles are in every slice's args.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np

from hw_configs.program import AsicOp, IoOp, PimOp, Program
from sim.config import HardwareConfig
from sim.engine import C_CLASS, Engine
from sim.system.model import StepResult, SystemModel

PID_STEPS, PID_PIM, PID_ASIC, PID_IO = 1, 2, 3, 4
PROCESS_NAMES = {PID_STEPS: "decode steps", PID_PIM: "PIM channels", PID_ASIC: "ASIC", PID_IO: "I/O links"}
TID_HOST_LINK = 0  # I/O: tid 0 is the host link, tid c + 1 channel c's link
PID_STRIDE = 10    # several timelines in one file: the k-th one's processes are pid + 10 k
BOTH = "both"      # export mode: serial and overlap timelines of the same steps, one above the other


class TimelineMismatch(RuntimeError):
    """The recording re-run of a step disagrees with the system model (a timing bug)."""


@dataclass
class StepTimeline:
    """One decode step: its Program, the system model's result, and the refreshes it issued."""

    program: Program
    result: StepResult
    refresh_channel: np.ndarray = field(repr=False)   # [refreshes] channel of each REF
    refresh_cycle: np.ndarray = field(repr=False)     # [refreshes] its issue cycle
    refresh_idle: np.ndarray = field(repr=False)      # [refreshes] bool: fell due while the channel was idle


@dataclass
class Timeline:
    cfg: HardwareConfig
    mode: str
    refresh: bool
    nrfc: int
    steps: list[StepTimeline]


def ref_times(rec_engine: Engine, program: Program, result: StepResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-time the step's PIM ops on `rec_engine` (in the step's initial state) with recording on,
    each from its start cycle in `result`; (channel, cycle, idle) of every REF issued.

    Ops go in order of start cycle (ties in op order): ops that overlap in time hold disjoint
    channels, and the engine's state is per channel, so this is the order the dispatcher saw."""
    std = rec_engine.std
    ops = program.ops
    pim = [op.id for op in ops if isinstance(op, PimOp)]
    order = sorted(pim, key=lambda i: (int(result.op_start[i]), i))
    chans, cycles, idle = [], [], []
    for i in order:
        op = ops[i]
        start = int(result.op_start[i])
        res = rec_engine.run(op.instructions, record=True, close_rows=False, start_cycle=start,
                             validate=False, op_stats=False)
        finish = res.finish_cycle if len(op.instructions) else start
        if len(op.instructions) and finish != int(result.op_finish[i]):
            raise TimelineMismatch(f"{program.model}@{program.position}: op {i} ({op.name}) finishes at cycle "
                                   f"{finish} when re-timed with recording, at {int(result.op_finish[i])} in the "
                                   "system model")
        s = res.schedule
        ref = s[s["cmd"] == std.cmd_ref] if std.cmd_ref >= 0 else s[:0]
        chans.append(ref["channel"].astype(np.int64))
        cycles.append(ref["cycle"].astype(np.int64))
        idle.append(ref["instr"] == -2)
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return cat(chans, np.int64), cat(cycles, np.int64), cat(idle, bool)


def record_timeline(cfg: HardwareConfig, programs: Iterable[Program], mode: str = "overlap",
                    refresh: bool | None = None, kernel: str = "compiled") -> Timeline:
    """Time `programs` one after another on one shared timeline (as `sim.compose.simulate` does)
    and record every op's start and finish and every refresh."""
    system = SystemModel(cfg, mode=mode, refresh=refresh, kernel=kernel)
    rec = Engine(cfg, refresh=refresh)
    rec.warm_up()
    steps = []
    for prog in programs:
        before = system.engine.snapshot()
        step = system.run_step(prog)
        rec.restore(before)
        ch, cyc, idle = ref_times(rec, prog, step)
        tail = rec.refresh_idle(step.finish_cycle, record=True).schedule  # as the system model does
        tail = tail[tail["cmd"] == rec.std.cmd_ref] if rec.std.cmd_ref >= 0 else tail[:0]
        ch = np.concatenate([ch, tail["channel"].astype(np.int64)])
        cyc = np.concatenate([cyc, tail["cycle"].astype(np.int64)])
        idle = np.concatenate([idle, np.ones(len(tail), bool)])
        if len(ch) != step.refreshes + int(idle.sum()):
            # the system model counts refreshes issued during its runs; idle ones separately
            raise TimelineMismatch(f"{prog.model}@{prog.position}: {len(ch) - int(idle.sum())} refreshes during "
                                   f"ops when re-timed with recording, {step.refreshes} in the system model")
        if not _same_channels(rec, system.engine):
            raise TimelineMismatch(f"{prog.model}@{prog.position}: the channels' state after the recording re-run "
                                   "differs from the system model's")
        steps.append(StepTimeline(prog, step, ch, cyc, idle))
    return Timeline(cfg, mode, system.engine.refresh, system.engine.nrfc, steps)


def _same_channels(a: Engine, b: Engine) -> bool:
    """Per-channel state (finish, refresh due, open rows, counts, ...) and command counts agree.

    The lock-step class column is left out (a recording run never groups channels), and so is
    the per-command history of issue cycles: lock step keeps a follower's only up to what can
    still bind a later command."""
    keep = np.arange(a.chs.shape[1]) != C_CLASS
    return (np.array_equal(a.chs[:, keep], b.chs[:, keep]) and np.array_equal(a.orow, b.orow)
            and np.array_equal(a.counts, b.counts))


# --------------------------------------------------------------------------- trace events


def cycle_ns(tck_ns: float) -> Callable[[int], int]:
    """cycle -> whole nanoseconds (rounded down), exact for the tCK as written in the config."""
    tck = Fraction(repr(float(tck_ns)))

    def ns(cycle: int) -> int:
        return math.floor(int(cycle) * tck)

    return ns


def _span(ns: Callable[[int], int], start: int, finish: int) -> dict:
    """"ts" and "dur" in microseconds of a slice from cycle `start` to cycle `finish`."""
    a = ns(start)
    return {"ts": a / 1000, "dur": (ns(finish) - a) / 1000}


def _op_args(op, step: StepResult, tag_cycles: int) -> dict:
    i = op.id
    args = {"op_id": i, "position": step.position, "tag": op.tag, "layer": op.layer,
            "cycles": tag_cycles, "start_cycle": int(step.op_start[i]), "finish_cycle": int(step.op_finish[i]),
            "critical": bool(step.critical[i])}
    if isinstance(op, PimOp):
        args |= {"kind": f"pim/{op.kind}", "instructions": int(len(op.instructions)), "channels": int(op.chmask),
                 "macs": int(op.macs)}
    elif isinstance(op, AsicOp):
        args |= {"kind": f"asic/{op.kind}", "instructions": 1, "elements": int(op.elements), "rows": int(op.rows)}
    else:
        args |= {"kind": f"io/{op.direction}", "instructions": 1, "bytes": int(op.nbytes), "links": int(op.chmask)}
    return args


def op_tracks(op, n_channels: int) -> list[tuple[int, int]]:
    """(pid, tid) of every track an op is drawn on: the components it holds while it runs."""
    if isinstance(op, PimOp):
        return [(PID_PIM, 2 * c) for c in range(n_channels) if op.chmask >> c & 1]
    if isinstance(op, AsicOp):
        return [(PID_ASIC, 0)]
    if op.chmask == 0:
        return [(PID_IO, TID_HOST_LINK)]
    return [(PID_IO, c + 1) for c in range(n_channels) if op.chmask >> c & 1]


def trace_events(tl: Timeline, pid_base: int = 0, label: str = "") -> list[dict]:
    """The timeline as trace events: track names first (metadata, ph "M"), then slices by time.
    `pid_base` and `label` set processes apart when several timelines share a file."""
    ns = cycle_ns(tl.cfg.dram.tck_ns)
    n_ch = tl.cfg.dram.channels
    slices: list[dict] = []
    used: set[tuple[int, int]] = {(PID_STEPS, 0), (PID_ASIC, 0)} | {(PID_PIM, 2 * c) for c in range(n_ch)}
    if tl.refresh:
        used |= {(PID_PIM, 2 * c + 1) for c in range(n_ch)}
    for st in tl.steps:
        r, prog = st.result, st.program
        slices.append({"name": f"position {r.position}", "cat": "step", "ph": "X",
                       **_span(ns, r.start_cycle, r.finish_cycle), "pid": PID_STEPS, "tid": 0,
                       "args": {"position": r.position, "cycles": r.cycles, "ops": r.n_ops,
                                "refreshes": r.refreshes, "energy_j": r.energy_j["total"],
                                "start_cycle": r.start_cycle, "finish_cycle": r.finish_cycle}})
        for op in prog.ops:
            s, f = int(r.op_start[op.id]), int(r.op_finish[op.id])
            args = _op_args(op, r, f - s)
            for pid, tid in op_tracks(op, n_ch):
                used.add((pid, tid))
                slices.append({"name": op.name, "cat": op.tag, "ph": "X", **_span(ns, s, f),
                               "pid": pid, "tid": tid, "args": args})
        for ch, cyc, idle in zip(st.refresh_channel, st.refresh_cycle, st.refresh_idle):
            slices.append({"name": "refresh", "cat": "refresh", "ph": "X",
                           **_span(ns, int(cyc), int(cyc) + tl.nrfc),
                           "pid": PID_PIM, "tid": 2 * int(ch) + 1,
                           "args": {"channel": int(ch), "cycle": int(cyc), "cycles": tl.nrfc,
                                    "when": "idle gap" if idle else "during an op", "position": r.position}})
    slices.sort(key=lambda e: (e["pid"], e["tid"], e["ts"]))
    meta: list[dict] = []
    for pid, name in PROCESS_NAMES.items():
        if any(p == pid for p, _ in used):
            meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": label + name}})
            meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
    for pid, tid in sorted(used):
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": _track_name(pid, tid)}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    events = meta + slices
    if pid_base:
        for e in events:
            e["pid"] += pid_base
        for e in meta:
            if e["name"] == "process_sort_index":
                e["args"]["sort_index"] += pid_base
    return events


def _track_name(pid: int, tid: int) -> str:
    if pid == PID_STEPS:
        return "steps"
    if pid == PID_ASIC:
        return "vector unit"
    if pid == PID_PIM:
        return f"channel {tid // 2}" + (" refresh" if tid % 2 else "")
    return "host link" if tid == TID_HOST_LINK else f"channel {tid - 1} link"


def trace_document(tl: Timeline | list[Timeline], metadata: dict) -> dict:
    """The JSON object format: {"traceEvents": [...], "metadata": {...}}. No displayTimeUnit:
    viewers have read it as the unit of ts at times; ts is always microseconds here. Several
    timelines (the modes of one run) go one above the other, each process named by its mode."""
    if isinstance(tl, Timeline):
        return {"traceEvents": trace_events(tl), "metadata": metadata}
    events = []
    for k, t in enumerate(tl):
        events += trace_events(t, pid_base=PID_STRIDE * k, label=f"{t.mode}: ")
    return {"traceEvents": events, "metadata": metadata}


def check_request(mode: str, prompt_len: int | None = None, tokens: int | None = None,
                  max_context: int | None = None) -> None:
    """Fail before any work on a mode or lengths the timeline cannot be made for."""
    from sim.config import ConfigError
    from sim.system.model import MODES

    if mode not in (*MODES, BOTH):
        raise ConfigError("--mode", "mode", f"unknown mode '{mode}'; expected one of {', '.join((*MODES, BOTH))}")
    if prompt_len is not None and prompt_len < 1 or tokens is not None and tokens < 0:
        raise ConfigError("--prompt-len", "prompt_len",
                          f"need prompt_len >= 1 and tokens >= 0, got {prompt_len}, {tokens}")
    if None not in (prompt_len, tokens, max_context) and prompt_len + tokens > max_context:
        raise ConfigError("--tokens", "tokens", f"prompt {prompt_len} + generated {tokens} = {prompt_len + tokens} "
                                                f"positions exceeds the model's context of {max_context}")


def export_perfetto(path, cfg: HardwareConfig, programs: Iterable[Program], *, mode: str = "overlap",
                    refresh: bool | None = None, kernel: str = "compiled", **about) -> dict:
    """Time `programs`, write their timeline to `path` atomically (with the resolved config and
    version under "metadata"); a summary of what was written. `about` (model, prompt_len, ...)
    goes into the metadata as given; `max_context`, when given, bounds the number of programs."""
    from sim.results import check_output_path, provenance, write_json_atomic

    check_output_path(path)
    check_request(mode, about.get("prompt_len"), about.get("tokens"), about.pop("max_context", None))
    if mode == BOTH:
        programs = list(programs)
        tls = [record_timeline(cfg, programs, mode=m, refresh=refresh, kernel=kernel) for m in ("serial", "overlap")]
    else:
        tls = [record_timeline(cfg, programs, mode=mode, refresh=refresh, kernel=kernel)]
    tl = tls[-1]
    doc = trace_document(tls if mode == BOTH else tl, {**provenance(cfg), "mode": mode, "refresh": tl.refresh, "kernel": kernel, **about,
                              "time_unit": "ts and dur in microseconds = floor(DRAM command-clock cycles x tck_ns) / 1000; "
                                           "exact cycles in args",
                              "tck_ns": cfg.dram.tck_ns})
    write_json_atomic(path, doc, compact=True)
    n_slices = sum(1 for e in doc["traceEvents"] if e["ph"] == "X")
    tck = Fraction(repr(float(cfg.dram.tck_ns)))
    span = {t.mode: (t.steps[-1].result.finish_cycle - t.steps[0].result.start_cycle if t.steps else 0) for t in tls}
    return {"slices": n_slices, "ops": sum(s.result.n_ops for t in tls for s in t.steps),
            "refreshes": sum(len(s.refresh_cycle) for t in tls for s in t.steps), "steps": len(tl.steps),
            "time_us": {m: float(c * tck) / 1000 for m, c in span.items()}, "mode": mode, "refresh": tl.refresh}
