"""Whether a new version can take over from the one it replaces without breaking the clients of that one.

A new version must keep the signatures that clients call without naming one (``serving_default``) and, for a
tlserve export, those the image routes run (``preprocess`` and ``pixels``), with the same input names and
dtypes: a client that worked before the switch keeps working after it. Outputs, shapes and labels may change
(a retrained classifier may have more classes), and other signatures may come and go (TF Serving's own test
models do). A version that does not is never served; its status says why. To change a model's interface,
serve the new interface under a new model name.
"""

from __future__ import annotations

from service.core.tensors import SignatureInfo
from tlserve.contract import DEFAULT_SIGNATURE, IMAGE_MODEL_SIGNATURES


def interface_problem(current: dict[str, SignatureInfo], candidate: dict[str, SignatureInfo]) -> str | None:
    """Why ``candidate``'s signatures cannot replace ``current``'s, or None when they can."""
    kept = (DEFAULT_SIGNATURE,) + (IMAGE_MODEL_SIGNATURES if set(IMAGE_MODEL_SIGNATURES) <= set(current) else ())
    for name, old in sorted((n, current[n]) for n in kept if n in current):
        new = candidate.get(name)
        if new is None:
            return f"signature '{name}' of the served version is missing (has {sorted(candidate)})"
        if set(new.inputs) != set(old.inputs):
            return f"signature '{name}' takes inputs {sorted(new.inputs)} instead of {sorted(old.inputs)}"
        for key, spec in sorted(old.inputs.items()):
            if new.inputs[key].dtype != spec.dtype:
                return (f"signature '{name}' input '{key}' is {new.inputs[key].dtype.name} instead of "
                        f"{spec.dtype.name}")
    return None
