# Two entry points for a fresh machine (see README "Quick start").
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.segstyle-installed

.PHONY: setup run test clean

setup: $(STAMP)

# torch/torchvision are pinned here (not in pyproject) because these exact CUDA builds lie on the
# machine's disk; anywhere else pip fetches them from the index.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/segstyle run

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) artifacts
