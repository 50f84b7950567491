"""The data plane's interface: what every transport may call, and the wire-free types it speaks.

Transports (HTTP routes, gRPC servicers) hold a ``DataPlane`` and nothing below it: they translate a wire
format into these calls and the answers back, and never reach the repository, a loaded model or a batcher.
``service/dataplane.py`` implements it over the model repository; tests may implement it with fakes.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:  # type names only: core imports no numpy arrays at run time, nor anything below it
    import numpy as np

    from service.core.tensors import SignatureInfo

# Request limits and defaults every transport shares (one place, so HTTP and gRPC answer alike).
MAX_IMAGES_PER_REQUEST = 256
DEFAULT_TOP_K = 3

# TF Serving's version states, as GetModelStatus reports them.
LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass(frozen=True)
class Target:
    """Which model a request names: a version number or a version label, or neither (the newest)."""

    model: str
    version: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float


class Classification(NamedTuple):
    """What ``DataPlane.classify`` answers: the version that served, the top-k per image, and per image whether it
    counts as one of the model's classes (``tlserve.contract.is_confident``: True for an export without an unknown
    score or threshold)."""

    version: int
    predictions: list[list[Prediction]]
    confident: list[bool]


@dataclass(frozen=True)
class Explanation:
    """Grad-CAM of one image: the class explained (the top class unless the request asked for one), its calibrated
    score and the heatmap, float32 [H, W] at the model's input size, values in [0, 1]."""

    index: int
    label: str
    score: float
    heatmap: np.ndarray


@dataclass
class VersionStatus:
    number: int
    path: Path | str  # where the version was found: a folder, or an object-store URL
    state: str
    error: str = ""
    stamp: tuple = ()
    changed_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class VersionMetadata:
    """A served version's signatures: as read (``signatures``) and as stored (``signature_defs``: TF's
    SignatureDef protos, kept opaque here, for TF Serving's metadata APIs)."""

    number: int
    signatures: dict[str, SignatureInfo]
    signature_defs: Any


@dataclass(frozen=True)
class ServedInfo:
    """What the newest available version of a model tells about itself (console, Classifier.GetModel)."""

    number: int
    class_names: list[str] | None
    image_size: int | None  # the pixels signature's height for a tlserve export, else None
    batching: dict[str, Any]
    explain: bool  # it has the export's explain signature (Grad-CAM; absent from exports before issue 16)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version_labels: dict[str, int]
    ready: bool
    versions: list[VersionStatus]  # newest first
    served: dict[int, ServedInfo]  # by version number, for the available versions


@dataclass(frozen=True)
class RepositoryEntry:
    """One model version in the repository index (the model-repository extension, HTTP and gRPC alike): Triton's
    state names, ``READY`` for an available version, else TF Serving's (LOADING, UNLOADING, END); a model with no
    version at all is one entry with no version, ``UNAVAILABLE``, and why."""

    name: str
    version: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class SharedMemoryRegion:
    """A registered system shared-memory region (Triton's extension): ``byte_size`` bytes from ``offset`` of the
    POSIX shared-memory object ``key`` (``/name``, as ``shm_open`` takes it), known to requests as ``name``."""

    name: str
    key: str
    offset: int
    byte_size: int


@dataclass(frozen=True)
class SharedMemoryRef:
    """Where one tensor lives in a registered region: a tensor's ``shared_memory_region``, ``shared_memory_byte_size``
    and ``shared_memory_offset`` parameters (the offset counts from the region's start)."""

    region: str
    byte_size: int
    offset: int = 0


@dataclass(frozen=True)
class ModelConfiguration:
    """A version's configuration as Triton's model configuration extension reports it, generated from the
    SavedModel: the signature the V2 APIs serve, the batch size requests may reach (0 when the signature takes no
    free batch dimension), the batcher's settings in force when it batches, and whether it has labels."""

    name: str
    version: int
    versions: list[int]  # the available versions, newest first
    signature: SignatureInfo
    max_batch_size: int
    batching: dict[str, Any] | None  # BatchingSettings.as_dict() when max_batch_size > 0
    has_labels: bool
    # The model's version policy (TF Serving's, which Triton's mirrors): "latest" (the ``policy_count`` newest),
    # "all", or "specific" (``policy_versions``).
    policy: str = "latest"
    policy_count: int = 1
    policy_versions: tuple[int, ...] = ()


@dataclass
class Duration:
    """A count and a total time in nanoseconds (Triton's StatisticDuration)."""

    count: int = 0
    ns: int = 0


@dataclass(frozen=True)
class BatchStatistics:
    """The executions of one batch size: how many, and their total run time (``compute_infer``)."""

    batch_size: int
    compute_infer: Duration


@dataclass(frozen=True)
class VersionStatistics:
    """Cumulative inference statistics of one model version since it was loaded (Triton's statistics extension).

    ``success``/``fail``: requests and their time in the data plane; ``inference_count``: rows (batch elements) of
    the successful requests; ``execution_count``: batches run. ``queue`` and ``compute_infer``: per row that went
    through a batcher, its wait and its batch's run time (the batch runs as one step, so ``compute_input`` and
    ``compute_output`` count the same rows with no time of their own)."""

    name: str
    version: int
    last_inference_ms: int  # ms since the epoch of the last request, 0 if none
    inference_count: int
    execution_count: int
    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration
    batches: list[BatchStatistics]


