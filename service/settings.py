"""One validated Settings object for the service, from command-line flags or ``TLSERVE_*`` variables.

It is read once, at the entry point, and passed down. BentoML re-imports the service module in its
worker process, so ``tlserve serve`` hands its flags over as ``TLSERVE_*`` environment variables
(``to_env``) and the worker reads them back (``from_env``): one schema, two directions.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path

ENV_PREFIX = "TLSERVE_"


class SettingsError(ValueError):
    """A setting with a value that cannot work; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    model_repo: Path = Path("models")
    model_config_file: Path | None = None
    # TF Serving's --model_name/--model_base_path: serve this one model (instead of model_repo's sub-folders).
    model_name: str = ""
    model_base_path: Path | None = None
    # How often model_config_file is re-read: None with every repository poll (tlserve's default); 0 only at
    # start (TF Serving's --model_config_file_poll_wait_seconds default); > 0 at most that often.
    config_poll_interval_s: float | None = None
    prometheus_path: str = ""  # TF Serving's monitoring config: Prometheus served here too (besides /metrics)
    http_host: str = "0.0.0.0"
    http_port: int = 3000
    grpc_port: int = 8500  # 0: a free port (tests); -1: no gRPC server
    grpc_max_message_mb: float = 64.0
    max_batch_size: int = 32
    batch_timeout_ms: float = 2.0
    max_queue: int = 256
    max_concurrent_batches: int = 1
    allowed_batch_sizes: str = ""  # e.g. "1,8,32": batches padded up to one of these (TF Serving's option)
    model_batching: str = ""  # per-model overrides, e.g. "digits:max_batch_size=8,batch_timeout_ms=1;other:..."
    poll_interval_s: float = 2.0
    ready_when: str = "all"  # "all": every configured model has a version available; "any": one has
    max_body_mb: float = 64.0
    max_concurrent_requests: int = 256
    request_timeout_s: float = 30.0
    # Graceful shutdown (SIGTERM): not ready but still serving for drain_delay_s, then stop accepting and give
    # in-flight requests shutdown_grace_s. Kubernetes' terminationGracePeriodSeconds (30) is sized from both.
    drain_delay_s: float = 3.0
    shutdown_grace_s: float = 20.0
    max_image_pixels: int = 40_000_000
    gpu_memory_limit_mb: int = 0  # 0: grow on demand
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    # Security (README "Security"): TLS for HTTP and gRPC when both PEM files are set; bearer-token auth on every
    # path but the open ones when auth_token_file is set (entries: exact paths, prefixes ending in '*', and
    # exceptions starting with '!'; gRPC methods are matched as '/package.Service/Method').
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    auth_token_file: Path | None = None
    auth_open_paths: str = ("/livez,/readyz,/healthz,/metrics,/v2/health/live,/v2/health/ready,"
                            "/grpc.health.v1.Health/*,/ui,/ui/*,!/ui/api/*")

    def __post_init__(self):
        problems = []
        for name in ("max_batch_size", "max_queue", "max_concurrent_batches", "max_concurrent_requests",
                     "max_image_pixels"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("batch_timeout_ms", "poll_interval_s", "max_body_mb", "request_timeout_s", "drain_delay_s",
                     "shutdown_grace_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if not 0 <= self.http_port <= 65535:
            problems.append("http_port must be a port number")
        if not -1 <= self.grpc_port <= 65535:
            problems.append("grpc_port must be a port number, or -1 for none")
        if self.grpc_max_message_mb <= 0:
            problems.append("grpc_max_message_mb must be > 0")
        if self.ready_when not in ("all", "any"):
            problems.append("ready_when must be 'all' or 'any'")
        if bool(self.model_name) != (self.model_base_path is not None):
            problems.append("model_name and model_base_path go together: set both or neither")
        if self.config_poll_interval_s is not None and self.config_poll_interval_s < 0:
            problems.append("config_poll_interval_s must be >= 0")
        if self.prometheus_path and not self.prometheus_path.startswith("/"):
            problems.append("prometheus_path must start with '/'")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append("tls_cert_file and tls_key_file go together: set both or neither")
        for name in ("tls_cert_file", "tls_key_file", "auth_token_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                problems.append(f"{name} {path} is not a readable file")
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

    def batching_for(self, model: str) -> "Settings":
        """These settings with ``model``'s batching overrides applied (and validated)."""
        changes = self.batching_overrides().get(model, {})
        allowed = {"max_batch_size", "batch_timeout_ms", "max_queue", "max_concurrent_batches",
                   "allowed_batch_sizes"}
        unknown = set(changes) - allowed
        if unknown:
            raise SettingsError(f"model_batching for {model}: unknown {sorted(unknown)}; use {sorted(allowed)}")
        converted = {f.name: _convert(f, changes[f.name]) for f in fields(self) if f.name in changes}
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
    def from_env(cls, environ: dict | None = None) -> "Settings":
        """Settings from ``TLSERVE_<FIELD>`` variables (unset ones keep their defaults)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f, raw)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The ``TLSERVE_*`` variables that make ``from_env`` rebuild these settings."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                env[ENV_PREFIX + f.name.upper()] = str(value)
        return env

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


def _convert(f: dataclasses.Field, raw: str):
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if "Path" in kind:
            return Path(raw) if raw else None
        return raw
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {kind}") from None
