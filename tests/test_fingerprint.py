"""Code fingerprints: every rule hashes exactly the import closure of the rnnlens commands its shell runs."""
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
        hashed = re.search(r"code=fingerprint\(([^)]*)\)", block)
        if not commands:
            assert hashed is None, f"rule {name} runs no rnnlens command but has a code fingerprint"
            continue
        assert hashed, f"rule {name} runs rnnlens {sorted(commands)} without code=fingerprint(...)"
        assert set(re.findall(r'"([a-z0-9-]+)"', hashed.group(1))) == commands, name


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
    for name in COMMANDS:
        assert set(loaded[name]) - {"rnnlens.fingerprint"} <= closure(name), (name, set(loaded[name]) - closure(name))


def test_closure_reads_lazy_imports_and_helpers_stay_out_of_stage_closures():
    # internals imports saturation and cells inside a function: still in its closure
    assert {"rnnlens.saturation", "rnnlens.cells", "rnnlens.cellviz"} <= closure("internals")
    # a figure helper edit must not look like a change of training, the tables or a baseline
    for command in ("train", "evaluate", "table1", "table2", "pick", "ngram", "nnn", "prepare", "models-table"):
        assert "rnnlens.plots" not in closure(command), command
    # the tarball builder is the fetch's alone; oracles are not agreement's
    assert "rnnlens.kernel" in closure("fetch") and "rnnlens.kernel" not in closure("prepare")
    assert "rnnlens.oracles" not in closure("agreement")
    assert {"rnnlens.__main__", "rnnlens.cli", "rnnlens"} <= closure("sample")


def test_fingerprint_changes_with_a_module_of_the_closure_only(tmp_path, monkeypatch):
    import rnnlens.fingerprint as fp

    copy = tmp_path / "rnnlens"
    subprocess.run(["cp", "-r", str(fp.SRC), str(copy)], check=True)
    monkeypatch.setattr(fp, "SRC", copy)
    before = {c: fp.fingerprint(c) for c in ("train", "curves", "table1")}
    with open(copy / "plots.py", "a") as f:
        f.write("\n# an edit\n")
    after = {c: fp.fingerprint(c) for c in ("train", "curves", "table1")}
    assert after["curves"] != before["curves"]
    assert after["train"] == before["train"] and after["table1"] == before["table1"]
    assert fingerprint("train") == before["train"]  # the copy hashes like the package
