"""Heatmaps: labelled axes, token tick labels, a named colour bar, a shared scale, a readable
size, and no change to matplotlib's backend or pyplot's figures."""

import importlib.util
import pathlib
import sys

import jax
import matplotlib
import numpy as np
import pytest
from PIL import Image

import jaxvene as jv

TOKENS = ["<s>", "The", "Eiffel", "Tower", "is", "in"]
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _ticks(labels):
    return [t.get_text() for t in labels]


def _colorbars(fig):
    return [im.colorbar for ax in fig.axes for im in ax.images if im.colorbar is not None]


@pytest.fixture
def no_backend_switch(monkeypatch):
    """Fails a test that calls `matplotlib.use`; checks pyplot's figures are untouched."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"matplotlib.use{args} switches the backend of the whole process (a notebook's too)")

    monkeypatch.setattr(matplotlib, "use", refuse)
    backend = matplotlib.rcParams._get_backend_or_none()
    pyplot = sys.modules.get("matplotlib.pyplot")
    figures = pyplot.get_fignums() if pyplot else None
    yield
    assert matplotlib.rcParams._get_backend_or_none() == backend
    if pyplot is not None:
        assert pyplot.get_fignums() == figures


def test_a_sweep_table_has_labelled_axes_token_ticks_and_a_named_colour_bar(tmp_path, no_backend_switch):
    values = np.arange(4 * 6, dtype=float).reshape(4, 6) / 10  # (layers, positions)
    fig = jv.analysis.plot_grid(values, row_label="layer", columns=TOKENS, colorbar_label="logit difference")
    (ax,) = [a for a in fig.axes if a.images]
    assert ax.get_ylabel() == "layer" and ax.get_xlabel() == "position"
    assert _ticks(ax.get_xticklabels()) == TOKENS
    assert _ticks(ax.get_yticklabels()) == ["0", "1", "2", "3"]
    (bar,) = _colorbars(fig)
    assert bar.ax.get_ylabel() == "logit difference"
    assert ax.images[0].get_clim() == (0.0, 2.3)
    np.testing.assert_array_equal(ax.images[0].get_array(), values)  # axis 0 down, axis 1 across
    path = jv.analysis.save_figure(fig, str(tmp_path / "sub" / "sweep.png"))
    width, height = Image.open(path).size
    assert width >= 800 and height >= 300


def test_head_sweep_panels_share_one_scale_or_get_their_own(no_backend_switch):
    heads = np.stack([np.full((3, 6), float(layer)) for layer in range(4)])  # (layers, heads, positions)
    heads[0, 0, :2] = -1.0, 0.5
    fig = jv.analysis.plot_grid(heads, panel_label="layer", row_label="head", columns=TOKENS, colorbar_label="p")
    axes = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in axes] == [f"layer {i}" for i in range(4)]
    assert all(a.get_ylabel() in ("head", "") for a in axes) and axes[0].get_ylabel() == "head"
    assert all(_ticks(a.get_xticklabels()) == TOKENS for a in axes)
    # both signs: a diverging scale centred on 0, the same for every panel, one colour bar
    assert {a.images[0].get_clim() for a in axes} == {(-3.0, 3.0)}
    assert len(_colorbars(fig)) == 1 and _colorbars(fig)[0].ax.get_ylabel() == "p"

    own = jv.analysis.plot_grid(heads, panel_label="layer", shared_scale=False, colorbar_label="p")
    clims = [a.images[0].get_clim() for a in own.axes if a.images]
    assert clims[0] == (-1.0, 1.0) and clims[1][0] != clims[2][0]
    assert len(_colorbars(own)) == 4 and all(b.ax.get_ylabel() == "p" for b in _colorbars(own))

    fixed = jv.analysis.plot_grid(heads, vmin=0, vmax=10)
    assert {a.images[0].get_clim() for a in fixed.axes if a.images} == {(0.0, 10.0)}


def test_plot_grid_says_what_it_takes():
    with pytest.raises(ValueError, match=r"values.mean\(-1\)"):
        jv.analysis.plot_grid(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="5 position labels for 6 positions"):
        jv.analysis.plot_grid(np.zeros((2, 6)), columns=TOKENS[:5])


class _Tokenizer:
    """A word-level stand-in with HF's `decode`."""

    def decode(self, ids, skip_special_tokens=False):
        words = [TOKENS[i] if i < len(TOKENS) else f"w{i}" for i in ids]
        return " ".join(w for w in words if not (skip_special_tokens and w == "<s>"))


