"""YAML or JSON input files that may be hostile (plans, parameters files): read with guards, and
the line of each field, for messages that name ``FILE:LINE``.

JSON goes through the json module (fifty times faster than a YAML parser, and without aliases);
anything else through libyaml when present. Lines are worked out only when a message needs one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

# What a plan (or parameters file) may be: far past any real one, well short of hurting the machine.
MAX_DOCUMENT_BYTES = 16 * 2**20
MAX_VALUES = 1_000_000  # values once YAML aliases are expanded (a billion-laughs file has 10**9)
MAX_DEPTH = 64  # a plan is about 6 deep; the JSON encoder and pydantic recurse on values
# libyaml is several times faster and bounds nesting itself (1000 levels) before anything recurses.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    """A YAML or JSON file's data, and the lines of its fields (worked out only if asked: only a
    plan with problems needs them)."""

    text: str
    data: Any
    node: yaml.Node | None = None
    _lines: dict[tuple[Any, ...], int] | None = None

    def lines(self) -> dict[tuple[Any, ...], int]:
        if self._lines is None:
            if self.node is None and self.text.strip():
                self.node = _YAML_LOADER(self.text).get_single_node()  # it parsed once: it parses again
            self._lines = _line_map(self.node)
        return self._lines

    def line(self, loc: tuple[Any, ...]) -> int:
        """The 1-based line of the field at ``loc``, else of the nearest field enclosing it."""
        return line_of(self.lines(), loc)


def read_document(path: Path, what: str, error: Callable[[str], InputError]) -> Document:
    """Read a YAML or JSON file that may be hostile.

    Refused, each with one line raised through ``error``: a missing or unreadable file, one over
    MAX_DOCUMENT_BYTES (read no further: ``/dev/zero`` ends too), one that is not UTF-8 text or
    holds NUL bytes, invalid YAML, aliases that refer to themselves or expand to more than
    MAX_VALUES values, and nesting deeper than MAX_DEPTH.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise error(f"{path}: larger than {MAX_DOCUMENT_BYTES // 2**20} MiB: not a {what} nbflow reads")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
                    f"a {what} is YAML or JSON") from None
    if "\x00" in text:
        raise error(f"{path}: a binary file (it holds NUL bytes): a {what} is YAML or JSON text")
    if text.lstrip().startswith("{"):
        # JSON is YAML too, but the json module reads it fifty times faster, and has no aliases.
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            pass  # the YAML parser says where the problem is, or reads it as YAML flow style
        else:
            _check_depth(data, path, error)
            return Document(text, data)
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None and "&" in text:  # no anchor, no alias: nothing to expand
            _check_shape(node, path, error)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise error(f"{where}: not valid YAML or JSON ({reason})") from None
    except RecursionError:  # only without libyaml, whose parser bounds nesting itself
        raise error(f"{path}: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    document = Document(text, data, node)
    if "&" not in text:
        _check_depth(data, path, error, document)
    return document


def _check_depth(data: Any, path: Path, error: Callable[[str], InputError], document: Document | None = None) -> None:
    """Refuse data nested deeper than MAX_DEPTH (a tree: no aliases), naming the line if known."""
    deepest = _deepest(data)
    if deepest is not None:
        lines = (document or Document(path.read_text(encoding="utf-8"), None)).lines()
        raise error(f"{path}:{line_of(lines, deepest)}: nested more than {MAX_DEPTH} levels deep")


def _deepest(data: Any) -> tuple[Any, ...] | None:
    """The path of a value nested past MAX_DEPTH, or None. Paths are built only once one is found."""
    if not isinstance(data, (dict, list)):
        return None
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if level > MAX_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value
        stack.extend((v, level + 1) for v in children if isinstance(v, (dict, list)))
    else:
        return None
    loc: tuple[Any, ...] = ()
    while len(loc) < MAX_DEPTH:  # the walk again, down one too-deep branch only
        items = data.items() if isinstance(data, dict) else enumerate(data)
        key, data = next((k, v) for k, v in items if isinstance(v, (dict, list)) and _nested(v, MAX_DEPTH - len(loc)))
        loc = (*loc, key)
    return loc


def _nested(value: Any, levels: int) -> bool:
    """Whether ``value`` holds containers at least ``levels`` deep (itself counting as one)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level >= levels:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((v, level + 1) for v in children if isinstance(v, (dict, list)))
    return False


def _check_shape(root: yaml.Node, path: Path, error: Callable[[str], InputError]) -> None:
    """Refuse recursive aliases, expansion past MAX_VALUES and nesting past MAX_DEPTH.

    One walk without recursion over the node graph, each node once (an alias is the node it
    names, shared): its expanded size and depth come from its children's, memoised.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current path from the root: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = _children(node)
        if children_done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            line = node.start_mark.line + 1
            if size[key] > MAX_VALUES:
                raise error(f"{path}:{line}: more than {MAX_VALUES:,} values once its aliases are expanded "
                            "(a YAML alias bomb?): refused")
            if depth[key] > MAX_DEPTH:
                raise error(f"{path}:{line}: nested more than {MAX_DEPTH} levels deep")
            continue
        if key in size:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in open_nodes:
                raise error(f"{path}:{kid.start_mark.line + 1}: a YAML alias refers to itself "
                            "(a recursive structure): refused")
            if id(kid) not in size:
                stack.append((kid, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _line_map(root: Any) -> dict[tuple[Any, ...], int]:
    """Field path → 1-based line, from the YAML node tree (JSON is YAML too).

    A node an alias shares is walked once: a message about a value inside it points at the
    alias, which is where that copy of the value is used.
    """
    lines: dict[tuple[Any, ...], int] = {}
    if root is None:
        return lines
    seen: set[int] = set()
    stack: list[tuple[Any, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, key.value)
                lines[child] = key.start_mark.line + 1  # the key's line, not its value's
                stack.append((value, child))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return lines


def line_of(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    for end in range(len(loc), -1, -1):  # the field, else the nearest enclosing one
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1
