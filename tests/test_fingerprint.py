"""Code fingerprints: every rule hashes the modules the rnnlens commands of its shell execute, for its architecture,
normalised so that comments and docstrings do not count."""
import re
import subprocess
import sys

from conftest import ROOT, run_env
from rnnlens.cli import COMMANDS
from rnnlens.fingerprint import closure, fingerprint

RULES = ROOT / "workflow" / "rules"


def rule_blocks():
    """rule name -> its text, from every .smk file."""
    blocks = {}
    for path in sorted(RULES.glob("*.smk")):
        for block in re.split(r"(?m)^(?=rule |checkpoint )", path.read_text()):
            match = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if match:
                blocks[match.group(1)] = block
    return blocks


def shell_commands(block):
    """The rnnlens commands a rule's shell runs."""
    shell = block.split("    shell:", 1)[-1]
    return set(re.findall(r"python -m rnnlens ([a-z0-9-]+)", shell))


def test_every_rule_fingerprints_the_commands_it_runs():
    blocks = rule_blocks()
    assert len(blocks) > 20
    for name, block in blocks.items():
        commands = shell_commands(block)
        hashed = re.search(r"code=(?:fingerprint|code_of|code_for_archs)\(((?:[^()]|\([^()]*\))*)\)", block)
        if not commands:
            assert hashed is None, f"rule {name} runs no rnnlens command but has a code fingerprint"
            continue
        assert hashed, f"rule {name} runs rnnlens {sorted(commands)} without code=fingerprint(...)"
        assert set(re.findall(r'"([a-z0-9-]+)"', hashed.group(1).split("arch=")[0])) == commands, name


def test_closure_holds_every_module_a_command_imports():
    """Importing a command's module (as `rnnlens <command>` does) loads no rnnlens module outside its closure (the
    closure also has the imports inside functions, so it may hold more)."""
    script = ("import sys, json; from rnnlens.cli import COMMANDS, command_functions\n"
              "out = {}\n"
              "for name in COMMANDS:\n"
              "    before = set(sys.modules); command_functions(name)\n"
              "    out[name] = sorted(m for m in sys.modules if m.startswith('rnnlens'))\n"
              "    [sys.modules.pop(m) for m in list(sys.modules) if m not in before and m.startswith('rnnlens.')"
              " and m not in ('rnnlens.cli', 'rnnlens.log', 'rnnlens.errors')]\n"
              "print(json.dumps(out))")
    proc = subprocess.run([sys.executable, "-c", script], env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json

    loaded = json.loads(proc.stdout)
    # the dispatch (cli and what it imports to set up logging) and the registry are loaded, not hashed
    dispatch = {"rnnlens.fingerprint", "rnnlens.__main__", "rnnlens.cli", "rnnlens.log", "rnnlens.archs"}
    for name in COMMANDS:
        assert set(loaded[name]) - dispatch <= closure(name), (name, set(loaded[name]) - closure(name))


def test_closure_reads_lazy_imports_and_helpers_stay_out_of_stage_closures():
    # internals imports saturation and cells inside a function: still in its closure; it draws nothing
    assert {"rnnlens.saturation", "rnnlens.cells"} <= closure("internals")
    assert not {"rnnlens.plots", "rnnlens.cellviz", "rnnlens.saturation_plot"} & closure("internals", arch="lstm")
    # a figure helper edit must not look like a change of training, the tables or a baseline
    for command in ("train", "evaluate", "table1", "table2", "pick", "ngram", "nnn", "prepare", "models-table"):
        assert "rnnlens.plots" not in closure(command), command
    # the tarball builder is the fetch's alone; oracles are not agreement's
    assert "rnnlens.kernel" in closure("fetch") and "rnnlens.kernel" not in closure("prepare")
    assert "rnnlens.oracles" not in closure("agreement")
    # the dispatch is out: a new command or a registry line changes which code runs, not what a command computes
    assert "rnnlens" in closure("sample") and not {"rnnlens.__main__", "rnnlens.cli", "rnnlens.archs"} & closure("sample")


def test_a_job_hashes_its_own_architecture_only():
    lstm, lru = closure("train", arch="lstm"), closure("train", arch="lru")
    assert "rnnlens.recurrent" in lstm and not {"rnnlens.lru", "rnnlens.transformer"} & lstm
    assert "rnnlens.lru" in lru and not {"rnnlens.recurrent", "rnnlens.transformer"} & lru
    assert not {"rnnlens.recurrent", "rnnlens.lru", "rnnlens.transformer"} & closure("table1")
    assert closure("models-table", arch=["lstm", "lru"]) == (closure("models-table", arch="lstm")
                                                             | closure("models-table", arch="lru"))
    # the code param names every module with its hash (what `rnnlens stale` reads)
    text = fingerprint("train", arch="lstm")
    assert "rnnlens/train.py:" in text and "rnnlens/recurrent.py:" in text and "rnnlens/lru.py" not in text


def test_comments_docstrings_and_formatting_do_not_count(tmp_path):
    from rnnlens.fingerprint import normalised_source

    plain = tmp_path / "a.py"
    plain.write_text('def f(x):\n    return x + 1\n')
    dressed = tmp_path / "b.py"
    dressed.write_text('"""A module."""\n# a comment\n\n\ndef f( x ):\n    """Add one."""\n    return (x +\n            1)  # why\n')
    changed = tmp_path / "c.py"
    changed.write_text('def f(x):\n    return x + 2\n')
    assert normalised_source(plain) == normalised_source(dressed) != normalised_source(changed)


def test_fingerprint_changes_with_a_module_of_the_closure_only(tmp_path, monkeypatch):
    import rnnlens.fingerprint as fp

    copy = tmp_path / "rnnlens"
    subprocess.run(["cp", "-r", str(fp.SRC), str(copy)], check=True)
    monkeypatch.setattr(fp, "SRC", copy)
    fp._closure.cache_clear()
    before = {c: fp.fingerprint(c) for c in ("train", "curves", "table1")}
    with open(copy / "plots.py", "a") as f:
        f.write("\n# an edit\n")
    assert {c: fp.fingerprint(c) for c in ("train", "curves", "table1")} == before  # a comment: nothing
    with open(copy / "plots.py", "a") as f:
        f.write("\nEDITED = True\n")
    after = {c: fp.fingerprint(c) for c in ("train", "curves", "table1")}
    assert after["curves"] != before["curves"]
    assert after["train"] == before["train"] and after["table1"] == before["table1"]
    assert fingerprint("train") == before["train"]  # the copy hashes like the package
