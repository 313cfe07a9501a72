"""SQL text as nbflow's runtime reads and writes it: tokens, literals, identifiers, locations.

Shared by the modules that look into a notebook's SQL before the engine runs it (Unity Catalog
names, ``read_files``, Delta commands, ``DeltaTable``). Standard library only: imported in every
kernel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Whitespace and comments before a statement's first word.
LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)

_TOKEN = re.compile(
    r"""(?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<quoted>`(?:[^`]|``)*`)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<other>.)""",
    re.DOTALL | re.VERBOSE,
)


@dataclass
class Token:
    kind: str  # space, comment, string, quoted, word, other
    text: str

    @property
    def name(self) -> str | None:
        """The identifier this token is (unquoted, lower case), if it is one."""
        if self.kind == "word":
            return self.text.lower()
        if self.kind == "quoted":
            return self.text[1:-1].replace("``", "`").lower()
        return None


def tokenize(statement: str) -> list[Token]:
    tokens = []
    for match in _TOKEN.finditer(statement):
        kind = match.lastgroup or "other"
        tokens.append(Token(kind, match.group()))
    return tokens


def strip_comments(statement: str) -> str:
    """The statement without comments and the trailing semicolon, whitespace collapsed at the ends."""
    text = "".join(t.text if t.kind != "comment" else " " for t in tokenize(statement)).strip()
    return text[:-1].rstrip() if text.endswith(";") else text


def quote(part: str) -> str:
    """One name part, backquoted unless it is a plain identifier."""
    return part if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) else "`" + part.replace("`", "``") + "`"


def unquote_string(text: str) -> str:
    """The value of a SQL string literal ('...' or "..."); other text unchanged."""
    if len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def sql_string(text: str) -> str:
    """A SQL string literal (Spark SQL treats backslash as an escape)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_ident(name: str) -> str:
    """A quoted SQL identifier for ``schema.table`` (backticks inside names are doubled)."""
    return ".".join("`" + part.replace("`", "``") + "`" for part in name.split("."))


def local_path(location: str) -> str:
    """``file:/x`` or ``file:///x`` → ``/x``; other locations unchanged."""
    if location.startswith("file:"):
        return "/" + location[len("file:"):].lstrip("/")
    return location
