"""Git folders and notebook-scoped libraries, inside a kernel.

**Git folders.** A notebook in a git repository (a folder with ``.git``, looked for from the
notebook's folder up to the project's folder, or up to ``/`` for a notebook outside the project)
runs as in a Databricks Git folder: ``sys.path`` starts with the notebook's folder, then the
repository's root (Databricks' library precedence: the working directory, the Git folder's root,
notebook-scoped libraries, then the runtime's own).

**Notebook-scoped libraries.** ``%pip install ...`` and the dependencies of an ``%environment``
cell (a serverless environment spec) go into the run's own Python environment: a virtual
environment in ``<project>/.nbflow/python/<id>`` whose only link to nbflow's interpreter is a
``.pth`` file adding nbflow's ``site-packages`` after its own. pip runs on that environment's
interpreter, so it installs there, treats nbflow's packages as already installed (nothing heavy is
installed twice), and refuses to uninstall or replace anything outside it ("outside environment"):
nbflow's own virtual environment is never written. The environment is created on the first
install, shared by the run's ``dbutils.notebook.run`` children, kept across
``dbutils.library.restartPython()``, and removed when the run ends (on Databricks, notebook-scoped
libraries last as long as the notebook's session).

Imported inside kernels: standard library, PyYAML and nbflow.errors only.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import LibraryInstallError

BASE_PTH = "_nbflow_base.pth"  # in the run's environment: nbflow's site-packages after its own
# pip's subcommands that change the environment (the others only read it).
CHANGING = {"install", "uninstall"}
RESTART_NOTE = ("Note: you may need to restart Python with dbutils.library.restartPython() "
                "to use updated packages.")
_MISSING = re.compile(r"(?:No matching distribution found for|satisfies the requirement) (\S+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OFFLINE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
            "Name or service not known", "Network is unreachable", "ConnectTimeoutError", "ProxyError")


# -- Git folders -------------------------------------------------------------------------------
def repo_root(folder: Path, project: Path) -> Path | None:
    """The git repository ``folder`` is in: the nearest folder with ``.git`` (a directory, or a
    file as in a worktree), looking up to ``project`` if ``folder`` is inside it, else up to ``/``."""
    folder, project = folder.resolve(), project.resolve()
    inside = folder == project or project in folder.parents
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
        if inside and candidate == project:
            return None
    return None


def python_paths(notebook_path: str, project_dir: str) -> list[str]:
    """What Databricks puts first on ``sys.path`` for a notebook: its folder, then its Git folder's root."""
    if not notebook_path:
        return []
    folder = Path(notebook_path).parent
    paths = [str(folder)]
    root = repo_root(folder, Path(project_dir))
    if root is not None and str(root) not in paths:
        paths.append(str(root))
    return paths


# -- the run's environment ---------------------------------------------------------------------
def site_packages(env: Path) -> Path:
    """The ``site-packages`` of the virtual environment ``env`` (same interpreter as this one)."""
    purelib = sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)})
    return Path(purelib)


def env_python(env: Path) -> Path:
    return env / ("Scripts" if sys.platform == "win32" else "bin") / ("python.exe" if sys.platform == "win32"
                                                                       else "python")


def create(env: Path) -> None:
    """Make the run's environment: a virtual environment of this interpreter, without pip of its
    own, that sees this interpreter's packages after its own (pip from there is nbflow's pip)."""
    if env_python(env).exists() and (site_packages(env) / BASE_PTH).exists():
        return
    venv.EnvBuilder(with_pip=False, symlinks=sys.platform != "win32", clear=False).create(str(env))
    # This kernel's site-packages (and whatever .pth files they hold, such as an editable nbflow),
    # added by site.addsitedir so that their own .pth files are honoured too.
    ours = [p for p in site.getsitepackages() if os.path.isdir(p)]
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        ours.append(site.getusersitepackages())
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
    (site_packages(env) / BASE_PTH).write_text(lines, encoding="utf-8")
    if sys.platform != "win32":
        # `%sh pip ...` once the environment exists: this environment's pip, not nbflow's.
        for name in ("pip", "pip3"):
            script = env_python(env).parent / name
            script.write_text(f"#!{env_python(env)}\nimport sys\nfrom pip._internal.cli.main import main\n"
                              "sys.exit(main())\n", encoding="utf-8")
            script.chmod(0o755)


