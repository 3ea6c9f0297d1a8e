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
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from sim.commands import (
    ALL_BANKS, F_BANK, F_CHMASK, F_CMD, F_COL, F_COUNT, F_FLAGS, F_OP, F_ROW, FLAG_BLOCKING, N_FIELDS,
    OP_BARRIER, OP_COLUMN, OP_PRECHARGE, OP_RAW, OP_SIMPLE, PSEUDO_ROW_BASE, SCHEDULE_DTYPE,
)
from sim.config import HardwareConfig
from sim.dram_spec import MODE_MEM, MODE_REG, CompiledStandard, compile_standard

NEVER = -(1 << 40)  # "issued long ago": any constraint from it is satisfied at cycle 0
NO_LIMIT = 1 << 62

# Flat layouts: numba increfs every array member of a tuple each time it is passed on, so the
# kernel takes a handful of plain arrays instead of records of many arrays.
# tab[cmd, :] per-command properties
T_ALL, T_OPEN, T_CLOSE, T_COL, T_MODE, T_DONE, T_R0, T_R1, T_GAP, T_BURST, N_TAB = range(11)
# par[:] scalars
(P_GAP, P_ACT, P_ACT_ALL, P_PRE, P_PRE_ALL, P_REF, P_MODE_CMD, P_BPG, P_NB, P_NG, P_NREFI, P_REFRESH,
 P_FAST, P_NWIN, P_WMAX, N_PAR) = range(16)
# chs[ch, :] per-channel scalars
C_UNIFORM, C_NOPEN, C_MODE, C_LAST, C_FINISH, C_DUE, C_HITS, C_MISSES, N_CHS = range(9)
# g[:] global
G_FRONT, G_RECN, G_RECON, G_RUN_FINISH = range(4)
# rec[i, :] one recorded command
R_CMD, R_CH, R_BANK, R_ROW, R_COL, R_CYCLE, R_RELEASE = range(7)
# rows[k, :] constraint rows in CSR order of the later command; win[w, :] windows
ROW_AFTER, ROW_SCOPE, ROW_CYCLES = range(3)
W_SIZE, W_CYCLES = range(2)  # then n_cmd membership flags, then n_cmd "applies" flags


# --------------------------------------------------------------------------- compiled core
# One compiled function with inner closures: numba inlines closures and they read the captured
# arrays without the reference counting that passing ~10 arrays per call costs (measured: 1 ns
# against 30-60 ns per command), which is the difference between 5 and 100 M commands/s.


@njit(cache=True)
def _run(par, tab, rows, win, last, chs, orow, counts, ring, g, rec, prog, n_channels):
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

    def set_rows(ch, bank, row):
        """Open (row >= 0) or close (-1) one bank or all, keeping the summaries exact."""
        if bank == ALL_BANKS:
            for b in range(nb):
                orow[ch, b] = row
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
        d = t + tab[cmd, T_DONE]
        if d > chs[ch, C_FINISH]:
            chs[ch, C_FINISH] = d
        if d > g[G_RUN_FINISH]:
            g[G_RUN_FINISH] = d
        counts[ch, cmd] += 1
        if cmd == c_mode:  # a mode change toggles between memory and register mode
            chs[ch, C_MODE] = MODE_REG if chs[ch, C_MODE] == MODE_MEM else MODE_MEM
        target = ALL_BANKS if all_target else bank
        if tab[cmd, T_OPEN] != 0:
            set_rows(ch, target, row)
        elif tab[cmd, T_CLOSE] != 0:
            set_rows(ch, target, -1)
        if g[G_RECON] != 0:
            i = g[G_RECN]
            rec[i, R_CMD] = cmd
            rec[i, R_CH] = ch
            rec[i, R_BANK] = target
            rec[i, R_ROW] = row if (tab[cmd, T_OPEN] != 0 or tab[cmd, T_COL] != 0) else -1
            rec[i, R_COL] = col if tab[cmd, T_COL] != 0 else -1
            rec[i, R_CYCLE] = t
            rec[i, R_RELEASE] = release
            g[G_RECN] = i + 1

    def refresh_if_due(ch, t_next, t_limit):
        """Refresh when the next command would issue at or after the due cycle; True if it did.

        Once a refresh has delayed a command, only refreshes due by `t_limit` (the cycle the
        command was ready at when the first one was issued) go before it; one that falls due
        because of that delay waits until the command has issued (postponed, as JEDEC allows),
        so every command makes progress however short nREFI is."""
        due = chs[ch, C_DUE]
        if not refresh_on or t_next < due or due > t_limit:
            return False
        if chs[ch, C_NOPEN] > 0:
            issue(ch, c_pre_all, ALL_BANKS, -1, -1, earliest(ch, c_pre_all, ALL_BANKS, due), due)
        issue(ch, c_ref, ALL_BANKS, -1, -1, earliest(ch, c_ref, ALL_BANKS, due), due)
        chs[ch, C_DUE] = due + nrefi
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
                    else:
                        chs[ch, C_HITS] += 1
                return t
            if nxt == c_act or nxt == c_act_all:
                needed_act = True

    def burst(ch, cmd, bank, row, col, count, release):
        """`count` commands `cmd` at consecutive columns; the latest completion cycle."""
        t = command(ch, cmd, bank, row, col, release)
        k = 1
        if fast and tab[cmd, T_BURST] != 0:
            gap = tab[cmd, T_GAP]
            is_col = tab[cmd, T_COL] != 0
            while k < count:
                tn = t + gap
                if refresh_on and tn >= chs[ch, C_DUE]:
                    break
                issue(ch, cmd, bank, row, col + k, tn, release)
                if is_col:
                    chs[ch, C_HITS] += 1
                t = tn
                k += 1
        while k < count:
            t = command(ch, cmd, bank, row, col + k, release)
            k += 1
        return t + tab[cmd, T_DONE]

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

    for i in range(prog.shape[0]):
        op = prog[i, F_OP]
        mask = prog[i, F_CHMASK]
        release = g[G_FRONT]
        done_max = release
        for ch in range(n_channels):
            if (mask >> ch) & 1 == 0:
                continue
            if op == OP_COLUMN or op == OP_SIMPLE:
                d = burst(ch, prog[i, F_CMD], prog[i, F_BANK], prog[i, F_ROW], prog[i, F_COL], prog[i, F_COUNT], release)
                if d > done_max:
                    done_max = d
            elif op == OP_RAW:
                # exactly the user's commands: no refresh is inserted inside a raw stream
                cmd = prog[i, F_CMD]
                for k in range(prog[i, F_COUNT]):
                    t = earliest(ch, cmd, prog[i, F_BANK], release)
                    issue(ch, cmd, prog[i, F_BANK], prog[i, F_ROW], prog[i, F_COL] + k, t, release)
                    d = t + tab[cmd, T_DONE]
                    if d > done_max:
                        done_max = d
            elif op == OP_PRECHARGE:
                d = close_all(ch, release)
                if d > done_max:
                    done_max = d
            elif op == OP_BARRIER:
                if chs[ch, C_FINISH] > done_max:
                    done_max = chs[ch, C_FINISH]
        if op == OP_BARRIER or (prog[i, F_FLAGS] & FLAG_BLOCKING) != 0:
            if done_max > g[G_FRONT]:
                g[G_FRONT] = done_max


