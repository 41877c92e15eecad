"""Member names: how a JOIN payload becomes a name, and when two names are the same.

PROTOCOL.md: NFKC, then strip surrounding whitespace as str.strip() does; 1 to 32 code
points; nothing from the Unicode categories C* and no U+2028/U+2029; unique without
regard to case (casefold); a few names reserved so nobody poses as the administrator.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME = 32
RESERVED_NAMES = ("admin", "administrator", "server", "system", "管理员")
FORBIDDEN_SEPARATORS = "\u2028\u2029"
# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; newline and tab are allowed.
FORBIDDEN_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def normalize(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw).strip()


def name_key(name: str) -> str:
    """The form two names are compared in: 'Straße' and 'STRASSE' have one key."""
    return name.casefold()


RESERVED_KEYS = frozenset(name_key(normalize(name)) for name in RESERVED_NAMES)


def why_invalid(name: str) -> str | None:
    """None if `name` (already normalized) may be used, else the reason in a few words."""
    if not name:
        return "a name cannot be empty"
    if len(name) > MAX_NAME:
        return f"a name has at most {MAX_NAME} characters"
    for char in name:
        if unicodedata.category(char).startswith("C") or char in FORBIDDEN_SEPARATORS:
            return f"a name cannot contain the character U+{ord(char):04X}"
    if name_key(name) in RESERVED_KEYS:
        return f"the name {name!r} is reserved"
    return None


def text_problem(text: str) -> str | None:
    """None if a SAY text is acceptable: not empty, no control character but newline and tab."""
    if not text:
        return "a message cannot be empty"
    found = FORBIDDEN_IN_TEXT.search(text)
    if found:
        return f"a message cannot contain the control character U+{ord(found.group()):04X}"
    return None
