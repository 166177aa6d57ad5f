"""envs/*.yaml cannot be built here (no conda channels); keep them consistent with pyproject.toml instead."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req):
    return re.split(r"[<>=!~ \[]", req, maxsplit=1)[0].lower()


def test_conda_env_lists_every_dependency_with_the_same_pin():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs" / "rnnlens.yaml").read_text())
    listed = {}
    for item in env["dependencies"]:
        for req in item["pip"] if isinstance(item, dict) else [item]:
            listed[_name(req)] = req.replace(" ", "")
    for req in deps:
        assert _name(req) in listed, f"{req} missing from envs/rnnlens.yaml"
        spec = req[len(_name(req)):].replace(" ", "")
        assert listed[_name(req)].endswith(spec), f"pin differs: pyproject {req} vs env {listed[_name(req)]}"


def test_every_rule_names_the_env():
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        assert text.count("\nrule ") + text.startswith("rule ") == text.count('conda:\n        "../../envs/'), smk.name
