"""``dbutils.library``: ``restartPython()``, as on Databricks Runtime 11 and later (where the
``install*`` methods were removed in favour of ``%pip``)."""

from __future__ import annotations

from .help import show

RESTART_ENAME = "RestartPython"  # the class below, as the engine sees the error


class RestartPython(BaseException):
    """Raised by ``dbutils.library.restartPython()``: the engine ends the cell there, restarts
    the notebook's Python process and goes on with the next cell. A BaseException so that an
    ``except Exception`` around the call does not swallow the restart."""

    def _render_traceback_(self) -> list[str]:
        return ["Restarting Python: the next cell runs in a new Python process (widgets kept)"]


class LibraryUtils:
    """Notebook-scoped libraries: install with %pip, then restartPython()."""

    def restartPython(self) -> None:
        """Restart the notebook's Python process: variables and imports are gone, widgets stay, and
        the notebook goes on with the next cell. Code after the call in the same cell does not run."""
        raise RestartPython()

    def help(self, method: str = "") -> None:
        show("dbutils.library", self, method)
