"""The two benchmark models and the request payload, made once and cached under build/bench/.

- ``compute-bound``: a MobileNetV2 classifier at 224 px (10 classes, untrained head: accuracy does not matter);
- ``overhead-bound``: the same at 32 px, where serving overhead dominates the model's own time.
Both are real tlserve exports (``serving_default``, ``pixels``, ``preprocess``, ``classify``), so every system
serves the same SavedModel. The payload is one JPEG per request at the model's input size (scikit-image's
cat photo, ``chelsea``), decoded by the model's own preprocessing in every system.
"""

from __future__ import annotations

import io
from pathlib import Path

MODELS = {"compute-bound": 224, "overhead-bound": 32}
BUILD = Path(__file__).resolve().parent.parent / "build" / "bench"


def model_repo() -> Path:
    return BUILD / "models"


def version_dir(model: str) -> Path:
    """The SavedModel of ``model`` (``models/<name>/1``), exported on first use."""
    path = model_repo() / model / "1"
    if not path.is_dir():
        _export(model, MODELS[model], path.parent.parent)
    return path


def payload(model: str) -> bytes:
    """The JPEG sent to ``model`` in every request, at its input size (the same bytes for every system)."""
    from PIL import Image
    from skimage import data

    size = MODELS[model]
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).convert("RGB").resize((size, size), Image.BILINEAR).save(buffer, "JPEG",
                                                                                             quality=90)
    return buffer.getvalue()


def _export(model: str, size: int, root: Path) -> None:
    from training.backbones import registry
    from training.export import export
    from training.model import build_classifier

    classifier, _ = build_classifier(registry.get("mobilenet_v2"), size, 10)
    export(classifier, root=root, name=model, classes=[str(d) for d in range(10)], image_size=size,
           resize="stretch", metadata={"purpose": "benchmark; untrained head"}, warmup_image=payload(model),
           version=1)


if __name__ == "__main__":
    for name in MODELS:
        print(name, version_dir(name), len(payload(name)), "bytes of JPEG")
