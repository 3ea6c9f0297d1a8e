"""Event-free, cycle-exact DRAM/PIM command timing: in-order issue at the earliest legal cycle.

Per channel the controller takes instructions in program order, expands each into DRAM commands
(mode change, precharge, activate, the column command itself) and issues every command at the
earliest cycle that satisfies all constraint rows of the standard, the command bus and the front
end's release time. Time jumps from command to command; nothing ticks cycle by cycle.

State is kept per (channel, command) as "last issue cycle" in three granularities (bank, bank
group, channel), so the legality test of a command costs one read per constraint row.

The column-burst shortcut: after the first command of an n-command burst to an open row, only
rows whose earlier command is the burst's own command can bind (every other earlier command is
already satisfied by the first), so the k-th command issues exactly `self_gap` after the previous
one until a refresh falls due. `fast=False` disables it; tests show both agree to the cycle.

Lock step: channels that are in the same state and that every instruction of a run addresses
alike issue the same commands at the same cycles, so the run times one of them (the leader) and
gives the others its outcome. Channels remember which of them are in the same state (a class
label that a run keeps, splits or, after a state comparison, merges). The comparison treats two
last-issue cycles as equal when both lie further before the run's start than the largest
constraint, since neither can bind again. `lockstep=False` times every channel; tests show both
agree on every figure a run reports.

Op memo (the system dispatcher only, `memo` and G_MEMO): a decode step repeats most PIM ops of
the step before, instruction for instruction. A run of one standing lock-step group whose rows
are closed stores, relative to its start, the state that can still bind and what the run did;
a later run of the same block from an equal (clamped) state takes that outcome in O(state)
instead of timing its commands. Refresh is the only input outside the key: a run that refreshed
is never stored, and a stored outcome is used only if the next refresh falls due after its last
command. tests/test_op_memo.py compares it with timing every op, figures and state.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hw_configs.isa import (
    ALL_BANKS, F_BANK, F_CHMASK, F_CMD, F_COL, F_COUNT, F_FLAGS, F_OP, F_OPID, F_ROW, FLAG_BLOCKING, N_FIELDS,
    OP_BARRIER, OP_COLUMN, OP_NAMES, OP_PRECHARGE, OP_RAW, OP_SIMPLE, PSEUDO_ROW_BASE, SCHEDULE_DTYPE,
)
from sim.config import HardwareConfig
from sim.dram_spec import MODE_MEM, MODE_REG, CompiledStandard, compile_standard

NEVER = -(1 << 40)  # "issued long ago": any constraint from it is satisfied at cycle 0
NO_LIMIT = 1 << 62

# Flat layouts: numba increfs every array member of a tuple each time it is passed on, so the
# kernel takes a handful of plain arrays instead of records of many arrays.
# tab[cmd, :] per-command properties
T_ALL, T_OPEN, T_CLOSE, T_COL, T_MODE, T_DONE, T_R0, T_R1, T_GAP, T_BURST, T_HOSTRW, N_TAB = range(12)
# par[:] scalars
(P_GAP, P_ACT, P_ACT_ALL, P_PRE, P_PRE_ALL, P_REF, P_MODE_CMD, P_BPG, P_NB, P_NG, P_NREFI, P_REFRESH,
 P_FAST, P_NWIN, P_WMAX, P_MAX_OWED, P_FRONT, P_QCAP, P_LOCKSTEP, P_FLOOR, N_PAR) = range(21)
# chs[ch, :] per-channel state, cumulative over runs
(C_UNIFORM, C_NOPEN, C_MODE, C_LAST, C_FINISH, C_DUE, C_HITS, C_MISSES, C_FRONT, C_REFS, C_OPEN_SINCE,
 C_ACTIVE, C_QN, C_QKIND, C_CLASS, N_CHS) = range(16)
# C_CLASS: channels with the same value are in the same state (lock step: one is timed for all);
# the value is a member's index.
# run[ch, :] per-channel figures of one run
U_FINISH, U_HITS, U_MISSES, U_REFS, U_IDLE_REFS, U_FIRST, N_RUN = range(7)
# g[:] scalars of one call
(G_RECN, G_RECON, G_RUN_FINISH, G_START, G_ERR, G_ERRV, G_INSTR, G_OPID, G_IDONE, G_OWNER,
 G_RECCAP, G_NOPS, G_DECODE, G_KEEP, G_MEMO, G_MEMO_HITS, N_G) = range(17)
# G_KEEP: 1 = leave the lock-step groups standing at the end of the run (followers' counters
# are brought up to date, their state is not): a caller timing many runs in a row (the system
# dispatcher) saves dissolving and re-forming the groups per run, and ends with a run of no
# instructions and G_KEEP = 0, which dissolves them (every channel's state its own again)
# G_MEMO: the memo row of this run (-1: none; see `memo_layout`); G_MEMO_HITS counts the runs
# served from it
# ls[ch, :] lock-step scratch of one call, kept by the caller: the groups (leader, followers,
# the leader's last-command cycle when a follower joined), and per leader the counters as they
# stood when its group last changed (its followers take the growth since, at the next change)
(LS_LEAD, LS_NFOL, LS_JOIN, LS_FIN, LS_FIRST, LS_HITS, LS_MISSES, LS_REFS, LS_UHITS, LS_UMISSES, LS_UREFS,
 LS_UIDLE, LS_FOL) = range(13)
# then fol[n_channels], counts base[n_cmd], run counts base[n_cmd], and per command its last
# channel-wide issue cycle (a command issued since the group last changed moved it: the cells a
# follower must copy); row n_channels: the refresh restore rows (nb); row n_channels + 1: per
# class its lowest untouched member


def lockstep_scratch(n_channels: int, n_cmd: int, n_banks: int) -> np.ndarray:
    """No groups: every channel its own leader."""
    ls = np.zeros((n_channels + 2, max(LS_FOL + n_channels + 3 * n_cmd, n_banks, n_channels)), np.int64)
    ls[:n_channels, LS_LEAD] = np.arange(n_channels)
    return ls


# Op memo (the system dispatcher times the same instruction block, an op of the position-
# independent part of the program, once per decode step): a run of one standing lock-step group
# (every channel of the run follows one leader) with all rows closed records, relative to its
# start, the leader's state where it can still bind (the key: mode, last command, finish,
# last-issue cycles and activation windows clamped at the floor) and what the run did (cycles
# it moved, counters it grew, the state it left). A later run of that block whose key is equal
# takes the outcome instead of being timed: exact, because the core is deterministic in that
# state, provided no refresh falls due before the memo's last command (a run that refreshed is
# never stored, and refresh is the only other input). memo[row, :]:
(M_STATE, M_MODE, M_LASTC, M_FIN, M_LAST0, O_LAST, O_FIN, O_FIRST, O_FRONT, O_UNIFORM, O_NOPEN, O_MODE, O_OPEN,
 O_ACTIVE, O_HITS, O_MISSES, M_FIXED) = range(17)
# M_MODE .. M_FIN and the key cells are compared; M_LAST0 (the raw last-command cycle before
# the run) tells moved cells from kept ones; O_* are the outcome, relative to the start


@njit(cache=True)
def memo_layout(n_cmd, n_cells, n_ring, n_banks):
    """Offsets in a memo row: key cells, key windows, then outcome counts, run counts, open
    rows, cells, windows; and the row width."""
    k_cells = M_FIXED
    k_ring = k_cells + n_cmd * n_cells
    o_cnt = k_ring + n_ring
    o_ucnt = o_cnt + n_cmd
    o_orow = o_ucnt + n_cmd
    o_cells = o_orow + n_banks
    o_ring = o_cells + n_cmd * n_cells
    return k_cells, k_ring, o_cnt, o_ucnt, o_orow, o_cells, o_ring, o_ring + n_ring


# rec[i, :] one recorded command
R_CMD, R_CH, R_BANK, R_ROW, R_COL, R_CYCLE, R_RELEASE, R_INSTR, R_OPID, N_REC = range(10)
# rows[k, :] constraint rows in CSR order of the later command; win[w, :] windows
ROW_AFTER, ROW_SCOPE, ROW_CYCLES = range(3)
W_SIZE, W_CYCLES = range(2)  # then n_cmd membership flags, then n_cmd "applies" flags
OWNER_PROGRAM, OWNER_REFRESH, OWNER_IDLE = 0, 1, 2
# JEDEC: at most 8 all-bank refreshes may be postponed; the controller refreshes at the bound.
MAX_POSTPONED_REFRESHES = 8
ERR_START_BEFORE_FRONT, ERR_NEED_OPS = 1, 2

# Front ends. "pim-gpt": the ASIC issues to every channel in parallel; an instruction is released
# to its channels at once (held back only by blocking reads and barriers of those channels).
# "aim": the trace front end of the public AiM simulator (arkhadem/aim_simulator,
# src/memory_system/impl/aim_DRAM_system.cpp): one trace line decoded per cycle into a bounded
# in-order request buffer per channel (see `Engine` for the rules).
FRONT_ENDS = {"pim-gpt": 0, "aim": 1}
# AiM request buffer of a channel: ReqBuffer.max_size = 32 (src/dram_controller/controller.h),
# and enqueue accepts while size <= max_size, so 33 requests fit.
AIM_QUEUE_ENTRIES = 33
QK_AIM, QK_HOST_RW = 1, 2  # request kinds: AiM buffer vs read/write buffers (exclusive there)


# --------------------------------------------------------------------------- compiled core
# One compiled function with inner closures: numba inlines closures and they read the captured
# arrays without the reference counting that passing ~10 arrays per call costs (measured: 1 ns
# against 30-60 ns per command), which is the difference between 5 and 100 M commands/s.


@njit(cache=True, nogil=True)
def _run(par, tab, rows, win, last, chs, orow, counts, ring, g, rec, prog, run, ucounts, opstat, opcnt,
         istat, n_channels, start, close_rows, touch, qring, hostl, ls, memo):
    nb = par[P_NB]
    bpg = par[P_BPG]
    i_all = nb + par[P_NG]
    i_chan = i_all + 1
    issue_gap = par[P_GAP]
    n_cmd = tab.shape[0]
    n_win = par[P_NWIN]
    wmax = par[P_WMAX]
    refresh_on = par[P_REFRESH] != 0
    fast = par[P_FAST] != 0
    c_act, c_act_all, c_pre, c_pre_all = par[P_ACT], par[P_ACT_ALL], par[P_PRE], par[P_PRE_ALL]
    c_ref, c_mode = par[P_REF], par[P_MODE_CMD]
    nrefi = par[P_NREFI]
    max_owed = par[P_MAX_OWED]
    want_instr = istat.shape[0] > 0
    want_ops = opstat.shape[0] > 0 and opcnt.shape[0] > 0
    nch = n_channels
    keep = ls[nch, :nb]  # rows to re-open after a refresh inside a raw stream
    # aim front end: qring[ch, j % qr] = the cycle request j of the channel left its buffer (its
    # final command issued); qr = capacity + 1 keeps request j - capacity readable after j
    aim = par[P_FRONT] != 0
    qcap = par[P_QCAP]
    qr = qring.shape[1]
    have_hostl = hostl.shape[0] > 0
    # lock step: channels in the same state that every instruction treats alike are timed once
    # (their leader) and take the leader's outcome afterwards: state at the end of the run,
    # counters whenever the group changes; exact, because the core is deterministic and the
    # state comparison ignores only what can no longer bind
    lead = ls[:nch, LS_LEAD]  # lead[ch] == ch: timed; else the channel that is timed for it
    nfol = ls[:nch, LS_NFOL]  # per leader: its followers fol[leader, :nfol]
    fol = ls[:nch, LS_FOL:LS_FOL + nch]
    join_last = ls[:nch, LS_JOIN]  # per follower: its leader's C_LAST when it joined
    bcnt = ls[:nch, LS_FOL + nch:LS_FOL + nch + n_cmd]  # per leader: counts when its group changed
    bucnt = ls[:nch, LS_FOL + nch + n_cmd:LS_FOL + nch + 2 * n_cmd]  # and this run's counts
    blast = ls[:nch, LS_FOL + nch + 2 * n_cmd:LS_FOL + nch + 3 * n_cmd]  # and last[., ., i_chan]
    n_cells = last.shape[2]
    floor_dt = par[P_FLOOR]

    def earliest(ch, cmd, bank, release):
        """Earliest legal issue cycle of `cmd` (a bank or ALL_BANKS) on channel `ch`."""
        t = max(chs[ch, C_LAST] + issue_gap, release)
        all_target = tab[cmd, T_ALL] != 0
        grp = 0 if all_target else nb + bank // bpg
        for k in range(tab[cmd, T_R0], tab[cmd, T_R1]):
            a = rows[k, ROW_AFTER]
            sc = rows[k, ROW_SCOPE]
            if all_target or sc == 2:
                ta = last[ch, a, i_chan]
            elif sc == 0:
                ta = max(last[ch, a, bank], last[ch, a, i_all])
            else:
                ta = max(last[ch, a, grp], last[ch, a, i_all])
            v = ta + rows[k, ROW_CYCLES]
            if v > t:
                t = v
        for w in range(n_win):
            if win[w, 2 + n_cmd + cmd] != 0 and ring[ch, w, wmax + 1] >= win[w, W_SIZE]:
                v = ring[ch, w, ring[ch, w, wmax]] + win[w, W_CYCLES]
                if v > t:
                    t = v
        return t

    def set_rows(ch, bank, row, t):
        """Open (row >= 0) or close (-1) one bank or all, keeping the summaries exact."""
        was_open = chs[ch, C_NOPEN] > 0
        if bank == ALL_BANKS:
            for b in range(nb):
                orow[ch, b] = row
            n_open = nb if row >= 0 else 0
            uniform = row
        else:
            orow[ch, bank] = row
            first = orow[ch, 0]
            n_open = 0
            uniform = first
            for b in range(nb):
                r = orow[ch, b]
                if r >= 0:
                    n_open += 1
                if r != first:
                    uniform = -1
        chs[ch, C_NOPEN] = n_open
        chs[ch, C_UNIFORM] = uniform
        if n_open > 0 and not was_open:
            chs[ch, C_OPEN_SINCE] = t
        elif n_open == 0 and was_open:
            chs[ch, C_ACTIVE] += t - chs[ch, C_OPEN_SINCE]
        for j in range(nfol[ch]):  # followers open and close with their leader
            f = fol[ch, j]
            if n_open > 0 and not was_open:
                chs[f, C_OPEN_SINCE] = t
            elif n_open == 0 and was_open:
                chs[f, C_ACTIVE] += t - chs[f, C_OPEN_SINCE]

    def account(ch, cmd, t, d, n):
        """Counts and finish times of `n` commands `cmd`, the last one completing at `d`, on
        channel `ch` (its lock-step followers take them when the group changes: `flush`)."""
        owner = g[G_OWNER]
        counts[ch, cmd] += n
        if owner == OWNER_IDLE:
            return
        ucounts[ch, cmd] += n
        if owner == OWNER_REFRESH:
            return
        if d > chs[ch, C_FINISH]:
            chs[ch, C_FINISH] = d
        if d > run[ch, U_FINISH]:
            run[ch, U_FINISH] = d
        if run[ch, U_FIRST] < 0:
            run[ch, U_FIRST] = t
        if nfol[ch] > 0:
            if d > ls[ch, LS_FIN]:
                ls[ch, LS_FIN] = d
            if ls[ch, LS_FIRST] < 0:
                ls[ch, LS_FIRST] = t
        if d > g[G_RUN_FINISH]:
            g[G_RUN_FINISH] = d
        if d > g[G_IDONE]:
            g[G_IDONE] = d
        if want_ops:
            op = g[G_OPID]
            opcnt[op, cmd] += n * (nfol[ch] + 1)  # a lock-step leader counts for its followers
            if opstat[op, 0] < 0:
                opstat[op, 0] = t
            if d > opstat[op, 1]:
                opstat[op, 1] = d
        i = g[G_INSTR]
        if want_instr and i < istat.shape[0]:  # the closing precharge is past the last instruction
            if istat[i, 0] < 0:
                istat[i, 0] = t
            if d > istat[i, 1]:
                istat[i, 1] = d

    def record(ch, cmd, target, row, col, t, release):
        i = g[G_RECN]
        if i < g[G_RECCAP]:
            rec[i, R_CMD] = cmd
            rec[i, R_CH] = ch
            rec[i, R_BANK] = target
            rec[i, R_ROW] = row if (tab[cmd, T_OPEN] != 0 or tab[cmd, T_COL] != 0) else -1
            rec[i, R_COL] = col if tab[cmd, T_COL] != 0 else -1
            rec[i, R_CYCLE] = t
            rec[i, R_RELEASE] = release
            owner = g[G_OWNER]
            if owner == OWNER_PROGRAM:
                rec[i, R_INSTR] = g[G_INSTR]
                rec[i, R_OPID] = g[G_OPID]
            else:  # -1: refresh during the run; -2: refresh in the idle gap before it
                rec[i, R_INSTR] = -1 if owner == OWNER_REFRESH else -2
                rec[i, R_OPID] = -1
        g[G_RECN] = i + 1

    def issue(ch, cmd, bank, row, col, t, release):
        all_target = tab[cmd, T_ALL] != 0
        last[ch, cmd, i_chan] = t
        if all_target:
            last[ch, cmd, i_all] = t
        else:
            last[ch, cmd, bank] = t
            last[ch, cmd, nb + bank // bpg] = t
        for w in range(n_win):
            if win[w, 2 + cmd] != 0:
                p = ring[ch, w, wmax]
                ring[ch, w, p] = t
                ring[ch, w, wmax] = (p + 1) % win[w, W_SIZE]
                ring[ch, w, wmax + 1] += 1
        chs[ch, C_LAST] = t
        account(ch, cmd, t, t + tab[cmd, T_DONE], 1)
        if cmd == c_mode:  # a mode change toggles between memory and register mode
            chs[ch, C_MODE] = MODE_REG if chs[ch, C_MODE] == MODE_MEM else MODE_MEM
        elif cmd == c_ref:  # any refresh, the controller's or a raw one, meets the next obligation
            chs[ch, C_DUE] += nrefi
            chs[ch, C_REFS] += 1
            if g[G_OWNER] == OWNER_IDLE:
                run[ch, U_IDLE_REFS] += 1
            else:
                run[ch, U_REFS] += 1
        target = ALL_BANKS if all_target else bank
        if tab[cmd, T_OPEN] != 0:
            set_rows(ch, target, row, t)
        elif tab[cmd, T_CLOSE] != 0:
            set_rows(ch, target, -1, t)
        if g[G_RECON] != 0:
            record(ch, cmd, target, row, col, t, release)

    def do_refresh(ch, restore, owner):
        """PREA (when a row is open), REFab, and with `restore` re-open the rows that were open.

        One issue site in a loop over steps: numba inlines closures at every call site, and
        this keeps the compiled core small."""
        due = chs[ch, C_DUE]
        saved = g[G_OWNER]
        g[G_OWNER] = owner
        uniform = chs[ch, C_UNIFORM]
        was_open = chs[ch, C_NOPEN] > 0
        if restore and was_open:
            for b in range(nb):
                keep[b] = orow[ch, b]
        n_steps = 2 + (nb if restore and was_open else 0)
        for step in range(n_steps):
            cmd = c_ref
            bank = ALL_BANKS
            row = -1
            if step == 0:
                if chs[ch, C_NOPEN] == 0:
                    continue
                cmd = c_pre_all
            elif step >= 2:
                b = step - 2
                if uniform >= 0 and c_act_all >= 0:
                    if b > 0:
                        break
                    cmd = c_act_all
                    row = uniform
                else:
                    if keep[b] < 0:
                        continue
                    cmd = c_act
                    bank = b
                    row = keep[b]
            issue(ch, cmd, bank, row, -1, earliest(ch, cmd, bank, due), due)
        g[G_OWNER] = saved

    def owed(ch, t):
        """Refreshes due by cycle t and not yet issued."""
        due = chs[ch, C_DUE]
        return 0 if t < due else (t - due) // nrefi + 1

    def refresh_if_due(ch, t_next, t_limit):
        """Refresh when the next command would issue at or after the due cycle; True if it did.

        Once a refresh has delayed a command, only refreshes due by `t_limit` (the cycle the
        command was ready at when the first one was issued) go before it; one that falls due
        because of that delay waits until the command has issued (postponed, as JEDEC allows),
        unless MAX_POSTPONED_REFRESHES are already owed: then the controller refreshes anyway."""
        if not refresh_on or t_next < chs[ch, C_DUE]:
            return False
        if chs[ch, C_DUE] > t_limit and owed(ch, t_next) <= max_owed:
            return False
        do_refresh(ch, False, OWNER_REFRESH)
        return True

    def command(ch, cmd, bank, row, col, release):
        """Issue `cmd` after whatever it needs first (mode change, precharge, activate); its cycle."""
        needed_act = False
        is_col = tab[cmd, T_COL] != 0
        m = tab[cmd, T_MODE]
        t_limit = NO_LIMIT
        while True:
            nxt = cmd
            nbk = bank
            if m != 0 and chs[ch, C_MODE] != m:
                nxt = c_mode
                nbk = ALL_BANKS
            elif is_col:
                if tab[cmd, T_ALL] != 0:
                    if chs[ch, C_UNIFORM] != row:
                        nbk = ALL_BANKS
                        nxt = c_pre_all if chs[ch, C_NOPEN] > 0 else c_act_all
                else:
                    r = orow[ch, bank]
                    if r != row:
                        nxt = c_pre if r >= 0 else c_act
            t = earliest(ch, nxt, nbk, release)
            if refresh_if_due(ch, t, t_limit):
                t_limit = min(t_limit, t)
                continue
            issue(ch, nxt, nbk, row, col, t, release)
            if nxt == cmd:
                if is_col:
                    if needed_act:
                        chs[ch, C_MISSES] += 1
                        run[ch, U_MISSES] += 1
                    else:
                        chs[ch, C_HITS] += 1
                        run[ch, U_HITS] += 1
                return t
            if nxt == c_act or nxt == c_act_all:
                needed_act = True

    def burst(ch, cmd, bank, row, col, count, release):
        """`count` commands `cmd` at consecutive columns; the latest completion cycle.

        After each fully timed command, the commands that follow it one self-gap apart and
        before the next refresh falls due are issued in O(1): only the last one's issue cycle
        is state. A recorded run times them one by one."""
        k = 0
        t = 0
        # a recorded run times every command (the shortcut's own oracle, to the cycle)
        shortcut = fast and tab[cmd, T_BURST] != 0 and g[G_RECON] == 0
        gap = tab[cmd, T_GAP]
        is_col = tab[cmd, T_COL] != 0
        while k < count:
            t = command(ch, cmd, bank, row, col + k, release)
            k += 1
            if aim:  # one request leaves the buffer per command
                qn = chs[ch, C_QN]
                qring[ch, qn % qr] = t
                chs[ch, C_QN] = qn + 1
            if not shortcut or k >= count:
                continue
            n = count - k
            if refresh_on:
                room = (chs[ch, C_DUE] - 1 - t) // gap
                if room < n:
                    n = room
            if n <= 0:
                continue
            if aim:  # the last qr of the n requests one self-gap apart
                qn = chs[ch, C_QN]
                for m in range(max(0, n - qr), n):
                    qring[ch, (qn + m) % qr] = t + (m + 1) * gap
                chs[ch, C_QN] = qn + n
            t += n * gap
            all_target = tab[cmd, T_ALL] != 0
            last[ch, cmd, i_chan] = t
            if all_target:
                last[ch, cmd, i_all] = t
            else:
                last[ch, cmd, bank] = t
                last[ch, cmd, nb + bank // bpg] = t
            chs[ch, C_LAST] = t
            account(ch, cmd, t - (n - 1) * gap, t + tab[cmd, T_DONE], n)
            if is_col:
                chs[ch, C_HITS] += n
                run[ch, U_HITS] += n
            k += n
        return t + tab[cmd, T_DONE]

    def same_state(a, b, t_from):
        """Channels a and b time every later command alike: equal open rows, mode, refresh
        phase, front end and last command, and equal last-issue cycles wherever one could still
        bind. No later command issues before t0 (the bus spacing after the last command, and
        `t_from`), so an issue cycle more than the largest constraint before t0 binds nothing."""
        for k in (C_UNIFORM, C_NOPEN, C_MODE, C_DUE, C_FRONT):
            if chs[a, k] != chs[b, k]:
                return False
        t0 = max(t_from, min(chs[a, C_LAST], chs[b, C_LAST]) + issue_gap)
        if max(chs[a, C_LAST], t0 - issue_gap) != max(chs[b, C_LAST], t0 - issue_gap):
            return False
        for bk in range(nb):
            if orow[a, bk] != orow[b, bk]:
                return False
        lo = t0 - floor_dt
        for c in range(n_cmd):
            for k in range(last.shape[2]):
                if max(last[a, c, k], lo) != max(last[b, c, k], lo):
                    return False
        for w in range(n_win):
            if ring[a, w, wmax] != ring[b, w, wmax]:
                return False
            if min(ring[a, w, wmax + 1], win[w, W_SIZE]) != min(ring[b, w, wmax + 1], win[w, W_SIZE]):
                return False
            for k in range(wmax):
                if max(ring[a, w, k], lo) != max(ring[b, w, k], lo):
                    return False
        return True

    def rebase(r, cells):
        """Leader r's counters (and with `cells` its last-issue cycles) as they stand now: the
        starting point of what its followers take at the next flush."""
        for c in range(n_cmd):
            bcnt[r, c] = counts[r, c]
            bucnt[r, c] = ucounts[r, c]
        ls[r, LS_HITS] = chs[r, C_HITS]
        ls[r, LS_MISSES] = chs[r, C_MISSES]
        ls[r, LS_REFS] = chs[r, C_REFS]
        ls[r, LS_UHITS] = run[r, U_HITS]
        ls[r, LS_UMISSES] = run[r, U_MISSES]
        ls[r, LS_UREFS] = run[r, U_REFS]
        ls[r, LS_UIDLE] = run[r, U_IDLE_REFS]
        ls[r, LS_FIN] = NEVER
        ls[r, LS_FIRST] = -1
        if cells:
            for c in range(n_cmd):
                blast[r, c] = last[r, c, i_chan]

    def copy_cells(f, r):
        """Follower f takes the last-issue cycles of the commands r issued since its group last
        changed: every issue moves the channel-wide cell, and every later issue cycle is larger.
        (Every other cell f shares with r already, or both lie too far back to bind again.)"""
        for c in range(n_cmd):
            if last[r, c, i_chan] != blast[r, c]:
                for k in range(n_cells):
                    last[f, c, k] = last[r, c, k]

    def flush(r, cells):
        """Each follower of leader r takes what r counted since the last flush (it issued the
        same commands), and with `cells` (before the group changes) the last-issue cycles r
        moved since the group last changed; r starts counting afresh."""
        for j in range(nfol[r]):
            f = fol[r, j]
            for c in range(n_cmd):
                counts[f, c] += counts[r, c] - bcnt[r, c]
                ucounts[f, c] += ucounts[r, c] - bucnt[r, c]
            chs[f, C_HITS] += chs[r, C_HITS] - ls[r, LS_HITS]
            chs[f, C_MISSES] += chs[r, C_MISSES] - ls[r, LS_MISSES]
            chs[f, C_REFS] += chs[r, C_REFS] - ls[r, LS_REFS]
            run[f, U_HITS] += run[r, U_HITS] - ls[r, LS_UHITS]
            run[f, U_MISSES] += run[r, U_MISSES] - ls[r, LS_UMISSES]
            run[f, U_REFS] += run[r, U_REFS] - ls[r, LS_UREFS]
            run[f, U_IDLE_REFS] += run[r, U_IDLE_REFS] - ls[r, LS_UIDLE]
            if ls[r, LS_FIN] > chs[f, C_FINISH]:
                chs[f, C_FINISH] = ls[r, LS_FIN]
            if ls[r, LS_FIN] > run[f, U_FINISH]:
                run[f, U_FINISH] = ls[r, LS_FIN]
            if ls[r, LS_FIRST] >= 0 and run[f, U_FIRST] < 0:
                run[f, U_FIRST] = ls[r, LS_FIRST]
            if cells:
                copy_cells(f, r)
        rebase(r, cells)

    def adopt(f, r):
        """Follower f takes the state it shares with its leader r, right after `flush(r)` (its
        counters are its own; its last-command cycle only if r issued since f joined)."""
        for b in range(nb):
            orow[f, b] = orow[r, b]
        for w in range(ring.shape[1]):
            for k in range(ring.shape[2]):
                ring[f, w, k] = ring[r, w, k]
        for k in (C_UNIFORM, C_NOPEN, C_MODE, C_DUE, C_FRONT, C_QN, C_QKIND):
            chs[f, k] = chs[r, k]
        if chs[r, C_LAST] != join_last[f]:
            chs[f, C_LAST] = chs[r, C_LAST]

    def dissolve(r):
        """Leader r's followers take its state (it becomes their own) and leave its group."""
        flush(r, True)
        for j in range(nfol[r]):
            f = fol[r, j]
            adopt(f, r)
            lead[f] = f
        nfol[r] = 0

    def regroup(mask, every_ok, t_from):
        """Before an instruction for `mask`: dissolve the groups it splits (followers take their
        leader's state), then let leaders in `mask` whose states are equal join one group
        (only channels in `every_ok` when the classes of the previous run are trusted)."""
        for r in range(n_channels):
            if nfol[r] == 0:
                continue
            inside = (mask >> r) & 1
            split = False
            for j in range(nfol[r]):
                if (mask >> fol[r, j]) & 1 != inside:
                    split = True
            if split:
                dissolve(r)
        for ch in range(n_channels):
            if (mask >> ch) & 1 == 0 or lead[ch] != ch:
                continue
            for c2 in range(ch):
                if (mask >> c2) & 1 and lead[c2] == c2 and (
                        ((every_ok >> ch) & 1 and (every_ok >> c2) & 1 and chs[c2, C_CLASS] == chs[ch, C_CLASS])
                        or same_state(c2, ch, t_from)):
                    # ch and its followers join c2's group; a follower keeps the last-command
                    # cycle ch gave it, the rest of ch's state is c2's by equivalence
                    flush(c2, True)
                    flush(ch, True)
                    for j in range(nfol[ch] + 1):
                        f = ch if j == 0 else fol[ch, j - 1]
                        if j > 0 and chs[ch, C_LAST] != join_last[f]:
                            chs[f, C_LAST] = chs[ch, C_LAST]
                        lead[f] = c2
                        fol[c2, nfol[c2]] = f
                        nfol[c2] += 1
                        join_last[f] = chs[c2, C_LAST]
                    nfol[ch] = 0
                    break

    def close_all(ch, release):
        """Precharge every open row; the cycle the precharge completes (release if none was open)."""
        done = release
        t_limit = NO_LIMIT
        while chs[ch, C_NOPEN] > 0:
            t = earliest(ch, c_pre_all, ALL_BANKS, release)
            if refresh_if_due(ch, t, t_limit):
                t_limit = min(t_limit, t)
                continue
            issue(ch, c_pre_all, ALL_BANKS, -1, -1, t, release)
            done = t + tab[c_pre_all, T_DONE]
        return done

    n_ring = ring.shape[1] * ring.shape[2]
    k_cells, k_ring, o_cnt, o_ucnt, o_orow, o_cells, o_ring, _w = memo_layout(n_cmd, n_cells, n_ring, nb)
    rw = ring.shape[2]

    def memo_key(r, t0, m):
        """Row m: leader r's key at the run's start t0, and the bases its outcome is measured from."""
        lo = t0 - floor_dt
        memo[m, M_MODE] = chs[r, C_MODE]
        memo[m, M_LASTC] = max(chs[r, C_LAST], t0 - issue_gap) - t0  # issue_gap after it: t0 at most
        memo[m, M_FIN] = max(chs[r, C_FINISH], t0) - t0  # a barrier's release is t0 at least
        memo[m, M_LAST0] = chs[r, C_LAST]
        for c in range(n_cmd):
            for k in range(n_cells):
                memo[m, k_cells + c * n_cells + k] = max(last[r, c, k], lo) - t0
        for w in range(ring.shape[1]):
            for k in range(rw):
                v = ring[r, w, k]
                if k < wmax:
                    v = max(v, lo) - t0
                elif k == wmax + 1:
                    v = min(v, win[w, W_SIZE])
                    memo[m, o_ring + w * rw + k] = -ring[r, w, k]
                memo[m, k_ring + w * rw + k] = v
        memo[m, O_ACTIVE] = -chs[r, C_ACTIVE]
        memo[m, O_HITS] = -chs[r, C_HITS]
        memo[m, O_MISSES] = -chs[r, C_MISSES]
        for c in range(n_cmd):
            memo[m, o_cnt + c] = -counts[r, c]
            memo[m, o_ucnt + c] = -ucounts[r, c]

    def memo_match(s, m):
        for k in range(M_MODE, M_LAST0):
            if memo[s, k] != memo[m, k]:
                return False
        for k in range(k_cells, o_cnt):
            if memo[s, k] != memo[m, k]:
                return False
        return True

    def memo_outcome(r, t0, m):
        """Row m (its key taken by memo_key): what the run from t0 did to leader r."""
        c0 = memo[m, M_LAST0]  # every cycle the run wrote is later; every other is not
        memo[m, O_LAST] = chs[r, C_LAST] - t0
        memo[m, O_FIN] = run[r, U_FINISH] - t0
        memo[m, O_FIRST] = run[r, U_FIRST] - t0
        memo[m, O_FRONT] = chs[r, C_FRONT] - t0
        memo[m, O_UNIFORM] = chs[r, C_UNIFORM]
        memo[m, O_NOPEN] = chs[r, C_NOPEN]
        memo[m, O_MODE] = chs[r, C_MODE]
        v = chs[r, C_OPEN_SINCE]  # set by the run's last activate, if any
        memo[m, O_OPEN] = v - t0 if v > c0 else NEVER
        memo[m, O_ACTIVE] += chs[r, C_ACTIVE]
        memo[m, O_HITS] += chs[r, C_HITS]
        memo[m, O_MISSES] += chs[r, C_MISSES]
        for c in range(n_cmd):
            memo[m, o_cnt + c] += counts[r, c]
            memo[m, o_ucnt + c] += ucounts[r, c]
            for k in range(n_cells):
                v = last[r, c, k]
                memo[m, o_cells + c * n_cells + k] = v - t0 if v > c0 else NEVER
        for b in range(nb):
            memo[m, o_orow + b] = orow[r, b]
        for w in range(ring.shape[1]):
            for k in range(rw):
                v = ring[r, w, k]
                if k < wmax:
                    v = v - t0 if v > c0 else NEVER
                elif k == wmax + 1:
                    v += memo[m, o_ring + w * rw + k]  # the entries added
                memo[m, o_ring + w * rw + k] = v

    def memo_apply(r, t0, s, mask):
        """Leader r (its group: the channels of `mask`) takes the outcome of memo row s from t0,
        as the timed run would have left it."""
        for c in range(n_cmd):
            counts[r, c] += memo[s, o_cnt + c]
            ucounts[r, c] += memo[s, o_ucnt + c]
            for k in range(n_cells):
                v = memo[s, o_cells + c * n_cells + k]
                if v != NEVER:
                    last[r, c, k] = t0 + v
        for b in range(nb):
            orow[r, b] = memo[s, o_orow + b]
        for w in range(ring.shape[1]):
            for k in range(rw):
                v = memo[s, o_ring + w * rw + k]
                if k < wmax:
                    if v != NEVER:
                        ring[r, w, k] = t0 + v
                elif k == wmax:
                    ring[r, w, k] = v
                else:
                    ring[r, w, k] += v
        chs[r, C_HITS] += memo[s, O_HITS]
        chs[r, C_MISSES] += memo[s, O_MISSES]
        run[r, U_HITS] += memo[s, O_HITS]
        run[r, U_MISSES] += memo[s, O_MISSES]
        chs[r, C_LAST] = t0 + memo[s, O_LAST]
        chs[r, C_UNIFORM] = memo[s, O_UNIFORM]
        chs[r, C_NOPEN] = memo[s, O_NOPEN]
        chs[r, C_MODE] = memo[s, O_MODE]
        d = t0 + memo[s, O_FIN]
        first = t0 + memo[s, O_FIRST]
        if d > chs[r, C_FINISH]:
            chs[r, C_FINISH] = d
        if d > run[r, U_FINISH]:
            run[r, U_FINISH] = d
        if run[r, U_FIRST] < 0:
            run[r, U_FIRST] = first
        if nfol[r] > 0:
            if d > ls[r, LS_FIN]:
                ls[r, LS_FIN] = d
            if ls[r, LS_FIRST] < 0:
                ls[r, LS_FIRST] = first
        if d > g[G_RUN_FINISH]:
            g[G_RUN_FINISH] = d
        for ch in range(nch):  # what the run writes on every channel of the group
            if (mask >> ch) & 1 == 0:
                continue
            chs[ch, C_FRONT] = t0 + memo[s, O_FRONT]
            chs[ch, C_ACTIVE] += memo[s, O_ACTIVE]
            if memo[s, O_OPEN] != NEVER:
                chs[ch, C_OPEN_SINCE] = t0 + memo[s, O_OPEN]

    # ---- buffers of this call (preallocated by the caller, reused across calls)
    touched = touch
    n_ops = 0
    one_mask = True  # every instruction addresses the same channels
    for i in range(prog.shape[0]):
        touched |= prog[i, F_CHMASK]
        if prog[i, F_CHMASK] != prog[0, F_CHMASK]:
            one_mask = False
        if prog[i, F_OPID] >= n_ops:
            n_ops = prog[i, F_OPID] + 1
    if want_ops and n_ops > opstat.shape[0]:  # before any state changes: the caller grows the buffers
        g[G_ERR] = ERR_NEED_OPS
        g[G_ERRV] = n_ops
        return
    g[G_NOPS] = n_ops
    for k in range(n_ops if want_ops else 0):
        opstat[k, 0] = -1
        opstat[k, 1] = -1
        for c in range(n_cmd):
            opcnt[k, c] = 0
    for k in range(istat.shape[0]):
        istat[k, 0] = -1
        istat[k, 1] = -1
    for ch in range(n_channels):
        for k in range(N_RUN):
            run[ch, k] = 0
        for c in range(n_cmd):
            ucounts[ch, c] = 0

    # lock step (not with the aim front end's per-channel buffers, nor in a recorded run, the
    # oracle): groups are formed before the first instruction, trusting the classes the last run
    # left, and revised where the channel mask or the op changes. Groups a G_KEEP run left
    # standing count this run afresh; those this run cannot keep (split by the channels it
    # touches, or lock step off) are dissolved before anything is issued.
    lockstep = par[P_LOCKSTEP] != 0 and not aim and g[G_RECON] == 0
    keep_groups = lockstep and g[G_KEEP] != 0
    for r in range(nch):
        if lead[r] != r or nfol[r] == 0:
            continue
        for c in range(n_cmd):
            bucnt[r, c] = 0
        ls[r, LS_UHITS] = 0
        ls[r, LS_UMISSES] = 0
        ls[r, LS_UREFS] = 0
        ls[r, LS_UIDLE] = 0
        ls[r, LS_FIN] = NEVER
        ls[r, LS_FIRST] = -1
        inside = (touched >> r) & 1
        split = not lockstep
        for j in range(nfol[r]):
            if (touched >> fol[r, j]) & 1 != inside:
                split = True
        if split:
            dissolve(r)

    # ---- start: per-channel front ends and refresh that fell due while the channel was idle
    #      (a lock-step follower's refresh is its leader's)
    if start < 0:
        start = 0
        for ch in range(n_channels):
            if (touched >> ch) & 1 and chs[ch, C_FINISH] > start:
                start = chs[ch, C_FINISH]
    for ch in range(n_channels):
        if (touched >> ch) & 1 and chs[ch, C_FRONT] > start:
            g[G_ERR] = ERR_START_BEFORE_FRONT
            g[G_ERRV] = ch
            return
    g[G_START] = start
    g[G_RUN_FINISH] = start
    for ch in range(n_channels):
        run[ch, U_FINISH] = start
        run[ch, U_FIRST] = -1
        if (touched >> ch) & 1 == 0:
            continue
        chs[ch, C_FRONT] = start
        while refresh_on and lead[ch] == ch and chs[ch, C_DUE] < start:
            do_refresh(ch, False, OWNER_IDLE)

    # ---- the op memo: one standing group whose rows are closed, from a caller that keeps
    #      groups (the dispatcher), in a run that reports no per-op or per-instruction figures
    slot = g[G_MEMO]
    scratch = memo.shape[0] - 1
    memo_on = False
    memo_hit = False
    r0 = -1
    if (0 <= slot < scratch and keep_groups and one_mask and touch == 0 and prog.shape[0] > 0 and not close_rows
            and not want_ops and not want_instr):
        members = 0
        for ch in range(nch):
            if (touched >> ch) & 1:
                if r0 < 0:
                    r0 = ch
                if lead[ch] != r0:
                    members = -nch
                members += 1
        memo_on = (members > 0 and lead[r0] == r0 and nfol[r0] == members - 1 and chs[r0, C_NOPEN] == 0
                   and chs[r0, C_LAST] < start)
    if memo_on:
        memo_key(r0, start, scratch)
        if (memo[slot, M_STATE] != 0 and (not refresh_on or chs[r0, C_DUE] - start > memo[slot, O_LAST])
                and memo_match(slot, scratch)):
            memo_apply(r0, start, slot, touched)
            memo_hit = True
            g[G_MEMO_HITS] += 1

    prev_mask = -1
    prev_op = -1

    # ---- the program, instruction by instruction; one more step closes the rows of the
    #      channels it touched (a single call site of each closure keeps the core small)
    g[G_OWNER] = OWNER_PROGRAM
    n_instr = prog.shape[0]
    dec = start  # aim front end: the cycle its decoder takes the next line
    for i in range(0 if memo_hit else n_instr + 1):
        if i < n_instr:
            op = prog[i, F_OP]
            mask = prog[i, F_CHMASK]
            flags = prog[i, F_FLAGS]
            g[G_OPID] = prog[i, F_OPID]
        else:
            if not close_rows:
                break
            op = OP_PRECHARGE
            mask = touched
            flags = 0  # the closing precharge is recorded as one past the last instruction
        g[G_INSTR] = i
        g[G_IDONE] = -1
        if lockstep and (mask != prev_mask or g[G_OPID] != prev_op):
            regroup(mask, touched if i == 0 else 0, start)
            prev_mask = mask
            prev_op = g[G_OPID]
        line = aim and i < n_instr
        if line:
            if have_hostl:  # host-only lines before this one: one decode cycle each
                dec += hostl[i]
            accepted = dec  # the cycle the line's last request entered its buffer
            done_by = -1  # blocking line / SYNC / EOC: when its last callback arrives
            kind = QK_AIM
            if (op == OP_COLUMN or op == OP_SIMPLE or op == OP_RAW) and tab[prog[i, F_CMD], T_HOSTRW] != 0:
                kind = QK_HOST_RW
        for ch in range(n_channels):
            if (mask >> ch) & 1 == 0 or lead[ch] != ch:
                continue
            release = chs[ch, C_FRONT]
            if line:
                if dec + 1 > release:  # requests sent at the decode cycle issue from the next one
                    release = dec + 1
                qn = chs[ch, C_QN]
                last_left = qring[ch, (qn - 1) % qr] if qn > 0 else NEVER
                if op != OP_PRECHARGE:
                    # the AiM buffer and the read/write buffers never hold requests at once
                    if chs[ch, C_QKIND] != 0 and chs[ch, C_QKIND] != kind and last_left > accepted:
                        accepted = last_left
                    chs[ch, C_QKIND] = kind
            if op == OP_COLUMN or op == OP_SIMPLE:
                d = burst(ch, prog[i, F_CMD], prog[i, F_BANK], prog[i, F_ROW], prog[i, F_COL], prog[i, F_COUNT], release)
                if line and d > done_by:
                    done_by = d
            elif op == OP_RAW:
                # exactly the user's commands; refresh only when the postponement bound is reached,
                # re-opening the rows that were open so the user's stream stays legal
                cmd = prog[i, F_CMD]
                for k in range(prog[i, F_COUNT]):
                    t = earliest(ch, cmd, prog[i, F_BANK], release)
                    while refresh_on and owed(ch, t) > max_owed:
                        do_refresh(ch, True, OWNER_REFRESH)
                        t = earliest(ch, cmd, prog[i, F_BANK], release)
                    issue(ch, cmd, prog[i, F_BANK], prog[i, F_ROW], prog[i, F_COL] + k, t, release)
                    if line:
                        qn = chs[ch, C_QN]
                        qring[ch, qn % qr] = t
                        chs[ch, C_QN] = qn + 1
                    d = t + tab[cmd, T_DONE]
                    if line and d > done_by:
                        done_by = d
            elif op == OP_PRECHARGE:
                close_all(ch, release)
            if not line:
                continue
            if op == OP_BARRIER:
                # SYNC / EOC: one request per channel; it leaves the buffer when it reaches the
                # head (the cycle after the previous request left, and after it entered), and
                # calls back a cycle later once every earlier request's data has departed
                j = chs[ch, C_QN]
                e = dec
                if j >= qcap and qring[ch, (j - qcap) % qr] > e:
                    e = qring[ch, (j - qcap) % qr]
                if e > accepted:
                    accepted = e
                head = max(e, last_left) + 1
                qring[ch, j % qr] = head
                chs[ch, C_QN] = j + 1
                cb = max(head, chs[ch, C_FINISH]) + 1
                if cb > done_by:
                    done_by = cb
            elif op != OP_PRECHARGE:
                j = chs[ch, C_QN] - 1  # this line's last request on the channel: it entered when
                if j >= qcap:  # request j - capacity had left
                    v = qring[ch, (j - qcap) % qr]
                    if v > accepted:
                        accepted = v
        if line:
            # the next line is decoded the cycle after this one's last request was accepted;
            # a blocking one (RD_MAC, RD_AF, SYNC, EOC) is retired when its last callback arrives
            # (data departed), and the next line is decoded in that cycle
            dec = accepted + 1
            if (op == OP_BARRIER or (flags & FLAG_BLOCKING) != 0) and done_by > dec:
                dec = done_by
        if op == OP_BARRIER:
            f = -1
            for ch in range(n_channels):
                if (mask >> ch) & 1 == 0:
                    continue
                v = chs[ch, C_FINISH]
                r = lead[ch]
                if r != ch and ls[r, LS_FIN] > v:  # a follower's finish not yet flushed
                    v = ls[r, LS_FIN]
                if v > f:
                    f = v
            for ch in range(n_channels):
                if (mask >> ch) & 1 and f > chs[ch, C_FRONT]:
                    chs[ch, C_FRONT] = f
        elif (flags & FLAG_BLOCKING) != 0:
            d = g[G_IDONE]
            for ch in range(n_channels):
                if (mask >> ch) & 1 and d > chs[ch, C_FRONT]:
                    chs[ch, C_FRONT] = d
    g[G_DECODE] = dec
    if memo_on and not memo_hit and run[r0, U_REFS] == 0 and chs[r0, C_LAST] != memo[scratch, M_LAST0]:
        memo_outcome(r0, start, scratch)  # stored: no refresh inside, at least one command
        for k in range(memo.shape[1]):
            memo[slot, k] = memo[scratch, k]
        memo[slot, M_STATE] = 1

    # ---- the classes record which channels ended alike; followers take their leader's
    #      counters, and unless the groups stay, its state
    first_free = ls[nch + 1, :nch]  # per old class: its lowest untouched member
    for ch in range(nch):
        first_free[ch] = -1
    for ch in range(n_channels):
        old = chs[ch, C_CLASS]
        if (touched >> ch) & 1:
            chs[ch, C_CLASS] = lead[ch]
        else:
            if first_free[old] < 0:
                first_free[old] = ch
            chs[ch, C_CLASS] = first_free[old]
    for ch in range(n_channels):
        if lead[ch] == ch and nfol[ch] > 0:
            if keep_groups:
                flush(ch, False)
            else:
                dissolve(ch)


