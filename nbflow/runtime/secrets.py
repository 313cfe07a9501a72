"""``dbutils.secrets`` from a local store, and the redaction of secret values in outputs.

Secrets come from a YAML or JSON file mapping scopes to keys to values (``NBFLOW_SECRETS_FILE``,
else ``<project>/.nbflow/secrets.yaml``), and from environment variables
``NBFLOW_SECRET__<SCOPE>__<KEY>``, which win over the file. In the environment form, scope
and key are matched case-insensitively with every character other than a letter or digit
written as ``_``. Those variables are taken out of the kernel's environment (see
:func:`without_secrets`) and handed to the runtime in memory, so a notebook cannot print them
with ``os.environ`` or ``%sh env``.

Every value read with ``get``/``getBytes`` is replaced by ``[REDACTED]`` in whatever the
kernel sends to the notebook (streams, displays, results, errors), as Databricks does.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import SecretNotFound
from .help import show

ENV_PREFIX = "NBFLOW_SECRET__"
REDACTED = "[REDACTED]"


class SecretScope(NamedTuple):
    name: str

    def getName(self) -> str:
        return self.name


class SecretMetadata(NamedTuple):
    key: str


def secret_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``NBFLOW_SECRET__*`` variables of ``environ`` (default: this process's environment)."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items() if name.startswith(ENV_PREFIX)}


def without_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` without the ``NBFLOW_SECRET__*`` variables: the environment a kernel gets."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items() if not name.startswith(ENV_PREFIX)}


def _env_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", text).upper()


class Redactor:
    """The set of secret values seen in this kernel, and their removal from text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if not value:
            return
        with self._lock:
            # Also the escaped spellings that repr() and JSON give a value with quotes,
            # backslashes or newlines (a PEM key), as they appear in reprs and results.
            self._values.update({value, repr(value)[1:-1], json.dumps(value)[1:-1]} - {""})
            # Longest first, so a secret that contains another is replaced whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def values(self) -> list[str]:
        with self._lock:
            return sorted(self._values)

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def text(self, value: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, value) if pattern is not None else value

    def deep(self, value: Any) -> Any:
        """Redact every string inside nested dicts, lists and tuples."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.deep(k): self.deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.deep(v) for v in value)
        return value


class SecretsUtils:
    def __init__(self, secrets_file: str | None, redactor: Redactor, env: Mapping[str, str] | None = None) -> None:
        self._file = Path(secrets_file) if secrets_file else None
        self._redactor = redactor
        self._cache: dict[str, dict[str, str]] | None = None
        self._given_env = env  # None: this process's environment, read at each call

    def _store(self) -> dict[str, dict[str, str]]:
        if self._cache is None:
            store: dict[str, dict[str, str]] = {}
            if self._file is not None and self._file.is_file():
                import yaml  # lazy: only a secrets file needs it (kernel start-up)

                data = yaml.safe_load(self._file.read_text(encoding="utf-8")) or {}
                if not isinstance(data, dict):
                    raise SecretNotFound(f"{self._file}: secrets file must map scopes to {{key: value}}")
                for scope, keys in data.items():
                    if isinstance(keys, dict):
                        store[str(scope)] = {str(k): str(v) for k, v in keys.items()}
            self._cache = store
        return self._cache

    def _env(self) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for name, value in secret_env(self._given_env).items():
            if name.startswith(ENV_PREFIX):
                scope, sep, key = name[len(ENV_PREFIX):].partition("__")
                if sep and scope and key:
                    found[(scope, key)] = value
        return found

    def _lookup(self, scope: str, key: str) -> str:
        env = self._env().get((_env_name(scope), _env_name(key)))
        if env is not None:
            return env
        value = self._store().get(scope, {}).get(key)
        if value is None:
            raise SecretNotFound(
                f"java.lang.IllegalArgumentException: Secret does not exist with scope: {scope} and key: {key}"
            )
        return value

    def get(self, scope: str, key: str) -> str:
        """The secret's value; it is shown as [REDACTED] in notebook outputs."""
        value = self._lookup(scope, key)
        self._redactor.add(value)
        return value

    def getBytes(self, scope: str, key: str) -> bytes:
        """The secret's value as UTF-8 bytes."""
        return self.get(scope, key).encode("utf-8")

    def list(self, scope: str) -> builtins.list[SecretMetadata]:
        """The keys of a scope (never the values)."""
        keys = set(self._store().get(scope, {}))
        keys |= {key.lower() for (s, key) in self._env() if s == _env_name(scope)}
        if not keys:
            raise SecretNotFound(f"Scope {scope} does not exist!")
        return [SecretMetadata(k) for k in sorted(keys)]

    def listScopes(self) -> builtins.list[SecretScope]:
        """Every scope of the local secret store."""
        scopes = set(self._store())
        known = {_env_name(s) for s in scopes}
        scopes |= {s.lower() for (s, _k) in self._env() if s not in known}
        return [SecretScope(s) for s in sorted(scopes)]

    def help(self, method: str = "") -> None:
        show("dbutils.secrets", self, method)
