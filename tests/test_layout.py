"""The package's shape beyond what import-linter checks (`make lint`: the layers, MLflow in
`tracking`, TensorFlow in the networks and the fit, Hydra in the config, the train command and
the job's task; see [tool.importlinter] in pyproject.toml): library internals only in
`runtime/internals.py`, every config folder packaged, the environment at the lock, the tiers
marked one way, and every module importable on Linux, macOS and Windows."""

from __future__ import annotations

import ast
import contextlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import cli_env

PACKAGE = Path(__file__).resolve().parent.parent / "lstm_cli"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[str]:
    """Every module `path` imports, at its top or inside functions."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from pkg import module` imports the module
                full = f"{node.module}.{alias.name}"
                names.append(full if full in MODULES else node.module)
    return names


HYDRA_PLUGINS = PACKAGE.parent / "hydra_plugins"
INTERNALS = PACKAGE / "runtime" / "internals.py"
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA)\s")
# Libraries' modules that are not their public API, though their names have no underscore.
INTERNAL_MODULES = (
    "mlflow.store",  # the stores' classes and their schema
    "mlflow.tracking.context",  # the run-context providers
    "mlflow.system_metrics",  # the undocumented monitor and its samplers
    "hydra._internal",
    "joblib.externals",  # loky
    "submitit.core",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",  # the launcher's own class
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
)
# Dunder attributes that reach into a class's machinery rather than the library's API.
INTERNAL_DUNDERS = {"__mro__", "__subclasses__", "__closure__", "__globals__", "__code__"}


def _internals_used(path: Path) -> list[str]:
    """What `path` uses of libraries' internals: private names (attributes, getattr, modules),
    modules that are no library's public API (`INTERNAL_MODULES`), a class's machinery
    (`__mro__`, ...), an exception told apart by its class's name, raw SQL, and underscored
    class attributes of a subclass (the switches some libraries read, like MLflow's
    `_skip_type_hint_validation`)."""
    tree = ast.parse(path.read_text())
    used = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr[:1] == "_"]
    used += [  # getattr(module, "_name")
        n.args[1].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "id", "") == "getattr"
        and len(n.args) > 1
        and isinstance(n.args[1], ast.Constant)
        and str(n.args[1].value).startswith("_")
    ]
    imported = [m for m in _imports(path) if not m.startswith("lstm_cli")]
    used += [m for m in imported if any(p.startswith("_") for p in m.split("."))]
    used += [m for m in imported if m.startswith(INTERNAL_MODULES)]
    dunder = {u for u in used if u.startswith("__") and u.endswith("__")}
    own = {u for u in used if u.startswith("_") and not u.startswith("__")} & _own_names(tree)
    found = sorted(set(used) - dunder - own)
    found += sorted(u for u in dunder if u in INTERNAL_DUNDERS)
    found += [  # type(ex).__name__ == "SomeError": a class told apart by its name
        f"class name: {n.comparators[0].value}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare)
        and isinstance(n.left, ast.Attribute)
        and n.left.attr == "__name__"
        and n.comparators
        and isinstance(n.comparators[0], ast.Constant)
    ]
    found += [
        f"SQL: {n.value.split()[0]}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and SQL.match(n.value)
    ]
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.bases):
        for stmt in cls.body:
            targets = (
                stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
            )
            found += [
                f"class attribute {cls.name}.{t.id}"
                for t in targets
                if isinstance(t, ast.Name) and t.id.startswith("_") and not t.id.endswith("_")
            ]
    return found


def test_library_internals_only_in_the_internals_module():
    """Private names, a library's non-public modules, a class's machinery, class names
    compared as strings, raw SQL on a library's schema and the class attributes that switch
    off a library's checks are used in `lstm_cli/runtime/internals.py` only (hydra_plugins/
    included)."""
    sources = [*MODULES.values(), *HYDRA_PLUGINS.rglob("*.py")]
    found = {str(p.relative_to(PACKAGE.parent)): _internals_used(p) for p in sources}
    internals = str(INTERNALS.relative_to(PACKAGE.parent))
    assert {p: used for p, used in found.items() if used and p != internals} == {}
    assert found[internals]  # the test finds what it looks for


def test_the_internals_check_finds_what_has_no_underscore(tmp_path):
    """A library's internals reached without an underscore are found too."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import typer\n"
        "from mlflow.store.tracking import sqlalchemy_store\n"
        "E = next(c for c in typer.BadParameter.__mro__ if c.__name__ == 'ClickException')\n"
        "def f(ex):\n"
        "    return type(ex).__name__ == 'FailedJobError'\n"
    )
    assert sorted(_internals_used(sample)) == [
        "__mro__",
        "class name: ClickException",
        "class name: FailedJobError",
        "mlflow.store.tracking",
    ]