# --------------------------------------------------------------------------- Python surface


def _validate_program(prog: np.ndarray, std: CompiledStandard, cfg: HardwareConfig) -> None:
    """Reject instructions the compiled core would silently mis-time (bad ids, rows, banks)."""
    if prog.ndim != 2 or prog.shape[1] != N_FIELDS:
        raise ValueError(f"program must be an [n, {N_FIELDS}] int64 array, got shape {prog.shape}")
    if len(prog) == 0:
        return
    d = cfg.dram
    op = prog[:, F_OP]
    bad = ~np.isin(op, [OP_COLUMN, OP_SIMPLE, OP_PRECHARGE, OP_BARRIER, OP_RAW])
    _fail_if(bad, prog, "unknown opcode")
    mask = prog[:, F_CHMASK]
    _fail_if((mask <= 0) | ((mask >> d.channels) != 0), prog, f"channel mask must select channels 0..{d.channels - 1}")
    work = (op == OP_COLUMN) | (op == OP_SIMPLE) | (op == OP_RAW)
    cmd = prog[:, F_CMD]
    n_cmd = len(std.command_names)
    _fail_if(work & ((cmd < 0) | (cmd >= n_cmd)), prog, "unknown command id")
    _fail_if(work & (prog[:, F_COUNT] < 1), prog, "count must be >= 1")
    safe = np.clip(cmd, 0, n_cmd - 1)
    col = work & (std.is_column[safe] | ((op == OP_RAW) & std.opens_row[safe]))
    _fail_if((op == OP_COLUMN) & ~std.is_column[safe], prog, "OP_COLUMN needs a column command")
    _fail_if((op == OP_SIMPLE) & (std.is_column[safe] | std.opens_row[safe] | std.closes_row[safe]), prog,
             "OP_SIMPLE takes commands that touch no row")
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
    return gap, ok


@dataclass
class EngineResult:
    """Outcome of one `Engine.run`: cycles, command counts, row-buffer hits, optional schedule."""

    start_cycle: int
    finish_cycle: int  # latest issue + done over the commands this run issued (start if none)
    channel_finish: np.ndarray  # per channel: the cycle everything issued so far has completed
    counts: np.ndarray  # [channels, commands] commands issued during this run
    command_names: tuple[str, ...]
    row_hits: np.ndarray
    row_misses: np.ndarray
    tck_ns: float
    schedule: np.ndarray | None = field(default=None, repr=False)

    @property
    def cycles(self) -> int:
        return self.finish_cycle - self.start_cycle

    @property
    def time_ns(self) -> float:
        return self.cycles * self.tck_ns

    def command_totals(self) -> dict[str, int]:
        tot = self.counts.sum(axis=0)
        return {n: int(c) for n, c in zip(self.command_names, tot) if c}

    def row_hit_rate(self) -> float:
        h, m = int(self.row_hits.sum()), int(self.row_misses.sum())
        return h / (h + m) if h + m else float("nan")


