"""Named-tensor descriptions shared by the runtime, the core and every codec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the dtype table is a codec's; core only names its type
    from service.codec.dtypes import DType


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a signature; ``None`` dims are unknown, ``shape=None`` unknown rank."""

    name: str
    dtype: DType
    shape: tuple[int | None, ...] | None

    @property
    def batched(self) -> bool:
        """True when the first dimension is a free batch dimension, so rows can be stacked."""
        return self.shape is not None and len(self.shape) > 0 and self.shape[0] is None


@dataclass(frozen=True)
class SignatureInfo:
    """A signature as stored in ``saved_model.pb``: what GetModelMetadata and ``/metadata`` report."""

    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]

    @property
    def batchable(self) -> bool:
        """Every input has a free batch dimension: requests can be split into rows and batched together."""
        return bool(self.inputs) and all(spec.batched for spec in self.inputs.values())
