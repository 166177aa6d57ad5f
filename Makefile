# Two commands on a fresh machine: `make demo` (set up, run the whole workflow on the built-in demo) and
# `make test` (set up, run the tests). Everything installs into .venv; KenLM builds into .build (cached).
VENV ?= .venv
PYTHON ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)
SNAKEMAKE := $(VENV)/bin/snakemake
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast test-slurm report bench lint fmt slurm-profile stale clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

$(VENV)/.kenlm: $(VENV)/.installed scripts/setup_kenlm.sh
	bash scripts/setup_kenlm.sh $(VENV)
	touch $@

setup: $(VENV)/.installed $(VENV)/.kenlm

demo: setup
	$(SNAKEMAKE) --profile profiles/demo
	$(SNAKEMAKE) --profile profiles/demo --report results/report.html
	@echo "demo report: results/report.html"

# The Slurm tests (tests/test_slurm.py) need a cluster. `test` and `test-slurm` start a throw-away one on this
# machine (scripts/slurm/start.sh: root + apt; a cluster that already answers `sinfo` is used as it is) and stop
# the daemons that script started, by pid, when pytest ends, also on failure or Ctrl-C. Where no cluster can be
# started, `make test` skips the Slurm tests; `make test-slurm` (and CI, RNNLENS_REQUIRE_SLURM=1) fails instead.
# The explorer's browser tests need Chromium: `test` and `test-fast` install it the same way
# (scripts/setup_browser.sh: root + apt), or skip those tests (fail under RNNLENS_REQUIRE_BROWSER=1).
# The Slurm tests spend most of their minutes waiting for the cluster (job start-up, status polls), so `test` runs
# them beside the rest, in a second pytest, and prints their report after the first's; it fails if either fails
# (pytest's 5, "no tests collected", counts as passing: PYTEST_ARGS may name test files of one kind only).
test: setup
	@slurm_log=$$(mktemp); slurm_tests=; \
	trap '[ -n "$$slurm_tests" ] && kill $$slurm_tests 2>/dev/null; bash scripts/slurm/stop.sh; rm -f "$$slurm_log"' EXIT; \
	bash scripts/setup_browser.sh || echo "make: no Chromium; the browser tests will be skipped" >&2; \
	bash scripts/slurm/start.sh || echo "make: no local Slurm cluster; the slurm tests will be skipped" >&2; \
	$(VENV)/bin/pytest -m slurm -p no:cacheprovider $(PYTEST_ARGS) > "$$slurm_log" 2>&1 & slurm_tests=$$!; \
	$(VENV)/bin/pytest -m "not slurm" $(PYTEST_ARGS); rest=$$?; \
	wait $$slurm_tests; slurm=$$?; slurm_tests=; \
	echo "--- the Slurm tests (tests/test_slurm.py), run beside the others:"; cat "$$slurm_log"; \
	[ $$rest -eq 0 -o $$rest -eq 5 ] && [ $$slurm -eq 0 -o $$slurm -eq 5 ]

test-slurm: setup
	@trap 'bash scripts/slurm/stop.sh' EXIT; \
	bash scripts/slurm/start.sh && RNNLENS_REQUIRE_SLURM=1 $(VENV)/bin/pytest -m slurm $(PYTEST_ARGS)

test-fast: setup
	@bash scripts/setup_browser.sh || echo "make: no Chromium; the browser tests will be skipped" >&2; \
	$(VENV)/bin/pytest -m "not slow and not slurm" $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python bench/run_all.py

report: setup
	$(SNAKEMAKE) --report results/report.html

# every job the workflow would rerun for config.yaml, and why (rnnlens stale; e.g. make stale ARGS='--configfile my.yaml')
stale: setup
	$(VENV)/bin/python -m rnnlens stale -- $(ARGS)

lint: setup
	$(SNAKEMAKE) --lint
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules

fmt: setup
	$(VENV)/bin/snakefmt Snakefile workflow/rules

# install the cluster profile so that `snakemake --profile slurm` works as users type it
slurm-profile:
	mkdir -p $(HOME)/.config/snakemake
	ln -sfn $(abspath profiles/slurm) $(HOME)/.config/snakemake/slurm
	@echo "installed: snakemake --profile slurm -> $(abspath profiles/slurm)"

clean:
	rm -rf .snakemake results/*/ results/report.html
