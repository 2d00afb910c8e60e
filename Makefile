# `make demo` and `make test` do the whole set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint docs bench bench-report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU torch pinned first, so nothing below can pull the CUDA build.
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev,nwb,ray,dask,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/pyro-circuits epi lds2d --out demo-output

test: install
	$(VENV)/bin/ruff check pyro_circuits tests benchmarks examples
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check pyro_circuits tests benchmarks examples
	$(VENV)/bin/ruff format --check pyro_circuits tests benchmarks examples

# The documentation site (guides, API reference, benchmark pages) into site/, warnings as errors.
docs: install
	$(VENV)/bin/mkdocs build --strict

# The product benchmarks' commands, from their records (each runs minutes to hours: run them
# one at a time); `make test` runs none of them.
bench: install
	$(PY) -m benchmarks commands

# docs/benchmarks.md from benchmarks/records/.
bench-report: install
	$(PY) -m benchmarks report

clean:
	rm -rf $(VENV) demo-output site
