# Two commands for a newcomer: `make run` (the whole pipeline on config/config.yaml)
# and `make test` (the test suite; `make test-fast` skips its slow tier). Both create
# .venv and install the project first.

PYTHON ?= python3
VENV ?= .venv
CORES ?= all
CONFIG ?= config/config.yaml
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install check-config config run report readme-figures test test-fast test-slurm lint bench clean

# torch/torchvision are pinned: these exact releases are served locally on our machines, any
# other version downloads gigabytes. tools/install.py installs with uv (the same releases as pip,
# from the same indexes pip is configured with, in about half the time) and falls back to pip.
$(STAMP): pyproject.toml tools/install.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/install.py torch==2.14.1 torchvision==0.29.1 -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# CONFIG is one or more files, merged in order over the schema defaults exactly as
# `--configfile $(CONFIG)` (e.g. CONFIG="config/config.yaml config/sim_science.yaml").
# Snakemake reports a YAML syntax error in a --configfile without file or line; the check
# names both (and any bad key) before Snakemake starts.
check-config: $(STAMP)
	@$(BIN)/python -m whatsreal.config check $(CONFIG) >/dev/null

# The effective config as YAML, exactly as the workflow runs it for $(CONFIG).
config: $(STAMP)
	@$(BIN)/python -m whatsreal.config show --configfile $(CONFIG)

run: check-config
	$(BIN)/snakemake all --cores $(CORES) --configfile $(CONFIG)
	@$(MAKE) --no-print-directory report

# The HTML report of everything `all` built (figures with captions, tables, summary.md).
report: check-config
	@out=results/$$($(BIN)/python -m whatsreal.config show --configfile $(CONFIG) --key dataset.name)/report.html && \
	$(BIN)/snakemake all --cores 1 --configfile $(CONFIG) --report $$out && \
	echo "report: $$out (summary: $$(dirname $$out)/summary.md)"

# The README's figures (docs/figures/): small copies of the sky overview, Fig 4 and Fig 6 of
# run main and the methods comparison, from the finished run under RESULTS (`make run` first).
# Commit what it rewrites.
RESULTS ?= results/sim
readme-figures: $(STAMP)
	$(BIN)/python -m whatsreal.plots.readme_figures $(RESULTS) docs/figures

# Both tiers: everything, the Snakemake runs and trainings included (CI runs this). Tests run
# in TEST_WORKERS processes (pytest-xdist; `auto` = one per core, at most 8); the tests that share the
# finished tiny workflow stay on one worker (tests/conftest.py), so it runs once.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --maxprocesses 8 --dist loadgroup

# The quick loop while editing: every test not marked slow (no Snakemake subprocess, no
# training beyond a few steps); it still imports every module of the package.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --maxprocesses 8 --dist loadgroup

# The SLURM profile on a real one-node SLURM cluster started on localhost (tests/slurm/).
# Needs root: installs Debian's slurm and munge packages if missing. CI runs it.
test-slurm: $(STAMP)
	WHATSREAL_SLURM_TESTS=1 $(BIN)/pytest tests/slurm -rP --durations=0

lint: $(STAMP)
	$(BIN)/ruff check src tests workflow benchmarks tools
	$(BIN)/snakemake --lint --cores 1

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf results .snakemake
