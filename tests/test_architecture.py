"""The architecture's rules, checked statically: the error tree as drawn, the public API, no import
cycles between nbflow's modules, and imports at module level unless a comment says why not.

Fast lane: the source is read with ``ast``; the only nbflow module imported here is the light
``nbflow.errors``, and the public API is looked at in a fresh interpreter.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import pickle
import re
import subprocess
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbflow import errors

PACKAGE = Path(__file__).resolve().parents[1] / "nbflow"

# The names the library promises (``nbflow.__all__`` must list at least these).
EXPECTED_PUBLIC = {"EnvironmentFailure", "InputError", "NbflowError", "NotebookResult", "Plan", "PlanRun", "TaskRun",
                   "__version__", "load_plan", "read_result", "run_notebook", "run_plan"}
# Imported by the heavy half of nbflow only: ``import nbflow`` (as every kernel does, through
# ``nbflow.runtime``) must not pay for them (nbflow/__init__.py says so).
HEAVY = ("papermill", "nbclient", "nbformat")

# Branch i12-tests only: cycles that exist today, broken by the "runtime" engineer on another
# branch. The lead empties this at merge; an entry that no longer matches a cycle fails the test.
KNOWN_CYCLES: set[frozenset[str]] = set()
# Branch i12-tests only: function-level imports without a ``# lazy: <reason>`` comment, per file,
# as they are today (the other engineers move them to the top or say why not). The lead empties
# this at merge; a count above or below the file's actual number fails the test.
KNOWN_LAZY_IMPORTS: dict[str, int] = {}


# --- the error tree -------------------------------------------------------------------------------

@dataclass
class Drawn:
    name: str
    parent: str | None
    exit_code: int  # as drawn on the class or, where the drawing says none, on its nearest ancestor


DRAWN_LINE = re.compile(r"^(?P<prefix>[ │]*)(?:[├└]── )(?P<name>[A-Z]\w*)(?P<rest>.*)$")
EXIT = re.compile(r"\(exit (\d+)")


def drawn_tree() -> dict[str, Drawn]:
    """The tree drawn in ``nbflow.errors``' docstring: one class a line, four columns a level."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "errors.py").read_text(encoding="utf-8")), clean=False)
    assert doc, "nbflow/errors.py has no docstring"
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("NbflowError"))
    root_column = lines[start].index("NbflowError")
    code = EXIT.search(lines[start])
    assert code, f"the root's line draws no exit code: {lines[start]!r}"
    tree = {"NbflowError": Drawn("NbflowError", None, int(code.group(1)))}
    chain = ["NbflowError"]  # the drawn ancestors of the line being read, root first
    for line in lines[start + 1:]:
        if not line.strip():
            break  # the drawing ends at its first blank line
        match = DRAWN_LINE.match(line)
        if match is None:
            continue  # a comment's continuation line
        name = match.group("name")
        depth, odd = divmod(line.index(name) - root_column, 4)
        assert not odd and 1 <= depth <= len(chain), f"misaligned in the drawing: {line!r}"
        assert name not in tree, f"{name} is drawn twice"
        del chain[depth:]
        parent = tree[chain[-1]]
        code = EXIT.search(match.group("rest"))
        tree[name] = Drawn(name, parent.name, int(code.group(1)) if code else parent.exit_code)
        chain.append(name)
    return tree


def defined_errors() -> dict[str, type[BaseException]]:
    return {name: obj for name, obj in vars(errors).items()
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__}


def test_every_error_class_is_drawn_and_every_drawn_class_exists() -> None:
    drawn, defined = set(drawn_tree()), set(defined_errors())
    assert drawn - defined == set(), "drawn in nbflow/errors.py's docstring but not defined there"
    assert defined - drawn == set(), "defined in nbflow/errors.py but missing from its docstring's drawing"


