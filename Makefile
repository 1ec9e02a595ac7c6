# The two README commands work from a fresh clone: the venv is made and the package installed on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/regbench: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/regbench  ## train the default experiment (a small CNN on scikit-learn digits)
	$(BIN)/regbench train configs/digits_cnn.yaml

test: $(BIN)/regbench  ## lint, then run the test suite
	$(BIN)/ruff check regbench tests bench
	$(BIN)/python -m pytest

lint: $(BIN)/regbench
	$(BIN)/ruff check regbench tests bench
	$(BIN)/ruff format --check regbench tests bench

clean:
	rm -rf $(VENV) .pytest_cache
