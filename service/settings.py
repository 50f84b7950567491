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
    http_host: str = "0.0.0.0"
    http_port: int = 3000
    max_batch_size: int = 32
    batch_timeout_ms: float = 2.0
    max_queue: int = 256
    max_concurrent_batches: int = 1
    poll_interval_s: float = 2.0
    ready_when: str = "all"  # "all": every configured model has a version available; "any": one has
    max_body_mb: float = 64.0
    max_concurrent_requests: int = 256
    request_timeout_s: float = 30.0
    max_image_pixels: int = 40_000_000
    gpu_memory_limit_mb: int = 0  # 0: grow on demand
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    log_level: str = "INFO"

    def __post_init__(self):
        problems = []
        for name in ("max_batch_size", "max_queue", "max_concurrent_batches", "max_concurrent_requests",
                     "max_image_pixels"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("batch_timeout_ms", "poll_interval_s", "max_body_mb", "request_timeout_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if not 0 <= self.http_port <= 65535:
            problems.append("http_port must be a port number")
        if self.ready_when not in ("all", "any"):
            problems.append("ready_when must be 'all' or 'any'")
        if problems:
            raise SettingsError("; ".join(problems))

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
