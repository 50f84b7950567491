"""The one JSON loader for request bodies (TF Serving REST, KServe V2 REST, ``/classify``).

Every way a body can fail is ``InvalidInput`` (400), never a 500: empty, not UTF-8, malformed, or nested deeper
than ``MAX_DEPTH``. Depth is measured before parsing and without recursion: ``json.loads`` recurses in C and raises
``RecursionError`` a few thousand levels down (where it does depends on the stack already in use), and the code
that walks a parsed document recurses too. ``NaN``, ``Infinity`` and ``-Infinity`` are read as floats, as TF
Serving's parser (rapidjson with ``kParseNanAndInfFlag``) reads them and as it writes them in answers.

A number literal too large for a double (``1e999``) is a parse error in rapidjson ("Number too big to be stored
in double"); Python's parser makes it infinity. Finding such literals in the text costs as much as parsing, so
the loader marks the ``Infinity`` tokens instead (they are two known objects) and the codecs that take floats
refuse any other infinity they meet: ``overflowed(value)``, checked only where a value is infinite.
"""

from __future__ import annotations

import json
import math
from typing import Any

from service.core.errors import InvalidInput

# Containers (objects and lists) inside one another. A tensor has at most 64 dimensions in numpy (254 in TF);
# around it a request adds a few levels ({"instances": [{"name": ...}]}). 128 leaves room for both and stays far
# below the interpreter's recursion limit for whatever walks the document afterwards.
MAX_DEPTH = 128

_NOT_BRACKET_OR_QUOTE = bytes(b for b in range(256) if b not in b'[]{}"')
# An opening bracket becomes the int8 +1, a closing one -1 (0xff): a skeleton's running sum is the depth.
_STEP = bytes(1 if b in b"[{" else 0xFF if b in b"]}" else 0 for b in range(256))
_BOM = b"\xef\xbb\xbf"

# The Infinity tokens' values: these objects and no others (identity, not equality, tells them apart).
INFINITY = float("inf")
NEGATIVE_INFINITY = float("-inf")
_DECODER = json.JSONDecoder(parse_constant={"NaN": math.nan, "Infinity": INFINITY,
                                            "-Infinity": NEGATIVE_INFINITY}.__getitem__)


def nesting_depth(body: bytes) -> int:
    """How deep containers nest in ``body`` (0 for a bare value); brackets inside strings do not count.

    Exact for valid JSON; for malformed JSON some number that the parser refuses anyway. Linear, and in C
    (bytes methods, numpy): a body of numbers costs one ``translate`` of its bytes.
    """
    if b"\\" in body:  # drop escaped backslashes, then escaped quotes: every quote left opens or closes a string
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = body.translate(None, _NOT_BRACKET_OR_QUOTE)  # brackets and quotes, in order
    if b'"' in skeleton:  # between the quotes is text: keep what is outside
        skeleton = b"".join(skeleton.split(b'"')[::2])
    if not skeleton:
        return 0
    import numpy as np  # here: BentoML's arbiter imports this module (via the HTTP layer) and serves nothing

    # int32: a body would need 2**31 brackets to overflow it (bodies are capped far below that).
    return max(int(np.frombuffer(skeleton.translate(_STEP), np.int8).cumsum(dtype=np.int32).max()), 0)


def load_json(body: bytes | str, *, what: str = "request body") -> Any:
    """The JSON value of ``body``; ``InvalidInput`` naming ``what`` for every problem.

    Bytes must be UTF-8 (a UTF-8 byte order mark is tolerated, as before).
    """
    if not body:
        raise InvalidInput(f"{what} is empty; expected JSON")
    if isinstance(body, str):
        text, raw = body, None
    else:
        raw = bytes(body[len(_BOM):]) if body[:len(_BOM)] == _BOM else bytes(body)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"invalid JSON: {what} is not valid UTF-8 (byte {exc.start})") from None
    data = raw if raw is not None else text.encode("utf-8", "surrogatepass")
    # A body cannot nest deeper than it has opening brackets: most bodies need no scan at all.
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and (depth := nesting_depth(data)) > MAX_DEPTH:
        raise InvalidInput(f"invalid JSON: nested too deeply ({depth} levels; at most {MAX_DEPTH})")
    try:
        return _DECODER.decode(text)
    except RecursionError:  # not reached after the depth check; kept so that it can never be a 500
        raise InvalidInput("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError
        raise InvalidInput(f"invalid JSON: {exc}") from None


def overflowed(value: Any) -> bool:
    """For a value from ``load_json``: True for the infinity that a number literal too large for a double became
    (``1e999``), which TF Serving refuses as it parses; False for the ``Infinity`` tokens and every other value.
    (Any infinity not made by ``load_json`` counts as overflowed: ask only about JSON values.)"""
    return (type(value) is float and math.isinf(value) and value is not INFINITY
            and value is not NEGATIVE_INFINITY)


def load_object(body: bytes | str, *, what: str = "request body") -> dict:
    """``load_json`` for bodies that must be a JSON object."""
    doc = load_json(body, what=what)
    if not isinstance(doc, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return doc
