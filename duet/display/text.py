"""Text a scientist chose, shown as data.

Names, reasons, descriptions, tags and claimed names come from the scientist: shown raw, a
newline could start a line that looks like the owner's own ("decision accepted ... by owner"),
and escape sequences could move the cursor or erase the screen. ``shown`` escapes every control
character (and the invisible ones that reorder or hide text); ``quoted`` also puts the text in
quotes, so it never passes for the owner's own words. Every place that shows such text to the
owner (console lines, tables, the audit view, logs) goes through them.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the format characters that reorder, join or hide text
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]"
)
MAX_SHOWN = 200  # characters of a scientist's text shown in a line or a table cell


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named is not None:
        return named
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object, limit: int = MAX_SHOWN) -> str:
    """``text`` (chosen by a scientist) as one line of data: control and invisible characters
    escaped (``\\n``, ``\\x1b``, ``\\u202e``), cut at ``limit`` characters (with "…").
    Showing shown text again changes nothing."""
    value = str(text)
    cut = len(value) > limit
    return _UNSAFE.sub(_escape, value[:limit]) + ("…" if cut else "")


def quoted(text: object, limit: int = MAX_SHOWN) -> str:
    """``shown`` in double quotes (inner quotes escaped): a scientist's text as a quotation."""
    return '"' + shown(text, limit).replace('"', '\\"') + '"'
