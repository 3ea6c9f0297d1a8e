"""`pimsim` command line: the composition root that wires workloads, mapping and sim together.

Subcommands import their modules lazily so `pimsim --help` stays fast and a missing optional
piece only affects the subcommand that needs it.
"""
from __future__ import annotations

import argparse
import sys


def _cmd_models(argv: list[str]) -> int:
    from workloads.cli import main as models_main

    return models_main(argv)


SUBCOMMANDS = {
    "models": (_cmd_models, "list built-in and YAML models with sizes and per-token costs"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="pimsim", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(SUBCOMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in sorted(SUBCOMMANDS.items())))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    ns, rest = parser.parse_known_args(argv[:1])
    return SUBCOMMANDS[ns.command][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