# --------------------------------------------------------------------------- Python surface


def _validate_program(prog: np.ndarray, std: CompiledStandard, cfg: HardwareConfig) -> None:
    """Reject instructions the compiled core would silently mis-time (bad ids, rows, banks)."""
    if prog.ndim != 2 or prog.shape[1] != N_FIELDS:
        raise ValueError(f"program must be an [n, {N_FIELDS}] int64 array, got shape {prog.shape}")
    if len(prog) == 0:
        raise ValueError("empty program: there is nothing to time")
    d = cfg.dram
    op = prog[:, F_OP]
    bad = ~np.isin(op, [OP_COLUMN, OP_SIMPLE, OP_PRECHARGE, OP_BARRIER, OP_RAW])
    _fail_if(bad, prog, f"unknown opcode; expected one of {sorted(OP_NAMES.items())}")
    mask = prog[:, F_CHMASK]
    _fail_if((mask <= 0) | ((mask >> d.channels) != 0), prog,
             f"channel mask must select channels 0..{d.channels - 1} (bits 0..{d.channels - 1})")
    _fail_if((prog[:, F_OPID] < 0) | (prog[:, F_OPID] > MAX_OPID), prog, f"op id out of range 0..{MAX_OPID}")
    work = (op == OP_COLUMN) | (op == OP_SIMPLE) | (op == OP_RAW)
    cmd = prog[:, F_CMD]
    n_cmd = len(std.command_names)
    _fail_if(work & ((cmd < 0) | (cmd >= n_cmd)), prog,
             f"unknown command id; standard '{std.name}' has ids 0..{n_cmd - 1}")
    _fail_if(work & (prog[:, F_COUNT] < 1), prog, "count must be >= 1")
    safe = np.clip(cmd, 0, n_cmd - 1)
    col = work & (std.is_column[safe] | ((op == OP_RAW) & std.opens_row[safe]))
    _fail_if((op == OP_COLUMN) & ~std.is_column[safe], prog, "OP_COLUMN needs a column command")
    _fail_if((op == OP_SIMPLE) & (std.is_column[safe] | std.opens_row[safe] | std.closes_row[safe]), prog,
             "OP_SIMPLE takes commands that touch no row")
    owned = (op == OP_SIMPLE) & (std.is_refresh[safe] | (safe == std.cmd_mode))
    if owned.any():
        i = int(np.flatnonzero(owned)[0])
        name = std.command_names[int(cmd[i])]
        what = "refresh" if std.is_refresh[int(cmd[i])] else "register/memory mode changes"
        raise ValueError(f"instruction {i} {prog[i].tolist()}: command {name} is issued by the controller "
                         f"({what}); a program cannot ask for it with OP_SIMPLE (OP_RAW times an exact "
                         f"command stream)")
    row = prog[:, F_ROW]
    storage_row_bad = (row < 0) | ((row >= d.rows_per_bank) & (row < PSEUDO_ROW_BASE)) | (row >= 2 * PSEUDO_ROW_BASE)
    _fail_if(col & storage_row_bad, prog, f"row out of range 0..{d.rows_per_bank - 1}")
    last_col = prog[:, F_COL] + prog[:, F_COUNT] - 1
    _fail_if(col & ((prog[:, F_COL] < 0) | (last_col >= d.columns_per_row)), prog,
             f"columns out of range 0..{d.columns_per_row - 1}")
    all_t = std.target_all[safe]
    _fail_if(work & all_t & (prog[:, F_BANK] != ALL_BANKS), prog, "all-bank command with a bank number")
    _fail_if(work & ~all_t & ((prog[:, F_BANK] < 0) | (prog[:, F_BANK] >= d.banks_per_channel)), prog,
             f"bank out of range 0..{d.banks_per_channel - 1}")
    ctl = (op == OP_COLUMN) | (op == OP_SIMPLE)  # the controller adds ACT/PRE/TMOD for these
    for needs, have, what in (
        (ctl & col & all_t, std.cmd_act_all >= 0 and std.cmd_pre_all >= 0, "an all-bank ACT and PRE"),
        (ctl & col & ~all_t, std.cmd_act >= 0 and std.cmd_pre >= 0, "a single-bank ACT and PRE"),
        ((op == OP_PRECHARGE), std.cmd_pre_all >= 0, "an all-bank PRE"),
    ):
        if not have:
            _fail_if(needs, prog, f"needs {what}, which standard '{std.name}' does not define")


