# Two entry points, each sets itself up on a fresh machine: `make sweep` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: sweep test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[build,plots,dev]'
	touch $(STAMP)

sweep: $(STAMP)
	$(BIN)/edgeprof sweep $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check edgeprof tests benchmarks
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
