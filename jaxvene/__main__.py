"""Command line: `python -m jaxvene demo` (or `jaxvene demo` once installed)."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="jaxvene", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="causal tracing (ROME) on the shipped factual-recall GPT-2")
    demo.add_argument("--out", default="jaxvene-output", help="folder for the pictures")
    das = sub.add_parser("das", help="DAS on the hierarchical-equality MLP (pyvene's tutorial): prints IIA")
    das.add_argument("--quick", action="store_true", help="a reduced run")
    das.add_argument("--from-scratch", action="store_true", help="train the MLP too instead of loading it")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from ._transformers import FlaxTransformersMissing

    try:
        if args.command == "demo":
            from .apps.demo import run_demo

            run_demo(args.out)
        elif args.command == "das":
            from .apps.das_hierarchical_equality import main as das_main

            das_main(quick=args.quick, from_scratch=args.from_scratch)
    except FlaxTransformersMissing as exc:  # the demo's GPT-2 is a transformers 4.x Flax model
        print(f"jaxvene {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