def _fail_if(bad: np.ndarray, prog: np.ndarray, what: str) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"instruction {i} {prog[i].tolist()}: {what}")


def _self_gap(std: CompiledStandard) -> tuple[np.ndarray, np.ndarray]:
    """Spacing of back-to-back identical commands, and whether the burst shortcut is exact for them."""
    n = len(std.command_names)
    gap = np.array([std.self_gap(c) for c in range(n)], np.int64)
    in_window = (std.win_member & std.win_applies).any(axis=0)
    ok = ~std.opens_row & ~std.closes_row & ~std.is_refresh & ~in_window
    ok &= np.arange(n) != std.cmd_mode
    return gap, ok


MAX_OPID = (1 << 31) - 1
_INT64 = np.dtype(np.int64)
_NO_REC = np.zeros((0, N_REC), np.int64)
_NO_STAT = np.zeros((0, 2), np.int64)
_NO_LINES = np.zeros(0, np.int64)
_NO_MEMO = np.zeros((0, 1), np.int64)
_NO_INSTRUCTIONS = np.zeros((0, N_FIELDS), np.int64)


_ENTRY = []


def _kernel():
    """The compiled core's entry point once it exists (skips numba's per-call type dispatch,
    about a microsecond of a small call); the dispatcher until then. Every argument the engine
    passes has one fixed type (int64 C-contiguous arrays, ints, a bool), so one signature exists."""
    if _ENTRY:
        return _ENTRY[0]
    if len(_run.signatures) == 1:
        _ENTRY.append(_run.overloads[_run.signatures[0]].entry_point)
    return _run


