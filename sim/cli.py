"""`pimsim`: simulate GPT inference on processing-in-memory hardware.

The command line is the composition root: it wires workloads, mapping and sim together.
Subcommands import their modules lazily so `pimsim --help` stays fast.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

DEFAULT_HW = "pim-gpt"
COMPILE_NOTICE = "compiling the timing engine (first run only, ~1 min)"
COMPILE_NOTICE_AFTER_S = 2.0  # when the cache cannot be inspected: say it once warm-up takes this long


def _overrides(pairs: list[str] | None) -> dict:
    from sim.config import parse_override

    return dict(parse_override(p) for p in (pairs or []))


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set dram.timing.nRP=30 (repeatable)")


def _with_sets(overrides: dict) -> str:
    """' with --set dram.channels=16' for a header, or ''."""
    from sim.config import show_value

    if not overrides:
        return ""
    return " with " + " ".join(f"--set {k}={show_value(v)}" for k, v in overrides.items())


def describe(cfg) -> str:
    """The organisation of a resolved config (so a header never repeats a preset's stale text)."""
    d = cfg.dram
    pim = f", {cfg.pim.macs_per_bank} x {cfg.pim.mac_dtype} MACs per bank" if cfg.pim else ""
    return (f"{d.channels} channels x {d.banks_per_channel} banks ({d.bank_groups} bank groups), "
            f"{d.standard}, tCK {d.tck_ns:g} ns{pim}")


def _cmd_validate(argv: list[str]) -> int:
    from sim.config import load_config
    from sim.derived import derived_figures

    p = argparse.ArgumentParser(prog="pimsim validate", description="validate a hardware config and print derived figures")
    p.add_argument("config", nargs="?", default=DEFAULT_HW, help="preset name (hw_configs/NAME.yaml) or YAML path (default: %(default)s)")
    _add_set(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = p.parse_args(argv)
    overrides = _overrides(a.set)
    cfg = load_config(a.config, overrides)
    figs = derived_figures(cfg)
    if a.json:
        print(json.dumps({"config": cfg.resolved(), "derived": {f.name: {"value": f.value, "unit": f.unit} for f in figs}},
                         indent=2, allow_nan=False))
        return 0
    what = f"{cfg.name}: {describe(cfg)}" + (f"; preset: {cfg.description}" if cfg.description and not overrides else "")
    print(f"{cfg.source}{_with_sets(overrides)}: OK  ({what})")
    for f in figs:
        val = f"{f.value:,.4g}" if isinstance(f.value, float) and not float(f.value).is_integer() else f"{int(f.value):,}"
        print(f"  {f.name:32s} {val:>14s} {f.unit:8s} {f.how}")
    return 0


# --------------------------------------------------------------------------- engine warm-up


def engine_cache_is_warm() -> bool | None:
    """Whether the timing engine's compiled code is loaded or in numba's disk cache (None: cannot tell).

    Looks at every cached numba function of `sim.engine` (whatever its kernels are called): a
    function with no compiled signature and no valid entry in its cache index compiles on
    first use."""
    try:
        from numba.core.dispatcher import Dispatcher

        from sim import engine

        kernels = [f for f in vars(engine).values() if isinstance(f, Dispatcher)]
        if not kernels:
            return None
        for f in kernels:
            if f.signatures:
                continue
            cache = getattr(f, "_cache", None)
            index = getattr(getattr(cache, "_cache_file", None), "_load_index", None)
            if index is None:
                return None
            if not index():
                return False
        return True
    except Exception:  # numba internals moved: fall back to timing the warm-up
        return None


def warm_up_engine(engine, stream=None) -> None:
    """`engine.warm_up()`, saying once on stderr when it is about to compile (a silent minute otherwise)."""
    stream = stream or sys.stderr
    warm = engine_cache_is_warm()
    said = threading.Event()

    def notice():
        if not said.is_set():
            said.set()
            print(COMPILE_NOTICE, file=stream, flush=True)

    timer = None
    if warm is False:
        notice()
    elif warm is None:
        timer = threading.Timer(COMPILE_NOTICE_AFTER_S, notice)
        timer.daemon = True
        timer.start()
    try:
        engine.warm_up()
    finally:
        if timer is not None:
            timer.cancel()


# --------------------------------------------------------------------------- run-trace


def _cmd_run_trace(argv: list[str]) -> int:
    from pathlib import Path

    from sim.aim_trace import load_aim_trace
    from sim.commands import F_OP, OP_BARRIER
    from sim.config import load_config
    from sim.engine import Engine
    from sim.results import check_output_path, finite_or_none, provenance, write_json_atomic

    p = argparse.ArgumentParser(prog="pimsim run-trace",
                                description="time a trace in the text format of the public AiM simulator")
    p.add_argument("trace", help="trace file (AiM ISR text format; always read as a file name)")
    p.add_argument("--hw", default=DEFAULT_HW, help="preset name (hw_configs/NAME.yaml) or path to a YAML file (default: %(default)s)")
    _add_set(p)
    p.add_argument("--no-refresh", action="store_true", help="do not issue refresh (as the public AiM simulator)")
    p.add_argument("--json", metavar="OUT", help="write the result (with the resolved config) to this JSON file "
                                                 "(its folder must exist)")
    a = p.parse_args(argv)
    if a.json:
        check_output_path(a.json)  # before any work: a bad path is an error now, not after the run
    overrides = _overrides(a.set)
    cfg = load_config(a.hw, overrides)
    trace = Path(a.trace)
    prog = load_aim_trace(trace, cfg)
    if not (prog[:, F_OP] != OP_BARRIER).any():
        raise ValueError(f"{trace}: no DRAM work to time: the trace holds only comments, blank lines, "
                         "host-register operations or SYNC/EOC")
    eng = Engine(cfg, refresh=False if a.no_refresh else None)
    warm_up_engine(eng)
    t0 = time.perf_counter()
    res = eng.run(prog)
    wall = time.perf_counter() - t0
    commands = res.command_totals()
    n = sum(commands.values())
    hits, misses = int(res.row_hits.sum()), int(res.row_misses.sum())
    hit_rate = finite_or_none(hits / (hits + misses)) if hits + misses else None
    print(f"trace {trace} on {cfg.name}{_with_sets(overrides)} ({describe(cfg)}, refresh {'on' if eng.refresh else 'off'})")
    shown_rate = f"{hit_rate:.4f}" if hit_rate is not None else "n/a (no row accesses)"
    print(f"cycles={res.cycles} time_us={res.time_ns / 1e3:.3f} row_hit_rate={shown_rate}")
    print("commands " + " ".join(f"{k}={v}" for k, v in commands.items()))
    print(f"simulated {n} commands in {wall:.3f} s ({n / max(wall, 1e-9) / 1e6:.1f} M commands/s)")
    if a.json:
        payload = {
            "cycles": res.cycles,
            "time_ns": res.time_ns,
            "commands": commands,
            "commands_per_channel": {name: [int(x) for x in res.counts[:, i]]
                                     for i, name in enumerate(res.command_names) if res.counts[:, i].any()},
            "row_hit_rate": hit_rate,
            "refresh": eng.refresh,
            "trace": str(trace),
            "overrides": {k: v for k, v in overrides.items()},
            **provenance(cfg),
        }
        write_json_atomic(a.json, payload)
        print(f"wrote {a.json}")
    return 0


def _cmd_models(argv: list[str]) -> int:
    from workloads.cli import main as models_main

    return models_main(argv)


SUBCOMMANDS = {
    "validate": (_cmd_validate, "check a hardware config and print derived figures"),
    "run-trace": (_cmd_run_trace, "time a trace of the public AiM simulator"),
    "models": (_cmd_models, "list models with sizes and per-token costs"),
}


def _version() -> str:
    from sim.results import project_version

    return project_version()


def _error_text(exc: BaseException) -> str:
    """One line for the user: an OSError names its file without the errno prefix."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    from sim.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V"):
        print(f"pimsim {_version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        print("usage: pimsim [--version] COMMAND [options]\n\n" + __doc__.splitlines()[0] + "\n\ncommands:")
        for name, (_, text) in SUBCOMMANDS.items():
            print(f"  {name:10s} {text}")
        print(f"\nthe hardware preset is {DEFAULT_HW} unless given; `pimsim COMMAND --help` for a command's options")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\npimsim: error: unknown command '{argv[0]}'", file=sys.stderr)
            return 2
        return 0 if argv else 2
    try:
        return SUBCOMMANDS[argv[0]][0](argv[1:])
    except BrokenPipeError:  # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ConfigError, ValueError, OSError) as exc:
        print(f"pimsim {argv[0]}: error: {_error_text(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
