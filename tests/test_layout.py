"""aml_local's layout: imports run one way only (cli -> jobs/, endpoints/ -> assets/ -> the shared floor), with no
cycle, none hidden in a function body or behind importlib; and no module grows past 700 lines.

Every import statement of every module is read from its AST (module level and function level alike). An import of
a package's submodule (`from aml_local.jobs import sweep`) counts as an edge to that submodule; the implicit import
of the parent package's __init__ is not counted as an edge, since a package's __init__ importing its own submodules
(to register them) is how kinds register with their dispatcher."""

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "aml_local"
MAX_LINES = 700

# The layers, top to bottom: a module may import only modules of its own layer or of a lower one.
LAYERS = {
    "cli": 4,
    "sdk": 4,
    "__main__": 4,
    "jobs": 3,
    "endpoints": 3,
    "assets": 2,
}
FLOOR = 1


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], FLOOR) if len(parts) > 1 else FLOOR


def imports_of(module: str) -> set[str]:
    """The aml_local modules that `module` imports, anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            raise AssertionError(f"{path}:{node.lineno}: dynamic import; import the module, or register with it")
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_no_import_cycles():
    # Depth-first search for a back edge; the failure names the whole cycle.
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_imports_run_down_the_layers():
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_kinds_never_import_their_dispatcher():
    kinds = ["aml_local.jobs.command", "aml_local.jobs.sweep", "aml_local.jobs.pipeline", "aml_local.jobs.parallel"]
    assert all("aml_local.jobs.verbs" not in GRAPH[kind] for kind in kinds)
    # ...nor each other: a pipeline finds its nodes' kinds in the registry.
    assert all(not (set(kinds) - {kind}) & GRAPH[kind] for kind in kinds)


def test_sub_packages_exist_and_modules_are_small():
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert {"aml_local.jobs", "aml_local.endpoints", "aml_local.assets"} <= packages
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_the_checker_sees_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    # The test above must be able to fail: a function-level import that closes a loop is found.
    fake = tmp_path / "aml_local"
    (fake / "assets").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "assets" / "__init__.py").write_text("")
    (fake / "store.py").write_text("def f():\n    from aml_local.assets import model\n")
    (fake / "assets" / "model.py").write_text("from aml_local import store\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE_ROOT", fake)
    modules = {module_name(p): p for p in sorted(fake.rglob("*.py"))}
    monkeypatch.setattr(__import__(__name__), "MODULES", modules)
    assert imports_of("aml_local.store") == {"aml_local.assets.model"}
    assert imports_of("aml_local.assets.model") == {"aml_local.store"}


def test_the_tests_sharing_the_session_deployment_run_on_one_worker():
    # tests/conftest.py's scheduler keeps SAME_WORKER's files on one xdist worker: a file using mnist_deployment
    # outside it would start a second deployment (and a second model training) on the other worker.
    import conftest

    assert conftest.GROUPING_PROBLEMS == []
