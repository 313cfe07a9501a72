"""What outlives an nbflow run: the figures of the reliability issue's "Orphans and signals" part.

1. ``nbflow run tests/notebooks/spawns.py`` and a two-task plan of it: how many of the six kinds
   of process a notebook starts (os.fork, new session, ignoring SIGTERM, double fork, plain,
   ``%sh nohup ... &``) are still running 5 s after the run ended.
2. A parallel plan of three tasks (each starts the six, then sleeps 60 s), started as a plain
   subprocess and as a background job of ``bash -c`` (SIGINT ignored), its CLI killed with
   SIGKILL: how long its workers, kernels and the processes the notebooks started survive
   (watched for up to ``--watch`` seconds), and the task statuses written afterwards.
3. The ``nbflow-kernel-*`` folders a plan run leaves in the temporary folder.

    .venv/bin/python bench/bench_orphans.py [--watch S]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SPAWNS = ROOT / "tests" / "notebooks" / "spawns.py"


def running(proc: psutil.Process | None) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc is not None and proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


def spawned(folder: Path) -> dict[str, psutil.Process | None]:
    found: dict[str, psutil.Process | None] = {}
    for path in folder.glob("**/*.pid"):
        text = path.read_text().strip()
        if text:
            try:
                found[f"{path.parent.name}/{path.stem}"] = psutil.Process(int(text))
            except psutil.Error:
                found[f"{path.parent.name}/{path.stem}"] = None
    return found


def kill_all(procs: dict[str, psutil.Process | None]) -> None:
    for proc in procs.values():
        if running(proc):
            with contextlib.suppress(psutil.Error):
                proc.kill()  # type: ignore[union-attr]


def plan_file(folder: Path, tasks: dict[str, dict[str, str]]) -> Path:
    lines = ["name: orphans", "tasks:"]
    for key, parameters in tasks.items():
        lines += [f"  - task_key: {key}", f"    notebook: {SPAWNS}", "    parameters:"]
        lines += [f"      {k}: {json.dumps(v)}" for k, v in parameters.items()]
    path = folder / "plan.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def nbflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "nbflow", *args]


def outlived(work: Path) -> None:
    for what in ("notebook", "plan"):
        pids = work / what / "pids"
        (work / what).mkdir(parents=True, exist_ok=True)
        if what == "notebook":
            command = nbflow("run", str(SPAWNS), "-p", f"pids={pids}")
        else:
            plan = plan_file(work / what, {k: {"pids": str(pids / k)} for k in ("one", "two")})
            command = nbflow("run", str(plan), "--mode", "parallel")
        subprocess.run(command, capture_output=True, check=False, cwd=work)
        time.sleep(5)
        procs = spawned(pids)
        left = sorted(k for k, p in procs.items() if running(p))
        runs = 1 if what == "notebook" else 2
        print(f"{what} run: {len(left)} of {len(procs)} started processes ({runs} x 6 cases) outlived it by 5 s: "
              f"{', '.join(left) or 'none'}")
        kill_all(procs)


def killed_cli(work: Path, launch: str, watch: float) -> None:
    folder = work / f"kill-{launch}"
    folder.mkdir(parents=True)
    pids, out = folder / "pids", folder / "out"
    plan = plan_file(folder, {k: {"pids": str(pids / k), "seconds": "60"} for k in ("a", "b", "c")})
    command = nbflow("run", str(plan), "--mode", "parallel", "--output-dir", str(out))
    if launch == "subprocess":
        cli_pid = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work).pid
    else:
        pid_file = folder / "cli.pid"
        script = f"{shlex.join(command)} >/dev/null 2>&1 & echo $! > {shlex.quote(str(pid_file))}; wait"
        subprocess.Popen(["bash", "-c", script], start_new_session=True, cwd=work)
        while not pid_file.is_file() or not pid_file.read_text().strip():
            time.sleep(0.05)
        cli_pid = int(pid_file.read_text())
    while len(spawned(pids)) < 18:
        time.sleep(0.2)
    tree = psutil.Process(cli_pid).children(recursive=True)
    ours = {f"{'worker' if 'nbflow.worker' in ' '.join(p.cmdline()) else 'kernel'} {p.pid}": p for p in tree
            if any(m in " ".join(p.cmdline()) for m in ("nbflow.worker", "ipykernel_launcher"))}
    procs = {**spawned(pids), **ours}
    os.kill(cli_pid, signal.SIGKILL)
    killed = time.monotonic()
    last: dict[str, float] = {}
    while time.monotonic() - killed < watch:
        alive = [k for k, p in procs.items() if running(p)]
        for key in alive:
            last[key] = time.monotonic() - killed
        if not alive:
            break
        time.sleep(0.1)
    def longest(kind: str) -> str:
        times = [t for k, t in last.items() if (kind in k if kind != "spawned" else "/" in k)]
        return "gone at once" if not times else f"{max(times):.1f} s ({len(times)} still running after the kill)"
    print(f"killed CLI ({launch}): workers {longest('worker')}; kernels {longest('kernel')}; "
          f"processes the notebooks started {longest('spawned')}"
          f"{' (still running at the end of the watch)' if any(running(p) for p in procs.values()) else ''}")
    time.sleep(2)
    statuses = {}
    for executed in sorted(out.glob("*.ipynb")):
        nb = json.loads(executed.read_text())
        statuses[executed.stem] = nb.get("metadata", {}).get("nbflow", {}).get("status")
    print(f"  task statuses written: {statuses}")
    kill_all(procs)


def kernel_folders(work: Path) -> None:
    temp = work / "temp"
    temp.mkdir()
    plan = plan_file(work, {k: {"pids": str(work / "tmp-pids" / k)} for k in ("a", "b")})
    subprocess.run(nbflow("run", str(plan)), capture_output=True, check=False, cwd=work,
                   env={**os.environ, "TMPDIR": str(temp)})
    kill_all(spawned(work / "tmp-pids"))
    left = sorted(p.name for p in temp.iterdir())
    print(f"plan run: {len(left)} folders left in the temporary folder: {', '.join(left) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch", type=float, default=70.0, help="How long to watch survivors of a killed CLI.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-orphans-") as tmp:
        work = Path(tmp)
        os.environ["NBFLOW_PROJECT_DIR"] = str(work)
        outlived(work)
        for launch in ("subprocess", "background"):
            killed_cli(work, launch, args.watch)
        kernel_folders(work)


if __name__ == "__main__":
    main()
