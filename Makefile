# geotl: the two front-door targets are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'import sys' 2>/dev/null && echo python3.12 || \
            (ls /root/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12 2>/dev/null | head -n1))
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: demo test lint typecheck pytest venv clean qgis-plugin

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "python3.12 not found: install Python 3.12+ or run make PYTHON=/path/to/python3.12" >&2; exit 2; }
	@test -x $(BIN)/python || { free=$$( (df -Pk $(dir $(VENV)) 2>/dev/null || df -Pk .) | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  test "$$free" -ge 8 || { echo "make: a new $(VENV) takes about 7.5 GB (PyPI's torch is a CUDA build) and $(dir $(VENV)) has $$free GB free: free some disk, or make VENV=/path/on/a/larger/disk/venv" >&2; exit 2; }; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/geotl run regions/demo-osbs-crowns.toml --out $(DEMO_OUT) --overwrite

# the zip QGIS's Plugins > Install from ZIP accepts (standard library only: any python3)
qgis-plugin:
	python3 scripts/build_qgis_plugin.py --out dist/geotl_processing.zip

lint: $(STAMP)
	$(BIN)/ruff check geotl tests scripts qgis
	$(BIN)/ruff format --check geotl tests scripts qgis

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) $(DEMO_OUT) dist .pytest_cache .mypy_cache .ruff_cache
