"""A statement's text with its literals replaced by `?`, for what shows it (trace spans, the
slow-statement log, `app db top`): what the project sends holds placeholders, but a team's
hand-written SQL may hold values.

Each backend reads strings its own way (PostgreSQL's dollar quotes and E'' escapes, MariaDB's
backslash escapes and double-quoted strings), so each builds its masker here from the pieces
of its own syntax (`masker`). A statement is scanned once, left to right, by one pattern: a
comment or a quoted identifier is kept as it is, a string or a number becomes `?`. Where the
scan could be wrong it masks more, never less: a string left open runs to the end of the text,
and a block comment ends at its first `*/` (a nested one, which PostgreSQL allows, ends later).
"""

from __future__ import annotations

import re
from collections.abc import Callable

LINE_COMMENT = r"--[^\n]*"
HASH_COMMENT = r"#[^\n]*"  # MariaDB's other line comment
BLOCK_COMMENT = r"/\*.*?\*/"
DOUBLE_QUOTED_NAME = r'"(?:[^"]|"")*(?:"|\Z)'
BACKTICK_NAME = r"`(?:[^`]|``)*(?:`|\Z)"

# A string whose only escape is its quote doubled (standard SQL, PostgreSQL's own, SQLite's).
SINGLE_QUOTED = r"'(?:[^']|'')*(?:'|\Z)"
DOUBLE_QUOTED = r'"(?:[^"]|"")*(?:"|\Z)'
# A string where a backslash escapes the next character too (MariaDB's, PostgreSQL's E'').
SINGLE_QUOTED_ESCAPED = r"'(?:[^'\\]|\\.|'')*(?:'|\Z)"
DOUBLE_QUOTED_ESCAPED = r'"(?:[^"\\]|\\.|"")*(?:"|\Z)'
ESCAPE_STRING = r"(?<![\w$])[Ee]" + SINGLE_QUOTED_ESCAPED
# $$...$$ or $tag$...$tag$ (a tag is an identifier; `$1` is a placeholder, not a quote).
DOLLAR_QUOTED = r"(?<![\w$])\$(?P<tag>[A-Za-z_]\w*|)\$.*?(?:\$(?P=tag)\$|\Z)"
HEX_NUMBER = r"(?<![\w$:.%])0[xX][0-9A-Fa-f]+(?![\w.])"
BINARY_NUMBER = r"(?<![\w$:.%])0[bB][01]+(?![\w.])"
# A number that stands alone (not `param_1`, `$1`, `:name1`, `%(x)s`), with its exponent.
NUMBER = r"(?<![\w$:.%])-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])"


def masker(*, kept: tuple[str, ...], masked: tuple[str, ...]) -> Callable[[str], str]:
    """A function that replaces each match of `masked` in a statement by `?`, and leaves each
    match of `kept` (comments, quoted names) as it is; the earliest match wins, and at one
    place the first pattern listed (`kept` before `masked`)."""
    pattern = re.compile("(?P<kept>" + "|".join(kept) + ")|" + "|".join(masked), re.DOTALL)

    def replaced(found: re.Match[str]) -> str:
        return found.group("kept") or "?"

    def without_literals(statement: str) -> str:
        return pattern.sub(replaced, statement)

    return without_literals
