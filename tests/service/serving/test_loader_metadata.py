"""The export's "unknown" threshold, read once at load from assets.extra/metadata.json (``loader.unknown_threshold``):
absent for an old export, a finite number otherwise, and a broken file refuses the version at load."""

from __future__ import annotations

import json

import pytest

from service.core.errors import InvalidInput
from service.serving.loader import unknown_threshold
from tlserve.contract import METADATA_FILE


def _write(tmp_path, text: str):
    (tmp_path / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / METADATA_FILE).write_text(text)
    return tmp_path


def test_no_metadata_file_is_no_threshold(tmp_path):
    assert unknown_threshold(tmp_path) is None


@pytest.mark.parametrize("meta", [{}, {"calibration": {"temperature": 1.5}}, {"unknown": {"score": "msp"}},
                                  {"unknown": None}, {"unknown": {"threshold": None}}])
def test_metadata_without_a_threshold_is_no_threshold(tmp_path, meta):
    assert unknown_threshold(_write(tmp_path, json.dumps(meta))) is None


@pytest.mark.parametrize("value", [0.25, -3, 0])
def test_a_threshold_is_read_as_a_float(tmp_path, value):
    assert unknown_threshold(_write(tmp_path, json.dumps({"unknown": {"threshold": value}}))) == float(value)


@pytest.mark.parametrize("text", ['{"unknown": {"threshold": "abc"}}', '{"unknown": {"threshold": true}}',
                                  '{"unknown": {"threshold": NaN}}', '{"unknown": {"threshold": 1e999}}',
                                  "[1, 2]", "not json", '{"unknown": {"threshold": [1]}}'])
def test_a_broken_threshold_or_file_refuses_the_version(tmp_path, text):
    with pytest.raises(InvalidInput):
        unknown_threshold(_write(tmp_path, text))
