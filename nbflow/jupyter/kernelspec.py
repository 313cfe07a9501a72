"""The nbflow kernel's ``kernel.json``: IPython's kernel with the runtime loaded at start
(``--ext=nbflow``, as ``%load_ext nbflow``), on the interpreter nbflow is installed in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAME = "nbflow"


def kernel_spec() -> dict[str, object]:
    version = ".".join(map(str, sys.version_info[:2]))
    return {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--ext=nbflow"],
        "display_name": f"nbflow: Databricks runtime (Python {version})",
        "language": "python",
        "metadata": {"debugger": True, "nbflow": {"python": sys.executable}},
    }


def write_kernel_spec(folder: Path) -> Path:
    """Write the spec into ``folder`` (made if missing); the file."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "kernel.json"
    target.write_text(json.dumps(kernel_spec(), indent=1), encoding="utf-8")
    return target
