"""The workflow stays lint-clean and formatted the way snakefmt writes it (the project's Snakemake style)."""

import subprocess

from conftest import ROOT, VENV_BIN, run_env


def test_snakemake_lint_is_clean():
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "--lint"], cwd=ROOT, env=run_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "good condition" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_snakefmt_leaves_the_rules_unchanged():
    proc = subprocess.run([str(VENV_BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
