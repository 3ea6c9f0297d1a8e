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


def _add_hw(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hw", default=DEFAULT_HW,
                   help="preset name (hw_configs/NAME.yaml) or path to a YAML file (default: %(default)s)")
    _add_set(p)


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

    import numpy as np

    from sim.aim_trace import load_aim_trace_lines
    from sim.commands import F_OP, OP_BARRIER, barrier, channel_mask, program
    from sim.config import load_config
    from sim.engine import FRONT_ENDS, Engine
    from sim.results import check_output_path, finite_or_none, provenance, write_json_atomic

    p = argparse.ArgumentParser(prog="pimsim run-trace",
                                description="time a trace in the text format of the public AiM simulator")
    p.add_argument("trace", help="trace file (AiM ISR text format; always read as a file name)")
    p.add_argument("--hw", default=DEFAULT_HW, help="preset name (hw_configs/NAME.yaml) or path to a YAML file (default: %(default)s)")
    _add_set(p)
    p.add_argument("--no-refresh", action="store_true", help="do not issue refresh (as the public AiM simulator)")
    p.add_argument("--front-end", default="aim", choices=sorted(FRONT_ENDS),
                   help="aim: that simulator's trace front end (one line decoded per cycle into 33-entry "
                        "in-order queues per channel; cycles until EOC has called back, rows left open); "
                        "pim-gpt: every channel fed in parallel, cycles until the last command and the closing "
                        "precharge have completed (default: %(default)s)")
    p.add_argument("--json", metavar="OUT", help="write the result (with the resolved config) to this JSON file "
                                                 "(its folder must exist)")
    a = p.parse_args(argv)
    if a.json:
        check_output_path(a.json)  # before any work: a bad path is an error now, not after the run
    overrides = _overrides(a.set)
    cfg = load_config(a.hw, overrides)
    trace = Path(a.trace)
    prog, host_lines = load_aim_trace_lines(trace, cfg)
    if not (prog[:, F_OP] != OP_BARRIER).any():
        raise ValueError(f"{trace}: no DRAM work to time: the trace holds only comments, blank lines, "
                         "host-register operations or SYNC/EOC")
    aim = a.front_end == "aim"
    if aim and prog[-1, F_OP] != OP_BARRIER:  # a trace without EOC ends as if it had one
        prog = np.concatenate([prog, program([barrier(channel_mask(range(cfg.dram.channels)))])])
        host_lines = np.append(host_lines, 0)
    eng = Engine(cfg, refresh=False if a.no_refresh else None, front_end=a.front_end)
    warm_up_engine(eng)
    t0 = time.perf_counter()
    if aim:  # that simulator ends at EOC's callback and never closes the last rows
        res = eng.run(prog, host_lines=host_lines, close_rows=False)
        cycles = res.front_end_cycles
    else:
        res = eng.run(prog)
        cycles = res.cycles
    wall = time.perf_counter() - t0
    commands = res.command_totals()
    n = sum(commands.values())
    hits, misses = int(res.row_hits.sum()), int(res.row_misses.sum())
    hit_rate = finite_or_none(hits / (hits + misses)) if hits + misses else None
    time_ns = cycles * res.tck_ns
    print(f"trace {trace} on {cfg.name}{_with_sets(overrides)} ({describe(cfg)}, refresh {'on' if eng.refresh else 'off'}, "
          f"front end {a.front_end})")
    shown_rate = f"{hit_rate:.4f}" if hit_rate is not None else "n/a (no row accesses)"
    print(f"cycles={cycles} time_us={time_ns / 1e3:.3f} row_hit_rate={shown_rate}")
    print("commands " + " ".join(f"{k}={v}" for k, v in commands.items()))
    print(f"simulated {n} commands in {wall:.3f} s ({n / max(wall, 1e-9) / 1e6:.1f} M commands/s)")
    if a.json:
        payload = {
            "cycles": cycles,
            "time_ns": time_ns,
            "front_end": a.front_end,
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


def _cmd_run(argv: list[str]) -> int:
    from sim.compose import simulate
    from sim.results import write_json_atomic
    from sim.system.model import FRONT_ENDS, MODES

    p = argparse.ArgumentParser(prog="pimsim run",
                                description="simulate GPT token generation on PIM hardware: latency and energy per token")
    _add_hw(p)
    p.add_argument("--model", default="gpt2-medium", help="model zoo name or YAML file (default gpt2-medium)")
    p.add_argument("--prompt-len", type=int, default=8, help="prompt tokens, processed one at a time (default 8)")
    p.add_argument("--gen-len", type=int, default=32, help="generated tokens (default 32)")
    p.add_argument("--mode", default="overlap", help=f"{' | '.join(MODES)} (default overlap)")
    p.add_argument("--strategy", default="pim-gpt", help="mapping strategy (default pim-gpt)")
    p.add_argument("--front-end", default="pim-gpt", help=f"{' | '.join(FRONT_ENDS)}: how the ASIC hands "
                   "instructions to the channels (default pim-gpt: to all at once; aim: one per cycle into a "
                   "33-entry queue per channel, as the public AiM simulator)")
    p.add_argument("--no-refresh", action="store_true", help="do not issue refresh")
    p.add_argument("--json", metavar="OUT", help="write the result (with the resolved config) to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plot", metavar="DIR", help="write the run's plots (PNG) into this folder (created if its "
                                                 "parent exists)")
    a = p.parse_args(argv)
    if a.json:
        from sim.results import check_output_path

        check_output_path(a.json)  # before any work
    if a.plot:
        _check_plot_dir(a.plot)
    gen = simulate(a.model, a.hw, a.prompt_len, a.gen_len, mode=a.mode, strategy=a.strategy,
                   overrides=_overrides(a.set), refresh=False if a.no_refresh else None,
                   progress=not a.no_progress, front_end=a.front_end)
    _print_summary(gen)
    if a.json:
        write_json_atomic(a.json, gen.to_json())
        print(f"wrote {a.json}")
    if a.plot:
        from sim.report import run_figures, save_figures

        for path in save_figures(run_figures(gen.to_json()), a.plot):
            print(f"wrote {path}")
    return 0


def _check_plot_dir(path: str) -> None:
    """Before any work: the plot folder must be creatable."""
    from pathlib import Path

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--plot {out}: exists and is not a folder")
    if not out.exists() and not out.parent.is_dir():
        raise FileNotFoundError(f"--plot {out}: parent folder '{out.parent}' does not exist (it is not created)")


def _cmd_sweep(argv: list[str]) -> int:
    from sim.sweep import load_spec, run_sweep

    p = argparse.ArgumentParser(prog="pimsim sweep", description="run a grid of simulations on Dask; one Parquet "
                                "file per point in --out (read the folder with pandas.read_parquet); re-running "
                                "skips finished points. Spec format: see sim/sweep.py or the README")
    p.add_argument("spec", help="sweep spec (YAML): hw, models, prompt_len, gen_len, modes, strategy, refresh, set, grid")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created if its parent exists)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler, e.g. "
                   "tcp://10.0.0.1:8786 (default: a local cluster); workers must see the same model files")
    p.add_argument("--workers", type=int, default=2, help="workers of the local cluster (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    spec = load_spec(a.spec)  # every spec error before anything runs
    res = run_sweep(spec, a.out, scheduler=a.scheduler, workers=a.workers, progress=not a.no_progress)
    print(f"{res.total} points: {res.skipped} finished before, {res.computed} run now, {res.failed} failed; "
          f"{res.wall_s:.1f} s; results in {res.out} (pandas.read_parquet('{res.out}'))")
    if res.failed:
        import pandas as pd

        df = pd.read_parquet(res.out)
        for _, r in df[df["status"] != "ok"].head(5).iterrows():
            print(f"  failed {r['config_hash']}: {r['error']}", file=sys.stderr)
    return 1 if res.failed else 0


def _cmd_report(argv: list[str]) -> int:
    from sim.report import default_plot_dir, figures_for, save_figures

    p = argparse.ArgumentParser(prog="pimsim report", description="plot saved results again without simulating: "
                                "a run JSON (pimsim run --json) or a sweep folder (pimsim sweep --out)")
    p.add_argument("results", help="run JSON file or sweep results folder")
    p.add_argument("--out", metavar="DIR", help="folder for the PNGs (default: beside the results, NAME-plots)")
    a = p.parse_args(argv)
    out = a.out or default_plot_dir(a.results)
    for path in save_figures(figures_for(a.results), out):
        print(f"wrote {path}")
    return 0


def _print_summary(gen) -> None:
    s, c = gen.summary, gen.config
    hw = c["hardware"]
    print(f"{c['model']['name']} on {hw['name']} ({hw['dram']['channels']} channels), mode {c['mode']}, "
          f"prompt {c['prompt_len']} + generated {c['gen_len']} tokens, refresh {'on' if c['refresh'] else 'off'}"
          + ("" if c.get("front_end", "pim-gpt") == "pim-gpt" else f", front end {c['front_end']}"))
    rows = [
        ("latency per token", s["latency_s_per_token_mean"] * 1e3, "ms"),
        ("tokens per second", s["tokens_per_s"], "tok/s"),
        ("energy per token", s["energy_j_per_token_mean"] * 1e3, "mJ"),
        ("PIM alone per token", s["pim_only_s_per_token"] * 1e3, "ms"),
        ("row-pass floor per token", s["row_pass_floor_s_per_token"] * 1e3, "ms"),
        ("bandwidth bound per token", s["bound_s_per_token"] * 1e3, "ms"),
        ("row-hit rate", s["row_hit_rate"] * 100 if s["row_hit_rate"] is not None else float("nan"), "%"),
        ("MAC utilisation", s["mac_utilization"] * 100, "%"),
        ("non-PIM share of latency", s["non_pim_latency_share"] * 100, "%"),
    ]
    for name, v, unit in rows:
        print(f"  {name:28s} {v:12.4f} {unit}")
    lat = s["latency_s_per_token_mean"]
    print("  latency by op (share of a token):")
    for k, v in sorted(s["breakdown_latency_s"].items(), key=lambda kv: -kv[1]):
        print(f"    {k:24s} {v * 1e6:12.2f} us  {v / lat * 100:6.2f} %")
    e = s["breakdown_energy_j"]
    tot = s["energy_j_per_token_mean"]
    print("  energy by component (per token):")
    parts = [("DRAM/PIM commands", sum(e["pim_commands"].values())), ("background", sum(e["background"].values())),
             ("I/O", e["io"]), ("ASIC", sum(e["asic"].values()))]
    for k, v in parts:
        print(f"    {k:24s} {v * 1e6:12.2f} uJ  {v / tot * 100:6.2f} %")


def _cmd_models(argv: list[str]) -> int:
    from workloads.cli import main as models_main

    return models_main(argv)


# --------------------------------------------------------------------------- mapping commands


def _ratio(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _add_step(p: argparse.ArgumentParser, position: bool = True) -> None:
    from mapping.placement import STRATEGIES

    p.add_argument("--model", required=True, help="built-in model name or a model YAML file")
    _add_hw(p)
    if position:
        p.add_argument("--position", type=int, required=True, help="position of the decoded token (0-based)")
    p.add_argument("--strategy", default="pim-gpt", choices=STRATEGIES, help="mapping strategy (default pim-gpt)")
    p.add_argument("--context", type=int, help="positions of KV cache to reserve (default: the model's max_context)")


def _cmd_compile(argv: list[str]) -> int:
    import numpy as np

    from mapping.compile import compiler_for
    from mapping.kernels import ROW_COMMANDS
    from mapping.placement import placement_summary
    from mapping.stats import add_timing, step_statistics
    from sim.config import load_config
    from sim.derived import derived_figures
    from sim.engine import Engine
    from sim.results import check_output_path, provenance, write_json_atomic
    from workloads import get_spec

    p = argparse.ArgumentParser(prog="pimsim compile", description="compile one decode step; print its statistics "
                                "and the time of its PIM part alone (the engine, ops back to back)")
    _add_step(p)
    p.add_argument("--row-commands", choices=ROW_COMMANDS, help="how rows are opened and closed (default: explicit "
                   "for pim-gpt, controller for naive)")
    p.add_argument("--no-refresh", action="store_true", help="time without refresh")
    p.add_argument("--json", metavar="OUT", help="write totals, per-tag and per-op statistics to this JSON file")
    a = p.parse_args(argv)
    if a.json:
        check_output_path(a.json)  # before any work
    cfg = load_config(a.hw, _overrides(a.set))
    comp = compiler_for(get_spec(a.model), cfg, a.strategy, a.context, a.row_commands)
    prog = comp.compile(a.position)
    row_pass = int(next(f.value for f in derived_figures(cfg) if f.name == "row_pass_cycles"))
    eng = Engine(cfg, refresh=False if a.no_refresh else None)
    tm, gap = cfg.dram.timing, eng.std.self_gap(eng.std.cmd("MAC16"))
    stats = step_statistics(prog, comp.dev, row_pass, lambda cols: np.maximum(
        tm["nRCDRDMAC"] + (cols - 1) * gap + tm["nRTP"], tm["nRAS"]) + tm["nRP"])
    eng.warm_up()
    res = eng.run(prog.pim_instructions())
    std = eng.std
    columns = tuple(n for n, c in zip(std.command_names, std.is_column) if c)
    acts = [c for c in (std.cmd_act, std.cmd_act_all) if c >= 0]
    per_op = {i: {"first_issue_cycle": int(res.op_first_issue[i]), "finish_cycle": int(res.op_finish[i]),
                  "row_activations": int(res.op_counts[i, acts].sum()), "mode_changes": int(res.op_counts[i, std.cmd_mode])}
              for i in range(len(res.op_first_issue)) if res.op_first_issue[i] >= 0}
    add_timing(stats, res.cycles, res.command_totals(), columns, std.command_names[std.cmd_mode],
               std.command_names[std.cmd_ref] if std.cmd_ref >= 0 else None, cfg.dram.tck_ns, per_op)
    t, place = stats["total"], placement_summary(comp.placement)
    print(f"{prog.model} on {cfg.name}: decode step at position {prog.position} (strategy {prog.strategy}, rows "
          f"{comp.mode}, refresh {'on' if eng.refresh else 'off'}, KV cache for {comp.context} positions)")
    print(f"  ops {len(prog.ops)} (PIM {t['pim_ops']}, ASIC {t['asic_ops']}, I/O {t['io_ops']}), "
          f"{t['instructions']:,} PIM instructions")
    print(f"  pim_cycles={t['pim_cycles']:,} ({t['pim_time_us']:.1f} us)  row_pass_floor_cycles="
          f"{t['row_pass_floor_cycles']:,} ({t['row_passes_busiest_channel']:,} row passes x {row_pass})  "
          f"pim/floor={_ratio(t['pim_over_floor'])}")
    print(f"  row_pass_floor_exact_cycles={t.get('row_pass_floor_exact_cycles', 0):,} (each pass at its own column "
          f"count)  pim/exact_floor={_ratio(t.get('pim_over_exact_floor'))}")
    print(f"  row_hit_rate={_ratio(t['row_hit_rate'], 4)}  row_activations={t['row_activations']:,}  "
          f"mode_changes={t['mode_changes']:,}  refreshes={t['refreshes']:,}")
    print(f"  MAC16={t['mac16']:,}  GB_writes={t['gb_writes']:,}  MAC_reads={t['mac_reads']:,}  "
          f"KV_writes={t['kv_writes']:,}  reads={t['reads']:,}  io_bytes={t['io_bytes']:,}  "
          f"asic_elements={t['asic_elements']:,}")
    print(f"  MACs={t['macs']:,}  compute padding={t['compute_padding']:.2%}  memory padding="
          f"{place['padding_fraction']:.2%} of {place['allocated_bytes']:,} allocated bytes")
    print(f"  {'tag':18s} {'ops':>6s} {'MAC16':>12s} {'GB_writes':>10s} {'MAC_reads':>10s} {'io_bytes':>12s} "
          f"{'asic_elements':>13s}")
    for tag, v in stats["by_tag"].items():
        print(f"  {tag:18s} {v['ops']:6d} {v['mac16']:12,d} {v['gb_writes']:10,d} {v['mac_reads']:10,d} "
              f"{v['io_bytes']:12,d} {v['asic_elements']:13,d}")
    if a.json:
        payload = {"model": prog.model, "position": prog.position, "strategy": prog.strategy,
                   "row_commands": comp.mode, "refresh": eng.refresh, "total": t, "by_tag": stats["by_tag"],
                   "placement": place, "ops": stats["ops"], **provenance(cfg)}
        write_json_atomic(a.json, payload)
        print(f"wrote {a.json}")
    return 0


def _cmd_place(argv: list[str]) -> int:
    from mapping.placement import place, placement_summary, placement_table
    from sim.config import load_config
    from sim.results import check_output_path, provenance, write_json_atomic
    from workloads import get_spec

    p = argparse.ArgumentParser(prog="pimsim place", description="where every weight matrix and the KV cache live")
    _add_step(p, position=False)
    p.add_argument("--json", metavar="OUT", help="write the table and summary to this JSON file")
    a = p.parse_args(argv)
    if a.json:
        check_output_path(a.json)
    cfg = load_config(a.hw, _overrides(a.set))
    pl = place(get_spec(a.model), cfg, a.strategy, a.context)
    rows, s = placement_table(pl), placement_summary(pl)
    print(f"{s['model']} on {s['hardware']} (strategy {s['strategy']}, KV cache for {s['context']} positions): "
          f"{s['rows_used']:,} of {s['rows_per_bank']:,} rows per bank, {s['allocated_bytes']:,} of "
          f"{s['capacity_bytes']:,} bytes; padding {s['padding_fraction']:.2%}; ASIC-resident vectors "
          f"{s['asic_param_bytes']:,} bytes")
    print(f"{'region':20s} {'kind':8s} {'shape':>16s} {'ch':>3s} {'banks':>5s} {'rows':>12s} {'bytes':>13s} "
          f"{'util':>6s}  tensors")
    for r in rows:
        span = f"{r['first_row']}+{r['rows']}"
        print(f"{r['region']:20s} {r['kind']:8s} {r['shape']:>16s} {r['channels']:3d} {r['banks']:5d} {span:>12s} "
              f"{r['bytes']:13,d} {r['utilisation']:6.1%}  {r['tensors']}")
    if a.json:
        write_json_atomic(a.json, {"summary": s, "regions": rows, **provenance(cfg)})
        print(f"wrote {a.json}")
    return 0


def _cmd_accuracy(argv: list[str]) -> int:
    from mapping.accuracy import accuracy
    from mapping.kernels import ROW_COMMANDS
    from mapping.placement import STRATEGIES
    from sim.compose import pim_decoder
    from sim.config import load_config
    from sim.results import check_output_path, provenance, write_json_atomic
    from workloads import load_model

    p = argparse.ArgumentParser(prog="pimsim accuracy", description="run the fp32 reference and the compiled programs "
                                "on the same tokens (teacher forcing) and compare the logits")
    p.add_argument("--model", required=True, help="built-in model name, model YAML, .gguf file or HF directory")
    p.add_argument("--weights", default="random", help="random (seeded), auto (the model's own or packaged weights) "
                   "or a .gguf file / Hugging Face directory")
    p.add_argument("--tokens", type=int, default=8, help="tokens to decode (default 8)")
    p.add_argument("--numerics", default="pim", choices=["pim", "exact"],
                   help="pim: the functional core (bf16 memory and MACs, the configured accumulation and ASIC "
                        "approximations); exact: fp32 with exact sums (default: %(default)s)")
    _add_hw(p)
    p.add_argument("--strategy", default="pim-gpt", choices=STRATEGIES)
    p.add_argument("--row-commands", choices=ROW_COMMANDS)
    p.add_argument("--seed", type=int, default=0, help="seed of random weights and random prompt tokens")
    p.add_argument("--json", metavar="OUT", help="write summary and per-token figures to this JSON file")
    a = p.parse_args(argv)
    if a.json:
        check_output_path(a.json)
    overrides = _overrides(a.set)
    cfg = load_config(a.hw, overrides)
    model = load_model(a.model, weights=a.weights, seed=a.seed)
    out = accuracy(model, cfg, a.tokens, a.strategy, a.row_commands, a.numerics, a.seed,
                   decoders={"pim": pim_decoder(cfg)})
    s = out["summary"]
    ppl = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    print(f"{s['model']} ({s['weights']}) on {cfg.name}{_with_sets(overrides)}, strategy {s['strategy']}, "
          f"{s['tokens']} tokens ({s['prompt_tokens']} prompt), numerics {s['numerics']}")
    print(f"  top1_agreement={s['top1_agreement']:.4f} max_abs_logit_error={s['max_abs_logit_error']:.4g} "
          f"mean_abs_logit_error={s['mean_abs_logit_error']:.4g} perplexity reference={ppl(s['perplexity_reference'])} "
          f"{s['numerics']}={ppl(s['perplexity_numerics'])}")
    if "reference_text" in s:
        print(f"  prompt: {s['prompt_text']!r}")
        print(f"  reference greedy: {s['reference_text']!r}")
        print(f"  {s['numerics']} greedy: {s['numerics_text']!r}")
    if a.json:
        write_json_atomic(a.json, {**out, "overrides": overrides, **provenance(cfg)})
        print(f"wrote {a.json}")
    return 0


def _cmd_accuracy_sweep(argv: list[str]) -> int:
    from sim.compose import accuracy_sweep
    from sim.functional.tradeoff import DEFAULT_GRID, KNOBS, parse_knob, plot, write_csv
    from sim.results import check_output_path, provenance, write_json_atomic

    p = argparse.ArgumentParser(prog="pimsim accuracy-sweep", description="accuracy of the PIM numerics next to "
                                "simulated latency and energy, one numeric knob varied at a time")
    p.add_argument("--model", default="smollm2-135m", help="model zoo name (default %(default)s)")
    p.add_argument("--weights", default="auto", help="random, auto or a weights file (default %(default)s)")
    _add_hw(p)
    p.add_argument("--knob", action="append", metavar="KEY=V1,V2",
                   help=f"a knob and its values (repeatable; replaces the default grid). Knobs: {', '.join(KNOBS)}")
    p.add_argument("--tokens", type=int, default=16, help="teacher-forced tokens for accuracy (default 16)")
    p.add_argument("--prompt-len", type=int, default=4, help="prompt tokens of the timing run (default 4)")
    p.add_argument("--gen-len", type=int, default=4, help="generated tokens of the timing run (default 4)")
    p.add_argument("--mode", default="overlap", help="system model mode (default overlap)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", metavar="OUT", help="write the table as CSV")
    p.add_argument("--json", metavar="OUT", help="write the table, the resolved config and the run's facts as JSON")
    p.add_argument("--plot", metavar="OUT", help="write the trade-off plot (PNG, SVG or PDF by suffix)")
    a = p.parse_args(argv)
    for out in (a.csv, a.json, a.plot):
        if out:
            check_output_path(out)
    grid = dict(parse_knob(k) for k in a.knob) if a.knob else DEFAULT_GRID
    rows, cfg, facts = accuracy_sweep(a.model, a.weights, a.hw, _overrides(a.set), grid, a.tokens, a.prompt_len,
                                      a.gen_len, mode=a.mode, seed=a.seed,
                                      progress=lambda label: print(f"  running {label}", file=sys.stderr, flush=True))
    print(f"{facts['model']} on {cfg.name}: accuracy over {facts['tokens']} teacher-forced tokens, cost over "
          f"{a.prompt_len} + {a.gen_len} simulated tokens ({a.mode})")
    print(f"  {'config':34s} {'top1':>6s} {'mean|err|':>10s} {'max|err|':>9s} {'ppl':>8s} {'lat us':>9s} "
          f"{'E uJ':>9s} {'ASIC uJ':>8s}")
    for r in rows:
        ppl = r["perplexity_numerics"]
        print(f"  {r['label']:34s} {r['top1_agreement']:6.3f} {r['mean_abs_logit_error']:10.4g} "
              f"{r['max_abs_logit_error']:9.4g} {ppl if ppl is None else round(ppl, 3)!s:>8s} "
              f"{r['latency_s_per_token'] * 1e6:9.3f} {r['energy_j_per_token'] * 1e6:9.3f} "
              f"{r['asic_energy_j_per_token'] * 1e6:8.3f}")
    if a.csv:
        print(f"wrote {write_csv(a.csv, rows)}")
    if a.json:
        print(f"wrote {write_json_atomic(a.json, {'rows': rows, **facts, **provenance(cfg)})}")
    if a.plot:
        title = f"{facts['model']} on {cfg.name}: accuracy ({facts['tokens']} tokens) vs simulated cost"
        print(f"wrote {plot(a.plot, rows, title)}")
    return 0


def _cmd_export_trace(argv: list[str]) -> int:
    from sim.config import load_config
    from sim.results import check_output_path
    from sim.system.model import MODES

    p = argparse.ArgumentParser(prog="pimsim export-trace", description="--format aim: write the PIM part of a decode "
                                "step as a trace of the public AiM simulator (rows left to its controller: that format "
                                "has no precharge or activate ISR); `pimsim run-trace` reads it back. --format "
                                "perfetto: time prompt + generated tokens on the system model and write a "
                                "Chrome/Perfetto trace-event JSON timeline (open it in ui.perfetto.dev): a track per "
                                "PIM channel (and its refreshes), the ASIC, the I/O links and the decode steps")
    p.add_argument("--format", default="aim", choices=["aim", "perfetto"])
    _add_step(p, position=False)
    p.add_argument("--position", type=int, help="aim: position of the decoded token (0-based; required)")
    p.add_argument("--tokens", type=int, help="perfetto: generated tokens to time after the prompt (required)")
    p.add_argument("--prompt-len", type=int, help="perfetto: prompt tokens, one decode step each (default 1)")
    p.add_argument("--mode", help=f"perfetto: {' | '.join(MODES)} | both (serial above overlap; default overlap)")
    p.add_argument("--no-refresh", action="store_true", help="perfetto: do not issue refresh")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    a = p.parse_args(argv)
    out = check_output_path(a.output)
    if a.format == "aim":
        wrong = [f for f, v in (("--tokens", a.tokens), ("--prompt-len", a.prompt_len), ("--mode", a.mode),
                                ("--no-refresh", a.no_refresh or None)) if v is not None]
        if wrong:
            p.error(f"{', '.join(wrong)} apply to --format perfetto only")
        if a.position is None:
            p.error("--format aim needs --position")
    else:
        if a.position is not None:
            p.error("--position applies to --format aim; a perfetto timeline covers positions 0 .. "
                    "prompt-len + tokens - 1")
        if a.tokens is None:
            p.error("--format perfetto needs --tokens")
    cfg = load_config(a.hw, _overrides(a.set))
    if a.format == "perfetto":
        return _export_perfetto(a, cfg, out)
    return _export_aim(a, cfg, out)


def _export_aim(a, cfg, out) -> int:
    import os
    import tempfile

    from mapping.compile import compile_step
    from mapping.export import aim_trace
    from workloads import get_spec

    prog = compile_step(get_spec(a.model), cfg, a.position, a.strategy, a.context, row_commands="controller")
    text = aim_trace(prog, cfg.dram.channels)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print(f"wrote {out}: {text.count(chr(10)):,} lines ({prog.model} on {cfg.name}, position {prog.position}, "
          f"strategy {prog.strategy}, rows left to the controller); time it with: pimsim run-trace {out} --hw {a.hw} "
          "--front-end pim-gpt (the timing of pimsim compile --row-commands controller; --front-end aim models "
          "that simulator's own front end)")
    return 0


def _export_perfetto(a, cfg, out) -> int:
    from mapping.compile import compiler_for
    from sim.timeline import check_request, export_perfetto
    from workloads import get_spec

    spec = get_spec(a.model)
    prompt = 1 if a.prompt_len is None else a.prompt_len
    check_request(a.mode or "overlap", prompt, a.tokens, spec.max_context)  # before placing and compiling
    positions = prompt + a.tokens
    compiler = compiler_for(spec, cfg, a.strategy, a.context or positions)
    s = export_perfetto(out, cfg, (compiler.compile(pos) for pos in range(positions)), mode=a.mode or "overlap",
                        refresh=False if a.no_refresh else None, prompt_len=prompt, tokens=a.tokens,
                        model=spec.name, strategy=a.strategy, max_context=spec.max_context)
    span = ", ".join(f"{m} {us:.3f} us" for m, us in s["time_us"].items())
    print(f"wrote {out}: {s['slices']:,} slices ({s['ops']:,} ops, {s['refreshes']:,} refreshes) over "
          f"{s['steps']} decode steps: {span} ({spec.name} on {cfg.name}, refresh "
          f"{'on' if s['refresh'] else 'off'}); open it in ui.perfetto.dev")
    return 0


def _cmd_baselines(argv: list[str]) -> int:
    from sim.baselines import DEVICES_YAML, MEASURED_COLUMNS, PAPER_MODELS, ROOFLINE_METHOD, baseline_table, \
        load_devices, load_measured, load_run_result
    from sim.results import check_output_path, write_json_atomic
    from sim.system.model import MODES

    cols = "; ".join(f"{c} ({'required' if req else 'optional'}): {what}" for c, (req, what) in MEASURED_COLUMNS.items())
    p = argparse.ArgumentParser(prog="pimsim baselines", description="roofline baselines (T4, A100, Xeon Gold 6154) "
                                "and measured latencies; with --compare, PIM-GPT's speedup and energy efficiency "
                                f"over each. Method: {ROOFLINE_METHOD}")
    p.add_argument("--model", action="extend", nargs="+", help=f"model zoo names (repeatable; default the paper's 8: "
                   f"{', '.join(PAPER_MODELS)})")
    p.add_argument("--prompt-len", type=int, default=1, help="prompt tokens of the roofline runs (default 1)")
    p.add_argument("--gen-len", type=int, default=8, help="generated tokens of the roofline runs (default 8)")
    p.add_argument("--devices", default=str(DEVICES_YAML), help="devices YAML (default: %(default)s)")
    p.add_argument("--csv", metavar="FILE", help=f"measured latencies, one run per line; columns: {cols}")
    p.add_argument("--compare", action="store_true", help="simulate each model on --hw (at each baseline's lengths) "
                   "and add PIM-GPT's speedup and energy efficiency")
    p.add_argument("--result", action="append", metavar="RUN.json", help="a saved `pimsim run --json` result "
                   "(repeatable): compare its figures with the baselines at its model and lengths, without simulating")
    _add_hw(p)
    p.add_argument("--mode", default="overlap", choices=MODES, help="system model mode with --compare (default overlap)")
    p.add_argument("--json", metavar="OUT", help="write the rows (with the devices and, with --compare, the resolved "
                   "hardware config) to this JSON file")
    a = p.parse_args(argv)
    if a.json:
        check_output_path(a.json)
    devices = load_devices(a.devices)
    measured = load_measured(a.csv, devices) if a.csv else []
    saved = [load_run_result(r) for r in a.result or []]
    models = list(dict.fromkeys(a.model)) if a.model else [] if saved else list(PAPER_MODELS)  # in order, each once
    cfg = None
    cache = {(r.model, r.prompt_len, r.gen_len): (r.latency_s_per_token, r.energy_j_per_token) for r in saved}
    if a.compare:
        from sim.compose import simulate
        from sim.config import load_config

        cfg = load_config(a.hw, _overrides(a.set))

    def pim(model, prompt_len, gen_len):
        key = (model, prompt_len, gen_len)
        if key not in cache and a.compare:
            s = simulate(model, cfg, prompt_len, gen_len, mode=a.mode).summary
            cache[key] = (s["latency_s_per_token_mean"], s["energy_j_per_token_mean"])
        return cache.get(key)
    rows = []
    for r in saved:  # each saved run against the baselines at its own lengths
        same = [b for b in measured if (b.prompt_len, b.gen_len) == (r.prompt_len, r.gen_len)]
        rows += baseline_table([r.model], r.prompt_len, r.gen_len, devices, same, pim)
    if models:
        rows += baseline_table(models, a.prompt_len, a.gen_len, devices, measured, pim)
    print(f"baselines ({ROOFLINE_METHOD}); per decode step, mean over the run's steps (prompt + generated)")
    head = f"{'model':13s} {'device':16s} {'method':9s} {'steps':>9s} {'ms/step':>10s} {'mJ/step':>10s} {'bound':8s}"
    with_pim = any("speedup" in r for r in rows)
    if with_pim:
        head += f" {'PIM ms':>9s} {'PIM mJ':>9s} {'speedup':>9s} {'energy x':>9s}"
    print(head)
    for r in rows:
        line = (f"{r['model']:13s} {r['device']:16s} {r['method']:9s} {r['prompt_len']:>4d}+{r['gen_len']:<4d} "
                f"{r['latency_ms_per_token']:10.4f} {r['energy_mj_per_token']:10.3f} "
                f"{r['bound'] if r['method'] == 'roofline' else 'measured':8s}")
        if with_pim and "speedup" in r:
            line += (f" {r['pim_latency_ms_per_token']:9.4f} {r['pim_energy_mj_per_token']:9.4f} {r['speedup']:9.2f} "
                     f"{r['energy_efficiency']:9.1f}")
        elif with_pim:
            line += f" {'n/a (no PIM-GPT run at these lengths; --compare simulates one)':>39s}"
        print(line)
    if a.json:
        from dataclasses import asdict

        from sim.results import project_version, provenance

        payload = {"method": ROOFLINE_METHOD, "rows": rows, "devices": {k: asdict(d) for k, d in devices.items()},
                   "measured_csv": a.csv, "results": a.result or [], **(provenance(cfg, mode=a.mode) if cfg is not None
                                             else {"pimsim_version": project_version()})}
        write_json_atomic(a.json, payload)
        print(f"wrote {a.json}")
    return 0


SUBCOMMANDS = {
    "run": (_cmd_run, "simulate token generation: latency and energy per token"),
    "sweep": (_cmd_sweep, "run a grid of simulations on Dask into a Parquet dataset"),
    "report": (_cmd_report, "plot a saved run or sweep again"),
    "validate": (_cmd_validate, "check a hardware config and print derived figures"),
    "run-trace": (_cmd_run_trace, "time a trace of the public AiM simulator"),
    "models": (_cmd_models, "list models with sizes and per-token costs"),
    "compile": (_cmd_compile, "compile a decode step: statistics and PIM cycles"),
    "place": (_cmd_place, "where a model's weights and KV cache live"),
    "accuracy": (_cmd_accuracy, "compiled programs vs the reference on the same tokens"),
    "accuracy-sweep": (_cmd_accuracy_sweep, "accuracy next to latency and energy over numeric knobs"),
    "export-trace": (_cmd_export_trace, "write a decode step as an AiM trace, or a Perfetto timeline"),
    "baselines": (_cmd_baselines, "roofline and measured GPU/CPU baselines; speedup of PIM-GPT over them"),
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
