"""envs/*.yaml cannot be built here (no conda channels); keep them consistent with pyproject.toml instead."""
import os
import re
import tomllib
from pathlib import Path

import pytest
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
        rules = len(re.findall(r"^(?:rule|checkpoint) \w+:", text, re.M))
        assert rules == text.count('conda:\n        "../../envs/'), smk.name


def test_the_env_builds_kenlm_after_deploy_as_the_set_up_does():
    """PyPI's kenlm stops at order 6 and has no lmplz: the env's post-deploy step is the set-up's own script."""
    from rnnlens.ngram import MAX_ORDER

    env = yaml.safe_load((ROOT / "envs" / "rnnlens.yaml").read_text())
    pip = [req for item in env["dependencies"] if isinstance(item, dict) for req in item["pip"]]
    assert "kenlm" not in map(_name, pip)
    assert {"cmake", "make", "cxx-compiler", "libboost-devel"} <= set(map(_name, env["dependencies"][:-1]))
    post_deploy = ROOT / "envs" / "rnnlens.post-deploy.sh"
    assert post_deploy.resolve() == (ROOT / "scripts" / "setup_kenlm.sh").resolve()
    assert f"KENLM_MAX_ORDER:-{MAX_ORDER}}}" in post_deploy.read_text()


def test_post_deploy_installs_kenlm_into_a_conda_prefix(tmp_path):
    """Run as Snakemake runs it (copied to <env>.post-deploy.sh, in the activated env) against a prefix whose KenLM
    build is already cached, so that no compiler runs: a fresh build takes minutes (`make setup` covers it).
    The prefix is a venv marked as a conda env; the cache holds what the set-up built into .build."""
    import shutil
    import subprocess
    import venv

    built = ROOT / ".build" / "kenlm"
    tools = [built / "build-0.3.0-o21" / "bin" / name for name in ("lmplz", "build_binary")]
    wheels = list((built / "wheels-0.3.0-o21").glob("kenlm-*.whl"))
    if not all(t.is_file() for t in tools) or not wheels:
        pytest.skip("no KenLM build in .build/kenlm to stand for the cache: run `make setup`")
    prefix = tmp_path / "env"
    venv.create(prefix, with_pip=True)
    (prefix / "conda-meta").mkdir()  # what makes a prefix a conda env
    cache = prefix / "share" / "rnnlens-kenlm"  # the script's cache inside a conda env
    (cache / "build-0.3.0-o21" / "bin").mkdir(parents=True)
    for tool in tools:
        shutil.copy2(tool, cache / "build-0.3.0-o21" / "bin")
    (cache / "build-0.3.0-o21" / ".built").touch()
    (cache / "wheels-0.3.0-o21").mkdir()
    shutil.copy2(wheels[0], cache / "wheels-0.3.0-o21")
    script = tmp_path / "env.post-deploy.sh"
    shutil.copy(ROOT / "envs" / "rnnlens.post-deploy.sh", script)  # as Snakemake does: a copy beside the env
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VENV", "KENLM", "VIRTUAL_ENV"))}
    env.update(CONDA_PREFIX=str(prefix), PATH=f"{prefix / 'bin'}{os.pathsep}{env['PATH']}")
    run = lambda: subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,  # noqa: E731
                                 timeout=600)
    proc = run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reusing the build" in proc.stdout and "building" not in proc.stdout
    assert (prefix / "bin" / "lmplz").is_file() and (prefix / ".kenlm-stamp").read_text().strip().endswith("21")
    check = subprocess.run([str(prefix / "bin" / "python"), "-c", "import kenlm; print(kenlm.__file__)"],
                           capture_output=True, text=True, env=env)
    assert check.returncode == 0 and str(prefix) in check.stdout, check.stderr
    again = run()
    assert again.returncode == 0 and "nothing to do" in again.stdout
