"""DAS on hierarchical equality (pyvene's DAS tutorial), reproduced with jaxvene.

    python examples/das_hierarchical_equality.py [--quick] [--from-scratch]

The code lives in `jaxvene/apps/das_hierarchical_equality.py` so that `python -m jaxvene das` runs it
too; read it there. It loads the 3-layer MLP for (W==X)==(Y==Z) that jaxvene ships
(`--from-scratch` trains it first, as `jaxvene/pretrained/train_hierarchical_equality.py` does), generates
counterfactual data with `jaxvene.CausalModel`, and trains one 16 x 16 rotation shared by two
linked interventions (WX in rotated dims 0-7, YZ in 8-15). Full run: test IIA 0.975 (0.977 from
scratch), 11 s on a 2-core CPU, of which 3.8 s are training (MLP 2.5 s, DAS 1.3 s) and 6.3 s
sampling the counterfactual data (pyvene's tutorial reports 0.97; its own training loop takes
about 45 s here on its best thread count).
"""

import sys

from jaxvene.apps.das_hierarchical_equality import main, run  # noqa: F401

if __name__ == "__main__":
    main(quick="--quick" in sys.argv, from_scratch="--from-scratch" in sys.argv)
