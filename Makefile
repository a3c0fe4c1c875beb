# `make test` and `make demo` work on a fresh machine with only Python (3.10-3.12) and pip:
# they create .venv, install lrpgraph with the CPU TensorFlow build, and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-apps demo bench docs clean

setup: $(STAMP)

# KerasHub (tests/test_vit.py, tests/test_text.py) with --no-deps, so that tensorflow-text does not
# pull the full `tensorflow` beside tensorflow-cpu; its light dependencies (regex, tokenizers) come
# with the test extra (see pyproject.toml).  Python < 3.11 (keras-hub needs 3.11): not installed,
# the KerasHub tests skip.  The range: the one lrpgraph.engine.ops.keras_hub* were checked against.
KERAS_HUB := keras-hub>=0.32,<0.33

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[cpu,test]"
	if $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	    $(PY) -m pip install -q --no-deps "$(KERAS_HUB)"; \
	else echo "Python < 3.11: keras-hub not installed, the KerasHub tests will skip"; fi
	$(PY) -c "from importlib.metadata import distributions; n = {d.metadata['Name'].lower().replace('_', '-') for d in distributions()}; \
	    assert not {'tensorflow', 'tensorflow-cpu'} <= n, 'two TensorFlow builds installed: tensorflow and tensorflow-cpu'"
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

# the documentation site (mkdocs, material theme, API reference from the docstrings) into site/,
# offline and strict: a broken link or an unresolved reference fails the build.  Open site/index.html.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
	@echo "documentation: site/index.html"

clean:
	rm -rf $(VENV) out site .pytest_cache
