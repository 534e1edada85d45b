"""The native-decoder parity suite shares its cases and torch references as sibling modules
(`_cases`, `_torch_ref`): pytest's importlib mode does not put this folder on `sys.path`."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
