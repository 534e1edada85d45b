"""Every Python block in the README runs, in order, as one script."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python examples"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "(1, 6, 100)" in printed
    assert "(1, 4, 100)" in printed  # the native Llama's patched logits
    assert "(1, 2, 2, 16)" in printed
    assert namespace["model"].trace_count == 1
    assert namespace["per_position"].shape == (6, 100)
