"""Copy a PyTorch state dict into a Keras model whose layer names are the state-dict prefixes ('.' -> '_')."""

from __future__ import annotations

import keras
import numpy as np


class PortError(ValueError):
    """The state dict and the Keras model do not correspond."""


def _layer_weights(layer, prefix: str, state: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    def take(suffix: str) -> np.ndarray:
        key = f"{prefix}.{suffix}"
        if key not in state:
            raise PortError(f"state dict has no {key} for layer {layer.name}")
        return state[key]

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [take("weight").transpose(2, 3, 0, 1)], [f"{prefix}.weight"]
    if isinstance(layer, keras.layers.Conv2D):
        # (out, in, kh, kw) -> (kh, kw, in, out)
        return [take("weight").transpose(2, 3, 1, 0)], [f"{prefix}.weight"]
    if isinstance(layer, keras.layers.BatchNormalization):
        names = ("weight", "bias", "running_mean", "running_var")
        return [take(n) for n in names], [f"{prefix}.{n}" for n in names]
    if isinstance(layer, keras.layers.Dense):
        return [take("weight").T, take("bias")], [f"{prefix}.weight", f"{prefix}.bias"]
    raise PortError(f"don't know how to port layer {layer.name} ({type(layer).__name__})")


def port_state_dict(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Assign every weight of ``model`` from ``state``; fail if either side has something the other lacks.

    BatchNorm's ``num_batches_tracked`` counters are the only state-dict entries allowed to stay unused.
    """
    prefixes = {key.rsplit(".", 1)[0] for key in state}
    by_layer_name = {p.replace(".", "_"): p for p in prefixes}
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in by_layer_name:
            raise PortError(f"no state-dict entry for Keras layer {layer.name}")
        values, keys = _layer_weights(layer, by_layer_name[layer.name], state)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise PortError(f"{layer.name}: shapes {[v.shape for v in values]} != {expected}")
        layer.set_weights(values)
        used.update(keys)
    unused = [k for k in state if k not in used and not k.endswith("num_batches_tracked")]
    if unused:
        raise PortError(f"state-dict entries left unused: {unused[:5]}")