def arrange_path(front: list[str], env: str) -> None:
    """Put ``front`` (the notebook's folder and Git folder's root) first on ``sys.path``, and the
    run's environment's ``site-packages`` (with its ``.pth`` files), if it exists, just before
    nbflow's own: after the standard library, which a backport installed by pip must not shadow."""
    libraries: list[str] = []
    if env and site_packages(Path(env)).is_dir():
        sp = str(site_packages(Path(env)))
        before = set(sys.path)
        site.addsitedir(sp)  # runs the .pth files of what was installed (editable installs...)
        libraries = [sp, *(p for p in sys.path if p not in before and p != sp)]
        bin_dir = str(env_python(Path(env)).parent)
        # %sh python, %sh pip, console scripts and the processes a notebook starts see them too.
        path = os.environ.get("PATH", "")
        if bin_dir not in path.split(os.pathsep):
            os.environ["PATH"] = bin_dir + (os.pathsep + path if path else "")
    rest = [p for p in sys.path if p not in front and p not in libraries]
    ours = {os.path.realpath(p) for p in site.getsitepackages()}
    at = next((i for i, p in enumerate(rest) if os.path.realpath(p) in ours), len(rest))
    sys.path[:] = [*front, *rest[:at], *libraries, *rest[at:]]
    importlib.invalidate_caches()


class Libraries:
    """The ``%pip`` magic and the ``%environment`` spec of one kernel's run."""

    def __init__(self, notebook_path: str, project_dir: str, env: str) -> None:
        self.front = python_paths(notebook_path, project_dir)
        self.env = env
        # Dependency lists of %environment specs this run installed (kept across restartPython()).
        self.environments: list[list[str]] = []

    def activate(self) -> None:
        arrange_path(self.front, self.env)

    def _ensure_env(self) -> Path:
        if not self.env:
            raise LibraryInstallError("%pip: this kernel belongs to no nbflow run (no environment to install into)")
        env = Path(self.env)
        create(env)
        return env

    def pip(self, line: str) -> None:
        """``%pip <command> ...``: pip on the run's environment, its output in the cell."""
        try:
            args = shlex.split(line)
        except ValueError as exc:
            raise LibraryInstallError(f"%pip {line}: {exc}") from None
        if not args:
            raise LibraryInstallError("%pip needs a command, e.g. %pip install <package>")
        env = self._ensure_env()
        self._run_pip(env, args, f"%pip {args[0]}")
        if args[0] in CHANGING:
            self.activate()
            if args[0] == "install":
                print(RESTART_NOTE)

    def environment(self, dependencies: list[str], what: str = "%environment") -> None:
        """Install an environment spec's dependencies (pip requirement lines), once per run."""
        if not dependencies or dependencies in self.environments:
            return
        env = self._ensure_env()
        with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="nbflow-environment-", delete=False,
                                         encoding="utf-8") as f:
            f.write("\n".join(dependencies) + "\n")
        try:
            self._run_pip(env, ["install", "-r", f.name], what, shown=", ".join(dependencies))
        finally:
            os.unlink(f.name)
        self.environments.append(list(dependencies))
        self.activate()

    def _run_pip(self, env: Path, args: list[str], what: str, shown: str | None = None) -> None:
        command = [str(env_python(env)), "-m", "pip", args[0], "--disable-pip-version-check", "--no-input",
                   "--no-color", *args[1:]]
        environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_TARGET",
                                                                      "PIP_PREFIX", "PIP_USER")}
        if args[0] == "uninstall" and "-y" not in args and "--yes" not in args:
            command.append("--yes")  # no one answers pip's question in a notebook
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.extend(proc.stderr or []), daemon=True)
        reader.start()
        for out in proc.stdout or []:
            print(out, end="", flush=True)
        code = proc.wait()
        reader.join()
        warnings = [e for e in err if not e.startswith("ERROR:") and "Retrying (Retry(" not in e]
        if warnings:
            print("".join(warnings), end="", file=sys.stderr, flush=True)
        if code != 0:
            raise LibraryInstallError(condense(what, args, err, shown))


