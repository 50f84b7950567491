"""``:explain`` (KServe's V1 verb on TF Serving's REST paths): the request body and the answer.

The body is that of ``:predict`` in the row form: ``{"instances": [...]}`` where each instance is an image as
``{"b64": ...}``, or an object of the ``explain`` signature's inputs, ``{"images": {"b64": ...}, "class_index": 2}``
(``class_index`` optional: -1, the image's top class). The answer is ``{"predictions": [{"class", "label", "score",
"heatmap"}, ...]}`` with the heatmap as nested lists ``[H][W]`` at the model's input size.
"""

from __future__ import annotations

from typing import Any

from service.codec.b64 import decode_b64, is_b64_object
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
