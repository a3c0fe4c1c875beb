# `make test` and `make demo` work on a fresh machine with only Python (3.10-3.12) and pip:
# they create .venv, install lrpgraph with the CPU TensorFlow build, and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-apps demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[cpu,test]"
	touch $(STAMP)

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -p no:cacheprovider

test-apps: $(STAMP)
	LRPGRAPH_APPS_JSON=benchmarks/apps_results.jsonl TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -p no:cacheprovider -m apps
	$(PY) benchmarks/apps_table.py benchmarks/apps_results.jsonl --write

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m lrpgraph demo

bench: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) benchmarks/bench_vgg16.py

clean:
	rm -rf $(VENV) out .pytest_cache
