"""The objects of the local workspace (``nbflow serve``): folders, notebooks and files.

The tree lives in one index (``index.json``: path -> object) and the contents in a folder that
mirrors it (``tree/``, a notebook with its form's extension), under ``<project>/.nbflow/workspace/``.
Paths are normalised and refused if they hold ``..``, and every file is checked to be inside
``tree/``, so no path given to the API reaches outside that folder.
Notebooks keep the form they were imported in (Databricks source or Jupyter) and are converted on
export, as a workspace converts between ``SOURCE`` and ``JUPYTER``.
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..errors import NotebookFormatError
from ..notebooks import parse_source
from ..source_writer import to_source
from .api_errors import ApiError

MAX_IMPORT_BYTES = 10 * 2**20
LANGUAGES = {"PYTHON": ".py", "SQL": ".sql", "SCALA": ".scala", "R": ".r"}
SOURCE_SUFFIXES = {suffix: language for language, suffix in LANGUAGES.items()}


@dataclass
class WorkspaceObject:
    path: str
    object_type: str  # DIRECTORY, NOTEBOOK or FILE
    object_id: int
    created_at: int
    modified_at: int
    language: str | None = None
    form: str | None = None  # how a notebook is stored: SOURCE or JUPYTER

    def info(self, size: int | None = None) -> dict[str, Any]:
        """The API's ObjectInfo."""
        info: dict[str, Any] = {"path": self.path, "object_type": self.object_type, "object_id": self.object_id,
                                "created_at": self.created_at, "modified_at": self.modified_at,
                                "resource_id": str(self.object_id)}
        if self.language:
            info["language"] = self.language
        if size is not None:
            info["size"] = size
        return info


