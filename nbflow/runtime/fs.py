"""``dbutils.fs`` on the local disk.

Paths follow Databricks: ``dbfs:/x``, and paths without a scheme (``/x``, ``x``), are in DBFS,
which nbflow keeps in a local folder (``<project>/.nbflow/dbfs`` unless ``NBFLOW_DBFS_ROOT``
names another); ``/Volumes/c/s/v/...`` is a volume's folder and ``/Workspace/...`` the project's
workspace folder (see :mod:`nbflow.runtime.paths`, shared with Spark's readers and writers);
``file:/x`` is the local file ``/x``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

from ..errors import CatalogObjectError, DbfsError
from .help import show
from .paths import DatabricksPaths


class FileInfo(NamedTuple):
    path: str
    name: str
    size: int
    modificationTime: int

    def isDir(self) -> bool:
        return self.name.endswith("/")

    def isFile(self) -> bool:
        return not self.isDir()


class FsUtils:
    _INTERNAL = ("local_path", "local_path_for_spark")  # the runtime's, not listed by help()
    def __init__(self, dbfs_root: str, paths: DatabricksPaths | None = None) -> None:
        self._root = Path(dbfs_root).resolve()
        self._paths = paths

    # -- path mapping -----------------------------------------------------------------------
    def local_path(self, path: str, writing: bool = False) -> Path:
        """The local file a dbutils.fs path names (``writing``: a volume must exist)."""
        if not isinstance(path, str) or not path:
            raise TypeError(f"path must be a non-empty string, got {path!r}")
        if path.startswith("file:"):
            return Path("/" + path[len("file:"):].lstrip("/"))
        if ":" in path.split("/", 1)[0] and not path.startswith("dbfs:"):
            raise DbfsError(f"unsupported scheme in {path!r}: nbflow's dbutils.fs supports dbfs:/ and file:/ paths")
        if self._paths is not None:
            try:
                return Path(self._paths.local(path if path.startswith(("dbfs:", "/")) else "/" + path, writing))
            except CatalogObjectError as exc:
                raise DbfsError(str(exc)) from None
        rest = path[len("dbfs:"):] if path.startswith("dbfs:") else path
        local = (self._root / rest.lstrip("/")).resolve()
        if local != self._root and self._root not in local.parents:
            raise DbfsError(f"{path!r} leaves the DBFS root")
        return local

    def local_path_for_spark(self, path: str, writing: bool = False) -> str:
        """What Spark should be given for ``path``: Databricks' paths mapped (errors as
        :class:`CatalogObjectError`), any other path (relative, ``file:``, ``s3://``) unchanged."""
        if self._paths is None or path.startswith("file:") or not path.startswith(("dbfs:", "/")):
            return path
        return self._paths.local(path, writing)

    def _display(self, local: Path) -> str:
        if local == self._root or self._root in local.parents:
            rel = local.relative_to(self._root).as_posix()
            return "dbfs:/" + ("" if rel == "." else rel)
        if self._paths is not None:
            for root, shown in ((self._paths.volumes_root, "dbfs:/Volumes"), (self._paths.workspace, "/Workspace")):
                if local == root or root in local.parents:
                    rel = local.relative_to(root).as_posix()
                    return shown + ("" if rel == "." else "/" + rel)
        return "file:" + local.as_posix()

    def _info(self, local: Path) -> FileInfo:
        stat = local.stat()
        is_dir = local.is_dir()
        suffix = "/" if is_dir else ""
        return FileInfo(
            self._display(local) + suffix, local.name + suffix, 0 if is_dir else stat.st_size, int(stat.st_mtime * 1000)
        )

    def _missing(self, path: str) -> DbfsError:
        return DbfsError(f"java.io.FileNotFoundException: File {path} does not exist.")

    # -- operations -------------------------------------------------------------------------
    def ls(self, dir: str) -> list[FileInfo]:
        """List a directory (or describe a file)."""
        local = self.local_path(dir)
        if not local.exists():
            raise self._missing(dir)
        if local.is_file():
            return [self._info(local)]
        return [self._info(child) for child in sorted(local.iterdir())]

    def mkdirs(self, dir: str) -> bool:
        """Create a directory and its parents."""
        self.local_path(dir, writing=True).mkdir(parents=True, exist_ok=True)
        return True

    def put(self, file: str, contents: str, overwrite: bool = False) -> bool:
        """Write a string to a file (UTF-8)."""
        local = self.local_path(file, writing=True)
        if local.exists() and not overwrite:
            raise DbfsError(f"java.io.IOException: File already exists: {file} (use overwrite=True)")
        local.parent.mkdir(parents=True, exist_ok=True)
        data = contents.encode("utf-8")
        local.write_bytes(data)
        print(f"Wrote {len(data)} bytes.")
        return True

    def head(self, file: str, maxBytes: int = 65536) -> str:
        """The first ``maxBytes`` bytes of a file, decoded as UTF-8."""
        local = self.local_path(file)
        if not local.is_file():
            raise self._missing(file)
        with local.open("rb") as f:
            return f.read(maxBytes).decode("utf-8", errors="replace")

    def cp(self, from_: str, to: str, recurse: bool = False) -> bool:
        """Copy a file, or a directory with ``recurse=True``."""
        src, dst = self.local_path(from_), self.local_path(to, writing=True)
        if not src.exists():
            raise self._missing(from_)
        if src.is_dir():
            if not recurse:
                raise DbfsError(f"{from_} is a directory: use recurse=True")
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            target = dst / src.name if dst.is_dir() else dst
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        return True

    def mv(self, from_: str, to: str, recurse: bool = False) -> bool:
        """Move a file, or a directory with ``recurse=True``."""
        src, dst = self.local_path(from_), self.local_path(to, writing=True)
        if not src.exists():
            raise self._missing(from_)
        if src.is_dir() and not recurse:
            raise DbfsError(f"{from_} is a directory: use recurse=True")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
        return True

    def rm(self, dir: str, recurse: bool = False) -> bool:
        """Remove a file, or a directory with ``recurse=True``; False if nothing was there."""
        local = self.local_path(dir)
        if not local.exists():
            return False
        if local.is_dir():
            if any(local.iterdir()) and not recurse:
                raise DbfsError(f"{dir} is a non-empty directory: use recurse=True")
            shutil.rmtree(local)
        else:
            local.unlink()
        return True

    def help(self, method: str = "") -> None:
        show("dbutils.fs", self, method)
        if not method:
            print(f"  (dbfs:/ is {self._root})")
