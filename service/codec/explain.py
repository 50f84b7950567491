"""``:explain`` (KServe's V1 verb on TF Serving's REST paths): the request body and the answer.

The body is that of ``:predict`` in the row form: ``{"instances": [...]}`` where each instance is an image as
``{"b64": ...}``, or an object of the ``explain`` signature's inputs, ``{"images": {"b64": ...}, "class_index": 2}``
(``class_index`` optional: -1, the image's top class). The answer is ``{"predictions": [{"class", "label", "score",
"heatmap"}, ...]}`` with the heatmap as nested lists ``[H][W]`` at the model's input size.

``POST /explain`` (tlserve's friendly form): ``{"model", "images": [base64...], "class_index"?}`` in, and per image
the class, its score and the heatmap as a base64 PNG overlay on the image at the model's input size.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from service.codec.b64 import decode_b64, encode_b64, is_b64_object
from service.codec.json_body import load_object
from service.core.dataplane import Explanation
from service.core.errors import InvalidInput
from tlserve.contract import CLASS_INDEX_INPUT, EXPLAIN_SIGNATURE, EXPLAIN_TOP_CLASS, IMAGES_INPUT


def _class_index(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{where}.{CLASS_INDEX_INPUT} must be an integer (-1 for the top class)")
    return value


def _instance(value: Any, index: int) -> tuple[bytes, int]:
    where = f"instances[{index}]"
    if is_b64_object(value):
        return decode_b64(value["b64"], where), EXPLAIN_TOP_CLASS
    if not isinstance(value, dict) or not is_b64_object(value.get(IMAGES_INPUT)):
        raise InvalidInput(f'{where} must be an image {{"b64": ...}} or {{"{IMAGES_INPUT}": {{"b64": ...}}, '
                           f'"{CLASS_INDEX_INPUT}": n}}')
    extra = set(value) - {IMAGES_INPUT, CLASS_INDEX_INPUT}
    if extra:
        raise InvalidInput(f"{where} has unknown keys {sorted(extra)[:5]}: the explain inputs are "
                           f"'{IMAGES_INPUT}' and '{CLASS_INDEX_INPUT}'")
    class_index = _class_index(value[CLASS_INDEX_INPUT], where) if CLASS_INDEX_INPUT in value else EXPLAIN_TOP_CLASS
    return decode_b64(value[IMAGES_INPUT]["b64"], f"{where}.{IMAGES_INPUT}"), class_index


def parse_explain(body: bytes | str) -> tuple[list[bytes], list[int]]:
    """The encoded images of an ``:explain`` body and the class asked for each; InvalidInput for anything else."""
    doc = load_object(body)
    extra = set(doc) - {"instances", "signature_name"}
    if extra:
        raise InvalidInput(f"unknown keys {sorted(extra)[:5]}: send {{\"instances\": [...]}}")
    if doc.get("signature_name", EXPLAIN_SIGNATURE) != EXPLAIN_SIGNATURE:
        raise InvalidInput(f"':explain' runs the '{EXPLAIN_SIGNATURE}' signature only")
    instances = doc.get("instances")
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list of images")
    parsed = [_instance(v, i) for i, v in enumerate(instances)]
    return [image for image, _ in parsed], [c for _, c in parsed]


def format_explain(explanations: list[Explanation]) -> dict:
    return {"predictions": [{"class": e.index, "label": e.label, "score": e.score, "heatmap": e.heatmap.tolist()}
                            for e in explanations]}


# -- POST /explain, the friendly form ---------------------------------------------------------------------------
def parse_friendly_explain(body: bytes | str) -> tuple[str | None, str | None, list[bytes], list[int] | None]:
    """``{"model"?, "version"?, "images": [base64...], "class_index"?}``: class_index one integer for every image or
    a list with one per image; absent: each image's top class."""
    doc = load_object(body)
    images = doc.get("images")
    if not isinstance(images, list) or not images:
        raise InvalidInput("'images' must be a non-empty list of base64 strings")
    for i, value in enumerate(images):
        if not isinstance(value, str):
            raise InvalidInput(f"images[{i}] must be a base64 string")
    model, version = doc.get("model"), doc.get("version")
    if model is not None and not isinstance(model, str):
        raise InvalidInput("'model' must be a string")
    raw = doc.get(CLASS_INDEX_INPUT)
    class_indices: list[int] | None
    if raw is None:
        class_indices = None
    elif isinstance(raw, list):
        if len(raw) != len(images):
            raise InvalidInput(f"'{CLASS_INDEX_INPUT}' has {len(raw)} entries for {len(images)} images")
        class_indices = [_class_index(c, f"{CLASS_INDEX_INPUT}[{i}]") for i, c in enumerate(raw)]
    else:
        class_indices = [_class_index(raw, "request")] * len(images)
    return (model, None if version is None else str(version),
            [decode_b64(v, f"images[{i}]") for i, v in enumerate(images)], class_indices)


def overlay_png(image: bytes, heatmap: np.ndarray, alpha: float = 0.5) -> bytes:
    """The image (already checked by the data plane) at the heatmap's size, blended with the heatmap in a
    black-red-yellow-white ramp, as PNG bytes."""
    height, width = heatmap.shape
    with Image.open(io.BytesIO(image)) as opened:
        base = np.asarray(opened.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), np.float32)
    h = np.clip(heatmap.astype(np.float32), 0, 1)[..., None]
    colour = np.concatenate([np.clip(3 * h, 0, 1), np.clip(3 * h - 1, 0, 1), np.clip(3 * h - 2, 0, 1)], axis=-1) * 255
    blended = (1 - alpha * h) * base + alpha * h * colour
    out = io.BytesIO()
    Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB").save(out, "PNG")
    return out.getvalue()


def format_friendly_explain(model: str, number: int, images: list[bytes], explanations: list[Explanation]) -> dict:
    return {"model": model, "version": str(number), "explanations": [
        {"class": e.index, "label": e.label, "score": e.score, "overlay": encode_b64(overlay_png(image, e.heatmap))}
        for image, e in zip(images, explanations, strict=True)]}
