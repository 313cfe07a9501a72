"""Writing notebooks as Databricks source files (``.py``, ``.sql``): the inverse of
:func:`nbflow.notebooks.parse_source`.

A notebook edited in Jupyter and saved back must not rewrite the whole file: :func:`source_text`
keeps the original text of every cell that did not change, byte for byte, and the whole file
when nothing changed, so that a save shows in Git as the edit made and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .notebooks import MAGIC_PREFIX, TITLE_PREFIX, parse_source

if TYPE_CHECKING:
    from nbformat import NotebookNode

COMMENTS = {"python": "#", "sql": "--"}


def to_source(nb: NotebookNode, language: str = "python") -> str:
    """A notebook as Databricks source text (what a workspace exports as ``SOURCE``): markdown
    and magic cells become ``MAGIC`` lines; in a SQL notebook, ``%sql`` cells are its own."""
    return source_text(nb, language)


def source_text(nb: NotebookNode, language: str = "python", original: str | None = None) -> str:
    """``nb`` as the text of a source notebook in ``language``. With the file's ``original``
    text, cells that did not change keep their original lines (and an unchanged notebook its
    original bytes)."""
    comment = COMMENTS[language]
    header = f"{comment} Databricks notebook source"
    separator = f"{comment} COMMAND ----------"
    cells = [cell for cell in nb.cells if cell.cell_type in ("code", "markdown")]
    old_cells: list[Any] = []
    old_chunks: list[list[str]] = []
    if original is not None:
        try:
            old_cells = list(parse_source(original, "<original>", language).cells)
        except Exception:  # not a source notebook any more: written anew
            original = None
        else:
            old_chunks = _chunks(original, separator)
    if original is not None and [_key(c) for c in cells] == [_key(c) for c in old_cells]:
        return original
    # Each original chunk that holds a cell, in order, to reuse for an unchanged cell, with the
    # chunks after it that hold none (empty cells), which go where it goes.
    reusable: list[tuple[tuple[str, str, str], list[list[str]]]] = []
    chunks: list[list[str]] = []  # what is written: empty chunks before the first cell stay first
    for key, chunk in zip(_chunk_keys(old_chunks, language), old_chunks, strict=True):
        if key is not None:
            reusable.append((key, [chunk]))
        elif reusable:
            reusable[-1][1].append(chunk)
        elif chunk:
            chunks.append(chunk)
    position = 0
    keys = [_key(cell) for cell in cells]
    for index, (cell, key) in enumerate(zip(cells, keys, strict=True)):
        found = next((i for i in range(position, len(reusable)) if reusable[i][0] == key), None)
        if found is not None:
            chunks.extend(reusable[found][1])
            position = found + 1
            continue
        lines = _cell_lines(cell, comment, language)
        if position < len(reusable) and reusable[position][0] not in keys[index + 1:]:
            # This cell was edited in place: it keeps the blank lines around it as they were.
            first, *empties = reusable[position][1]
            chunks.append(_leading_blanks(first) + lines + _leading_blanks(first[::-1]))
            chunks.extend(empties)
            position += 1
            continue
        before = [""] if index > 0 else []
        after = [""] if index < len(cells) - 1 else []
        if chunks and chunks[-1] and chunks[-1][-1].strip():
            chunks[-1] = [*chunks[-1], ""]  # the file's last cell, now followed by this one
        chunks.append(before + lines + after)
    body = f"\n{separator}\n".join("\n".join(chunk) for chunk in chunks)
    return f"{header}\n{body}\n"


def _leading_blanks(lines: list[str]) -> list[str]:
    blanks = []
    for line in lines:
        if line.strip():
            break
        blanks.append(line)
    return blanks


def _key(cell: Any) -> tuple[str, str, str]:
    source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
    return cell.cell_type, source.strip("\n"), str(cell.metadata.get("title") or "")


def _chunks(text: str, separator: str) -> list[list[str]]:
    """The lines of each cell of a source file, as written (the header line left out)."""
    lines = text.lstrip("\ufeff").splitlines()[1:]
    chunks: list[list[str]] = [[]]
    for line in lines:
        if line.strip().startswith(separator):
            chunks.append([])
        else:
            chunks[-1].append(line)
    return chunks


def _chunk_keys(chunks: list[list[str]], language: str) -> list[tuple[str, str, str] | None]:
    """The cell each chunk reads as (None for a chunk that holds none: blank lines only)."""
    comment = COMMENTS[language]
    keys: list[tuple[str, str, str] | None] = []
    for chunk in chunks:
        text = f"{comment} Databricks notebook source\n" + "\n".join(chunk) + "\n"
        try:
            cells = parse_source(text, "<chunk>", language).cells
        except Exception:
            cells = []
        keys.append(_key(cells[0]) if len(cells) == 1 else None)
    return keys


def _cell_lines(cell: Any, comment: str, language: str) -> list[str]:
    source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
    lines = source.strip("\n").splitlines()
    magic = f"{comment}{MAGIC_PREFIX[1:]}"  # "# MAGIC" or "-- MAGIC"
    title = cell.metadata.get("title")
    heading = [f"{comment}{TITLE_PREFIX[1:]} 1,{title}"] if title else []
    if cell.cell_type == "markdown":
        lines = ["%md", *lines]
    elif language == "sql" and lines and lines[0].strip() == "%sql":
        return heading + lines[1:]  # a SQL notebook's own cells carry no magic
    elif language == "sql" and not (lines and lines[0].lstrip().startswith("%")):
        lines = ["%python", *lines]  # the kernel's language, in a notebook whose own is SQL
    if lines and lines[0].lstrip().startswith("%"):
        lines = [f"{magic} {line}" if line else magic for line in lines]
    return heading + lines
