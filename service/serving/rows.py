"""Whole request tensors <-> batch rows, and one batch of rows through a signature (padded if asked)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from service.core.errors import InternalError, InvalidInput
from service.runtime.savedmodel import LoadedModel


def split_rows(signature: str, input_names: Iterable[str], inputs: dict[str, np.ndarray]
               ) -> list[dict[str, np.ndarray]]:
    """One dict per row of a request whose inputs share a leading batch dimension."""
    if set(inputs) != set(input_names):
        raise InvalidInput(f"signature '{signature}' takes inputs {sorted(input_names)}, got {sorted(inputs)}")
    sizes = {name: np.shape(value)[0] if np.ndim(value) else None for name, value in inputs.items()}
    counts = {size for size in sizes.values() if size is not None}
    if None in sizes.values() or len(counts) != 1:
        raise InvalidInput(f"inputs must share one batch dimension, got sizes {sizes}")
    (n,) = counts
    if n == 0:
        raise InvalidInput("inputs have an empty batch dimension")
    return [{name: value[i] for name, value in inputs.items()} for i in range(n)]


def stack_rows(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def run_rows(model: LoadedModel, signature: str, rows: list[dict[str, np.ndarray]],
             allowed_batch_sizes: tuple[int, ...] = ()) -> list[dict[str, np.ndarray]]:
    """One batch: the rows stacked, padded up to an allowed size, run, and split back into rows."""
    try:
        stacked = stack_rows(rows)
    except ValueError as exc:
        raise InvalidInput(f"rows of different shapes cannot be batched: {exc}") from exc
    return run_stacked(model, signature, stacked, len(rows), allowed_batch_sizes)


def run_stacked(model: LoadedModel, signature: str, stacked: dict[str, np.ndarray], n: int,
                allowed_batch_sizes: tuple[int, ...] = ()) -> list[dict[str, np.ndarray]]:
    """``n`` rows already stacked per input: padded up to an allowed size, run, and split back into rows."""
    padded = next((size for size in allowed_batch_sizes if size >= n), n)
    if padded > n:  # padding repeats the last row: valid input whose outputs are dropped below
        stacked = {name: np.concatenate([value, np.repeat(value[-1:], padded - n, axis=0)])
                   for name, value in stacked.items()}
    outputs = model.run(signature, stacked)
    if any(np.ndim(v) == 0 or np.shape(v)[0] != padded for v in outputs.values()):
        raise InternalError(f"signature '{signature}' did not return one output row per input row")
    return [{name: value[i] for name, value in outputs.items()} for i in range(n)]


def filtered(outputs: dict[str, np.ndarray], wanted: list[str] | None, signature: str) -> dict[str, np.ndarray]:
    if not wanted:
        return outputs
    unknown = [name for name in wanted if name not in outputs]
    if unknown:
        raise InvalidInput(f"unknown output {unknown}; signature '{signature}' has {sorted(outputs)}")
    return {name: outputs[name] for name in wanted}
