"""The repository's import graph: no cycles, and the library stands alone.

Reads every Python file's imports with `ast` (nothing is imported), wherever
they sit: an import inside a function (kept there so TensorFlow loads late)
is an edge like any other, so it cannot hide a cycle.
"""

import ast
import functools
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("cmaclip_tf", "trainers", "serving", "benchmarks", "tests")


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.lru_cache(maxsize=None)
def _modules():
    """{module name: path} for every Python file of the repository's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "fixtures" not in path.parts:
                modules[_module_name(path)] = path
    return modules


def _imports(path, name):
    """(module, names) per import: `import X` -> (X, ()), `from X import a, b`
    -> (X, (a, b)); relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[:len(parts) - node.level + 1]
                module = ".".join(anchor + ([module] if module else []))
            yield module, tuple(alias.name for alias in node.names)


def _resolve(module, modules):
    # Tests import their helpers by bare name (`from trainer_processes import`).
    if module not in modules and f"tests.{module}" in modules:
        return f"tests.{module}"
    return module


@functools.lru_cache(maxsize=None)
def import_graph():
    """{module: set of project modules it imports}."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = set()
        for module, names in _imports(path, name):
            module = _resolve(module, modules)
            # `from package import submodule` depends on the submodule; the
            # package's own __init__ counts only for the names it defines.
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            if len(submodules) < len(names) or not names:
                submodules.append(module)
            graph[name].update(m for m in submodules if m in modules and m != name)
    return graph


def test_every_project_import_names_a_module():
    # An import inside a function runs late: a moved module fails only there.
    modules = _modules()
    missing = sorted(
        f"{name}: {module}"
        for name, path in modules.items()
        for module, _ in _imports(path, name)
        if module.split(".")[0] in PACKAGES and module not in modules
    )
    assert not missing, missing


def find_cycle(graph):
    """One cycle as a list of modules, or None."""
    state = {}  # module -> "open" while on the path, "done" after.
    path = []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported)
                if cycle:
                    return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_a_cycle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    graph["c"] = set()
    assert find_cycle(graph) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("outside", ["trainers", "serving", "benchmarks", "tests"])
def test_library_never_imports_programs(outside):
    graph = import_graph()
    offenders = sorted(
        f"{module} imports {imported}"
        for module, imports in graph.items() if module.startswith("cmaclip_tf")
        for imported in imports if imported.split(".")[0] == outside
    )
    assert not offenders, offenders


def package_graph(depth=2):
    """{package: packages it imports}, modules grouped by their first
    `depth` name parts (`trainers.training`, `cmaclip_tf.models`, ...)."""
    def package(module):
        return ".".join(module.split(".")[:depth])

    graph = {}
    for module, imports in import_graph().items():
        graph.setdefault(package(module), set()).update(
            package(m) for m in imports if package(m) != package(module))
    for imports in list(graph.values()):
        for imported in imports:
            graph.setdefault(imported, set())
    return graph


def test_no_cycles_between_packages():
    # E.g. trainers.pretraining builds on trainers.training, never the
    # reverse: the fine-tuned CLIP baseline is handed in by trainers/run.py.
    cycle = find_cycle(package_graph())
    assert cycle is None, "package cycle: " + " -> ".join(cycle)
