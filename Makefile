# `make test` and `make demo` work on a fresh machine with only Python (3.10-3.13) and pip:
# they create .venv, install lrpgraph with the CPU TensorFlow build, and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-portable test-apps demo bench docs clean

setup: $(STAMP)

# KerasHub (tests/test_vit.py, tests/test_text.py) with --no-deps, so that tensorflow-text does not
# pull the full `tensorflow` beside tensorflow-cpu; its light dependencies (regex, tokenizers) come
# with the test extra (see pyproject.toml).  Python < 3.11 (keras-hub needs 3.11): not installed,
# the KerasHub tests skip.  The range: the one lrpgraph.engine.ops.keras_hub* were checked against.
KERAS_HUB := keras-hub>=0.32,<0.33

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q -e ".[cpu,test]"
	if $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	    $(PY) -m pip install -q --no-deps "$(KERAS_HUB)"; \
	else echo "Python < 3.11: keras-hub not installed, the KerasHub tests will skip"; fi
	$(PY) -c "from importlib.metadata import distributions; n = {d.metadata['Name'].lower().replace('_', '-') for d in distributions()}; \
	    assert not {'tensorflow', 'tensorflow-cpu'} <= n, 'two TensorFlow builds installed: tensorflow and tensorflow-cpu'"
	touch $(STAMP)

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -p no:cacheprovider

# The numerics-sensitive tests (stored goldens and maps, the ops, float64 hand references)
# under the oneDNN setting `make test` did not run with: TensorFlow turns oneDNN on by
# default on CPUs with AVX-512 and off elsewhere, and the two use other kernels, another
# rounding and (oneDNN only) an NCHW Conv2D, as another CPU would.
PORTABLE_TESTS := tests/test_golden.py tests/test_sglrp.py tests/test_ops.py tests/test_avg_pool.py \
	tests/test_rewrite.py tests/test_memory.py::test_recomputation_changes_no_map \
	tests/test_gradients.py::test_matches_innvestigate
ONEDNN_DEFAULT := from tensorflow.python.util import _pywrap_util_port as p; print(int(p.IsMklEnabled()))

test-portable: $(STAMP)
	on=$$(TF_CPP_MIN_LOG_LEVEL=3 $(PY) -c '$(ONEDNN_DEFAULT)' 2>/dev/null | tail -1); \
	other=$$([ "$$on" = 1 ] && echo 0 || echo 1); \
	echo "test-portable: oneDNN is $${on:-?} here by default; running with TF_ENABLE_ONEDNN_OPTS=$$other"; \
	TF_ENABLE_ONEDNN_OPTS=$$other TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -p no:cacheprovider $(PORTABLE_TESTS)

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

# Every Python version pyproject.toml's requires-python claims.  CI runs `make test` on 3.11;
# the others are checked by `make check-resolution` only: for each version, pip resolves the
# whole dependency set (".[cpu,test]", and from 3.11 keras-hub without its dependencies, as
# setup installs it) to wheels for that interpreter, --dry-run: nothing is built or installed.
# It runs pythonX.Y's own pip where that interpreter is on PATH (environment markers such as
# `python_version >= '3.11'` are then read for X.Y), otherwise $(PYTHON)'s with
# --python-version X.Y (wheel tags and Requires-Python for X.Y, markers for $(PYTHON)).
# Needs the index and pip >= 22.2; on an index without PEP 658 metadata pip downloads each
# wheel to read it (minutes per version).
PYTHONS_CLAIMED := 3.10 3.11 3.12 3.13

.PHONY: check-resolution
check-resolution:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for v in $(PYTHONS_CLAIMED); do \
	    py=python$$v; \
	    if ! $$py -m pip --version >/dev/null 2>&1; then py="$(PYTHON)"; \
	        echo "Python $$v: no python$$v with pip on PATH; markers are read for $$($$py -V)"; fi; \
	    echo "Python $$v: resolving .[cpu,test] to wheels ($$py)"; \
	    $$py -m pip install -q --dry-run --ignore-installed --only-binary=:all: --python-version $$v \
	        --target "$$tmp/t$$v" --report "$$tmp/$$v.json" ".[cpu,test]" || { echo "Python $$v: does not resolve"; exit 1; }; \
	    $$py -c "import json, sys; r = json.load(open(sys.argv[1])); \
	        v = {i['metadata']['name'].lower().replace('_', '-'): i['metadata']['version'] for i in r['install']}; \
	        print('  ' + ', '.join(f'{k} {v[k]}' for k in ('tensorflow-cpu', 'keras', 'numpy', 'zarr', 'ray', 'scikit-image', 'regex') if k in v))" \
	        "$$tmp/$$v.json"; \
	    if [ "$$v" != 3.10 ]; then \
	        $$py -m pip install -q --dry-run --ignore-installed --only-binary=:all: --python-version $$v \
	            --target "$$tmp/h$$v" --no-deps "$(KERAS_HUB)" || { echo "Python $$v: no $(KERAS_HUB) wheel"; exit 1; }; \
	    fi; \
	done; echo "every claimed Python version resolves: $(PYTHONS_CLAIMED)"