def test_the_error_tree_is_as_drawn() -> None:
    defined = defined_errors()
    wrong = []
    for item in drawn_tree().values():
        if item.name not in defined:
            continue  # test_every_error_class_is_drawn_and_every_drawn_class_exists says so
        cls = defined[item.name]
        nbflow_bases = [base.__name__ for base in cls.__bases__ if issubclass(base, errors.NbflowError)]
        if item.parent is None:
            assert cls is errors.NbflowError and nbflow_bases == []
            continue
        # Exactly the drawn parent among its nbflow bases (a second base may be a builtin: KeyError...).
        if nbflow_bases != [item.parent] or defined.get(item.parent) not in cls.__mro__:
            wrong.append(f"{item.name}: drawn under {item.parent}, derives from {nbflow_bases}")
    assert wrong == []


def test_each_branch_has_the_exit_code_drawn() -> None:
    defined = defined_errors()
    wrong = {item.name: (getattr(defined[item.name], "exit_code", None), item.exit_code)
             for item in drawn_tree().values()
             if item.name in defined and getattr(defined[item.name], "exit_code", None) != item.exit_code}
    assert wrong == {}, "class: (exit_code, drawn)"
    assert (errors.InputError.exit_code, errors.EnvironmentFailure.exit_code) == (2, 3)


def sample(cls: type[BaseException]) -> BaseException:
    """An instance built from its constructor's own parameters, each given a distinct value."""
    parameters = [p for p in inspect.signature(cls.__init__).parameters.values()
                  if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not parameters:  # Exception's own (*args)
        return cls(f"{cls.__name__} happened")
    return cls(*(f"{p.name}-value" for p in parameters))


@pytest.mark.parametrize("name", sorted(defined_errors()))
def test_each_error_survives_pickling(name: str) -> None:
    # Errors cross process boundaries (kernel -> engine -> worker -> scheduler): all keep their args.
    error = sample(defined_errors()[name])
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert again.args == error.args
    assert str(again) == str(error)
    assert vars(again) == vars(error)


# --- the public API -------------------------------------------------------------------------------

PROBE = """
import json, sys
import nbflow
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
names = {{}}
for name in nbflow.__all__:
    value = getattr(nbflow, name)
    names[name] = getattr(value, "__module__", None) if not isinstance(value, str) else "str"
star = {{}}
exec("from nbflow import *", star)
star = sorted(set(star) - {{"__builtins__"}})
print(json.dumps({{"heavy": heavy, "all": nbflow.__all__, "names": names, "star": star}}))
"""


@pytest.fixture(scope="module")
def public() -> dict[str, object]:
    """What a fresh interpreter sees of ``nbflow``: heavy modules after ``import nbflow``, then
    every name of ``__all__`` resolved (in that order: resolving imports the heavy half)."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_import_nbflow_does_not_import_the_heavy_half(public: dict[str, object]) -> None:
    assert public["heavy"] == []


def test_all_public_names_resolve(public: dict[str, object]) -> None:
    listed = public["all"]
    assert isinstance(listed, list)
    assert set(listed) >= EXPECTED_PUBLIC, "nbflow.__all__ lost a public name"
    assert len(listed) == len(set(listed))
    names = public["names"]
    assert isinstance(names, dict) and set(names) == set(listed)
    # Each is nbflow's own (not a name re-exported from a dependency), and `import *` gives them all.
    assert {name: module for name, module in names.items() if name != "__version__"
            and not str(module).startswith("nbflow")} == {}
    assert names["__version__"] == "str"
    assert public["star"] == sorted(listed)


# --- imports: the module graph --------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the nbflow module it imports ("" for an import of something else)
    line: int
    source: str  # the statement's first line as written
    nested: bool  # inside a function or class body, not at module level
    lazy_reason: bool  # carries a `# lazy: <reason>` comment


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def lazy_lines(source: str) -> set[int]:
    """Lines with a ``# lazy: <reason>`` comment (a real comment, not text in a string)."""
    if "lazy:" not in source:
        return set()  # tokenizing is the slow part: skip the files that cannot have one
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT and re.search(r"#\s*lazy:\s*\S", tok.string)}


