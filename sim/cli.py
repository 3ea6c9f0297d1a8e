"""`pimsim`: simulate GPT inference on processing-in-memory hardware.

The command line is the composition root: it wires workloads, mapping and sim together.
Subcommands import their modules lazily so `pimsim --help` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _overrides(pairs: list[str] | None) -> dict:
    from sim.config import parse_override

    return dict(parse_override(p) for p in (pairs or []))


def _add_hw(p: argparse.ArgumentParser, default: str | None = "pim-gpt") -> None:
    p.add_argument("--hw", default=default, help="preset name (hw_configs/NAME.yaml) or path to a YAML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set dram.timing.nRP=30 (repeatable)")


def _cmd_validate(argv: list[str]) -> int:
    from sim.config import load_config
    from sim.derived import derived_figures

    p = argparse.ArgumentParser(prog="pimsim validate", description="validate a hardware config and print derived figures")
    p.add_argument("config", nargs="?", default="pim-gpt", help="preset name or YAML path (default pim-gpt)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = p.parse_args(argv)
    cfg = load_config(a.config, _overrides(a.set))
    figs = derived_figures(cfg)
    if a.json:
        print(json.dumps({"config": cfg.resolved(), "derived": {f.name: {"value": f.value, "unit": f.unit} for f in figs}}, indent=2))
        return 0
    print(f"{cfg.source}: OK  ({cfg.name}: {cfg.description})")
    for f in figs:
        val = f"{f.value:,.4g}" if isinstance(f.value, float) and not float(f.value).is_integer() else f"{int(f.value):,}"
        print(f"  {f.name:32s} {val:>14s} {f.unit:8s} {f.how}")
    return 0


def _cmd_run_trace(argv: list[str]) -> int:
    from sim.aim_trace import load_aim_trace
    from sim.config import load_config
    from sim.engine import Engine
    from sim.results import provenance, write_json_atomic

    p = argparse.ArgumentParser(prog="pimsim run-trace",
                                description="time a trace in the text format of the public AiM simulator")
    p.add_argument("trace", help="trace file (AiM ISR text format)")
    _add_hw(p, default="aim-32ch")
    p.add_argument("--no-refresh", action="store_true", help="do not issue refresh (as the public AiM simulator)")
    p.add_argument("--json", metavar="OUT", help="write the result (with the resolved config) to this JSON file")
    a = p.parse_args(argv)
    cfg = load_config(a.hw, _overrides(a.set))
    prog = load_aim_trace(a.trace, cfg)
    eng = Engine(cfg, refresh=False if a.no_refresh else None)
    eng.warm_up()
    t0 = time.perf_counter()
    res = eng.run(prog)
    wall = time.perf_counter() - t0
    commands = res.command_totals()
    n = sum(commands.values())
    print(f"trace {a.trace} on {cfg.name} ({cfg.dram.channels} channels, refresh {'on' if eng.refresh else 'off'})")
    print(f"cycles={res.cycles} time_us={res.time_ns / 1e3:.3f} row_hit_rate={res.row_hit_rate():.4f}")
    print("commands " + " ".join(f"{k}={v}" for k, v in commands.items()))
    print(f"simulated {n} commands in {wall:.3f} s ({n / max(wall, 1e-9) / 1e6:.1f} M commands/s)")
    if a.json:
        payload = {
            "cycles": res.cycles,
            "time_ns": res.time_ns,
            "commands": commands,
            "commands_per_channel": {name: [int(x) for x in res.counts[:, i]]
                                     for i, name in enumerate(res.command_names) if res.counts[:, i].any()},
            "row_hit_rate": res.row_hit_rate(),
            "refresh": eng.refresh,
            "trace": a.trace,
            **provenance(cfg),
        }
        write_json_atomic(a.json, payload)
        print(f"wrote {a.json}")
    return 0


def _cmd_run(argv: list[str]) -> int:
    from sim.compose import simulate
    from sim.results import write_json_atomic
    from sim.system.model import MODES

    p = argparse.ArgumentParser(prog="pimsim run",
                                description="simulate GPT token generation on PIM hardware: latency and energy per token")
    _add_hw(p)
    p.add_argument("--model", default="gpt2-medium", help="model zoo name or YAML file (default gpt2-medium)")
    p.add_argument("--prompt-len", type=int, default=8, help="prompt tokens, processed one at a time (default 8)")
    p.add_argument("--gen-len", type=int, default=32, help="generated tokens (default 32)")
    p.add_argument("--mode", default="overlap", help=f"{' | '.join(MODES)} (default overlap)")
    p.add_argument("--strategy", default="pim-gpt", help="mapping strategy (default pim-gpt)")
    p.add_argument("--no-refresh", action="store_true", help="do not issue refresh")
    p.add_argument("--json", metavar="OUT", help="write the result (with the resolved config) to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.json:
        _check_output_path(a.json)
    gen = simulate(a.model, a.hw, a.prompt_len, a.gen_len, mode=a.mode, strategy=a.strategy,
                   overrides=_overrides(a.set), refresh=False if a.no_refresh else None,
                   progress=not a.no_progress)
    _print_summary(gen)
    if a.json:
        write_json_atomic(a.json, gen.to_json())
        print(f"wrote {a.json}")
    return 0


def _check_output_path(path: str) -> None:
    """Fail before simulating: the output must be a file in an existing directory."""
    from pathlib import Path

    out = Path(path)
    if out.is_dir():
        raise ValueError(f"--json {path}: is a directory; give a file name")
    if not out.parent.exists():
        raise ValueError(f"--json {path}: directory {out.parent} does not exist")


def _print_summary(gen) -> None:
    s, c = gen.summary, gen.config
    hw = c["hardware"]
    print(f"{c['model']['name']} on {hw['name']} ({hw['dram']['channels']} channels), mode {c['mode']}, "
          f"prompt {c['prompt_len']} + generated {c['gen_len']} tokens, refresh {'on' if c['refresh'] else 'off'}")
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


SUBCOMMANDS = {
    "run": (_cmd_run, "simulate token generation: latency and energy per token"),
    "validate": (_cmd_validate, "check a hardware config and print derived figures"),
    "run-trace": (_cmd_run_trace, "time a trace of the public AiM simulator"),
    "models": (_cmd_models, "list models with sizes and per-token costs"),
}


def main(argv: list[str] | None = None) -> int:
    from sim.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        print("usage: pimsim COMMAND [options]\n\n" + __doc__.splitlines()[0] + "\n\ncommands:")
        for name, (_, text) in SUBCOMMANDS.items():
            print(f"  {name:10s} {text}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\npimsim: error: unknown command '{argv[0]}'", file=sys.stderr)
            return 2
        return 0 if argv else 2
    try:
        return SUBCOMMANDS[argv[0]][0](argv[1:])
    except (ConfigError, ValueError, OSError) as exc:
        print(f"pimsim {argv[0]}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
