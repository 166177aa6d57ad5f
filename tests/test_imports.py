"""The package's import graph, read from the source with `ast` (lazy imports inside functions included): no
module imports itself back through others, and every third-party package it imports is declared."""
import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "rnnlens"
# import name -> distribution name where they differ
DISTRIBUTIONS = {"yaml": "pyyaml", "sklearn": "scikit-learn"}
# built from source by scripts/setup_kenlm.sh (with the maximum order rnnlens needs), not installed from PyPI
BUILT_BY_SETUP = {"kenlm"}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """Absolute names of every module `path` imports, anywhere in the file."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # `from rnnlens import cells`
    return names


def package_graph():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: sorted(m for m in imports_of(path) if m in modules and m != name) for name, path in modules.items()}


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = package_graph()
    assert "rnnlens.io" in graph["rnnlens.corpus"]  # the graph is read, not empty
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_every_third_party_import_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip().lower()
                for req in project["dependencies"] + sum(project["optional-dependencies"].values(), [])}
    imported = {name.split(".")[0] for path in PACKAGE.rglob("*.py") for name in imports_of(path)}
    third_party = imported - set(sys.stdlib_module_names) - {"rnnlens"} - BUILT_BY_SETUP
    missing = sorted(DISTRIBUTIONS.get(name, name) for name in third_party
                     if DISTRIBUTIONS.get(name, name) not in declared)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
