# The two README commands work from a fresh clone: the venv is made and the package installed on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# TORCH=cpu: PyTorch's CPU-only build (no CUDA libraries, a much smaller .venv), e.g. `make demo TORCH=cpu`
TORCH ?=
CPU_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: demo test lint clean

$(BIN)/regbench: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(filter cpu,$(TORCH)),$(BIN)/python -m pip install --quiet torch torchvision --index-url $(CPU_INDEX))
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