def resolve(name: str, modules: dict[str, Path]) -> str:
    """The nbflow module that ``name`` names, or its nearest enclosing one; "" outside nbflow."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    lazy = lazy_lines(source)
    lines = source.splitlines()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def made(node: ast.Import | ast.ImportFrom, target: str, nested: bool) -> Import:
        end = node.end_lineno or node.lineno
        return Import(module, target, node.lineno, lines[node.lineno - 1].strip(), nested,
                      any(line in lazy for line in range(node.lineno, end + 1)))

    def visit(node: ast.AST, nested: bool) -> Iterator[Import]:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:  # only the body is for type checkers
                yield from visit(child, nested)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield made(node, resolve(alias.name, modules), nested)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                # `from pkg import sub` imports the submodule; `from mod import name` the module.
                submodule = f"{origin}.{alias.name}" if origin else alias.name
                yield made(node, submodule if submodule in modules else resolve(origin, modules), nested)
            return
        inner = nested or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, False)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    modules = all_modules()
    return [found for module, path in modules.items() for found in imports_of(module, path, modules)]


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative: no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            step = next(successors, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.get(step, ())))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def a_cycle(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle through the component's first module (breadth first: the shortest)."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for step in sorted(graph[node] & component):
            if step == start:
                return [*paths[node], start]
            if step not in paths:
                paths[step] = [*paths[node], step]
                queue.append(step)
    raise AssertionError(f"no cycle through {start}")


def test_finds_a_cycle_and_its_imports() -> None:
    # The detector itself, on a made-up graph: two cycles, one module outside both.
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    cycles = sorted(sorted(c) for c in strongly_connected(graph) if len(c) > 1)
    assert cycles == [["a", "b"], ["c", "d", "e"]]
    assert a_cycle({"c", "d", "e"}, graph) == ["c", "d", "e", "c"]


def test_imports_resolve_to_modules(tmp_path: Path) -> None:
    # The resolution the graph rests on, on a made-up package: `from . import x` to the submodule,
    # `from .m import name` to the module, a package's __init__ under the package's name,
    # TYPE_CHECKING imports left out, and what is nested and what says why.
    files = {
        "pkg/__init__.py": "from .a import f\nfrom . import b\n",
        "pkg/a.py": "import json\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
                    "def f():\n    from .b import g  # noqa: F401  # lazy: a reason\n    import pkg.sub.c\n",
        "pkg/b.py": "from . import sub\nfrom .sub import c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..a import f\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = {"pkg": tmp_path / "pkg/__init__.py", "pkg.a": tmp_path / "pkg/a.py", "pkg.b": tmp_path / "pkg/b.py",
               "pkg.sub": tmp_path / "pkg/sub/__init__.py", "pkg.sub.c": tmp_path / "pkg/sub/c.py"}
    found = {module: [(i.target, i.nested, i.lazy_reason) for i in imports_of(module, path, modules)]
             for module, path in modules.items()}
    assert found == {
        "pkg": [("pkg.a", False, False), ("pkg.b", False, False)],
        "pkg.a": [("", False, False), ("", False, False), ("pkg.b", True, True), ("pkg.sub.c", True, False)],
        "pkg.b": [("pkg.sub", False, False), ("pkg.sub.c", False, False)],
        "pkg.sub": [],
        "pkg.sub.c": [("pkg.a", False, False)],
    }
    assert module_name(PACKAGE / "runtime" / "__init__.py") == "nbflow.runtime"


def test_no_import_cycles_between_modules(imports: list[Import]) -> None:
    modules = all_modules()
    graph: dict[str, set[str]] = {module: set() for module in modules}
    where: dict[tuple[str, str], Import] = {}
    for found in imports:
        if found.target and found.target != found.module:
            graph[found.module].add(found.target)
            where.setdefault((found.module, found.target), found)
    cycles = [frozenset(c) for c in strongly_connected(graph) if len(c) > 1]
    report = []
    for cycle in sorted(set(cycles) - KNOWN_CYCLES, key=sorted):
        path = a_cycle(set(cycle), graph)
        inside = [found for edge, found in sorted(where.items()) if edge[0] in cycle and edge[1] in cycle]
        report.append(f"cycle among {sorted(cycle)}, e.g. {' -> '.join(path)}; its imports:\n" + "\n".join(
            f"    {s.module} -> {s.target}   ({modules[s.module].relative_to(PACKAGE.parent)}:{s.line}: "
            f"{s.source})" for s in inside))
    stale = KNOWN_CYCLES - set(cycles)
    assert not report and not stale, "\n".join(
        ["import cycles between nbflow's modules (module-level and function-level imports):", *report]
        + [f"KNOWN_CYCLES lists a cycle that is gone, remove it: {sorted(c)}" for c in stale])


def test_function_level_imports_say_why(imports: list[Import]) -> None:
    # Imports belong at the top, where they show the module's dependencies. One inside a function
    # is for an optional dependency or a cost a kernel must not pay, and its comment says which.
    # The standard library's count too: cheap to import, they have no reason to hide.
    modules = all_modules()
    offenders: dict[str, list[Import]] = {}
    for found in imports:
        if found.nested and not found.lazy_reason:
            offenders.setdefault(str(modules[found.module].relative_to(PACKAGE.parent)), []).append(found)
    unique = {file: sorted({(i.line, i.source) for i in found}) for file, found in offenders.items()}
    counts = {file: len(lines) for file, lines in unique.items()}
    over = {file: n for file, n in counts.items() if n > KNOWN_LAZY_IMPORTS.get(file, 0)}
    under = {file: (counts.get(file, 0), n) for file, n in KNOWN_LAZY_IMPORTS.items() if counts.get(file, 0) < n}
    listing = [f"{file}:{line}: {source}" for file in sorted(over) for line, source in unique[file]]
    heading = ["function-level imports without a trailing `# lazy: <reason>` comment (move them to the top,"
               " or say why they cannot be):"] if listing else []
    assert not over and not under, "\n".join(
        [*heading, *listing]
        + [f"KNOWN_LAZY_IMPORTS[{file!r}] is {known}, the file has {n}: lower it"
           for file, (n, known) in under.items()])


# --- imports flow one way -------------------------------------------------------------------------

# What kernels never load (runMultiple and dbutils.notebook.run hand their work to processes).
NOT_IN_KERNELS = ("nbflow.scheduler", "nbflow.plan", "nbflow.pool", "nbflow.executor", "nbflow.worker", "nbflow.cli",
                  "nbflow.plan_runner", "nbflow.compare", "nbflow.serve", "nbflow.remote", "nbflow.engine",
                  "nbflow.runner", "nbflow.run_multiple", "nbflow.report")


def under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_nothing_imports_the_command_line(imports: list[Import]) -> None:
    wrong = [f"{i.module}:{i.line}: {i.source}" for i in imports
             if under(i.target, ("nbflow.cli",)) and not under(i.module, ("nbflow.cli", "nbflow.__main__"))]
    assert wrong == [], "the library must not import the CLI:\n" + "\n".join(wrong)


def test_the_runtime_imports_nothing_of_the_host_side(imports: list[Import]) -> None:
    """Checked statically, lazy imports included; tests/test_runtime_leaf.py checks what a kernel loads."""
    wrong = [f"{i.module}:{i.line}: {i.source}" for i in imports
             if under(i.module, ("nbflow.runtime",)) and under(i.target, NOT_IN_KERNELS)]
    assert wrong == [], "nbflow.runtime must stay a leaf:\n" + "\n".join(wrong)


# Errors that are also pyspark's (errors.py must not import pyspark: kernels import it first).
SPARK_SHAPED = {"UnsupportedStatement"}


def test_every_error_of_the_tree_is_defined_in_errors_py() -> None:
    """A class deriving from one of the tree's, defined in another module, would be missing from
    the drawing (and from the exit-code checks above)."""
    tree = set(defined_errors())
    elsewhere = []
    for module, path in all_modules().items():
        if module == "nbflow.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                         if isinstance(b, (ast.Name, ast.Attribute))}
                if bases & tree and node.name not in SPARK_SHAPED:
                    elsewhere.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: class {node.name}")
    assert elsewhere == [], "define these in nbflow/errors.py and draw them there:\n" + "\n".join(elsewhere)