class Engine:
    """Per-channel DRAM/PIM timing with persistent bank state; runs are resumable."""

    def __init__(self, cfg: HardwareConfig, refresh: bool | None = None, fast: bool = True):
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
        self.par = par
        self.reset()

    def reset(self) -> None:
        """An idle device: all banks precharged, memory mode, first refresh due at nREFI."""
        d, n_cmd = self.cfg.dram, len(self.std.command_names)
        c, b, g = d.channels, d.banks_per_channel, d.bank_groups
        self.last = np.full((c, n_cmd, b + g + 2), NEVER, np.int64)
        chs = np.zeros((c, N_CHS), np.int64)
        chs[:, C_UNIFORM] = -1
        chs[:, C_MODE] = MODE_MEM
        chs[:, C_LAST] = NEVER
        chs[:, C_DUE] = self.par[P_NREFI]
        self.chs = chs
        self.orow = np.full((c, b), -1, np.int64)
        self.counts = np.zeros((c, n_cmd), np.int64)
        wmax = int(self.par[P_WMAX])
        self.ring = np.zeros((c, self.win.shape[0], wmax + 2), np.int64)
        self.g = np.zeros(4, np.int64)

    @property
    def now(self) -> int:
        """The cycle at which everything issued so far has completed."""
        return int(max(self.chs[:, C_FINISH].max(), self.g[G_FRONT]))

    def warm_up(self) -> None:
        """Load the compiled core (numba's disk cache, or compile) outside any timed region."""
        self._exec(np.zeros((0, N_FIELDS), np.int64), tuple(a.copy() for a in self._state()), np.zeros((0, 7), np.int64))

    def _state(self) -> tuple:
        return self.last, self.chs, self.orow, self.counts, self.ring, self.g

    def _exec(self, prog: np.ndarray, state: tuple, rec: np.ndarray) -> None:
        last, chs, orow, counts, ring, g = state
        _run(self.par, self.tab, self.rows, self.win, last, chs, orow, counts, ring, g, rec, prog,
             self.cfg.dram.channels)

    def run(self, prog: np.ndarray, *, record: bool = False, close_rows: bool = True,
            start_cycle: int | None = None) -> EngineResult:
        """Time `prog` from the current state; `start_cycle` holds the front end until then."""
        prog = np.ascontiguousarray(prog, dtype=np.int64)
        _validate_program(prog, self.std, self.cfg)
        if close_rows:
            tail = np.array([[OP_PRECHARGE, (1 << self.cfg.dram.channels) - 1, -1, ALL_BANKS, -1, 0, 1, 0, 0]], np.int64)
            prog = np.concatenate([prog, tail])
        start = self.now if start_cycle is None else int(start_cycle)
        self.g[G_FRONT] = max(self.g[G_FRONT], start)
        self.g[G_RUN_FINISH] = start
        counts0 = self.counts.copy()
        hits0, miss0 = self.chs[:, C_HITS].copy(), self.chs[:, C_MISSES].copy()
        schedule = None
        no_rec = np.zeros((0, 7), np.int64)
        if record:
            dry = tuple(a.copy() for a in self._state())
            self._exec(prog, dry, no_rec)
            n = int((dry[3] - counts0).sum())
            rec = np.zeros((n, 7), np.int64)
            self.g[G_RECON], self.g[G_RECN] = 1, 0
            try:
                self._exec(prog, self._state(), rec)
            finally:
                self.g[G_RECON] = 0
            schedule = np.zeros(n, SCHEDULE_DTYPE)
            for col, name in enumerate(("cmd", "channel", "bank", "row", "col", "cycle", "release")):
                schedule[name] = rec[:, col]
        else:
            self._exec(prog, self._state(), no_rec)
        return EngineResult(
            start_cycle=start,
            finish_cycle=int(self.g[G_RUN_FINISH]),
            channel_finish=self.chs[:, C_FINISH].copy(),
            counts=self.counts - counts0,
            command_names=self.std.command_names,
            row_hits=self.chs[:, C_HITS] - hits0,
            row_misses=self.chs[:, C_MISSES] - miss0,
            tck_ns=self.cfg.dram.tck_ns,
            schedule=schedule,
        )


def run_program(cfg: HardwareConfig, prog: np.ndarray, *, refresh: bool | None = None, record: bool = False,
                fast: bool = True) -> EngineResult:
    """One-shot timing of a program from an idle, precharged device."""
    return Engine(cfg, refresh=refresh, fast=fast).run(prog, record=record)
