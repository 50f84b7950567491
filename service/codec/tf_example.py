"""The encoded image inside a serialized ``tf.Example`` (the ``classify`` signature's input)."""

from __future__ import annotations

from tensorflow.core.example import example_pb2

from service.core.errors import InvalidInput
from tlserve.contract import EXAMPLE_IMAGE_KEY


def image_from_example(serialized) -> bytes:
    """The one ``image/encoded`` bytes value of a serialized tf.Example, or InvalidInput."""
    try:
        example = example_pb2.Example.FromString(bytes(serialized))
    except Exception as exc:  # protobuf raises DecodeError, a plain Exception subclass
        raise InvalidInput(f"not a serialized tf.Example: {exc}") from exc
    values = example.features.feature[EXAMPLE_IMAGE_KEY].bytes_list.value
    if len(values) != 1:
        raise InvalidInput(f"each tf.Example needs exactly one '{EXAMPLE_IMAGE_KEY}' bytes value")
    return values[0]
