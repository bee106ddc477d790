"""JSON text of the owner's own records (audit events, what a digest hashes), made quickly.

``json.JSONEncoder.encode`` builds a new C encoder on every call: a few microseconds each, and
a get that a handler accepts writes four texts (its request, decision and release events, the
digest of what leaves). ``encoder`` builds that C encoder once, for values the owner itself
made: plain JSON data without cycles (they are not looked for). Where the C encoder is not
there, or does not write exactly what ``JSONEncoder`` writes, it is ``JSONEncoder.encode``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _json_encoder

_SAMPLE = {"b": [1, 2.5, None, True, "é\n"], "a": {"x": float("inf")}, "c": 3}


def encoder(*, sort_keys: bool = False) -> Callable[[object], str]:
    """``JSONEncoder(default=str, sort_keys=sort_keys).encode``, its C encoder made once."""
    plain = json.JSONEncoder(default=str, sort_keys=sort_keys)
    make = getattr(_json_encoder, "c_make_encoder", None)
    if make is None:
        return plain.encode
    try:  # the arguments JSONEncoder.iterencode gives it
        made = make(None, str, _json_encoder.encode_basestring_ascii, None, ": ", ", ",
                    sort_keys, False, True)  # fmt: skip
    except TypeError:
        return plain.encode

    def encode(value: object) -> str:
        if isinstance(value, str):  # JSONEncoder.encode writes a lone string itself
            return plain.encode(value)
        return "".join(made(value, 0))

    try:
        same = encode(_SAMPLE) == plain.encode(_SAMPLE)
    except Exception:
        same = False
    return encode if same else plain.encode


__all__ = ["encoder"]