class EngineResult:
    """Outcome of one `Engine.run`. Per-run figures are for this run alone; refresh that fell
    due while a channel was idle before the run is reported apart (`idle_refreshes`).

    start_cycle     the cycle the program was handed to the controller
    finish_cycle    completion (issue + done) of the run's own last command; refresh excluded
    counts          [channels, commands] commands of this run (refresh during the run included)
    per channel     channel_finish, first_issue (-1: none), row_hits, row_misses, refreshes,
                    refresh_cycles (refreshes x nRFC), idle_refreshes
    per op id       op_first_issue (-1: none), op_finish, op_counts [ops, commands]
    per instruction instr_first_issue, instr_finish (with instr_times=True)
    schedule        with record=True: every command (SCHEDULE_DTYPE)
    decode_end_cycle  aim front end: the cycle its decoder takes the line after the program's
                    last (for a trace ending in EOC, that simulator's `memory_system_cycles`
                    counted from start_cycle); None with the pim-gpt front end
    """

    __slots__ = ("start_cycle", "finish_cycle", "counts", "command_names", "tck_ns", "nrfc", "_run",
                 "_opstat", "op_counts", "_istat", "schedule", "decode_end_cycle")

    def __init__(self, start_cycle, finish_cycle, counts, command_names, tck_ns, nrfc, run, opstat, opcnt,
                 istat, schedule, decode_end_cycle=None):
        self.start_cycle, self.finish_cycle, self.counts = start_cycle, finish_cycle, counts
        self.command_names, self.tck_ns, self.nrfc, self._run = command_names, tck_ns, nrfc, run
        self._opstat, self.op_counts, self._istat, self.schedule = opstat, opcnt, istat, schedule
        self.decode_end_cycle = decode_end_cycle

    channel_finish = property(lambda self: self._run[:, U_FINISH])
    first_issue = property(lambda self: self._run[:, U_FIRST])
    row_hits = property(lambda self: self._run[:, U_HITS])
    row_misses = property(lambda self: self._run[:, U_MISSES])
    refreshes = property(lambda self: self._run[:, U_REFS])
    idle_refreshes = property(lambda self: self._run[:, U_IDLE_REFS])
    refresh_cycles = property(lambda self: self._run[:, U_REFS] * self.nrfc)
    op_first_issue = property(lambda self: self._opstat[:, 0])
    op_finish = property(lambda self: self._opstat[:, 1])
    instr_first_issue = property(lambda self: None if self._istat is None else self._istat[:, 0])
    instr_finish = property(lambda self: None if self._istat is None else self._istat[:, 1])

    @property
    def cycles(self) -> int:
        """finish_cycle - start_cycle: from the cycle the program was handed over to the completion
        of its own last command (refresh completion excluded)."""
        return self.finish_cycle - self.start_cycle

    @property
    def front_end_cycles(self) -> int | None:
        """aim front end: decode_end_cycle - start_cycle (that simulator's cycle count of a trace
        ending in SYNC/EOC); None with the pim-gpt front end."""
        return None if self.decode_end_cycle is None else self.decode_end_cycle - self.start_cycle

    @property
    def time_ns(self) -> float:
        return self.cycles * self.tck_ns

    def command_totals(self) -> dict[str, int]:
        tot = self.counts.sum(axis=0)
        return {n: int(c) for n, c in zip(self.command_names, tot) if c}

    def row_hit_rate(self) -> float | None:
        """Column accesses served by an open row over all column accesses (None if there were none)."""
        h, m = int(self.row_hits.sum()), int(self.row_misses.sum())
        return h / (h + m) if h + m else None

    def op_ids(self) -> np.ndarray:
        """Op ids that issued at least one command in this run."""
        return np.flatnonzero(self.op_first_issue >= 0)