def normalize(path: Any) -> str:
    """An absolute workspace path without ``.``/``..`` parts or a trailing slash."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Path ({path}) is not absolute: it must start with '/'")
    if any(part == ".." for part in path.split("/")):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Path ({path}) must not contain '..'")
    clean = posixpath.normpath(path)
    return "/" if clean in ("/", "//") else clean


class WorkspaceStore:
    def __init__(self, root: Path, contents: Path) -> None:
        """The objects' index in ``root``; their contents, by workspace path, in ``contents`` (what
        notebooks see as /Workspace)."""
        self.root = root
        self.contents = contents
        self.contents.mkdir(parents=True, exist_ok=True)
        self._index_file = root / "index.json"
        self._lock = threading.RLock()
        self._objects: dict[str, WorkspaceObject] = {}
        if self._index_file.is_file():
            data = json.loads(self._index_file.read_text(encoding="utf-8"))
            self._objects = {o["path"]: WorkspaceObject(**o) for o in data["objects"]}
        if "/" not in self._objects:
            self._objects["/"] = WorkspaceObject("/", "DIRECTORY", 0, _now(), _now())

    # -- persistence ------------------------------------------------------------------------
    def _save(self) -> None:
        data = {"objects": [asdict(o) for o in self._objects.values()]}
        tmp = self._index_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self._index_file)

    def _content_file(self, obj: WorkspaceObject) -> Path:
        """Where an object's content is: the tree mirrors the workspace, so that a notebook's
        relative ``%run`` and ``dbutils.notebook.run`` paths work when it runs here."""
        suffix = ".ipynb" if obj.form == "JUPYTER" else LANGUAGES.get(obj.language or "", "")
        target = self.contents / (obj.path.lstrip("/") + (suffix if obj.object_type == "NOTEBOOK" else ""))
        if not target.resolve().is_relative_to(self.contents.resolve()):  # a symlink planted in the tree
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Path ({obj.path}) leaves the workspace")
        return target

    def _new_id(self) -> int:
        return max((o.object_id for o in self._objects.values()), default=0) + 1

    # -- reading ----------------------------------------------------------------------------
    def get(self, path: Any) -> WorkspaceObject:
        clean = normalize(path)
        with self._lock:
            obj = self._objects.get(clean)
        if obj is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({clean}) doesn't exist.")
        return obj

    def status(self, path: Any) -> dict[str, Any]:
        obj = self.get(path)
        return obj.info(self._size(obj))

    def _size(self, obj: WorkspaceObject) -> int | None:
        if obj.object_type == "DIRECTORY":
            return None
        return self._content_file(obj).stat().st_size

    def list(self, path: Any) -> list[dict[str, Any]]:
        folder = self.get(path)
        if folder.object_type != "DIRECTORY":
            return [folder.info(self._size(folder))]
        prefix = folder.path.rstrip("/") + "/"
        with self._lock:
            children = [o for p, o in self._objects.items() if p != "/" and posixpath.dirname(p) == folder.path
                        and p.startswith(prefix)]
        return [o.info(self._size(o)) for o in sorted(children, key=lambda o: o.path)]

    def local_file(self, path: Any) -> Path:
        """Where a notebook's content is on disk (for running it): ``.py`` source or ``.ipynb``."""
        obj = self.get(path)
        if obj.object_type != "NOTEBOOK":
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{obj.path} is not a notebook")
        return self._content_file(obj)

    def export(self, path: Any, form: str | None) -> tuple[bytes, str]:
        """The content of a notebook or file, in ``form`` (SOURCE, JUPYTER or AUTO), and its file type."""
        obj = self.get(path)
        if obj.object_type == "DIRECTORY":
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{obj.path} is a directory: export it as DBC")
        data = self._content_file(obj).read_bytes()
        if obj.object_type == "FILE":
            return data, ""
        form = (form or "SOURCE").upper()
        if form in ("AUTO", obj.form):
            return data, "ipynb" if obj.form == "JUPYTER" else (LANGUAGES[obj.language or "PYTHON"][1:])
        if form == "SOURCE":
            return to_source(nbformat.reads(data.decode("utf-8"), as_version=4)).encode("utf-8"), "py"
        if form == "JUPYTER":
            nb = parse_source(data.decode("utf-8"), obj.path)
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            return nbformat.writes(nb).encode("utf-8"), "ipynb"
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Export format {form} is not supported for {obj.path}")

    # -- writing ----------------------------------------------------------------------------
    def mkdirs(self, path: Any) -> None:
        clean = normalize(path)
        with self._lock:
            parts = [p for p in clean.split("/") if p]
            current = ""
            for part in parts:
                current += "/" + part
                existing = self._objects.get(current)
                if existing is None:
                    self._objects[current] = WorkspaceObject(current, "DIRECTORY", self._new_id(), _now(), _now())
                elif existing.object_type != "DIRECTORY":
                    raise ApiError(400, "RESOURCE_ALREADY_EXISTS",
                                   f"Cannot create directory {clean}: {current} exists and is not a directory")
            self._save()

    def import_(self, path: Any, content: bytes, form: str | None, language: str | None, overwrite: bool) -> None:
        clean = normalize(path)
        if clean == "/":
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Cannot import to the root folder itself")
        if len(content) > MAX_IMPORT_BYTES:
            raise ApiError(400, "MAX_NOTEBOOK_SIZE_EXCEEDED", f"{clean}: content exceeds the 10 MB limit")
        form = (form or "SOURCE").upper()
        kind = "NOTEBOOK"
        stored_form: str | None = form
        if form == "AUTO":
            clean, kind, stored_form, language = _auto(clean, content, language)
        elif form == "SOURCE":
            if not language:
                raise ApiError(400, "INVALID_PARAMETER_VALUE",
                               "To import a single file as SOURCE, you must set the language field")
            content = _check_source(clean, content, language)
        elif form == "JUPYTER":
            _check_jupyter(clean, content)
            language = "PYTHON"
        elif form == "RAW":
            kind, stored_form, language = "FILE", None, None
        else:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Import format {form} is not supported by nbflow serve")
        if language and language.upper() not in LANGUAGES:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Unknown language {language}")
        with self._lock:
            parent = self._objects.get(posixpath.dirname(clean))
            if parent is None or parent.object_type != "DIRECTORY":
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST",
                               f"The parent folder ({posixpath.dirname(clean)}) does not exist.")
            existing = self._objects.get(clean)
            if existing is not None and (not overwrite or existing.object_type == "DIRECTORY"):
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"Path ({clean}) already exists.")
            if existing is not None:
                self._content_file(existing).unlink(missing_ok=True)
            new_id = existing.object_id if existing else self._new_id()
            obj = WorkspaceObject(clean, kind, new_id,
                                  existing.created_at if existing else _now(), _now(),
                                  language.upper() if language else None, stored_form if kind == "NOTEBOOK" else None)
            target = self._content_file(obj)
            if any(o.path != clean and o.object_type != "DIRECTORY" and self._content_file(o) == target
                   for o in self._objects.values()):
                # The notebook /a/x and the file /a/x.py would share a file here.
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"Path ({clean}) clashes with another object")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            self._objects[clean] = obj
            self._save()

    def delete(self, path: Any, recursive: bool) -> None:
        obj = self.get(path)
        if obj.path == "/":
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Cannot delete the root folder")
        with self._lock:
            inside = [o for p, o in self._objects.items() if p.startswith(obj.path.rstrip("/") + "/")]
            if inside and not recursive:
                raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"Folder ({obj.path}) is not empty.")
            for gone in [*inside, obj]:
                if gone.object_type != "DIRECTORY":
                    self._content_file(gone).unlink(missing_ok=True)
                del self._objects[gone.path]
            self._save()


def _auto(path: str, content: bytes, language: str | None) -> tuple[str, str, str | None, str | None]:
    """AUTO import: a notebook by extension and header (the extension is removed), else a file."""
    stem, suffix = posixpath.splitext(path)
    if suffix == ".ipynb":
        _check_jupyter(path, content)
        return stem, "NOTEBOOK", "JUPYTER", "PYTHON"
    found = SOURCE_SUFFIXES.get(suffix.lower())
    if found and content.lstrip().startswith(b"# Databricks notebook source"):
        return stem, "NOTEBOOK", "SOURCE", found
    return path, "FILE", None, None


def _check_source(path: str, content: bytes, language: str) -> bytes:
    """The content to store: a Python source notebook checked; plain Python becomes a one-cell
    source notebook (a workspace accepts it as such)."""
    if language.upper() != "PYTHON":
        return content  # only Python notebooks run here; others are stored as they are
    text = content.decode("utf-8", "replace")
    if not text.startswith("# Databricks notebook source"):
        return b"# Databricks notebook source\n" + content
    try:
        parse_source(text, path)
    except NotebookFormatError as exc:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", str(exc)) from None
    return content


def _check_jupyter(path: str, content: bytes) -> None:
    try:
        nbformat.reads(content.decode("utf-8"), as_version=4)
    except Exception as exc:  # nbformat raises many unrelated types for bad documents
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{path}: not a valid Jupyter notebook ({exc})") from None


def _now() -> int:
    return int(time.time() * 1000)