def _own_names(tree: ast.AST) -> set[str]:
    """Underscored names the module defines itself (its own attributes and functions)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def test_every_config_folder_is_packaged():
    """A non-editable install carries conf/ as lstm_cli.conf, one package per folder, each
    listed in pyproject.toml: a folder left out composes in a checkout and fails installed."""
    import tomllib

    root = PACKAGE.parent
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {p.parent for p in (root / "conf").rglob("*.yaml")}
    names = {".".join(("lstm_cli.conf", *f.relative_to(root / "conf").parts)) for f in folders}
    assert names <= set(setup["packages"])
    assert names <= set(setup["package-data"])


def test_the_environment_is_the_lock():
    """`make install` installs at constraints.txt's versions: the suite runs against the lock,
    and pyproject.toml's ranges admit every locked version of our direct dependencies."""
    import re
    from importlib.metadata import PackageNotFoundError, version

    import tomllib
    from packaging.requirements import Requirement

    root = PACKAGE.parent
    locked = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            locked[re.sub(r"[-_.]+", "-", name).lower()] = pinned
    assert len(locked) > 50
    for name, pinned in locked.items():
        with contextlib.suppress(PackageNotFoundError):  # an extra's package not installed here
            assert version(name) == pinned, name
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for text in [
        *project["dependencies"],
        *(r for name in extras if name != "gpu" for r in extras[name]),
    ]:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert requirement.specifier.contains(locked[name]), (text, locked[name])


def test_tiers_are_marked_one_way():
    """A test's tier is a `@pytest.mark.<tier>` on the test itself: no module-wide
    `pytestmark`, no aliases of marks."""
    offenders = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                names = [getattr(t, "id", "") for t in node.targets]
                value = ast.unparse(node.value)
                if "pytestmark" in names or value.startswith("pytest.mark."):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


# Standard modules that some of Linux, macOS and Windows lack.
PLATFORM_ONLY = {"fcntl", "grp", "msvcrt", "pty", "pwd", "resource", "termios", "tty", "winreg"}


def _imported_on_import(tree: ast.Module) -> list[str]:
    """The modules a module's own code imports when it is imported: outside its functions."""
    names, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        todo += list(ast.iter_child_nodes(node))
    return names


def test_every_module_imports_on_linux_macos_and_windows():
    """A module that needs POSIX's fcntl or Windows's msvcrt imports it in the function that
    uses it, so that importing the module (the model, for one) works everywhere."""
    found = {
        name: sorted(PLATFORM_ONLY.intersection(_imported_on_import(ast.parse(path.read_text()))))
        for name, path in MODULES.items()
    }
    assert {name: only for name, only in found.items() if only} == {}
    assert _imported_on_import(ast.parse("import fcntl\ndef f():\n    import msvcrt")) == ["fcntl"]


# Every module of the package imported in a child that has no POSIX-only module, as on Windows.
IMPORT_ALL_WITHOUT_POSIX = """
import importlib, pkgutil, sys

for name in ("fcntl", "grp", "pty", "pwd", "resource", "termios", "tty"):
    sys.modules[name] = None  # `import name` raises ImportError
import lstm_cli

for module in pkgutil.walk_packages(lstm_cli.__path__, "lstm_cli."):
    if module.name != "lstm_cli.__main__":  # runs the command
        importlib.import_module(module.name)
print("imported")
"""


@pytest.mark.slow
def test_every_module_imports_without_posix_only_modules(tmp_path):
    """What Windows lacks (fcntl, termios, ...) missing, every module of the package imports:
    the cell, the model and the gate kernel among them."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL_WITHOUT_POSIX],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "imported"
