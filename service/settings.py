"""One validated Settings object for the service, from command-line flags or ``TLSERVE_*`` variables.

It is read once, at the entry point, and passed down. BentoML re-imports the service module in its
worker process, so ``tlserve serve`` hands its flags over as ``TLSERVE_*`` environment variables
(``to_env``) and the worker reads them back (``from_env``): one schema, two directions. Each field carries its
own help and rules (``setting``), from which the command line is generated: a default is written once, here.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from tlserve.contract import StoreUrlError, is_url, split_store_url

ENV_PREFIX = "TLSERVE_"


class SettingsError(ValueError):
    """A setting with a value that cannot work; the message names the setting."""


def setting(default, help: str, *, flag: str = "", minimum: float | None = None, choices: tuple[str, ...] = ()):
    """A Settings field that documents itself: its help, and the rules its value must meet.

    The command line (``tlserve serve --<name-with-dashes>``, or ``flag``) and the ``TLSERVE_<NAME>`` variable
    are generated from it (tlserve/cli.py), so each setting and its default are written here only."""
    return field(default=default, metadata={"help": help, "flag": flag, "minimum": minimum, "choices": choices})


@dataclass(frozen=True)
class Settings:
    # A folder, or an object-store URL (s3://bucket/prefix, gs://bucket/prefix): kept as a string, never a Path.
    model_repo: Path | str = setting(Path("models"), "model repository: one sub-folder per model, numbered versions "
                                     "inside; a folder or s3://bucket/prefix, gs://bucket/prefix")
    model_config_file: Path | None = setting(None, "a TF Serving ModelServerConfig text file (versions, labels)")
    # TF Serving's --model_name/--model_base_path: serve this one model (instead of model_repo's sub-folders).
    model_name: str = setting("", "serve only this model, from --model-base-path (TF Serving's --model_name)")
    model_base_path: Path | str | None = setting(None, "the folder (or s3:// / gs:// URL) of --model-name's "
                                                 "numbered versions")
    model_cache_dir: Path = setting(Path(tempfile.gettempdir()) / "tlserve-model-cache",
                                    "where versions from an object store are downloaded to before loading")
    config_poll_interval_s: float | None = setting(
        None, "re-read --model-config-file: unset with every repository poll; 0 only at start; > 0 at most this "
        "often", minimum=0)
    prometheus_path: str = setting("", "serve the Prometheus metrics here too, besides /metrics (TF Serving's "
                                   "monitoring config)")
    http_host: str = setting("0.0.0.0", "address the HTTP and gRPC servers bind", flag="--host")
    http_port: int = setting(3000, "HTTP port", minimum=0)
    grpc_port: int = setting(8500, "gRPC port (0: a free port; -1: no gRPC server)", minimum=-1)
    grpc_max_message_mb: float = setting(64.0, "largest gRPC message, in MiB")
    max_batch_size: int = setting(32, "largest batch a model runs", minimum=1)
    batch_timeout_ms: float = setting(2.0, "longest wait to fill a batch while another runs (an idle model never "
                                      "waits)", minimum=0)
    max_queue: int = setting(256, "items waiting per model; beyond: 503", minimum=1)
    max_concurrent_batches: int = setting(2, "batches of one model version run at once (one is gathered or answered "
                                          "while the other computes)", minimum=1)
    allowed_batch_sizes: str = setting("", "e.g. 1,8,32: pad batches up to one of these (off by default; must end "
                                       "at --max-batch-size)")
    model_batching: str = setting("", "per-model overrides, e.g. "
                                  "'digits:max_batch_size=8,batch_timeout_ms=1;other:max_queue=64'")
    poll_interval_s: float = setting(2.0, "model repository poll (0: never)", minimum=0)
    ready_when: str = setting("all", "ready when every configured model has a version available (all), or one has "
                              "(any)", choices=("all", "any"))
    max_body_mb: float = setting(64.0, "largest request body, in MiB", minimum=0)
    max_concurrent_requests: int = setting(256, "requests in progress per transport (HTTP, gRPC); beyond: 503 / "
                                           "UNAVAILABLE at once", minimum=1)
    request_timeout_s: float = setting(30.0, "deadline of a request that sets none", minimum=0)
    # Graceful shutdown (SIGTERM, service/lifecycle.py): not ready but still serving for drain_delay_s, then stop
    # accepting and give in-flight requests shutdown_grace_s. Kubernetes' terminationGracePeriodSeconds (30) is
    # sized from both.
    drain_delay_s: float = setting(3.0, "on SIGTERM: seconds of serving while not ready, before new connections "
                                   "are refused", minimum=0)
    shutdown_grace_s: float = setting(20.0, "on SIGTERM, after the drain delay: seconds for in-flight requests to "
                                      "finish", minimum=0)
    max_image_pixels: int = setting(40_000_000, "largest decoded image, in pixels", minimum=1)
    # Grad-CAM runs the model forward and back per image and answers a heatmap at the input size for each (224 x 224
    # floats is about 1 MB of JSON), so fewer images than a classify request: a deployment on a GPU, or with a small
    # model, may allow more; one with little memory fewer.
    max_explain_images: int = setting(16, "images per explain request (:explain, /explain, gRPC Explain, Predict "
                                      "with the explain signature); beyond: 400", minimum=1)
    gpu_memory_limit_mb: int = setting(0, "GPU memory for TensorFlow, in MiB (0: grow on demand)")
    intra_op_threads: int = setting(-1, "TensorFlow intra-op threads (-1: the cores shared among a model's "
                                    "--max-concurrent-batches; 0: TensorFlow's choice, all cores)", minimum=-1)
    inter_op_threads: int = setting(0, "TensorFlow inter-op threads (0: TensorFlow's choice)")
    drift_window: int = setting(1000, "the recent predictions per model version whose drift against the export's "
                                "test split is measured (tlserve_prediction_drift; docs/serving.md, Drift)",
                                minimum=10)
    # Security (README "Security"): TLS for HTTP and gRPC when both PEM files are set; bearer-token auth on every
    # path but the open ones when auth_token_file is set (entries: exact paths, prefixes ending in '*', and
    # exceptions starting with '!'; gRPC methods are matched as '/package.Service/Method').
    tls_cert_file: Path | None = setting(None, "PEM certificate (chain): HTTPS and gRPC over TLS; needs "
                                         "--tls-key-file")
    tls_key_file: Path | None = setting(None, "PEM private key of --tls-cert-file")
    auth_token_file: Path | None = setting(None, "file holding a bearer token that every request must send "
                                           "(Authorization: Bearer <token>), except on --auth-open-paths")
    auth_open_paths: str = setting("/livez,/readyz,/healthz,/metrics,/v2/health/live,/v2/health/ready,"
                                   "/grpc.health.v1.Health/*,/ui,/ui/*,!/ui/api/*",
                                   "paths and gRPC methods open without the token: exact, 'prefix*', "
                                   "'!exception*' (default: health, metrics and the console's static files)")
    # Request records (docs/observability.md): one hook in the data plane feeds the request log, CloudEvents and
    # image capture, each through a bounded queue drained in the background; all off by default.
    log_requests: str = setting("", "write one JSON line per sampled request to this file ('-': stdout); off when "
                                "empty")
    log_requests_url: str = setting("", "send each sampled request as CloudEvents (KServe's payload-logger format) "
                                    "to this http(s) URL")
    log_requests_sample: float = setting(1.0, "fraction of requests the request log and CloudEvents record (0..1)",
                                         minimum=0)
    log_requests_max_mb: float = setting(100.0, "rotate the request log file before it passes this size (one "
                                         "rotated file kept: at most twice this on disk)")
    log_requests_images: str = setting("hash", "images (and other bytes) in request records: their sha256, or the "
                                       "bytes in base64", choices=("hash", "bytes"))
    capture_dir: Path | None = setting(None, "capture images the model is unsure of into this folder (pending/, "
                                       "labelled/, reviewed/); off when unset")
    capture_below: float = setting(0.5, "capture an image whose top-1 score is below this, or that the version "
                                   "calls unconfident")
    capture_sample: float = setting(0.0, "capture this fraction (0..1) of the other images too", minimum=0)
    capture_max_mb: float = setting(1024.0, "bound of the capture folder's pending/: the oldest pending captures "
                                    "are evicted beyond it (labelled images never are)")
    record_queue: int = setting(1024, "records waiting per sink (request log, CloudEvents, capture); beyond, a "
                                "record is dropped and counted", minimum=1)
    record_queue_mb: float = setting(256.0, "request bytes (images, tensors) the records waiting per sink may hold; "
                                     "beyond, a record is dropped and counted")

    def __post_init__(self):
        problems = [problem for f in fields(self) if (problem := field_problem(f, getattr(self, f.name)))]
        if self.http_port > 65535:
            problems.append("http_port must be a port number")
        if self.grpc_port > 65535:
            problems.append("grpc_port must be a port number, or -1 for none")
        if self.grpc_max_message_mb <= 0:
            problems.append("grpc_max_message_mb must be > 0")
        for name in ("model_repo", "model_base_path"):
            if is_url(getattr(self, name)):
                try:
                    split_store_url(getattr(self, name))
                except StoreUrlError as exc:
                    problems.append(f"{name}: {exc}")
        if bool(self.model_name) != (self.model_base_path is not None):
            problems.append("model_name and model_base_path go together: set both or neither")
        if self.prometheus_path and not self.prometheus_path.startswith("/"):
            problems.append("prometheus_path must start with '/'")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append("tls_cert_file and tls_key_file go together: set both or neither")
        for name in ("tls_cert_file", "tls_key_file", "auth_token_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                problems.append(f"{name} {path} is not a readable file")
        for name in ("log_requests_sample", "capture_sample"):
            if getattr(self, name) > 1:
                problems.append(f"{name} must be a fraction between 0 and 1")
        for name in ("log_requests_max_mb", "capture_max_mb", "record_queue_mb"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0")
        if self.log_requests_url and not self.log_requests_url.startswith(("http://", "https://")):
            problems.append("log_requests_url must be an http:// or https:// URL")
        if problems:
            raise SettingsError("; ".join(problems))
        for name in self.batching_overrides():
            self.batching_for(name)  # raises SettingsError for a bad override

    def batching_overrides(self) -> dict[str, dict[str, str]]:
        """``model_batching`` as {model: {setting: value}}."""
        overrides: dict[str, dict[str, str]] = {}
        for part in filter(None, (p.strip() for p in self.model_batching.split(";"))):
            model, _, pairs = part.partition(":")
            if not model or not pairs:
                raise SettingsError(f"model_batching entry {part!r} must look like 'model:key=value,...'")
            values: dict[str, str] = {}
            key = None
            for token in pairs.split(","):
                if "=" in token:
                    key, _, value = token.partition("=")
                    key = key.strip()
                    values[key] = value.strip()
                elif key is not None:  # the rest of a list value: allowed_batch_sizes=2,8
                    values[key] += "," + token.strip()
                else:
                    raise SettingsError(f"model_batching entry {part!r} must look like 'model:key=value,...'")
            overrides[model.strip()] = values
        return overrides

    def batching_for(self, model: str) -> Settings:
        """These settings with ``model``'s batching overrides applied (and validated)."""
        changes = self.batching_overrides().get(model, {})
        allowed = {"max_batch_size", "batch_timeout_ms", "max_queue", "max_concurrent_batches",
                   "allowed_batch_sizes"}
        unknown = set(changes) - allowed
        if unknown:
            raise SettingsError(f"model_batching for {model}: unknown {sorted(unknown)}; use {sorted(allowed)}")
        converted = {f.name: convert(f, changes[f.name]) for f in fields(self) if f.name in changes}
        result = dataclasses.replace(self, model_batching="", **converted) if converted else self
        result.allowed_sizes()
        return result

    def allowed_sizes(self) -> tuple[int, ...]:
        """``allowed_batch_sizes`` as increasing integers ending at ``max_batch_size`` (TF Serving's rule)."""
        if not self.allowed_batch_sizes:
            return ()
        try:
            sizes = tuple(int(x) for x in self.allowed_batch_sizes.split(","))
        except ValueError:
            raise SettingsError(f"allowed_batch_sizes {self.allowed_batch_sizes!r} must be integers") from None
        if list(sizes) != sorted(set(sizes)) or sizes[0] < 1 or sizes[-1] != self.max_batch_size:
            raise SettingsError(f"allowed_batch_sizes {self.allowed_batch_sizes!r} must increase and end at "
                                f"max_batch_size ({self.max_batch_size})")
        return sizes

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Settings from ``TLSERVE_<FIELD>`` variables (unset ones keep their defaults), then ``overrides``
        (command-line flags, say): validated once, as a whole."""
        env: Mapping[str, str] = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(env_name(f))
            if raw is None:
                continue
            values[f.name] = convert(f, raw)
        return cls(**{**values, **overrides})

    def to_env(self) -> dict[str, str]:
        """The ``TLSERVE_*`` variables that make ``from_env`` rebuild these settings."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                env[env_name(f)] = str(value)
        return env

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


def env_name(f: dataclasses.Field) -> str:
    return ENV_PREFIX + f.name.upper()


def flag_name(f: dataclasses.Field) -> str:
    """The field's ``tlserve serve`` flag: ``--max-batch-size`` for ``max_batch_size`` unless it names another."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def field_problem(f: dataclasses.Field, value) -> str:
    """What is wrong with ``value`` for the field ``f`` by the rules in its metadata ("" when nothing is)."""
    minimum, choices = f.metadata.get("minimum"), f.metadata.get("choices")
    if minimum is not None and value is not None and value < minimum:
        return f"{f.name} must be >= {minimum}"
    if choices and value not in choices:
        return f"{f.name} must be one of {', '.join(map(repr, choices))}"
    return ""


def convert(f: dataclasses.Field, raw: str):
    """A field's value from its text form (a ``TLSERVE_*`` variable, a flag, a model_batching entry)."""
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if "Path" in kind:
            if "str" in kind and is_url(raw):
                return raw  # an object-store URL: Path() would fold its '//'
            return Path(raw) if raw else None
        return raw
    except ValueError:
        raise SettingsError(f"{env_name(f)}={raw!r} is not a valid {kind}") from None