def test_causal_trace_picture_names_the_target_the_tokens_and_the_subject(flax_gpt2, tmp_path, no_backend_switch):
    ids = np.array([[0, 1, 2, 3, 4, 5]])
    trace = jv.causal_trace(
        flax_gpt2, {"input_ids": ids}, subject=[2, 3], target=7, key=jax.random.key(0), samples=2, progress=False
    )
    assert trace.target == 7 and trace.input_ids == (0, 1, 2, 3, 4, 5)
    fig = trace.plot(tokenizer=_Tokenizer())
    axes = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in axes] == ["block_output", "mlp_output (window 10)", "attention_output (window 10)"]
    assert _ticks(axes[0].get_yticklabels()) == ["<s>", "The", "Eiffel*", "Tower*", "is", "in"]
    assert axes[0].get_ylabel() == "token" and all(a.get_xlabel() == "restored layer" for a in axes)
    assert _ticks(axes[0].get_xticklabels()) == ["0", "1", "2", "3"]
    title = fig.get_suptitle()
    assert "'The Eiffel Tower is in' -> 'w7'" in title and "p('w7')" in title and "clean run" in title
    assert "* subject token (its embedding is noised)" in [t.get_text() for t in fig.texts]
    assert all(b.ax.get_ylabel() == "p('w7')" for b in _colorbars(fig)) and len(_colorbars(fig)) == 3
    every = np.concatenate([s.ravel() for s in trace.scores.values()] + [[trace.clean, trace.corrupted]])
    assert {a.images[0].get_clim() for a in axes} == {(every.min(), every.max())}  # one scale
    own = trace.plot(tokenizer=_Tokenizer(), shared_scale=False)
    assert len({a.images[0].get_clim() for a in own.axes if a.images}) == 3

    named = trace.plot(TOKENS, target="Paris", components=["mlp_output"])
    assert "p('Paris')" in named.get_suptitle() and _ticks(named.axes[0].get_yticklabels())[2] == "Eiffel*"


def test_save_heatmaps_writes_one_readable_png_per_component_on_one_scale(
    flax_gpt2, tmp_path, monkeypatch, no_backend_switch
):
    trace = jv.causal_trace(
        flax_gpt2,
        {"input_ids": np.array([[0, 1, 2, 3]])},
        subject=[1],
        target=3,
        key=jax.random.key(1),
        samples=2,
        progress=False,
    )
    from jaxvene.analysis import _tracing

    figures = []
    save = _tracing.save_figure
    monkeypatch.setattr(_tracing, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    paths = trace.save_heatmaps(str(tmp_path), ["a", "b", "c", "d"])
    assert [pathlib.Path(p).name for p in paths] == [f"causal_trace_{c}.png" for c in trace.scores]
    assert all(Image.open(p).size[0] >= 800 for p in paths)
    clims = {ax.images[0].get_clim() for fig in figures for ax in fig.axes if ax.images}
    assert len(clims) == 1  # the three files share a colour scale
    assert "p(token 3)" in figures[0].get_suptitle()  # no tokenizer: the target's id


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_examples_pictures(tmp_path, no_backend_switch):
    tokens = ["[BOS]", "The", "Tarsk", "Tower", "is", "in", "the", "city", "of"]
    path = _example("activation_patching").save_picture(np.eye(4, 9), tokens, 3, str(tmp_path))
    assert Image.open(path).size[0] >= 800
    path = _example("compiled_sweep").save_picture(np.zeros((4, 4, 9)), tokens, 3, str(tmp_path))
    assert Image.open(path).size[0] >= 800


def test_a_notebook_shows_the_figure_without_pyplot(no_backend_switch):
    """IPython displays it as a PNG even where pyplot's inline backend was never set up."""
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    fig = jv.analysis.plot_grid(np.eye(3), colorbar_label="p")
    formats, _ = interactiveshell.InteractiveShell.instance().display_formatter.format(fig)
    assert formats["image/png"].startswith(b"\x89PNG")
