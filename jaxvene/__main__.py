"""Command line: `python -m jaxvene <command>` (or `jaxvene <command>` once installed)."""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = """\
jaxvene: causal interventions on JAX models, in pyvene's words. Two worked examples, each on a
small model that ships with jaxvene (nothing is downloaded):

  demo  ROME's causal tracing on the shipped factual-recall GPT-2: prints the sites whose clean
        activation restores a corrupted fact, writes one heatmap per component as PNG to --out
        (needs matplotlib; without it the tables only), and averages the MLP restorations over
        several facts. The GPT-2 is a HuggingFace Flax model: it needs transformers 4.x
        (pip install "jaxvene[hf]"; transformers 5 removed Flax). A minute or so on a CPU.
  das   pyvene's DAS tutorial on hierarchical equality, (W==X)==(Y==Z): a 16 x 16 rotation of
        the shipped 3-layer MLP's first layer, trained with Optax; prints the MLP's accuracy and
        the interchange intervention accuracy (IIA; pyvene's tutorial reports 0.97). Needs only
        jaxvene's core dependencies. Under a minute on a CPU; --quick is shorter, --from-scratch
        trains the MLP too.

Run `jaxvene <command> --help` for a command's options."""


def _version() -> str:
    from . import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxvene", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"jaxvene {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,das}")
    demo = sub.add_parser(
        "demo",
        help="causal tracing (ROME) on the shipped factual-recall GPT-2; needs transformers 4.x",
        description="Causal tracing (ROME) on the shipped factual-recall GPT-2 (a HuggingFace Flax "
        'model: needs transformers 4.x, pip install "jaxvene[hf]"). Heatmaps need matplotlib.',
    )
    demo.add_argument("--out", default="jaxvene-output", help="folder for the heatmaps (PNG); default %(default)s")
    das = sub.add_parser(
        "das",
        help="DAS on the shipped hierarchical-equality MLP (pyvene's tutorial): prints IIA",
        description="Distributed alignment search on the shipped hierarchical-equality MLP, as in "
        "pyvene's DAS tutorial: trains a rotation of the first layer and prints the test IIA.",
    )
    das.add_argument("--quick", action="store_true", help="a reduced run (fewer training examples)")
    das.add_argument("--from-scratch", action="store_true", help="train the MLP too instead of loading it")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
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
