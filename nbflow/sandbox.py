"""The sandbox: inside nbflow's kernels and its Sail server, ``/Volumes``, ``/dbfs`` and
``/Workspace`` are the project's folders, so a notebook's Python, ``%sh`` and SQL write there and
never at the machine's root.

How (Linux with unprivileged user namespaces): a process that is still single-threaded moves
itself into a private user and mount namespace (the same user and group ids inside as outside),
mounts a small tmpfs as a new root on a folder of the project (``.nbflow/sandbox``), recreates
every top-level entry of the real ``/`` there (directories bound recursively, files bound,
symbolic links copied), adds the three folders bound onto the project's, makes that root
read-only, and pivots into it. The rest of the machine is the same machine: its files, its
processes, its network, the same paths. What the process starts inherits the namespace.

Elsewhere (not Linux, user namespaces disabled, a container's seccomp profile, ``NBFLOW_SANDBOX=0``)
the process runs as before, and the process that starts kernels says so in one warning line:
then only nbflow's own layers (Spark paths, ``dbutils.fs``) map the Databricks paths.

The kernel launcher (:mod:`nbflow.lifecycle`) and the cluster gate (:mod:`nbflow.cluster.gate`)
enter it; this module imports only the standard library and nbflow's own light modules.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import posixpath
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .project import dbfs_root, project_dir, sandbox_dir, volumes_root, workspace_root

VOLUMES, DBFS, WORKSPACE = "/Volumes", "/dbfs", "/Workspace"
MOUNT_POINTS = (VOLUMES, DBFS, WORKSPACE)

SWITCH_ENV = "NBFLOW_SANDBOX"  # "0": no sandbox
LAYOUT_ENV = "NBFLOW_SANDBOX_LAYOUT"  # a kernel's launcher: the layout to enter (JSON)
INSIDE_ENV = "NBFLOW_SANDBOXED"  # set inside a sandbox: the layout in effect (JSON)
# Decided once per process tree, inherited by what it starts: "on", or "off: <why>" (the process
# that decided has said so; its descendants do not repeat it, nor probe again).
STATE_ENV = "NBFLOW_SANDBOX_STATE"
_BY_SWITCH = f"{SWITCH_ENV}=0"

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV = 0x1, 0x2, 0x4
_MS_REMOUNT, _MS_BIND, _MS_REC = 0x20, 0x1000, 0x4000
_MS_NOEXEC, _MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 0x8, 0x400, 0x800, 0x200000
_MS_UNBINDABLE, _MS_PRIVATE = 0x20000, 0x40000
_MNT_DETACH = 0x2
_CAP_SYS_ADMIN = 21
# statvfs() flags of a mount and the mount() flags that keep them: a read-only remount of a bind
# in a user namespace must repeat the flags the machine's mount has (the kernel locks them).
_KEPT_FLAGS = ((os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV), (os.ST_NOEXEC, _MS_NOEXEC),
               (os.ST_NOATIME, _MS_NOATIME), (os.ST_NODIRATIME, _MS_NODIRATIME), (os.ST_RELATIME, _MS_RELATIME))
# glibc has no pivot_root(); its system call number by architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "loongarch64": 41,
                   "i386": 217, "i686": 217, "s390x": 217, "armv7l": 218, "armv6l": 218,
                   "ppc64le": 203, "ppc64": 203}


@dataclass(frozen=True)
class Layout:
    """What a sandbox maps: each of ``MOUNT_POINTS`` to a host folder, and the (empty) host
    folder its new root is mounted on. ``volumes_read_only``: ``/Volumes`` is read-only but for
    the volumes bound onto it (:func:`refresh_volumes`), as a kernel's is; the Sail server's is
    not (nbflow's runtime already refuses Spark writes into a volume that does not exist)."""

    mounts: tuple[tuple[str, str], ...]
    scratch: str
    volumes_read_only: bool = False

    def to_json(self) -> str:
        return json.dumps({"mounts": dict(self.mounts), "scratch": self.scratch,
                           "volumes_read_only": self.volumes_read_only}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Layout:
        data = json.loads(text)
        return cls(tuple(sorted((str(k), str(v)) for k, v in data["mounts"].items())), str(data["scratch"]),
                   bool(data.get("volumes_read_only", False)))


def layout(project: Path, dbfs: Path | None = None, scratch: Path | None = None) -> Layout:
    """The project's sandbox: ``/Volumes``, ``/dbfs`` (``dbfs``, default :func:`dbfs_root`) and
    ``/Workspace`` onto its folders; the new root on ``scratch`` (default ``.nbflow/sandbox``)."""
    project = project.resolve()
    mounts = {VOLUMES: volumes_root(project), DBFS: (dbfs or dbfs_root(project)).resolve(),
              WORKSPACE: workspace_root(project)}
    root = scratch or sandbox_dir(project)
    return Layout(tuple(sorted((k, str(v)) for k, v in mounts.items())), str(root), volumes_read_only=True)


# -- paths ---------------------------------------------------------------------------------------
def _under(path: str, top: str) -> str | None:
    """``path``'s part below ``top`` ('' for ``top`` itself), or None if it is not below it."""
    if path == top:
        return ""
    if path.startswith(top.rstrip("/") + "/"):
        return path[len(top.rstrip("/")) + 1:]
    return None


def host_path(path: str, project: Path) -> str:
    """The host path of what a notebook calls ``path``: ``/Volumes/...``, ``/dbfs/...`` and
    ``/Workspace/...`` (and ``dbfs:/...``, ``dbfs:/Volumes/...``) are in the project's folders;
    any other path is returned unchanged."""
    mounts = dict(layout(project).mounts)
    if path.startswith("dbfs:"):
        rest = posixpath.normpath("/" + path[len("dbfs:"):].lstrip("/"))
        below = _under(rest, VOLUMES)
        if below is not None:
            return str(Path(mounts[VOLUMES], below)) if below else mounts[VOLUMES]
        return str(Path(mounts[DBFS], rest.lstrip("/"))) if rest != "/" else mounts[DBFS]
    if not path.startswith("/"):
        return path
    # Normalised first: '/dbfs/../etc' is /etc, not a folder of the project.
    normal = posixpath.normpath(path)
    for point in MOUNT_POINTS:
        below = _under(normal, point)
        if below is not None:
            return str(Path(mounts[point], below)) if below else mounts[point]
    return path


def sandbox_path(host: str, project: Path | None = None) -> str:
    """The path a notebook sees for the host path ``host`` (for display): the reverse of
    :func:`host_path`. ``project`` defaults to the sandbox this process is in, else the current
    project."""
    inside = os.environ.get(INSIDE_ENV)
    if project is None and inside:
        mounts = dict(Layout.from_json(inside).mounts)
    else:
        mounts = dict(layout(project or project_dir()).mounts)
    normal = posixpath.normpath(host) if host.startswith("/") else host
    # The deepest folder first: a DBFS root set inside the project's volumes still reads as /dbfs.
    for point, folder in sorted(mounts.items(), key=lambda item: -len(item[1])):
        below = _under(normal, folder)
        if below is not None:
            return f"{point}/{below}" if below else point
    return host


# -- entering ------------------------------------------------------------------------------------
class _Refused(Exception):
    """A step of the set-up failed; ``args[0]`` says which and why."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.unshare.argtypes = [ctypes.c_int]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise _Refused(f"{what} failed: {errno.errorcode.get(code, code)} ({os.strerror(code)})")


def _mount(libc: ctypes.CDLL, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
           f"mount {source or ''} on {target}".replace("  ", " "))


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)


def _map_ids(uid: int, gid: int) -> None:
    """The same user and group ids inside as outside: files keep their owners, and the notebook's
    user is the same user. Root may map every id (so apt, chown and su keep working); a user maps
    its own ids alone, which the kernel lets only a process that gave up setgroups() do. The ids
    are read before unshare(): past it, until mapped, they read as the overflow id (65534)."""
    if uid == 0:
        try:
            _write("/proc/self/uid_map", "0 0 4294967295")
            _write("/proc/self/gid_map", "0 0 4294967295")
            return
        except OSError:
            pass  # root without CAP_SETUID over its namespace (some containers): its own ids, as a user
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    except OSError as exc:
        raise _Refused(f"could not map user {uid} and group {gid} into the new user namespace: {exc}") from None


def _pivot_root(libc: ctypes.CDLL) -> None:
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise _Refused(f"pivot_root's system call number on {platform.machine()} is not known to nbflow")
    libc.syscall.restype = ctypes.c_long
    _check(int(libc.syscall(ctypes.c_long(number), b".", b".")), "pivot_root")


def _prepare(plan: Layout) -> None:
    """What can be checked and made before unshare(), which cannot be undone."""
    mounts = dict(plan.mounts)
    cwd = os.getcwd()
    for point in MOUNT_POINTS:
        # Under the sandbox these paths are the project's: a project or a working folder under the
        # machine's own /Workspace (say) would vanish from the process's view.
        for what, path in (("the working folder", cwd), ("the sandbox's folder", plan.scratch),
                           *(("the folder for " + p, f) for p, f in mounts.items())):
            if _under(path, point) is not None:
                raise _Refused(f"{what} {path} is under {point}, which the sandbox replaces")
    for folder in (*mounts.values(), plan.scratch):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise _Refused(f"cannot create {folder}: {exc.strerror}") from None


def _build(libc: ctypes.CDLL, plan: Layout) -> None:
    """In a new mount namespace this process owns: the new root, then into it."""
    mounts = dict(plan.mounts)
    cwd = os.getcwd()
    # Nothing mounted here may reach the machine's namespace, nor anything of the machine's reach here.
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)
    root = plan.scratch
    _mount(libc, "nbflow-sandbox", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=64k")
    # Unbindable: the recursive binds below (of /tmp, /home... that hold the project) skip it,
    # instead of copying the new root into itself.
    _mount(libc, None, root, None, _MS_UNBINDABLE)
    with os.scandir("/") as entries:
        top = sorted(entries, key=lambda e: e.name)
    for entry in top:
        if "/" + entry.name in mounts:
            continue  # the machine's own, if it has one: in the sandbox it is the project's
        target = os.path.join(root, entry.name)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(target)
            _mount(libc, entry.path, target, None, _MS_BIND | _MS_REC)
        else:
            with open(target, "x"):
                pass
            _mount(libc, entry.path, target, None, _MS_BIND)
    for point, folder in mounts.items():
        target = root + point
        os.mkdir(target)
        _mount(libc, folder, target, None, _MS_BIND | _MS_REC)
        if point == VOLUMES and plan.volumes_read_only:
            # As on Databricks, only a volume that exists takes files: the volumes are bound
            # read-write onto this read-only folder (refresh_volumes), nothing else is writable.
            kept = os.statvfs(target).f_flag
            flags = sum(ms for st, ms in _KEPT_FLAGS if kept & st)
            _mount(libc, None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | flags)
    # Read-only: a file written at / would otherwise land in memory and vanish with the process.
    _mount(libc, None, root, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.chdir(root)
    try:
        _pivot_root(libc)
        # pivot_root(".", ".") stacks the old root on the new one; detached, it is gone from this
        # namespace (the binds made from it stay). pivot_root rather than chroot: a chrooted
        # process may not create user namespaces, and the cluster gate a notebook starts needs one.
        _check(libc.umount2(b".", _MNT_DETACH), "detaching the old root")
    finally:
        # Back in the same folder, inside the sandbox or (pivot_root failed) outside it.
        os.chdir("/")
        os.chdir(cwd)


def same_sandbox(inside: str | None, plan: Layout) -> bool:
    """Whether the sandbox described by ``inside`` (``NBFLOW_SANDBOXED``) maps as ``plan`` does."""
    try:
        there = Layout.from_json(inside or "")
        return bool(inside) and (there.mounts, there.volumes_read_only) == (plan.mounts, plan.volumes_read_only)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def _may_mount() -> bool:
    """Whether this process holds CAP_SYS_ADMIN (in its user namespace): a kernel does, a
    process a non-root kernel started (execve drops a non-root user's capabilities) does not."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return False


def enter(plan: Layout, new_user_namespace: bool = True) -> str | None:
    """Move this process into the sandbox ``plan`` describes; None once inside, else why not
    (the process is then left as it was, or with nothing visible changed).

    The process must have a single thread (the kernel refuses unshare otherwise).
    ``new_user_namespace=False``: the process already owns a user namespace of its own (the
    cluster gate), and only a mount namespace is made. A process already inside a sandbox of the
    same layout stays in it (a kernel there must be able to bind volumes: one that cannot, started
    by a non-root kernel, gets a sandbox of its own, nested); one of another layout gets a new one,
    nested."""
    if same_sandbox(os.environ.get(INSIDE_ENV), plan) and not (plan.volumes_read_only and not _may_mount()):
        return None
    if not sys.platform.startswith("linux"):
        return f"mount namespaces are Linux only (this is {sys.platform})"
    try:
        _prepare(plan)
        libc = _libc()
        if new_user_namespace:
            uid, gid = os.getuid(), os.getgid()
            _check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
            _map_ids(uid, gid)
        else:
            _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _build(libc, plan)
    except _Refused as exc:
        return str(exc.args[0])
    except OSError as exc:
        return f"could not set up the sandbox: {exc}"
    os.environ[INSIDE_ENV] = plan.to_json()
    os.environ[STATE_ENV] = "on"
    return None


# -- volumes created and dropped while the kernel runs ---------------------------------------
def inside() -> bool:
    """Whether this process is in a sandbox (it, or the process that started it, entered one)."""
    return bool(os.environ.get(INSIDE_ENV))


def _volume_mounts() -> dict[str, int]:
    """The mount points ``/Volumes/c/s/v`` in this process's namespace, with how many mounts are
    stacked on each."""
    found: dict[str, int] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            fields = line.split(" ", 5)
            if len(fields) < 5 or not fields[4].startswith(VOLUMES + "/"):
                continue
            # mountinfo escapes space, tab, newline and backslash as octal.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
            if point.count("/") == 4:
                found[point] = found.get(point, 0) + 1
    return found


def _same_folder(one: str, other: str) -> bool:
    try:
        a, b = os.stat(one), os.stat(other)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def refresh_volumes(volumes_folder: str | Path, volumes: Mapping[str, str]) -> list[str]:
    """Make this sandbox's read-only ``/Volumes`` follow the registry: each volume of ``volumes``
    (``catalog.schema.volume`` → its folder) not yet bound onto ``/Volumes/catalog/schema/volume``
    is bound there read-write, and the binds of volumes no longer in it are undone. Only a process
    that entered the sandbox of the project whose volumes are ``volumes_folder`` does anything
    (elsewhere, and without the sandbox, it returns at once); what its children start sees the
    binds too (one mount namespace). Returns what could not be done, one line each."""
    inside = os.environ.get(INSIDE_ENV)
    if not inside or not sys.platform.startswith("linux"):
        return []
    plan = Layout.from_json(inside)
    host = dict(plan.mounts).get(VOLUMES)
    if not plan.volumes_read_only or host != str(volumes_folder):
        return []
    wanted: dict[str, str] = {}
    for name, location in volumes.items():
        parts = name.split(".")
        if len(parts) == 3 and all(p and p not in (".", "..") and "/" not in p and "\0" not in p for p in parts):
            wanted[posixpath.join(VOLUMES, *parts)] = location
    bound = _volume_mounts()
    libc = _libc()
    problems: list[str] = []
    kept: set[str] = set()
    for point, count in sorted(bound.items()):
        if point in wanted and _same_folder(point, wanted[point]):
            kept.add(point)  # bound, to the volume's folder
            continue
        for _ in range(count):  # dropped (or re-created elsewhere): every mount stacked there
            if libc.umount2(os.fsencode(point), _MNT_DETACH) != 0:
                break
        if point not in wanted:
            # A volume this kernel dropped: its folder (managed) or its empty mount point
            # (external) could not go while bound here.
            with contextlib.suppress(OSError):
                os.rmdir(host + point[len(VOLUMES):])
    for point, location in sorted(wanted.items()):
        if point in kept:
            continue
        try:
            # The mount point: the volume's own folder (managed), else an empty one the registry
            # made (external; made here for a registry written before nbflow did).
            os.makedirs(host + point[len(VOLUMES):], exist_ok=True)
            _mount(libc, location, point, None, _MS_BIND | _MS_REC)
        except (OSError, _Refused) as exc:
            name = ".".join(point.split("/")[2:])
            problems.append(f"the volume {name} ({location}) is not writable at {point}: "
                            f"{exc.args[0] if isinstance(exc, _Refused) else exc}")
    return problems


# -- deciding, in the process that starts kernels ------------------------------------------------
def fallback_warning(reason: str) -> str:
    return (f"nbflow: warning: no sandbox ({reason}): /Volumes, /dbfs and /Workspace are mapped only in nbflow's "
            "own layers (Spark paths, dbutils.fs); Python and %sh writes to them will fail or go to the machine's "
            "own folders")


def _threads() -> int:
    """This process's threads, the interpreter's and any a library started alike."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def _probe(plan: Layout) -> str | None:
    """Whether a sandbox can be entered here: tried for real, in a throwaway process. A kernel
    cannot find out by trying: past unshare() there is no way back to the machine's namespaces.
    A fork where this process has a single thread (a millisecond or two), else a new interpreter."""
    if not sys.platform.startswith("linux"):
        return f"mount namespaces are Linux only (this is {sys.platform})"
    if _threads() == 1:
        return _probe_forked(plan)
    try:
        done = subprocess.run([sys.executable, "-m", "nbflow.sandbox", "--probe", plan.to_json()],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not try it: {exc}"
    if done.returncode == 0:
        return None
    said = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return said[-1] if said else f"the probe exited with code {done.returncode}"


def _probe_forked(plan: Layout) -> str | None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: try, say how it went, and leave without running any clean-up
        try:
            os.close(read)
            os.environ.pop(INSIDE_ENV, None)
            reason = enter(plan)
            os.write(write, ("ok" if reason is None else f"no: {reason}").encode()[:4000])
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as handle:
        said = handle.read().decode(errors="replace")
    os.waitpid(pid, 0)
    if said == "ok":
        return None
    return said.removeprefix("no: ") or "the probe process ended without an answer"


def decide(plan: Layout) -> str | None:
    """None if kernels started from this process get the sandbox, else why not. Decided once per
    process tree (``NBFLOW_SANDBOX_STATE``, inherited); the process that finds it "off" prints the
    one warning line on stderr. ``NBFLOW_SANDBOX=0`` turns it off."""
    if os.environ.get(SWITCH_ENV, "").strip() == "0":
        reason: str | None = _BY_SWITCH
    elif same_sandbox(os.environ.get(INSIDE_ENV), plan):
        return None
    else:
        state = os.environ.get(STATE_ENV, "")
        if state == "on":
            return None
        if state.startswith("off: ") and state != f"off: {_BY_SWITCH}":
            return state.removeprefix("off: ")  # what this machine gave an ancestor, which said so
        # Probed even after a run with the switch off: that was a choice, not the machine's answer.
        reason = _probe(plan)
    state = "on" if reason is None else f"off: {reason}"
    if os.environ.get(STATE_ENV) != state:
        os.environ[STATE_ENV] = state
        if reason is not None:
            print(fallback_warning(reason), file=sys.stderr, flush=True)
    return reason


def kernel_env(env: Mapping[str, str], plan: Layout) -> dict[str, str]:
    """A kernel's environment, with the order to enter ``plan`` where the sandbox is on."""
    result = dict(env)
    reason = decide(plan)
    result[STATE_ENV] = os.environ[STATE_ENV]
    if reason is None:
        result[LAYOUT_ENV] = plan.to_json()
    else:
        result.pop(LAYOUT_ENV, None)
    return result


def enter_as_ordered() -> None:
    """In a kernel's launcher, first thing: enter the sandbox its starter ordered, if any. A
    failure here (the starter's probe succeeded) is said on stderr, the kernel's log."""
    text = os.environ.pop(LAYOUT_ENV, "")
    if not text or os.environ.get(SWITCH_ENV, "").strip() == "0":
        return
    reason = enter(Layout.from_json(text))
    if reason is not None:
        os.environ[STATE_ENV] = f"off: {reason}"
        print(fallback_warning(reason), file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    """``python -m nbflow.sandbox --probe LAYOUT_JSON``: exit 0 if the sandbox can be entered,
    else 1 and why on stdout. ``python -m nbflow.sandbox --time LAYOUT_JSON``: enter, print the
    seconds it took."""
    if len(argv) != 2 or argv[0] not in ("--probe", "--time"):
        print("usage: python -m nbflow.sandbox --probe|--time LAYOUT_JSON", file=sys.stderr)
        return 2
    os.environ.pop(INSIDE_ENV, None)  # a probe answers for this layout, wherever it runs from
    started = time.perf_counter()
    reason = enter(Layout.from_json(argv[1]))
    took = time.perf_counter() - started
    if reason is not None:
        print(reason)
        return 1
    if argv[0] == "--time":
        print(f"{took:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
