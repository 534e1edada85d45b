"""examples/native_decoder.py runs end to end (it builds its own checkpoint, so it needs
neither torch nor a download) and finds what must hold in any causal decoder: at the last
layer, patching the last position restores the clean prediction fully and earlier positions
not at all. Run on 4 (simulated) devices with tensor-parallel params, and in bfloat16."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[3] / "examples" / "native_decoder.py"


def _example():
    spec = importlib.util.spec_from_file_location("native_decoder", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("devices, dtype", [(4, "float32"), (1, "bfloat16")])
def test_native_decoder_example(tmp_path, devices, dtype):
    result = _example().main(dtype=dtype, devices=devices, out=str(tmp_path), progress=False)
    restored = result["restored"]
    atol = 1e-4 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(restored[-1, -1], 1.0, atol=atol)
    np.testing.assert_allclose(restored[-1, :-1], 0.0, atol=atol)
    assert np.abs(restored[:-1]).max() > 0.05  # earlier layers do more than the last one's identity
    np.testing.assert_allclose(result["attention"].sum(-1), 1.0, atol=1e-2)  # rows of probabilities
    assert result["continuation"].shape == (1, restored.shape[1] + 5)
    assert pathlib.Path(result["picture"]).is_file()
