# Two entry points for a fresh machine (see README "Quick start").
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.segstyle-installed
TRTAPI := $(VENV)/trt-api/.downloaded

.PHONY: setup run test clean

setup: $(STAMP) $(TRTAPI)

# torch/torchvision are pinned here (not in pyproject) because these exact CUDA builds lie on the
# machine's disk; anywhere else pip fetches them from the index.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The real Python API of each TensorRT release we claim, for tests/export/backend/trt/test_api_check.py:
# NVIDIA's tensorrt-cu12-bindings wheels, downloaded (never installed) into the git-ignored .venv/trt-api.
$(TRTAPI): $(STAMP) export/backend/trt/api_release.py
	$(BIN)/python -m segstyle.export.backend.trt.api_release download $(VENV)/trt-api
	touch $@

run: $(STAMP)
	$(BIN)/segstyle run

test: $(STAMP) $(TRTAPI)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) artifacts
