"""The one version parser (service/codec/version.py): a version that cannot exist is unknown on every wire."""

from __future__ import annotations

import pytest

from service.codec.version import parse_version
from service.core.errors import NotFound


@pytest.mark.parametrize("raw, number", [(None, None), ("", None), ("1", 1), ("00000123", 123), ("0", 0),
                                         ("000", 0), (str(2**63 - 1), 2**63 - 1), ("0" * 5000 + "7", 7)])
def test_numbers(raw, number):
    assert parse_version(raw) == number


@pytest.mark.parametrize("raw", ["abc", "-1", "+1", "1.5", "1e3", " 1", "1 ", "\u00b2", "\u0661", "0x10",
                                 str(2**63), "9" * 5000])
def test_what_cannot_be_a_version_is_not_found(raw):
    with pytest.raises(NotFound, match="^version '.*' not found"):
        parse_version(raw)


def test_the_message_echoes_a_bounded_version():
    with pytest.raises(NotFound) as err:
        parse_version("x" * 10_000)
    assert len(err.value.message) < 120 and "xxx..." in err.value.message
