"""The layout's promises: no import cycles (lazy imports inside functions count too), lower
layers never import higher ones, and every public class says what it is."""

import ast
import inspect
import pathlib

import pytest

import jaxvene as jv
import jaxvene.pretrained  # noqa: F401  (not imported by `import jaxvene`)

ROOT = pathlib.Path(jv.__file__).parent

# Each layer may import the layers before it, never those after (the facade, `_facade`, and the
# top-level package sit above all of them; `apps` above everything but is imported by nothing).
LAYERS = [
    "_io",
    "_transformers",
    "interventions",
    "core",
    "families",
    "adapters",
    "models",
    "analysis",
    "training",
    "_facade",
    "pretrained",
    "apps",
]


def _module_name(path: pathlib.Path) -> str:
    parts = ("jaxvene",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str, path: pathlib.Path, known) -> set[str]:
    """Every jaxvene module `name` imports, anywhere in the file, with the packages implied."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        for target in targets:
            if target in known:
                found.add(target)
                parts = target.split(".")
                for i in range(2, len(parts)):  # parent packages run first, except our own
                    parent = ".".join(parts[:i])
                    if not name.startswith(parent + ".") and name != parent:
                        found.add(parent)
    found.discard("jaxvene")
    found.discard(name)
    return found


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items() if name != "jaxvene"}


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_lower_layers_do_not_import_higher_ones():
    wrong = []
    for name, deps in _graph().items():
        if _layer(name) not in LAYERS:
            continue
        for dep in deps:
            if _layer(dep) in LAYERS and LAYERS.index(_layer(dep)) > LAYERS.index(_layer(name)):
                wrong.append(f"{name} imports {dep}")
    assert wrong == []


@pytest.mark.parametrize(
    "namespace",
    [
        jv,
        jv.core,
        jv.adapters,
        jv.analysis,
        jv.training,
        jv.interventions,
        jv.families,
        jv.models,
        jv.pretrained,
        jv.patching,
    ],
)
def test_every_public_class_has_a_docstring(namespace):
    missing = [
        name
        for name, obj in vars(namespace).items()
        if not name.startswith("_")
        and inspect.isclass(obj)
        and obj.__module__.startswith("jaxvene")
        and not (obj.__doc__ or "").strip()
    ]
    assert missing == []
