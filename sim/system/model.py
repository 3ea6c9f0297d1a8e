"""The PIM-GPT system as a discrete-event model (SimPy): the ASIC's vector unit, the PIM channel
controllers driving the timing engine, and the channels' external links.

One SimPy event per op, never one per instruction or per cycle. The dispatcher process starts
every op whose dependencies have completed and whose components are free, times it (a PIM op in
one engine call from the cycle it starts, an ASIC op by its formula, an I/O op by bytes over the
link bandwidth) and sleeps until the next completion. Time is integer DRAM command-clock cycles;
the ASIC clock converts exactly (rounded up per op).

Components an op holds while it runs:
- PimOp: the controllers of the channels in its mask (a GEMV tile is a gang over all channels:
  its instruction block is timed in one engine call, so the channels stay in lock step as the
  ASIC issues to all of them in parallel);
- AsicOp: the ASIC's vector unit;
- IoOp: the links of the channels in its mask (the host link when the mask is 0).

Modes: `serial` (the paper's simulator: the next op starts only when the ASIC and every channel
are idle, in program order) and `overlap` (ops start as soon as dependencies and components
allow, earliest program order first).

Latency attribution: every op records the op that released it (the dependency or the previous
holder of one of its components that finished last). Walking back from the op that finishes
last gives the critical path; its ops' durations sum to the step's latency and are charged to
their tags (serial mode: every op is on the path). The part of a PIM op's time during which its
banks were refreshing (refreshes x nRFC, the largest over its channels, at most the op's time) is
charged to `refresh`.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from hw_configs.isa import N_FIELDS
from hw_configs.program import TAGS, AsicOp, IoOp, PimOp, Program
from sim.config import ConfigError, HardwareConfig
from sim.engine import _NO_LINES, _NO_MEMO, _NO_REC, _NO_STAT, G_MEMO_HITS, M_STATE, Engine
from sim.system import dispatch as D
from sim.system.asic import AsicModel
from sim.system.energy import EnergyModel

MODES = ("serial", "overlap")
# How the ASIC hands an op's instructions to the channels (sim/engine.py FRONT_ENDS): "pim-gpt"
# releases each instruction to its channels at once; "aim" decodes one instruction per cycle
# into a bounded in-order buffer per channel, as the public AiM simulator's front end does.
FRONT_ENDS = ("pim-gpt", "aim")
KERNELS = ("compiled", "simpy")
KIND_PIM, KIND_ASIC, KIND_IO = D.KIND_PIM, D.KIND_ASIC, D.KIND_IO
_TAG_ID = {t: i for i, t in enumerate(TAGS)}


@dataclass
class StepResult:
    """One decode step on the system: cycles, what they were spent on, and the energy terms."""

    position: int
    start_cycle: int
    finish_cycle: int
    tck_ns: float
    latency_cycles_by_tag: dict[str, int]
    energy_j: dict
    command_counts: np.ndarray          # [commands] summed over channels
    command_counts_per_channel: np.ndarray
    row_hits: int
    row_misses: int
    refreshes: int
    io_bytes: int
    n_ops: int
    op_start: np.ndarray = field(repr=False)
    op_finish: np.ndarray = field(repr=False)
    critical: np.ndarray = field(repr=False)   # bool per op: on the critical path

    @property
    def cycles(self) -> int:
        return self.finish_cycle - self.start_cycle

    @property
    def latency_s(self) -> float:
        return self.cycles * self.tck_ns * 1e-9


def _link_bytes_per_cycle(cfg: HardwareConfig) -> float:
    d = cfg.dram
    return d.io_pins_per_channel * d.io_gbps_per_pin / 8 * d.tck_ns  # GB/s x ns = bytes



def _op_ids(ops) -> np.ndarray:
    """The ops' identities: the next step's ops are compared with them in one array operation
    (a graph keeps its ops alive, so no identity is reused while it exists)."""
    return np.fromiter(map(id, ops), np.int64, len(ops))


class _Graph:
    """One step's op graph as the flat arrays of the compiled dispatcher (CSR dependencies and
    successors, per-op kind, channel mask, fixed duration, tag, instruction range) and the PIM
    instruction blocks back to back.

    `updated` replaces the ops that changed and copies the rest; a new array is made for every
    field it touches, so a caller still holding the previous step's arrays (a thread timing its
    instructions) never sees them change."""

    def __init__(self, ops, kind, chmask, dur, tags, pj, nbytes, dep_ptr, dep_idx, succ_ptr, succ_idx, lo, hi,
                 instructions, op_ids=None):
        self.ops = ops
        self.kind, self.chmask, self.dur, self.tags = kind, chmask, dur, tags
        self.pj, self.nbytes = pj, nbytes                      # [n] per op, for the sums below
        self.asic_pj = math.fsum(pj)                           # exactly rounded: independent of order
        self.io_bytes = int(nbytes.sum())
        self.dep_ptr, self.dep_idx, self.succ_ptr, self.succ_idx = dep_ptr, dep_idx, succ_ptr, succ_idx
        self.lo, self.hi = lo, hi
        self.instructions = instructions
        self.op_ids = _op_ids(ops) if op_ids is None else op_ids

    @staticmethod
    def build(ops, info) -> "_Graph":
        n = len(ops)
        infos = [info(op) for op in ops]
        cols = np.array([i[:4] for i in infos], np.int64).reshape(n, 4)
        pj = np.array([i[4] for i in infos], np.float64)
        nbytes = np.array([i[5] for i in infos], np.int64)
        ndeps = np.fromiter((len(op.deps) for op in ops), np.int64, n)
        dep_ptr = np.zeros(n + 1, np.int64)
        np.cumsum(ndeps, out=dep_ptr[1:])
        dep_idx = np.fromiter((d for op in ops for d in op.deps), np.int64, int(dep_ptr[-1]))
        owner = np.repeat(np.arange(n, dtype=np.int64), ndeps)
        order = np.argsort(dep_idx, kind="stable")  # successors of each op in op order
        succ_idx = np.ascontiguousarray(owner[order])
        succ_ptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(dep_idx, minlength=n), out=succ_ptr[1:])
        pim_ops = [op for op in ops if isinstance(op, PimOp)]
        lens = np.zeros(n, np.int64)
        lens[[op.id for op in pim_ops]] = [len(op.instructions) for op in pim_ops]
        hi = np.cumsum(lens)
        lo = hi - lens
        prog = np.concatenate([op.instructions for op in pim_ops]) if pim_ops else np.zeros((0, N_FIELDS), np.int64)
        return _Graph(tuple(ops), np.ascontiguousarray(cols[:, 0]), np.ascontiguousarray(cols[:, 1]),
                      np.ascontiguousarray(cols[:, 2]), np.ascontiguousarray(cols[:, 3]), pj, nbytes,
                      dep_ptr, dep_idx, succ_ptr, succ_idx, lo, hi, prog)

    def updated(self, ops, changed: list[int], info, op_ids: np.ndarray) -> "_Graph":
        """The graph of `ops` (identities `op_ids`), which equal this graph's ops except at
        `changed` (same dependencies)."""
        if not changed:
            return _Graph(tuple(ops), self.kind, self.chmask, self.dur, self.tags, self.pj, self.nbytes,
                          self.dep_ptr, self.dep_idx, self.succ_ptr, self.succ_idx, self.lo, self.hi, self.instructions,
                          op_ids)
        kind, chmask, dur, tags = self.kind.copy(), self.chmask.copy(), self.dur.copy(), self.tags.copy()
        pj, nbytes = self.pj.copy(), self.nbytes.copy()
        lens = self.hi - self.lo
        new_lens = lens.copy()
        for i in changed:
            op = ops[i]
            k, m, d, t, e, b = info(op)
            kind[i], chmask[i], dur[i], tags[i], pj[i], nbytes[i] = k, m, d, t, e, b
            new_lens[i] = len(op.instructions) if k == KIND_PIM else 0
        if np.array_equal(new_lens, lens):
            lo, hi = self.lo, self.hi
            prog = self.instructions.copy()
            for i in changed:
                if kind[i] == KIND_PIM:
                    prog[lo[i]:hi[i]] = ops[i].instructions
        else:
            hi = np.cumsum(new_lens)
            lo = hi - new_lens
            # the unchanged stretches of the old array and the changed ops' blocks, in op order
            pieces, at = [], 0  # at: the old array's next instruction not yet taken
            for i in changed:  # op i's old block: old[lo[i]:hi[i]] (empty unless it was a PimOp)
                pieces.append(self.instructions[at:self.lo[i]])
                at = int(self.hi[i])
                if new_lens[i]:
                    pieces.append(ops[i].instructions)
            pieces.append(self.instructions[at:])
            prog = np.concatenate(pieces)
        return _Graph(tuple(ops), kind, chmask, dur, tags, pj, nbytes, self.dep_ptr, self.dep_idx, self.succ_ptr,
                      self.succ_idx, lo, hi, prog, op_ids)


class SystemModel:
    """Time decode steps on one hardware configuration, one after another on a shared timeline
    (the engine's bank state, refresh phase and open rows carry from step to step)."""

    def __init__(self, cfg: HardwareConfig, mode: str = "overlap", front_end: str = "pim-gpt",
                 refresh: bool | None = None, kernel: str = "compiled", memo: bool = True):
        if kernel not in KERNELS:
            raise ConfigError("--kernel", "kernel", f"unknown dispatcher '{kernel}'; expected one of {', '.join(KERNELS)}")
        if mode not in MODES:
            raise ConfigError("--mode", "mode", f"unknown mode '{mode}'; expected one of {', '.join(MODES)}")
        if front_end not in FRONT_ENDS:
            raise ConfigError("--front-end", "front_end",
                              f"unknown front end '{front_end}'; expected one of {', '.join(FRONT_ENDS)}")
        if cfg.pim is None:
            raise ConfigError(cfg.source, "pim", "the system model needs a PIM device (a pim section)")
        self.cfg, self.mode, self.front_end = cfg, mode, front_end
        self.engine = Engine(cfg, refresh=refresh, front_end=front_end)
        self.engine.warm_up()
        self.asic = AsicModel(cfg)
        self.energy = EnergyModel(cfg, self.engine.std.command_names)
        if cfg.system is None:
            raise ConfigError(cfg.source, "system", "this hardware config has no system section (host_link_gbps)")
        self.tck_ns = cfg.dram.tck_ns
        self.link_bytes_per_cycle = _link_bytes_per_cycle(cfg)
        self.host_bytes_per_cycle = cfg.system.host_link_gbps / 8 * self.tck_ns
        self.n_channels = cfg.dram.channels
        self.kernel = kernel
        self.last_pim_instructions = np.zeros((0, N_FIELDS), np.int64)  # of the last step, in op order
        self.env = simpy.Environment()
        self.now = 0  # the shared timeline: the cycle the next step starts at
        self._asic_cache: dict[tuple, tuple[int, float]] = {}
        self._last_graph: _Graph | None = None
        self._nrfc = self.engine.nrfc
        # the compiled dispatcher's op memo (sim/engine.py), a row per op of the last graph; an op
        # that changed from one step to the next loses its row
        self.use_memo = memo
        self._memo = _NO_MEMO

    # ---- per-op durations (cached where the op's shape decides everything)
    def _asic(self, op: AsicOp) -> tuple[int, float]:
        key = (op.kind, op.elements, op.rows, op.inputs)
        hit = self._asic_cache.get(key)
        if hit is None:
            hit = self._asic_cache[key] = (self.asic.dram_cycles(op, self.tck_ns), self.asic.dynamic_pj(op))
        return hit

    def _io_cycles(self, op: IoOp) -> int:
        links = int(op.chmask).bit_count()
        per_cycle = self.host_bytes_per_cycle if links == 0 else self.link_bytes_per_cycle * links
        return math.ceil(op.nbytes / per_cycle)

    # ---- one step
    def run_step(self, program: Program) -> StepResult:
        """Time one Program from the current cycle; the timeline advances to its finish."""
        if program.command_names != self.engine.std.command_names:
            raise ValueError(f"program for {program.hardware} was built for command table "
                             f"{program.command_names}, not this engine's ({self.engine.std.name})")
        t0 = self.now
        active0 = self.engine.active_cycles(t0)
        before = self.engine.counts.copy()
        if self.kernel == "compiled":
            timed = self._time_compiled(program, t0)
        else:
            timed = self._time_simpy(program, t0)
        # refreshes that fell due on a channel idle until the step's end belong to this step
        finish = timed[1]
        self.engine.refresh_idle(int(finish.max()) if len(finish) else t0)
        # every command of the step, including refreshes a channel issued in an idle gap (the
        # per-op counts leave those out): the growth of the engine's totals
        counts = self.engine.counts - before                                   # [C, n_cmd]
        return self._result(program, t0, active0, *timed[:4], counts, *timed[4:])

    def _op_info(self, op) -> tuple:
        """(kind, chmask, duration or -1, tag id, asic pJ, I/O bytes) of an op."""
        if isinstance(op, PimOp):
            return (KIND_PIM, op.chmask, -1, _TAG_ID[op.tag], 0.0, 0)
        if isinstance(op, AsicOp):
            d, pj = self._asic(op)
            return (KIND_ASIC, 0, d, _TAG_ID[op.tag], pj, 0)
        return (KIND_IO, op.chmask, self._io_cycles(op), _TAG_ID[op.tag], 0.0, op.nbytes)

    def _graph(self, ops: tuple) -> _Graph:
        """The arrays the compiled dispatcher reads, updated from the previous step's.

        The compiler hands out the same op objects for the position-independent part of every
        step; only the ops that differ by identity are looked at again. A step whose ops differ
        in number, or whose dependencies differ, is built from scratch."""
        prev = self._last_graph
        if prev is not None and len(prev.ops) == len(ops):
            ids = _op_ids(ops)
            changed = np.flatnonzero(ids != prev.op_ids).tolist()
            if all(ops[i].deps == prev.ops[i].deps for i in changed):
                self._last_graph = prev.updated(ops, changed, self._op_info, ids)
                if len(self._memo):
                    self._memo[changed, M_STATE] = 0
                return self._last_graph
        self._last_graph = _Graph.build(ops, self._op_info)
        self._memo = self.engine.memo(len(ops)) if self.use_memo else _NO_MEMO
        return self._last_graph

    @property
    def memo_hits(self) -> int:
        """PIM ops so far whose timing the compiled dispatcher took from its op memo."""
        return int(self.engine.g[G_MEMO_HITS])

    def _time_compiled(self, program: Program, t0: int):
        ops = program.ops
        n = len(ops)
        eng = self.engine
        gr = self._graph(ops)
        prog = gr.instructions
        self.last_pim_instructions = prog  # the PIM part back to back, for a caller that times it alone
        kind, chmask, dur = gr.kind, gr.chmask, gr.dur
        dep_ptr, dep_idx, succ_ptr, succ_idx, lo, hi = gr.dep_ptr, gr.dep_idx, gr.succ_ptr, gr.succ_idx, gr.lo, gr.hi
        asic_pj, io_bytes = gr.asic_pj, gr.io_bytes
        start = np.full(n, -1, np.int64)
        finish = np.full(n, -1, np.int64)
        pred = np.full(n, -1, np.int64)
        refpart = np.zeros(n, np.int64)
        acc = np.zeros(4, np.int64)
        err = np.zeros(2, np.int64)
        runbuf = np.empty_like(eng._runbuf)
        ucounts = np.empty_like(eng._ucounts)
        now = D.dispatch(kind, chmask, dur, lo, hi, dep_ptr, dep_idx, succ_ptr, succ_idx, self.mode == "serial", t0,
                         self._nrfc, self.n_channels, prog,
                         eng.par, eng.tab, eng.rows, eng.win, eng.last, eng.chs, eng.orow, eng.counts, eng.ring, eng.g,
                         _NO_REC, runbuf, ucounts, _NO_STAT, eng._opcnt, _NO_STAT, eng.qring, _NO_LINES, eng._ls,
                         self._memo, start, finish, pred, refpart, acc, err)
        if err[0] == D.ERR_ORDER:
            i = int(err[1])
            raise ValueError(f"op {i} ({ops[i].name}) depends on a later op")
        if err[0] == D.ERR_STUCK:
            stuck = [o.name for o, s in zip(ops, start) if s < 0][:3]
            raise ValueError(f"program {program.model}@{program.position}: no op can start; "
                             f"waiting on dependencies: {stuck}")
        if err[0] == D.ERR_FRONT:
            ch = int(acc[3])
            raise ValueError(f"op {int(err[1])}: start cycle {now} is earlier than channel {ch}'s front end")
        return start, finish, pred, refpart, int(acc[0]), int(acc[1]), int(acc[2]), io_bytes, asic_pj, gr.tags

    def _time_simpy(self, program: Program, t0: int):
        """The reference dispatcher: one SimPy process, one timeout event per op."""
        ops = program.ops
        n = len(ops)
        env, eng = self.env, self.engine
        if int(env.now) != t0:
            env = self.env = simpy.Environment(initial_time=t0)
        start = np.full(n, -1, np.int64)
        finish = np.full(n, -1, np.int64)
        pred = np.full(n, -1, np.int64)
        refresh_part = np.zeros(n, np.int64)
        kinds = np.empty(n, np.int8)
        succ: list[list[int]] = [[] for _ in range(n)]
        waiting = np.zeros(n, np.int64)
        for op in ops:
            kinds[op.id] = KIND_PIM if isinstance(op, PimOp) else KIND_ASIC if isinstance(op, AsicOp) else KIND_IO
            waiting[op.id] = len(op.deps)
            for d in op.deps:
                succ[d].append(op.id)
        acc = {"hits": 0, "misses": 0, "refreshes": 0, "io_bytes": 0, "asic_pj": 0.0}
        serial = self.mode == "serial"
        all_mask = (1 << self.n_channels) - 1
        state = {"busy_ch": 0, "busy_link": 0, "asic": False, "host": False, "running": 0, "done": 0,
                 "last_ch": [-1] * self.n_channels, "last_link": [-1] * self.n_channels, "last_asic": -1,
                 "last_host": -1, "last": -1}
        ready_pim: list[int] = []
        ready_asic: list[int] = []
        ready_io: list[int] = []
        queues = {KIND_PIM: ready_pim, KIND_ASIC: ready_asic, KIND_IO: ready_io}
        wake = [env.event()]

        def make_ready(i: int) -> None:
            heapq.heappush(queues[kinds[i]], i)

        def release_pred(i: int, now: int) -> int:
            """The op whose completion let op i start at `now` (a dependency or a component's last holder)."""
            op = ops[i]
            cands = list(op.deps)
            k = kinds[i]
            if serial:
                cands.append(state["last"])
            elif k == KIND_PIM:
                cands += [state["last_ch"][c] for c in range(self.n_channels) if op.chmask >> c & 1]
            elif k == KIND_ASIC:
                cands.append(state["last_asic"])
            else:
                cands += ([state["last_host"]] if op.chmask == 0 else
                          [state["last_link"][c] for c in range(self.n_channels) if op.chmask >> c & 1])
            best, best_t = -1, -1
            for c in cands:
                if c >= 0 and finish[c] <= now and finish[c] > best_t:
                    best, best_t = c, finish[c]
            return best

        def complete(i: int):
            op = ops[i]
            k = kinds[i]
            if k == KIND_PIM:
                state["busy_ch"] &= ~op.chmask
                for c in range(self.n_channels):
                    if op.chmask >> c & 1:
                        state["last_ch"][c] = i
            elif k == KIND_ASIC:
                state["asic"] = False
                state["last_asic"] = i
            else:
                if op.chmask == 0:
                    state["host"] = False
                    state["last_host"] = i
                else:
                    state["busy_link"] &= ~op.chmask
                    for c in range(self.n_channels):
                        if op.chmask >> c & 1:
                            state["last_link"][c] = i
            state["last"] = i
            state["running"] -= 1
            state["done"] += 1
            for s in succ[i]:
                waiting[s] -= 1
                if waiting[s] == 0 and not serial:
                    make_ready(s)
            if not wake[0].triggered:
                wake[0].succeed()

        def launch(i: int, now: int) -> None:
            op = ops[i]
            k = kinds[i]
            pred[i] = release_pred(i, now)
            start[i] = now
            if k == KIND_PIM:
                state["busy_ch"] |= op.chmask
                res = eng.run(op.instructions, start_cycle=now, close_rows=False, validate=False, op_stats=False)
                dur = res.finish_cycle - now
                acc["hits"] += int(res.row_hits.sum())
                acc["misses"] += int(res.row_misses.sum())
                nref = res.refreshes
                acc["refreshes"] += int(nref.sum())
                refresh_part[i] = min(dur, int(nref.max()) * self._nrfc)
            elif k == KIND_ASIC:
                state["asic"] = True
                dur, pj = self._asic(op)
                acc["asic_pj"] += pj
            else:
                if op.chmask == 0:
                    state["host"] = True
                else:
                    state["busy_link"] |= op.chmask
                dur = self._io_cycles(op)
                acc["io_bytes"] += op.nbytes
            finish[i] = now + dur
            state["running"] += 1
            env.timeout(dur).callbacks.append(lambda _e, i=i: complete(i))

        def startable(i: int) -> bool:
            op = ops[i]
            k = kinds[i]
            if k == KIND_PIM:
                return state["busy_ch"] & op.chmask == 0
            if k == KIND_ASIC:
                return not state["asic"]
            if op.chmask == 0:
                return not state["host"]
            return state["busy_link"] & op.chmask == 0

        def dispatcher():
            nxt = 0  # serial mode: the next op in program order
            while state["done"] < n:
                now = int(env.now)
                if serial:
                    if state["running"] == 0 and nxt < n:
                        if waiting[nxt] != 0:
                            raise ValueError(f"op {nxt} ({ops[nxt].name}) depends on a later op")
                        launch(nxt, now)
                        nxt += 1
                else:
                    # ASIC and I/O ops: the earliest ready one, when its component is free
                    for q in (ready_asic, ready_io):
                        held = []
                        while q:
                            i = heapq.heappop(q)
                            if startable(i):
                                launch(i, now)
                            else:
                                held.append(i)
                            if q is ready_asic and state["asic"]:
                                break
                        for i in held:
                            heapq.heappush(q, i)
                    # PIM ops: in program order among the ready ones whose channels are free
                    held = []
                    while ready_pim and state["busy_ch"] != all_mask:
                        i = heapq.heappop(ready_pim)
                        if startable(i):
                            launch(i, now)
                        else:
                            held.append(i)
                    for i in held:
                        heapq.heappush(ready_pim, i)
                if state["done"] >= n:
                    break
                if state["running"] == 0:
                    stuck = [o.name for o in ops if waiting[o.id] > 0][:3]
                    raise ValueError(f"program {program.model}@{program.position}: no op can start; "
                                     f"waiting on dependencies: {stuck}")
                wake[0] = env.event()
                yield wake[0]

        for i in range(n):
            if waiting[i] == 0 and not serial:
                make_ready(i)
        env.process(dispatcher())
        env.run()
        t1 = int(finish.max()) if n else t0
        if int(env.now) < t1:
            env.run(until=t1)
        tags = np.array([_TAG_ID[op.tag] for op in ops], np.int64)
        self.last_pim_instructions = program.pim_instructions()
        asic_pj = math.fsum(self._asic(op)[1] for op in ops if isinstance(op, AsicOp))
        return (start, finish, pred, refresh_part, acc["hits"], acc["misses"], acc["refreshes"],
                acc["io_bytes"], asic_pj, tags)

    def _result(self, program, t0, active0, start, finish, pred, refresh_part, counts, hits, misses, refreshes,
                io_bytes, asic_pj, tags) -> StepResult:
        n = len(start)
        t1 = int(finish.max()) if n else t0
        self.now = t1
        # critical path: from the op that finishes last back through the ops that released each
        critical, cyc, seen = D.critical_path(start, finish, pred, refresh_part, t0, tags, len(TAGS))
        names = TAGS + ("refresh", "idle")
        by_tag = {names[k]: int(cyc[k]) for k in np.flatnonzero(seen)}
        duration = t1 - t0
        active = self.engine.active_cycles(t1) - active0
        act = np.minimum(active, duration)
        energy = self.energy.breakdown(command_counts=counts, active_cycles=act, precharged_cycles=duration - act,
                                       link_bytes=io_bytes, asic_ops=(), duration_cycles=duration,
                                       asic_dynamic_pj=asic_pj)
        return StepResult(position=program.position, start_cycle=t0, finish_cycle=t1, tck_ns=self.tck_ns,
                          latency_cycles_by_tag=by_tag, energy_j=energy, command_counts=counts.sum(axis=0),
                          command_counts_per_channel=counts, row_hits=hits, row_misses=misses,
                          refreshes=refreshes, io_bytes=io_bytes, n_ops=n, op_start=start,
                          op_finish=finish, critical=critical)