class ResolvedVersion(Protocol):
    """One version, resolved once for a request and held until the request ends."""

    number: int

    @property
    def signatures(self) -> dict[str, SignatureInfo]: ...

    def signature(self, name: str) -> SignatureInfo: ...

    async def predict(self, signature: str, inputs: dict[str, np.ndarray], *, deadline: float | None = None,
                      output_filter: list[str] | None = None) -> dict[str, np.ndarray]: ...


class DataPlane(Protocol):
    """Readiness, models and their versions, and inference, for every transport."""

    # -- server ------------------------------------------------------------------------------------------
    def ready(self) -> bool:
        """The one readiness rule of every view (HTTP /readyz and /v2/health/ready, gRPC health and V2)."""
        ...

    def begin_drain(self) -> None:
        """Shutdown has begun: not ready from now on, still serving."""
        ...

    def deadline(self, timeout_s: float | None = None) -> float | None:
        """A ``time.monotonic()`` deadline from the server's request timeout and the client's, if shorter."""
        ...

    # -- models ------------------------------------------------------------------------------------------
    def model_names(self) -> list[str]: ...

    def default_model(self) -> str:
        """The one model served, or InvalidInput when there are several to choose from."""
        ...

    def model_ready(self, target: Target) -> bool:
        """Whether the target can be served now; NotFound for an unknown model, version or label."""
        ...

    def status(self, model: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]: ...

    def model_info(self, name: str) -> ModelInfo: ...

    def metadata(self, target: Target) -> VersionMetadata: ...

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """Every version of every model with its state (only the ready ones with ``ready_only``)."""
        ...

    def model_config(self, target: Target) -> ModelConfiguration:
        """The target version's configuration (Triton's model configuration extension)."""
        ...

    def statistics(self, model: str | None = None, version: int | None = None) -> list[VersionStatistics]:
        """Inference statistics of every available version of every model, of one model, or of one version
        (NotFound for an unknown model or a version not available)."""
        ...

    async def load_model(self, name: str) -> bool:
        """Bring a model back (or pick up new versions now); whether it is ready afterwards."""
        ...

    async def unload_model(self, name: str) -> None: ...

    async def reload_config(self, config: Any) -> None:
        """Serve the models of a TF Serving ``ModelServerConfig`` from now on (ModelService's reload)."""
        ...

    # -- system shared memory (Triton's extension) ---------------------------------------------------------
    def shared_memory_status(self, name: str = "") -> list[SharedMemoryRegion]:
        """Every registered region, or the one named (NotFound if it is not registered)."""
        ...

    def shared_memory_register(self, region: SharedMemoryRegion) -> None:
        """Register a region; InvalidInput for a name in use, a key that does not exist, or bounds outside it."""
        ...

    def shared_memory_unregister(self, name: str = "") -> None:
        """Forget the region named (nothing if it is not registered), or every region when ``name`` is empty."""
        ...

    def shared_memory_read(self, ref: SharedMemoryRef) -> bytes:
        """A tensor's bytes from its region; InvalidInput for an unknown region or bounds outside it."""
        ...

    def shared_memory_write(self, ref: SharedMemoryRef, data: bytes) -> None:
        """An output's bytes into its region (``data`` at most ``ref.byte_size``); the checks of the read."""
        ...

    # -- inference ---------------------------------------------------------------------------------------
    def resolve(self, target: Target) -> AbstractContextManager[ResolvedVersion]:
        """The target's version, held (not unloaded) while the ``with`` block runs."""
        ...

    async def predict(self, target: Target, signature: str, inputs: dict[str, np.ndarray], *,
                      deadline: float | None = None, output_filter: list[str] | None = None,
                      class_counts: dict[str, int] | None = None, resolved: ResolvedVersion | None = None
                      ) -> tuple[int, dict[str, np.ndarray]]:
        """Named tensors through a signature of the target's version; (version number, named outputs).

        ``class_counts`` (Triton's classification extension): each output named there is answered as its top
        ``count`` classes per row instead, BYTES strings ``"score:index:label"`` (``"score:index"`` without labels).
        ``resolved``: the version a caller already holds from ``resolve`` (it parsed the request against that
        version's signatures), run as it is, so that a request resolves its version once."""
        ...

    async def classify(self, target: Target, top_k: int = DEFAULT_TOP_K, *, images: list[bytes] | None = None,
                       pixels: np.ndarray | None = None, deadline: float | None = None,
                       unknown_threshold: float | None = None) -> Classification:
        """The ``top_k`` classes of each encoded image (or pixels row), best first, for a tlserve export, and whether
        each is confident: its unknown score at most ``unknown_threshold`` (a finite number, else InvalidInput), or
        when None the export's own threshold."""
        ...

    async def explain(self, target: Target, images: list[bytes], class_indices: list[int] | None = None, *,
                      deadline: float | None = None) -> tuple[int, list[Explanation]]:
        """Grad-CAM of each encoded image through the export's ``explain`` signature: (version number, one
        Explanation per image). ``class_indices`` holds one class per image (``EXPLAIN_TOP_CLASS``, -1, for its top
        class); None explains every top class. At most the ``max_explain_images`` setting's images; NotFound for a model
        without the signature."""
        ...
