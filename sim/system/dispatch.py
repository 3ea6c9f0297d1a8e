"""The system model's dispatcher compiled: the same discrete-event algorithm as the SimPy model
(`SystemModel.run_step_simpy`), with its event queue and ready queues in arrays and every PIM op
timed by a direct call of the engine's compiled core.

Why a second implementation: one decode step of GPT2-XL is 4,620 ops, and the SimPy dispatcher
spends ~60 us of Python per op around a ~10 us engine call; 1024 tokens then take minutes. This
loop does the same decisions in the same order (completions at one cycle are taken in launch
order before the next dispatch round, as SimPy's event ids order them), so it gives the same
start and finish cycle of every op, the same releasing op and the same row hits; tests compare the
two on real decode steps in both modes.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from sim.engine import (
    ERR_START_BEFORE_FRONT, G_ERR, G_ERRV, G_KEEP, G_MEMO, G_RECCAP, G_RECN, G_RECON, G_RUN_FINISH, U_HITS, U_MISSES, U_REFS,
    _run,
)

KIND_PIM, KIND_ASIC, KIND_IO = 0, 1, 2
# err[0] codes
ERR_NONE, ERR_FRONT, ERR_STUCK, ERR_ORDER = 0, 1, 2, 3


@njit(cache=True)
def _hpush(h, n, key):
    """Push `key` on the min-heap h[:n]; the new size."""
    i = n
    h[i] = key
    while i > 0:
        p = (i - 1) >> 1
        if h[p] <= h[i]:
            break
        h[p], h[i] = h[i], h[p]
        i = p
    return n + 1


@njit(cache=True)
def _hpop(h, n):
    """Pop the smallest of h[:n] into h[n - 1] (read it there); the new size."""
    n -= 1
    h[0], h[n] = h[n], h[0]
    i = 0
    while True:
        a = 2 * i + 1
        if a >= n:
            break
        b = a + 1
        c = b if b < n and h[b] < h[a] else a
        if h[i] <= h[c]:
            break
        h[i], h[c] = h[c], h[i]
        i = c
    return n


@njit(cache=True, nogil=True)
def dispatch(kind, chmask, dur, lo, hi, dep_ptr, dep_idx, succ_ptr, succ_idx, serial, t0, nrfc,
             n_channels, prog,
             par, tab, rows, win, last, chs, orow, counts, ring, g, rec, runbuf, ucounts, opstat, opcnt,
             istat, qring, hostl, ls, memo,
             start, finish, pred, refpart, acc, err):
    """Time one Program's ops from cycle t0 (see the module docstring); fills start, finish,
    pred (the op that released each), refpart (refresh cycles inside a PIM op), acc = (row hits,
    row misses, refreshes); err = (code, op). Command counts are the caller's: the growth of the
    engine's totals over the step.

    The engine's lock-step groups stay standing from one PIM op to the next (G_KEEP) and are
    dissolved once at the end, also after an error: the engine's state is every channel's own
    whenever this returns. `memo` (Engine.memo, a row per op; no rows: off) keeps each op's
    timing for the next step to reuse where its starting state repeats (sim/engine.py)."""
    g[G_KEEP] = 1
    now = _dispatch(kind, chmask, dur, lo, hi, dep_ptr, dep_idx, succ_ptr, succ_idx, serial, t0, nrfc, n_channels,
                    prog, par, tab, rows, win, last, chs, orow, counts, ring, g, rec, runbuf, ucounts, opstat, opcnt,
                    istat, qring, hostl, ls, memo, start, finish, pred, refpart, acc, err)
    g[G_KEEP] = 0
    g[G_RECON] = 0
    g[G_MEMO] = -1
    # the engine's scalars as typed values, not constants: a literal 0 or False would make numba
    # compile _run once more for that call site (minutes each)
    _run(par, tab, rows, win, last, chs, orow, counts, ring, g, rec, prog[0:0], runbuf, ucounts, opstat, opcnt, istat,
         n_channels, np.int64(0), np.bool_(False), np.int64(0), qring, hostl, ls, memo)
    return now


@njit(cache=True, nogil=True)
def _dispatch(kind, chmask, dur, lo, hi, dep_ptr, dep_idx, succ_ptr, succ_idx, serial, t0, nrfc,
              n_channels, prog,
              par, tab, rows, win, last, chs, orow, counts, ring, g, rec, runbuf, ucounts, opstat, opcnt,
              istat, qring, hostl, ls, memo,
              start, finish, pred, refpart, acc, err):
    n = kind.shape[0]
    all_mask = (1 << n_channels) - 1
    waiting = np.empty(n, np.int64)
    for i in range(n):
        waiting[i] = dep_ptr[i + 1] - dep_ptr[i]
    # ready queues: min-heaps of op ids per kind; events: min-heap of (finish << 32 | seq)
    # packed keys would overflow for long timelines, so events use two parallel heaps of
    # (finish, seq) encoded as finish * n_slots + seq with seq < n_slots = n + 1
    rq = np.empty((3, n + 1), np.int64)
    rn = np.zeros(3, np.int64)
    slots = n + 1
    ev = np.empty(n + 1, np.int64)
    ev_op = np.empty(n + 1, np.int64)  # by seq
    nev = 0
    seq = 0
    held = np.empty(n + 1, np.int64)
    last_ch = np.full(n_channels, -1, np.int64)
    last_link = np.full(n_channels, -1, np.int64)
    last_asic = -1
    last_host = -1
    last_any = -1
    busy_ch = 0
    busy_link = 0
    asic_busy = False
    host_busy = False
    running = 0
    done = 0
    nxt = 0
    err[0] = ERR_NONE
    err[1] = -1
    if not serial:
        for i in range(n):
            if waiting[i] == 0:
                rn[kind[i]] = _hpush(rq[kind[i]], rn[kind[i]], i)
    now = t0
    while done < n:
        # ---- one dispatch round at `now`
        k_launch = 0
        cand_n = 0
        if serial:
            if running == 0 and nxt < n:
                if waiting[nxt] != 0:
                    err[0] = ERR_ORDER
                    err[1] = nxt
                    return now
                held[0] = nxt
                cand_n = 1
                nxt += 1
        else:
            # ASIC: the earliest ready op when the vector unit is free
            if rn[KIND_ASIC] > 0 and not asic_busy:
                rn[KIND_ASIC] = _hpop(rq[KIND_ASIC], rn[KIND_ASIC])
                held[0] = rq[KIND_ASIC, rn[KIND_ASIC]]
                cand_n = 1
        # launches: candidates in held[:cand_n] first (ASIC / serial), then I/O, then PIM
        for stage in range(3):
            if stage == 1:
                if serial:
                    break
                # I/O: every ready op whose links are free, in op order
                m = 0
                while rn[KIND_IO] > 0:
                    rn[KIND_IO] = _hpop(rq[KIND_IO], rn[KIND_IO])
                    held[m] = rq[KIND_IO, rn[KIND_IO]]
                    m += 1
                cand_n = m
            elif stage == 2:
                # PIM: in op order among the ready ones whose channels are free
                m = 0
                while rn[KIND_PIM] > 0 and busy_ch != all_mask:
                    rn[KIND_PIM] = _hpop(rq[KIND_PIM], rn[KIND_PIM])
                    held[m] = rq[KIND_PIM, rn[KIND_PIM]]
                    m += 1
                cand_n = m
            for c in range(cand_n):
                i = held[c]
                k = kind[i]
                msk = chmask[i]
                if not serial:
                    ok = True
                    if k == KIND_PIM:
                        ok = busy_ch & msk == 0
                    elif k == KIND_IO:
                        ok = (not host_busy) if msk == 0 else busy_link & msk == 0
                    if not ok:  # back on its queue
                        rn[k] = _hpush(rq[k], rn[k], i)
                        continue
                # the op whose completion let i start now: a dependency or a component's holder
                best = -1
                best_t = -1
                for q in range(dep_ptr[i], dep_ptr[i + 1] + n_channels + 1):
                    if q < dep_ptr[i + 1]:
                        cnd = dep_idx[q]
                    else:
                        j = q - dep_ptr[i + 1]  # 0 .. n_channels
                        if serial:
                            if j > 0:
                                break
                            cnd = last_any
                        elif k == KIND_PIM:
                            if j == n_channels:
                                break
                            if (msk >> j) & 1 == 0:
                                continue
                            cnd = last_ch[j]
                        elif k == KIND_ASIC:
                            if j > 0:
                                break
                            cnd = last_asic
                        elif msk == 0:
                            if j > 0:
                                break
                            cnd = last_host
                        else:
                            if j == n_channels:
                                break
                            if (msk >> j) & 1 == 0:
                                continue
                            cnd = last_link[j]
                    if cnd >= 0 and finish[cnd] <= now and finish[cnd] > best_t:
                        best = cnd
                        best_t = finish[cnd]
                pred[i] = best
                start[i] = now
                if k == KIND_PIM:
                    busy_ch |= msk
                    g[G_ERR] = 0
                    g[G_RECN] = 0
                    g[G_RECON] = 0
                    g[G_RECCAP] = 0
                    g[G_MEMO] = i  # op i's memo row (a memo of no rows: none)
                    _run(par, tab, rows, win, last, chs, orow, counts, ring, g, rec, prog[lo[i]:hi[i]], runbuf,
                         ucounts, opstat, opcnt, istat, n_channels, now, np.bool_(False), np.int64(0), qring, hostl,
                         ls, memo)
                    if g[G_ERR] == ERR_START_BEFORE_FRONT:
                        err[0] = ERR_FRONT
                        err[1] = i
                        acc[3] = g[G_ERRV]
                        return now
                    d = g[G_RUN_FINISH] - now
                    mref = 0
                    for ch in range(n_channels):
                        acc[0] += runbuf[ch, U_HITS]
                        acc[1] += runbuf[ch, U_MISSES]
                        acc[2] += runbuf[ch, U_REFS]
                        if runbuf[ch, U_REFS] > mref:
                            mref = runbuf[ch, U_REFS]
                    refpart[i] = min(d, mref * nrfc)
                elif k == KIND_ASIC:
                    asic_busy = True
                    d = dur[i]
                else:
                    if msk == 0:
                        host_busy = True
                    else:
                        busy_link |= msk
                    d = dur[i]
                finish[i] = now + d
                running += 1
                ev_op[seq] = i
                nev = _hpush(ev, nev, (now + d) * slots + seq)
                seq += 1
                k_launch += 1
        if done >= n:
            break
        if running == 0:
            err[0] = ERR_STUCK
            err[1] = -1
            return now
        # ---- advance to the next completion cycle; complete every op finishing then, in launch order
        t_next = ev[0] // slots
        now = t_next
        while nev > 0 and ev[0] // slots == t_next:
            nev = _hpop(ev, nev)
            i = ev_op[ev[nev] % slots]
            k = kind[i]
            msk = chmask[i]
            if k == KIND_PIM:
                busy_ch &= ~msk
                for ch in range(n_channels):
                    if (msk >> ch) & 1:
                        last_ch[ch] = i
            elif k == KIND_ASIC:
                asic_busy = False
                last_asic = i
            elif msk == 0:
                host_busy = False
                last_host = i
            else:
                busy_link &= ~msk
                for ch in range(n_channels):
                    if (msk >> ch) & 1:
                        last_link[ch] = i
            last_any = i
            running -= 1
            done += 1
            for q in range(succ_ptr[i], succ_ptr[i + 1]):
                s = succ_idx[q]
                waiting[s] -= 1
                if waiting[s] == 0 and not serial:
                    rn[kind[s]] = _hpush(rq[kind[s]], rn[kind[s]], s)
    return now


@njit(cache=True)
def critical_path(start, finish, pred, refpart, t0, tag, n_tags):
    """Walk back from the op that finishes last through the ops that released each: per tag the
    cycles charged (op time less its refresh part), then refresh and idle; the path's ops."""
    n = start.shape[0]
    crit = np.zeros(n, np.bool_)
    by_tag = np.zeros(n_tags + 2, np.int64)  # [..tags, refresh, idle]
    seen = np.zeros(n_tags + 2, np.bool_)
    if n == 0:
        return crit, by_tag, seen
    i = 0
    for j in range(n):
        if finish[j] > finish[i]:
            i = j
    while i >= 0:
        crit[i] = True
        d = finish[i] - start[i]
        r = refpart[i]
        by_tag[tag[i]] += d - r
        seen[tag[i]] = True
        if r:
            by_tag[n_tags] += r
            seen[n_tags] = True
        p = pred[i]
        gap = start[i] - (finish[p] if p >= 0 else t0)
        if gap:
            by_tag[n_tags + 1] += gap
            seen[n_tags + 1] = True
        i = p
    return crit, by_tag, seen
