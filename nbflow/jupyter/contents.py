"""A Jupyter contents manager that opens Databricks source notebooks as notebooks.

A ``.py`` or ``.sql`` file that starts with Databricks' header (``# Databricks notebook source``,
``-- Databricks notebook source``) is listed as a notebook, opens in the notebook editor with its
cells, titles and magics, and is saved back in the same source format: unchanged cells keep their
original lines, and an unchanged notebook its original bytes (:mod:`nbflow.source_writer`).
Other files are Jupyter's as usual; an ``.ipynb`` is saved with the values set in its widget panel
(``metadata.nbflow_widgets``: :mod:`nbflow.runtime.widget_panel`). An ``.ipynb`` exported from
Databricks opens as ``nbflow run`` reads it: cells of the notebook's language (SQL) without a
magic get ``%sql``, and a first cell declares the widgets saved with it; saving takes both out
again, and writes the values set in the panel as the widgets' current values.

Enable it in any Jupyter server (``nbflow lab`` does)::

    jupyter lab --ServerApp.contents_manager_class=nbflow.jupyter.contents.SourceNotebooksManager
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web
from traitlets import Unicode

from ..errors import NbflowError
from ..notebooks import (
    DATABRICKS_NOTEBOOK,
    LANGUAGE_NAMES,
    adapt_databricks_ipynb,
    is_source_notebook,
    keep_widget_values,
    parse_source,
    restore_databricks_ipynb,
)
from ..runtime.widget_panel import saved_values
from ..source_writer import COMMENTS, source_text

SOURCE_SUFFIXES = tuple(suffix for suffix, language in LANGUAGE_NAMES.items() if language in COMMENTS)


class SourceNotebooksManager(AsyncLargeFileManager):
    """Jupyter's file contents manager, with Databricks source notebooks as notebooks."""

    kernel_name = Unicode(
        "nbflow", config=True,
        help="The kernel a source notebook opens with (`nbflow kernel install`), if installed; else Python's.",
    )

    def _is_source(self, os_path: str) -> bool:
        return os_path.lower().endswith(SOURCE_SUFFIXES) and is_source_notebook(Path(os_path))

    async def get(self, path: str, content: bool = True, type: str | None = None, format: str | None = None,
                  require_hash: bool = False) -> dict[str, Any]:
        if type is None and self._is_source(self._get_os_path(path.strip("/"))):
            type = "notebook"  # listed as a notebook: the file browser opens it in the notebook editor
        model: dict[str, Any] = await super().get(path, content=content, type=type, format=format,
                                                  require_hash=require_hash)
        return model

    async def _read_notebook(self, os_path: str, as_version: int = 4, capture_validation_error: Any = None,
                             raw: bool = False) -> Any:
        if not os_path.lower().endswith(SOURCE_SUFFIXES):
            read = await super()._read_notebook(os_path, as_version=as_version,
                                                capture_validation_error=capture_validation_error, raw=raw)
            nb = read[0] if raw else read
            if DATABRICKS_NOTEBOOK in nb.metadata:
                # A workspace export: its SQL cells shown as %sql cells and its widgets declared by
                # a first cell, as nbflow run reads it; saving gives the export back as it was.
                with contextlib.suppress(NbflowError):  # an R or Scala notebook opens as it is
                    adapt_databricks_ipynb(nb, os.path.basename(os_path), mark=True)
            return read
        data = Path(os_path).read_bytes()
        try:
            nb = parse_source(data.decode("utf-8"), os.path.basename(os_path), _language(os_path))
        except (UnicodeDecodeError, NbflowError) as exc:
            raise web.HTTPError(400, f"{os.path.basename(os_path)}: not a Databricks source notebook ({exc})",
                                reason="bad format") from None
        nb.metadata["kernelspec"] = self._kernelspec()
        nb.metadata.setdefault("language_info", {"name": "python"})
        nb.metadata["nbflow"] = {"source_format": _language(os_path)}
        return (nb, data) if raw else nb

    async def _save_notebook(self, os_path: str, nb: Any, capture_validation_error: Any = None) -> None:
        if not os_path.lower().endswith(SOURCE_SUFFIXES):
            # The values set in its widget panel go with it: `nbflow run` starts from them.
            values = saved_values(os.environ.get("NBFLOW_PROJECT_DIR") or self.root_dir,
                                  str(Path(os_path).resolve()))
            keep_widget_values(nb.metadata, values)
            if DATABRICKS_NOTEBOOK in nb.metadata:
                restore_databricks_ipynb(nb)
            await super()._save_notebook(os_path, nb, capture_validation_error=capture_validation_error)
            return
        original = None
        if os.path.isfile(os_path):
            try:
                original = Path(os_path).read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                original = None
        text = source_text(nb, _language(os_path), original)
        if text != original:
            await self._save_file(os_path, text, "text")

    def _kernelspec(self) -> dict[str, str]:
        names = self._installed_kernels()
        name = self.kernel_name if self.kernel_name in names else "python3"
        return {"name": name, "display_name": names.get(name, "Python 3"), "language": "python"}

    def _installed_kernels(self) -> dict[str, str]:
        cached: dict[str, str] | None = getattr(self, "_kernels", None)
        if cached is None:
            from jupyter_client.kernelspec import KernelSpecManager  # lazy: once, on the first notebook

            manager = KernelSpecManager()
            cached = {}
            for name in manager.find_kernel_specs():
                try:
                    cached[name] = manager.get_kernel_spec(name).display_name
                except Exception:  # a broken spec of another kernel is not this notebook's problem
                    continue
            self._kernels = cached
        return cached


def _language(os_path: str) -> str:
    return LANGUAGE_NAMES[Path(os_path).suffix.lower()]
