"""The pool service's parts that need no process: its socket's privacy, its sizes, its settings."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from nbflow import pool_service, pool_wire


def test_only_the_user_private_socket_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket at the service's place that others could have made (mode not 0600) is not used."""
    monkeypatch.setattr(pool_wire, "socket_file", lambda project: tmp_path / "pool.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp_path / "pool.sock"))
        listener.listen(1)
        os.chmod(tmp_path / "pool.sock", 0o666)
        assert pool_wire.connect(tmp_path) is None
        os.chmod(tmp_path / "pool.sock", 0o600)
        channel = pool_wire.connect(tmp_path)
        assert channel is not None
        channel.close()



@pytest.mark.parametrize(("cores", "free_mb", "expected"), [
    (2, 24_000, (8, 8)), (16, 64_000, (8, 64)), (2, 600, (1, 1)), (1, 24_000, (4, 8)), (4, 2_000, (4, 4)),
])
def test_the_pool_sizes_itself_to_the_machine(cores: int, free_mb: float, expected: tuple[int, int],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBFLOW_POOL_SIZE", raising=False)
    monkeypatch.delenv("NBFLOW_POOL_MAX", raising=False)
    assert pool_service.sizes(cores, free_mb) == expected
    monkeypatch.setenv("NBFLOW_POOL_SIZE", "3")
    assert pool_service.sizes(cores, free_mb)[0] == 3


@pytest.mark.parametrize(("given", "env", "expected"), [
    (None, "", 120.0), ("0", "", 0.0), (None, "15", 15.0), ("2.5", "15", 2.5), ("soon", "", 120.0), ("-3", "", 0.0),
])
def test_auto_termination_minutes(given: str | None, env: str, expected: float,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFLOW_AUTOTERMINATION_MINUTES", env)
    assert pool_service.autotermination_minutes(given) == expected


def test_a_warm_kernel_takes_its_callers_environment_but_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow.runtime.kernel import take_environment

    monkeypatch.setenv("NBFLOW_TREE", "kernel-tag")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("NBFLOW_T_CHANGED", "service")
    monkeypatch.delenv("NBFLOW_T_NEW", raising=False)
    take_environment({"NBFLOW_TREE": "caller-tag", "MPLBACKEND": "agg", "NBFLOW_T_CHANGED": "caller",
                      "NBFLOW_T_NEW": "caller"})
    assert os.environ["NBFLOW_T_CHANGED"] == os.environ["NBFLOW_T_NEW"] == "caller"
    assert os.environ["NBFLOW_TREE"] == "kernel-tag" and os.environ["MPLBACKEND"].startswith("module://")
