"""Databricks' paths, mapped into the project: what Spark's readers and writers, SQL path clauses
and ``dbutils.fs`` get for ``dbfs:/x``, ``/Volumes/...``, ``/dbfs/...`` and ``/Workspace/...``.

- ``/Volumes/catalog/schema/volume/...`` (also ``dbfs:/Volumes/...``) is the volume's folder
  from the registry; a volume that was never created cannot be written (as on Databricks).
- ``/Workspace/...`` is ``<project>/.nbflow/workspace/tree/...`` (the local workspace's files).
- ``dbfs:/x``, ``/dbfs/x`` (the FUSE view, which Spark on Databricks does not take but notebooks
  pass anyway) and any other root-relative path are ``<dbfs root>/x``: on Databricks a path
  without a scheme is in DBFS.
- A path inside the project folder is left alone: it can only have been computed locally
  (``os.path.abspath(...)``), and mapping it would lose the user's data. ``file:/x`` is always
  the local file ``/x``.

Imported inside kernels: standard library, nbflow.catalog and nbflow.errors only.
"""

from __future__ import annotations

from pathlib import Path

from ..catalog import Registry
from ..errors import CatalogObjectError
from ..project import workspace_root


class DatabricksPaths:
    """The project's folders standing for Databricks' path roots."""

    def __init__(self, project: str | Path, dbfs_root: str | Path, registry: Registry) -> None:
        self.project = Path(project).resolve()
        self.dbfs = Path(dbfs_root).resolve()
        # The local workspace's tree (where `nbflow serve` keeps imported notebooks and files).
        self.workspace = workspace_root(self.project)
        self._registry = registry

    @property
    def volumes_root(self) -> Path:
        return self._registry.volumes_root

    def local(self, path: str, writing: bool = False) -> str:
        """The local path for a Databricks path (see the module doc); other paths unchanged."""
        if path.startswith("dbfs:"):
            rest = "/" + path[len("dbfs:"):].lstrip("/")
            return self._volume(rest, writing) if _under(rest, "/Volumes") else self._in_dbfs(rest)
        if not path.startswith("/"):
            return path  # relative, file:, s3://...: the engine's business
        if _under(path, "/Volumes"):
            return self._volume(path, writing)
        if _under(path, "/Workspace"):
            return str(self.workspace / path[len("/Workspace"):].lstrip("/"))
        if _under(path, "/dbfs"):
            return self._in_dbfs(path[len("/dbfs"):] or "/")
        resolved = Path(path)
        if resolved == self.dbfs or any(root == resolved or root in resolved.parents
                                        for root in (self.project, self.dbfs, self.workspace,
                                                     self.volumes_root)):
            return path
        return self._in_dbfs(path)

    def _in_dbfs(self, rest: str) -> str:
        local = (self.dbfs / rest.lstrip("/")).resolve()
        if local != self.dbfs and self.dbfs not in local.parents:
            raise CatalogObjectError("INVALID_PATH", f"{rest!r} leaves the DBFS root")
        return str(local)

    def _volume(self, path: str, writing: bool) -> str:
        parts = [p for p in path.split("/") if p][1:]  # after "Volumes"
        if len(parts) < 3:
            if writing:
                raise CatalogObjectError(
                    "INVALID_PATH", f"{path}: files go inside a volume, /Volumes/<catalog>/<schema>/<volume>/...")
            return str(self._registry.volumes_root.joinpath(*parts))
        volume = self._registry.volumes().get(".".join(p.lower() for p in parts[:3]))
        if volume is None:
            if writing:
                raise CatalogObjectError(
                    "VOLUME_NOT_FOUND",
                    f"Volume `{parts[0]}`.`{parts[1]}`.`{parts[2]}` does not exist (writing {path}); "
                    "create it first with CREATE VOLUME")
            return str(self._registry.volumes_root.joinpath(*parts))
        local = Path(volume.location).joinpath(*parts[3:]).resolve()
        root = Path(volume.location).resolve()
        if local != root and root not in local.parents:
            raise CatalogObjectError("INVALID_PATH", f"{path} leaves its volume")
        return str(local)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")