def condense(what: str, args: list[str], err: list[str], shown: str | None = None) -> str:
    """pip's failure in one line: the package at fault and pip's own reason, plus the index that
    could not be reached when that was the cause."""
    err = [_ANSI.sub("", e) for e in err]
    errors = [e.strip()[len("ERROR:"):].strip() for e in err if e.startswith("ERROR:")]
    reason = errors[-1] if errors else (err[-1].strip() if err else "pip failed")
    package = None
    for e in reversed(errors):
        found = _MISSING.search(e)
        if found:
            package = found.group(1)
            break
    if package is None:
        package = shown or (", ".join(named) if (named := requirements_named(args[1:])) else None)
    if package and reason.endswith(f" for {package}"):
        reason = reason[: -len(f" for {package}")]  # the package is named once, first
    text = f"{what}: could not {args[0]} {package}: {reason}" if package else f"{what}: {reason}"
    if any(any(mark in e for mark in _OFFLINE) for e in err):
        text += " (the package index could not be reached: no network?)"
    elif any("(from versions: none)" in e for e in errors):
        # pip says the same when the index is unreachable and it was told not to retry.
        text += " (no such package, or no network to reach the package index)"
    return text


# pip's options that take a value (the rest are flags): what is left are the requirements.
_VALUED = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-t", "--target", "-i", "--index-url",
           "--extra-index-url", "-f", "--find-links", "--retries", "--timeout", "--proxy", "--prefix", "--root",
           "--platform", "--python-version", "--implementation", "--abi", "--src", "--upgrade-strategy",
           "--progress-bar", "--cache-dir", "--trusted-host", "--cert", "--client-cert", "--log", "--exists-action",
           "--global-option", "--config-settings", "-C", "--report", "--only-binary", "--no-binary", "--python"}


def requirements_named(args: list[str]) -> list[str]:
    """The requirements a pip command line names (a requirements file or editable path included)."""
    named: list[str] = []
    valued: str | None = None
    for arg in args:
        if valued is not None:
            if valued in ("-r", "--requirement", "-e", "--editable"):
                named.append(arg)
            valued = None
        elif arg in _VALUED:
            valued = arg
        elif not arg.startswith("-"):
            named.append(arg)
    return named


# -- %environment specs ------------------------------------------------------------------------
def parse_environment(body: str, where: str = "%environment") -> dict[str, Any]:
    """An ``%environment`` cell's body (``"key": value`` lines, YAML) as a mapping."""
    import yaml  # lazy: only an environment spec needs it (kernel start-up)

    try:
        spec = yaml.safe_load(body) if body.strip() else {}
    except yaml.YAMLError as exc:
        raise LibraryInstallError(f"{where}: not a valid environment spec: {str(exc).splitlines()[0]}") from None
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise LibraryInstallError(f"{where}: an environment spec is a mapping of keys such as "
                                  f"\"dependencies\": [...], got {type(spec).__name__}")
    return spec


def dependencies_of(spec: dict[str, Any], where: str = "%environment",
                    base_file: Path | None = None) -> list[str]:
    """The pip requirement lines of an environment spec: those of its ``base_environment`` file
    (an ``env.yaml`` with ``dependencies:``) when it names one that exists, then its own."""
    found: list[str] = []
    if base_file is not None and base_file.is_file():
        import yaml  # lazy: only an environment spec needs it (kernel start-up)

        try:
            base = yaml.safe_load(base_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise LibraryInstallError(f"{where}: base environment {base_file}: {exc}") from None
        if isinstance(base, dict):
            found += _lines(base.get("dependencies"), f"{where} (base environment {base_file})")
    return found + _lines(spec.get("dependencies"), where)


def environment_dependencies(spec: dict[str, Any], local_path: Callable[[str], Path]) -> list[str]:
    """An environment spec's pip requirement lines, its ``base_environment`` file's first;
    ``local_path`` maps a ``/Workspace/...`` or ``/Volumes/...`` path (``dbutils.fs.local_path``)."""
    base = spec.get("base_environment")
    base_file = None
    if isinstance(base, str) and base.strip().endswith((".yaml", ".yml")):
        base_file = Path(base.strip())
        if not base_file.exists():  # /Workspace/... or /Volumes/... outside a sandbox
            base_file = local_path(base.strip())
    return dependencies_of(spec, base_file=base_file)


def _lines(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise LibraryInstallError(f"{where}: \"dependencies\" must be a list of pip requirement lines")
    return [str(v).strip() for v in value if str(v).strip()]