class Engine:
    """Per-channel DRAM/PIM timing with persistent bank state and per-channel front ends; runs
    are resumable, and a snapshot lets a caller time an alternative without disturbing the
    real timeline.

    `front_end` chooses how instructions reach the channel controllers:
    - "pim-gpt" (default): the ASIC issues to every channel in parallel; an instruction is held
      back only by blocking reads and barriers of its own channels.
    - "aim": the public AiM simulator's trace front end (aim_DRAM_system.cpp, AiM_dram_controller.cpp).
      Each instruction is one trace line (`run(..., host_lines=)` adds the lines that do no DRAM
      work, one decode cycle each). Its per-channel commands are requests (one per column or
      simple command; SYNC/EOC barriers one per channel) in a 33-entry in-order buffer per channel
      that a request leaves when its final command issues. A line decoded at cycle T issues from
      T + 1; a request enters its buffer at T, or at the cycle the request 33 places earlier
      left. The next line is decoded the cycle after the line's last request entered (a full
      buffer on one channel stalls every channel), and after a blocking line (RD_MAC, RD_AF) at
      the cycle its data returns, after SYNC/EOC when every channel has called back (the cycle
      after the barrier reached the buffer head and all earlier requests completed). AiM
      requests and memory reads/writes (RD, WR) never share a channel's buffers: a request of
      the other kind enters only once the previous request left."""

    def __init__(self, cfg: HardwareConfig, refresh: bool | None = None, fast: bool = True,
                 front_end: str = "pim-gpt", lockstep: bool = True):
        if front_end not in FRONT_ENDS:
            raise ValueError(f"unknown front end {front_end!r}; expected one of {sorted(FRONT_ENDS)}")
        self.front_end = front_end
        self.cfg = cfg
        self.std = std = compile_standard(cfg)
        d = cfg.dram
        self.refresh = d.refresh if refresh is None else refresh
        if self.refresh and (std.cmd_ref < 0 or std.cmd_pre_all < 0):
            raise ValueError(f"standard '{std.name}' has no all-bank refresh/precharge; run with refresh off")
        n_cmd = len(std.command_names)
        gap, ok = _self_gap(std)
        tab = np.zeros((n_cmd, N_TAB), np.int64)
        tab[:, T_ALL], tab[:, T_OPEN], tab[:, T_CLOSE] = std.target_all, std.opens_row, std.closes_row
        tab[:, T_COL], tab[:, T_MODE], tab[:, T_DONE] = std.is_column, std.mode, std.done
        tab[:, T_R0], tab[:, T_R1] = std.row_ptr[:-1], std.row_ptr[1:]
        tab[:, T_GAP], tab[:, T_BURST] = gap, ok
        tab[:, T_HOSTRW] = [name in ("RD", "WR") for name in std.command_names]  # memory reads/writes
        self.tab = tab
        self.rows = np.ascontiguousarray(np.stack([std.row_after, std.row_scope, std.row_cycles], axis=1), np.int64)
        n_win = len(std.win_size) if std.win_applies.any() else 0
        win = np.zeros((max(n_win, 1), 2 + 2 * n_cmd), np.int64)
        if n_win:
            win[:, W_SIZE], win[:, W_CYCLES] = std.win_size, std.win_cycles
            win[:, 2:2 + n_cmd], win[:, 2 + n_cmd:] = std.win_member, std.win_applies
        self.win = win
        par = np.zeros(N_PAR, np.int64)
        par[P_GAP] = std.issue_gap
        par[P_ACT], par[P_ACT_ALL], par[P_PRE], par[P_PRE_ALL] = std.cmd_act, std.cmd_act_all, std.cmd_pre, std.cmd_pre_all
        par[P_REF], par[P_MODE_CMD] = std.cmd_ref, std.cmd_mode
        par[P_BPG], par[P_NB], par[P_NG] = d.banks_per_group, d.banks_per_channel, d.bank_groups
        par[P_NREFI] = std.timing.get("nREFI", 1 << 40)
        par[P_REFRESH], par[P_FAST], par[P_NWIN] = self.refresh, fast, n_win
        par[P_WMAX] = int(std.win_size.max())
        par[P_MAX_OWED] = MAX_POSTPONED_REFRESHES
        par[P_FRONT], par[P_QCAP] = FRONT_ENDS[front_end], AIM_QUEUE_ENTRIES
        par[P_LOCKSTEP] = lockstep
        # an issue cycle this far before a run's start can bind no later command
        par[P_FLOOR] = max(int(self.rows[:, ROW_CYCLES].max(initial=0)), int(win[:, W_CYCLES].max(initial=0)),
                           int(std.issue_gap), 0) + 1
        self.par = par
        self.n_cmd = n_cmd
        self.n_channels = d.channels
        self.tck_ns = d.tck_ns
        self.nrfc = int(std.timing.get("nRFC", 0))
        self.reset()

    def reset(self) -> None:
        """An idle device: all banks precharged, memory mode, first refresh due at nREFI."""
        d, n_cmd = self.cfg.dram, self.n_cmd
        c, b, g = d.channels, d.banks_per_channel, d.bank_groups
        self.last = np.full((c, n_cmd, b + g + 2), NEVER, np.int64)
        chs = np.zeros((c, N_CHS), np.int64)
        chs[:, C_UNIFORM] = -1
        chs[:, C_MODE] = MODE_MEM
        chs[:, C_LAST] = NEVER
        chs[:, C_DUE] = self.par[P_NREFI]
        chs[:, C_CLASS] = 0  # an idle device: every channel in the same state
        self.chs = chs
        self.orow = np.full((c, b), -1, np.int64)
        self.counts = np.zeros((c, n_cmd), np.int64)
        wmax = int(self.par[P_WMAX])
        # per window: wmax entry cycles, then the next slot and the entries written; an unwritten
        # entry is NEVER like every other cycle of the state, so that the op memo, which keeps the
        # entries later than the run's start, never mistakes one for a cycle the run wrote
        self.ring = np.zeros((c, self.win.shape[0], wmax + 2), np.int64)
        self.ring[:, :, :wmax] = NEVER
        self.qring = np.full((c, AIM_QUEUE_ENTRIES + 1), NEVER, np.int64)  # aim front end buffers
        self.g = np.zeros(N_G, np.int64)
        self._runbuf = np.zeros((c, N_RUN), np.int64)
        self._ucounts = np.zeros((c, n_cmd), np.int64)
        self._opstat = np.empty((64, 2), np.int64)
        self._opcnt = np.empty((64, n_cmd), np.int64)
        self._ls = lockstep_scratch(c, n_cmd, b)

    # ---- state a caller may read
    @property
    def now(self) -> int:
        """The cycle at which every non-refresh command issued so far has completed."""
        return int(self.chs[:, C_FINISH].max())

    @property
    def channel_finish(self) -> np.ndarray:
        """Per channel, cumulative: when every non-refresh command issued so far has completed."""
        return self.chs[:, C_FINISH].copy()

    @property
    def front(self) -> np.ndarray:
        """Per channel: the release time left by blocking instructions and barriers."""
        return self.chs[:, C_FRONT].copy()

    @property
    def total_counts(self) -> np.ndarray:
        """[channels, commands] every command issued since reset, idle refreshes included."""
        return self.counts.copy()

    def refresh_idle(self, until: int, record: bool = False) -> EngineResult:
        """Issue, on every channel, the refreshes that fell due before cycle `until` while it was
        idle (otherwise each waits for the channel's next instruction, which may lie in a later
        step of a caller's timeline)."""
        return self.run(_NO_INSTRUCTIONS, record=record, close_rows=False, start_cycle=until, validate=False,
                        op_stats=False, touch=(1 << self.n_channels) - 1)

    def active_cycles(self, until: int) -> np.ndarray:
        """Per channel: cycles in [0, until) with at least one bank open (for background power)."""
        chs = self.chs
        open_now = chs[:, C_NOPEN] > 0
        return chs[:, C_ACTIVE] + np.where(open_now, np.maximum(until - chs[:, C_OPEN_SINCE], 0), 0)

    def memo(self, n_slots: int) -> np.ndarray:
        """An empty op memo of `n_slots` rows (and the scratch row) for the system dispatcher."""
        n_ring = self.ring.shape[1] * self.ring.shape[2]
        width = memo_layout(self.n_cmd, self.last.shape[2], n_ring, self.cfg.dram.banks_per_channel)[-1]
        return np.zeros((n_slots + 1, width), np.int64)

    def snapshot(self) -> tuple:
        """A copy of the whole device state; `restore` puts it back."""
        return tuple(a.copy() for a in (self.last, self.chs, self.orow, self.counts, self.ring, self.qring))

    def restore(self, state: tuple) -> None:
        for dst, src in zip((self.last, self.chs, self.orow, self.counts, self.ring, self.qring), state):
            dst[...] = src

    # ---- running
    def warm_up(self) -> None:
        """Load the compiled core (numba's disk cache, or compile) outside any timed region."""
        saved = self.snapshot()
        self._exec(np.zeros((0, N_FIELDS), np.int64), _NO_REC, 0, False, 0, False, False, 0)
        self.restore(saved)

    def _exec(self, prog, rec, start, close_rows, touch, want_ops, want_instr, rec_cap, hostl=None):
        """One kernel call on the engine's reusable buffers (grown when a program has more op ids)."""
        istat = np.empty((len(prog), 2), np.int64) if want_instr else _NO_STAT
        # fresh per call (the result keeps them; the kernel zeroes them)
        self._runbuf = np.empty((self.n_channels, N_RUN), np.int64)
        self._ucounts = np.empty((self.n_channels, self.n_cmd), np.int64)
        g = self.g
        while True:
            g[G_ERR] = 0
            g[G_RECN] = 0
            g[G_RECON] = 1 if rec_cap else 0
            g[G_RECCAP] = rec_cap
            g[G_KEEP] = 0
            g[G_MEMO] = -1
            _kernel()(self.par, self.tab, self.rows, self.win, self.last, self.chs, self.orow, self.counts,
                      self.ring, g, rec, prog, self._runbuf, self._ucounts, self._opstat if want_ops else _NO_STAT,
                      self._opcnt, istat, self.n_channels, start, bool(close_rows), touch, self.qring,
                      _NO_LINES if hostl is None else hostl, self._ls, _NO_MEMO)
            g[G_RECON] = 0
            if g[G_ERR] != ERR_NEED_OPS:
                return istat
            n = max(int(g[G_ERRV]), 2 * len(self._opstat))
            self._opstat = np.empty((n, 2), np.int64)
            self._opcnt = np.empty((n, self.n_cmd), np.int64)

    def run(self, prog: np.ndarray, *, record: bool = False, close_rows: bool = True,
            start_cycle: int | None = None, command_names: tuple[str, ...] | None = None,
            validate: bool = True, instr_times: bool = False, op_stats: bool = True,
            host_lines: np.ndarray | None = None, touch: int = 0) -> EngineResult:
        """Time `prog` from the current state.

        `start_cycle` is the cycle the program is handed to the controller: every channel it
        touches takes its first command no earlier, and it may not be earlier than a touched
        channel's front end (an error). None: when every command already issued to the touched
        channels has completed. `cycles` counts from it. `command_names`, when given, must be
        the engine's own command table (ids are meaningless under another). `validate=False`
        trusts the program (a compiler's output validated once). `host_lines` (aim front end
        only): per instruction, the trace lines without DRAM work (EWADD, GPR/CFR access) decoded
        just before it, one cycle each. `touch`: channels (a mask) to treat as touched even without
        an instruction: their refreshes that fell due while idle are issued (before `start_cycle`)."""
        if command_names is not None and command_names != self.std.command_names \
                and tuple(command_names) != self.std.command_names:
            raise ValueError(f"program was built for a command table {tuple(command_names)}, but this engine's "
                             f"standard '{self.std.name}' has {self.std.command_names}")
        if not (isinstance(prog, np.ndarray) and prog.dtype is _INT64 and prog.flags.c_contiguous and prog.ndim == 2):
            prog = np.ascontiguousarray(prog, dtype=np.int64)
        if prog.ndim != 2 or prog.shape[1] != N_FIELDS:
            raise ValueError(f"program must be an [n, {N_FIELDS}] int64 array, got shape {prog.shape}")
        if validate:
            _validate_program(prog, self.std, self.cfg)
        if host_lines is not None:
            if self.front_end != "aim":
                raise ValueError(f"host_lines applies to the aim front end; this engine's front end is {self.front_end!r}")
            host_lines = np.ascontiguousarray(host_lines, dtype=np.int64)
            if host_lines.shape != (len(prog),):
                raise ValueError(f"host_lines must have one count per instruction ({len(prog)}), got shape {host_lines.shape}")
            if len(host_lines) and host_lines.min() < 0:
                i = int(np.argmin(host_lines))
                raise ValueError(f"host_lines[{i}] = {int(host_lines[i])}: a count of trace lines must be >= 0")
        if start_cycle is None:
            start = -1
        elif start_cycle < 0:
            raise ValueError(f"start_cycle {start_cycle} < 0")
        else:
            start = int(start_cycle)
        schedule = None
        if record:
            saved = self.snapshot()
            cap = self._record_bound(prog)
            rec = np.zeros((cap, N_REC), np.int64)
            istat = self._exec(prog, rec, start, close_rows, touch, op_stats, instr_times, cap, host_lines)
            n = int(self.g[G_RECN])
            if n > cap:  # more refreshes than the bound foresaw: time it again with room for all
                self.restore(saved)
                rec = np.zeros((n, N_REC), np.int64)
                istat = self._exec(prog, rec, start, close_rows, touch, op_stats, instr_times, n, host_lines)
            schedule = np.zeros(n, SCHEDULE_DTYPE)
            for col, name in enumerate(SCHEDULE_DTYPE.names):
                schedule[name] = rec[:n, col]
        else:
            istat = self._exec(prog, _NO_REC, start, close_rows, touch, op_stats, instr_times, 0, host_lines)
        g = self.g
        if g[G_ERR] == ERR_START_BEFORE_FRONT:
            ch = int(g[G_ERRV])
            raise ValueError(f"start_cycle {start} is earlier than channel {ch}'s front end "
                             f"(cycle {int(self.chs[ch, C_FRONT])}, left by a blocking instruction or barrier)")
        n_ops = int(g[G_NOPS]) if op_stats else 0
        return EngineResult(int(g[G_START]), int(g[G_RUN_FINISH]), self._ucounts, self.std.command_names,
                            self.tck_ns, self.nrfc, self._runbuf, self._opstat[:n_ops].copy(),
                            self._opcnt[:n_ops].copy(), istat if instr_times else None, schedule,
                            int(g[G_DECODE]) if self.front_end == "aim" else None)

    def _record_bound(self, prog: np.ndarray) -> int:
        """Commands a run can issue at most, refresh aside: each column/simple command may need a
        mode change, a precharge and an activate first; plus room for a few refreshes."""
        per_ch = np.array([int(m).bit_count() for m in prog[:, F_CHMASK]], np.int64)
        work = np.where(np.isin(prog[:, F_OP], [OP_COLUMN, OP_SIMPLE, OP_RAW]), prog[:, F_COUNT], 1)
        return int((per_ch * (work + 3)).sum()) + 64 * self.cfg.dram.channels

    def settle(self, until: int) -> np.ndarray:
        """Issue, on every channel, the refreshes that fall due before `until` while it is idle
        (at the end of a timeline, so refresh energy is complete); their count per channel."""
        empty = np.zeros((0, N_FIELDS), np.int64)
        done = np.zeros(self.cfg.dram.channels, np.int64)
        for ch in range(self.cfg.dram.channels):
            st = max(int(until), int(self.chs[ch, C_FRONT]))
            self._exec(empty, _NO_REC, st, False, 1 << ch, False, False, 0)
            done[ch] = self._runbuf[ch, U_IDLE_REFS]
        return done


def run_program(cfg: HardwareConfig, prog: np.ndarray, *, refresh: bool | None = None, record: bool = False,
                fast: bool = True) -> EngineResult:
    """One-shot timing of a program from an idle, precharged device."""
    return Engine(cfg, refresh=refresh, fast=fast).run(prog, record=record)
