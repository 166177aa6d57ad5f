"""Code fingerprints of the workflow's rules, computed from the imports instead of typed by hand.

A rule's `code` param is `fingerprint(command)`: a hash of the source of every rnnlens module that
`python -m rnnlens <command>` can run, namely __main__, cli, the module cli.COMMANDS registers for the command, and
every rnnlens module those import, directly or not. The imports are read from the source (ast), those inside
functions too, so the set can only be too large, never too small: a new import can never be forgotten. Snakemake
reruns a job whose params changed, so an edit to one of these modules marks the rule's outputs stale and an edit
anywhere else does not (Snakemake's own code trigger sees only the rule's shell text).
"""

import ast
import hashlib
from pathlib import Path

PACKAGE = "rnnlens"
SRC = Path(__file__).resolve().parent  # the package folder


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


def imports_of(name):
    """The rnnlens modules that module `name` imports anywhere in its source (and the packages they sit in)."""
    path = module_file(name)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module sits in
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


def closure(*commands):
    """Every rnnlens module `python -m rnnlens <command>` can import, for each of `commands`."""
    from rnnlens.cli import COMMANDS

    unknown = [c for c in commands if c not in COMMANDS]
    if unknown:
        raise KeyError(f"unknown rnnlens command(s) {unknown}; the commands are in rnnlens.cli.COMMANDS")
    todo = [f"{PACKAGE}.__main__", f"{PACKAGE}.cli"] + [COMMANDS[c][0] for c in commands]
    seen = set()
    while todo:
        name = todo.pop()
        for module in with_packages(name):
            if module not in seen and module_file(module):
                seen.add(module)
                todo.extend(imports_of(module))
    return seen


def fingerprint(*commands):
    """Short sha256 of the names and sources of closure(*commands): the `code` param of a rule."""
    digest = hashlib.sha256()
    for name in sorted(closure(*commands)):
        digest.update(name.encode() + b"\0" + module_file(name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]
