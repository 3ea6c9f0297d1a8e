"""`pimsim models`: the model zoo (and YAML models) with sizes and per-token costs."""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from .spec import ModelSpec, SpecError
from .zoo import builtin_specs, load_yaml_specs

DEFAULT_CONTEXT = 1024


def model_row(spec: ModelSpec, context: int) -> dict:
    """One model's shapes and costs; the context is capped at the model's max_context."""
    ctx = min(context, spec.max_context)
    return {
        "model": spec.name, "family": spec.family, "layers": spec.n_layers, "d_model": spec.d_model,
        "heads": spec.n_heads, "kv_heads": spec.n_kv_heads, "d_head": spec.d_head, "d_ff": spec.d_ff,
        "vocab": spec.vocab_size, "max_context": spec.max_context,
        "params": spec.n_params, "bf16_bytes": spec.bf16_bytes,
        "gemv_weight_bf16_bytes": spec.matmul_weight_bf16_bytes,
        "context": ctx, "flops_per_token": spec.flops_per_token(ctx),
        "kv_bytes_per_position": spec.kv_bytes_per_position,
        "kv_cache_bytes": spec.kv_cache_bytes(ctx),
    }


def select_specs(models: list[str] | None) -> list[ModelSpec]:
    """Built-in names and YAML files (all models a file describes); default: the whole zoo."""
    zoo = builtin_specs()
    if not models:
        return list(zoo.values())
    specs = []
    for item in models:
        if item in zoo:
            specs.append(zoo[item])
        elif item.endswith((".yaml", ".yml")):
            specs.extend(load_yaml_specs(item).values())
        else:
            raise SpecError(f"unknown model {item!r}: not a built-in name ({', '.join(zoo)}) nor a .yaml file")
    return specs


def _table(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    shown["params"] = (frame["params"] / 1e6).map("{:,.1f}M".format)
    for col in ("bf16_bytes", "gemv_weight_bf16_bytes", "kv_cache_bytes"):
        shown[col] = (frame[col] / 1e6).map("{:,.1f}MB".format)
    shown["flops_per_token"] = (frame["flops_per_token"] / 1e9).map("{:,.3f}G".format)
    return shown.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pimsim models",
        description="List models with parameters, bf16 bytes, FLOPs per decoded token and KV-cache "
                    "bytes at a context (capped at each model's max_context). Table units: "
                    "M = 1e6, MB = 1e6 bytes, G = 1e9 FLOPs; csv/json give plain integers.")
    parser.add_argument("--context", type=int, default=DEFAULT_CONTEXT,
                        help=f"positions attended to by the decoded token (default {DEFAULT_CONTEXT})")
    parser.add_argument("--model", nargs="+", action="extend", metavar="NAME_OR_YAML",
                        help="built-in model names or YAML model files (default: all built-in)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    args = parser.parse_args(argv)
    if args.context < 1:
        parser.error(f"--context must be >= 1, got {args.context}")
    try:
        specs = select_specs(args.model)
    except SpecError as err:
        print(f"pimsim models: error: {err}", file=sys.stderr)
        return 2
    frame = pd.DataFrame([model_row(s, args.context) for s in specs])
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(frame.to_json(orient="records", indent=1) + "\n")
    else:
        print(_table(frame))
    return 0


if __name__ == "__main__":
    sys.exit(main())
