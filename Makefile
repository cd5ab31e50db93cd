# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv and install everything they need first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out/demo

# PyTorch is pinned and installed first, in the same venv, so that spandrel and
# diffusers never pull a different (multi-GB) torch build behind our back.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test test-plugin lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(TORCH_PINS)
	touch $(STAMP)

# Start a daemon, generate one image with MrFlow on the built-in model, write every stage image.
demo: $(STAMP)
	$(BIN)/mrflow demo --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy protocol/mrflow_protocol daemon/mrflow_daemon installer/mrflow_installer krita_plugin/mrflow_krita

test: $(STAMP) lint
	$(BIN)/python -m pytest tests

# The Krita plugin's tests alone (unit tests on the fake krita module, plus the real-Krita e2e test).
test-plugin: $(STAMP)
	$(BIN)/python -m pytest tests/krita_plugin

bench: $(STAMP)
	$(BIN)/mrflow bench

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
