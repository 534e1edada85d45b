"""The command line: `--help` says what each command does and needs, `--version` prints the
version, a missing or unknown command is a usage error."""

import pytest

import jaxvene
from jaxvene.__main__ import main


def _exit(argv) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


def test_help_describes_each_command(capsys):
    assert _exit(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxvene")
    assert "demo" in out and "causal tracing" in out
    assert "transformers 4.x" in out and "jaxvene[hf]" in out  # what the demo needs
    assert "das" in out and "hierarchical equality" in out and "IIA" in out
    assert "--version" in out


@pytest.mark.parametrize(
    "command, words", [("demo", ["--out", "transformers 4.x"]), ("das", ["--quick", "--from-scratch"])]
)
def test_command_help(capsys, command, words):
    assert _exit([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: jaxvene {command}")
    for word in words:
        assert word in out


def test_version(capsys):
    assert _exit(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"jaxvene {jaxvene.__version__}"


@pytest.mark.parametrize("argv", [[], ["trace"]])
def test_usage_errors(capsys, argv):
    assert _exit(argv) == 2
    err = capsys.readouterr().err
    assert "usage: jaxvene" in err and "{demo,das}" in err
