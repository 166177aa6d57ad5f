"""Code fingerprints of the workflow's rules: what a job computes with, read from the imports.

A rule's `code` param is `fingerprint(command, arch=...)`: the name and a hash of every module that the job's
`python -m rnnlens <command>` executes to compute its outputs, for that job's architecture:

- the module cli.COMMANDS registers for the command and every rnnlens module it imports, directly or not, read
  from the source (ast), imports inside functions too, so the set can only be too large, never too small;
- the module of the job's architecture (rnnlens.archs: a per-model rule takes it from its {model} wildcard) and
  what that module imports, which may be a file of the user's outside the package;
- not the dispatch: `__main__`, `cli` (a new command changes which code runs, not what a command computes) and
  the registry `archs` (which module serves a name); not another architecture's module.

Each module is hashed after normalisation: its syntax tree without docstrings, so comments, docstrings and
formatting do not count. The param reads "rnnlens/train.py:1a2b3c4d5e6f rnnlens/model.py:...": Snakemake reruns a
job whose params changed and stores them with the job, so `rnnlens stale` can name the module that changed.
"""

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "rnnlens"
SRC = Path(__file__).resolve().parent  # the package folder
DISPATCH = {f"{PACKAGE}.__main__", f"{PACKAGE}.cli", f"{PACKAGE}.archs"}
HASH_CHARS = 12


def module_file(name):
    """The source file of rnnlens module `name` (a package's __init__.py), or None when there is none."""
    parts = name.split(".")[1:]
    package = SRC.joinpath(*parts, "__init__.py")
    if package.is_file():
        return package
    module = SRC.joinpath(*parts[:-1], parts[-1] + ".py") if parts else None
    return module if module is not None and module.is_file() else None


def with_packages(name):
    """`name` and the packages above it, whose __init__.py run when it is imported."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imports_in(path, package):
    """The rnnlens modules imported anywhere in the source file `path` (and the packages they sit in); `package`
    is the package the file sits in, for relative imports (None outside rnnlens)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module sits in
                if package is None:
                    continue
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from rnnlens import cells` imports the module rnnlens.cells; `from rnnlens.io import x` imports x
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            if candidate.split(".")[0] == PACKAGE and module_file(candidate):
                found.update(m for m in with_packages(candidate) if module_file(m))
    return found


def imports_of(name):
    path = module_file(name)
    return imports_in(path, name if path.name == "__init__.py" else name.rpartition(".")[0])


def arch_modules():
    """The package's architecture modules (rnnlens.archs.BUILTIN): entered only for a job of their architecture."""
    from rnnlens.archs import BUILTIN

    return set(BUILTIN.values())


def closure(*commands, arch=None):
    """The rnnlens modules that `python -m rnnlens <command>` executes for models of `arch` (a name, several, or
    None: a job that builds no model)."""
    return set(_closure(tuple(commands), _arch_names(arch))[0])


def _arch_names(arch):
    if arch is None:
        return ()
    return (arch,) if isinstance(arch, str) else tuple(sorted(set(arch)))


@lru_cache(maxsize=None)
def _closure(commands, arch_names):
    """-> (rnnlens modules, the user's architecture files) of a job."""
    from rnnlens import archs
    from rnnlens.cli import COMMANDS

    unknown = [c for c in commands if c not in COMMANDS]
    if unknown:
        raise KeyError(f"unknown rnnlens command(s) {unknown}; the commands are in rnnlens.cli.COMMANDS")
    todo = [COMMANDS[c][0] for c in commands]
    user_files = set()
    for arch in arch_names:
        source = archs.source_of(arch)
        if source.startswith(f"{PACKAGE}."):
            todo.append(source)
        else:  # the user's module: hashed as a file; the rnnlens modules it imports are followed
            user_files.add(archs.module_file(arch))
            todo.extend(imports_in(archs.module_file(arch), None))
    own = {archs.BUILTIN[a] for a in arch_names if a in archs.BUILTIN}
    skipped = DISPATCH | (arch_modules() - own)
    seen = set()
    while todo:
        name = todo.pop()
        for module in with_packages(name):
            if module not in seen and module not in skipped and module_file(module):
                seen.add(module)
                todo.extend(imports_of(module))
    return frozenset(seen), frozenset(user_files)


def normalised_source(path):
    """The module's syntax tree without docstrings, as text: what the code does, not how it is written."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def display_name(name):
    """rnnlens.train -> rnnlens/train.py (rnnlens.explore -> rnnlens/explore/__init__.py)."""
    return module_file(name).relative_to(SRC.parent).as_posix()


def module_hashes(*commands, arch=None):
    """{module as a path: hash of its normalised source} for the job (see closure)."""
    names, user_files = _closure(tuple(commands), _arch_names(arch))
    hashes = {display_name(n): _hash(module_file(n)) for n in names}
    for path in user_files:  # named relative to the workflow's folder, so that a moved clone hashes the same
        try:
            shown = path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            shown = path.as_posix()
        hashes[shown] = _hash(path)
    return dict(sorted(hashes.items()))


def _hash(path):
    return hashlib.sha256(normalised_source(path).encode()).hexdigest()[:HASH_CHARS]


def fingerprint(*commands, arch=None):
    """The `code` param of a rule: 'module:hash' of each module the job executes, space-separated."""
    return " ".join(f"{name}:{digest}" for name, digest in module_hashes(*commands, arch=arch).items())


def parse_fingerprint(text):
    """fingerprint()'s text -> {module: hash}."""
    return dict(item.rsplit(":", 1) for item in text.split())
