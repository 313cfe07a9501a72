"""``dbutils.help()`` and every utility's ``.help([method])``: what nbflow's runtime offers,
listed from the utilities themselves (their methods, signatures and docstrings), so the help
cannot claim a method that does not exist."""

from __future__ import annotations

import inspect
from typing import Any


def methods(utility: Any) -> list[str]:
    """The methods a utility offers notebooks, in name order: its public methods but ``help`` and
    those the runtime itself uses (listed in the class's ``_INTERNAL``)."""
    hidden = {"help", *getattr(type(utility), "_INTERNAL", ())}
    return sorted(name for name, member in inspect.getmembers(type(utility))
                  if not name.startswith("_") and name not in hidden and callable(member))


def _signature(member: Any) -> str:
    """``(name, other=default)``: the arguments as a notebook passes them (no self, no types)."""
    try:
        parameters = list(inspect.signature(member).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature
        return "(...)"
    shown = [p.name + ("" if p.default is inspect.Parameter.empty else f"={p.default!r}")
             for p in parameters if p.name != "self"]
    return "(" + ", ".join(shown) + ")"


def show(title: str, utility: Any, method: str = "") -> None:
    """Print ``title``'s methods with their first doc line, or ``method``'s whole doc."""
    kind = type(utility)
    if method:
        if method not in methods(utility):
            print(f"{title} has no method {method!r}; it offers: {', '.join(methods(utility))}")
            return
        member = getattr(kind, method)
        print(f"{title}.{method}{_signature(member)}")
        print(inspect.getdoc(member) or "")
        return
    summary = (inspect.getdoc(kind) or "").splitlines()
    print(f"{title} (nbflow local runtime)" + (f": {summary[0]}" if summary else ""))
    for name in methods(utility):
        member = getattr(kind, name)
        doc = (inspect.getdoc(member) or "").splitlines()
        print(f"  {name}{_signature(member)}" + (f": {doc[0]}" if doc else ""))
