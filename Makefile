# Two entry points, each sets itself up on a fresh machine: `make sweep` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the device runtimes (OpenVINO, ncnn, MNN, LiteRT, ExecuTorch) and their converters, Ray for the lab and
# scikit-learn for predict: what the tests exercise
RUNTIMES_STAMP := $(VENV)/.installed-runtimes

.PHONY: sweep test lint setup setup-runtimes clean

setup: $(STAMP)

setup-runtimes: $(RUNTIMES_STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[build,plots,dev]'
	touch $(STAMP)

$(RUNTIMES_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[build,plots,dev,runtimes,lab,predict]'
	touch $(RUNTIMES_STAMP)

sweep: $(STAMP)
	$(BIN)/edgeprof sweep $(ARGS)

test: $(RUNTIMES_STAMP)
	$(BIN)/ruff check edgeprof tests benchmarks
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
