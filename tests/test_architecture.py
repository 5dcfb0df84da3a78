# This file is part of epo_zooniverse.
#
# Developed for the LSST Data Management System.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""The package's architecture rules (issue 13), checked on the source:
modules of one concept (under ~600 lines), functions under ~80 lines or
with a one-line reason, no private name used across modules, no import
cycles between modules.
"""

import ast
import os
from pathlib import Path

import lsst.epo.zooniverse

PACKAGE_DIR = Path(lsst.epo.zooniverse.__file__).parent
PACKAGE = "lsst.epo.zooniverse"
MAX_MODULE_LINES = 650
MAX_FUNCTION_LINES = 80


def package_modules() -> dict[str, Path]:
    """Dotted module name -> path of every module of the package."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([PACKAGE, *parts])] = path
    return modules


MODULES = package_modules()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def absolute_module(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str) -> list[tuple[ast.ImportFrom | ast.Import, str, list[str]]]:
    """Every import of a module: (node, absolute module, imported names)."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    result = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            result.append((node, absolute_module(name, node), [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                result.append((node, alias.name, []))
    return result


def test_modules_are_small():
    large = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not large, f"modules over {MAX_MODULE_LINES} lines (split them by concept): {large}"


def has_reason_comment(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A comment on the line above the ``def`` (or its decorators) or at
    the top of the body (before or after the docstring) says why the
    function is long.
    """
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    body = node.body
    start = body[0]
    if isinstance(start, ast.Expr) and isinstance(start.value, ast.Constant) and len(body) > 1:
        start = body[1]
    candidates = [lines[first - 2]] if first >= 2 else []
    candidates += lines[node.lineno : start.lineno - 1]
    return any(line.strip().startswith("#") for line in candidates)


def test_long_functions_say_why():
    offenders = []
    for name, path in MODULES.items():
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not has_reason_comment(lines, node):
                    offenders.append(f"{name}.{node.name} ({length} lines)")
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines without a reason: {offenders}"


def test_no_private_names_across_modules():
    offenders = []
    for name in MODULES:
        for node, module, names in imports_of(name):
            if not module.startswith(PACKAGE) or module == name:
                continue
            if is_package(name) and module.startswith(name + "."):
                # A package's __init__ may expose its own private modules
                # (daf_butler's ``cli._get_cli_subcommands`` convention).
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [p for p in module.split(".") if p.startswith("_") and p != "__init__"]
            if private:
                offenders.append(f"{name}:{node.lineno} imports {private} from {module}")
    assert not offenders, "private names used across modules:\n" + "\n".join(offenders)


def resolve_target(module: str, names: list[str]) -> list[str]:
    """The package modules an import makes Python load (a package's
    submodule when a name is one)."""
    targets = []
    if module in MODULES:
        targets.append(module)
    for imported in names:
        if f"{module}.{imported}" in MODULES:
            targets.append(f"{module}.{imported}")
    return targets


def test_no_import_cycles():
    # Every import, also inside functions (a deferred import keeps start-up
    # light, it does not make a cycle acceptable); not those made only for
    # type checkers.
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        type_checking = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        edges = set()
        for node in ast.walk(tree):
            if id(node) in type_checking:
                continue
            if isinstance(node, ast.ImportFrom):
                module = absolute_module(name, node)
                edges.update(resolve_target(module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    edges.update(resolve_target(alias.name, []))
        # A package's __init__ importing its own submodules is not a cycle.
        graph[name] = {e for e in edges if e != name and not (is_package(e) and name.startswith(e + "."))}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_rules_see_the_whole_package():
    # The checks above would pass vacuously if the walk found nothing.
    assert len(MODULES) > 40
    assert f"{PACKAGE}.export.service" in MODULES and f"{PACKAGE}.formats.stamps" in MODULES
    assert os.path.basename(MODULES[f"{PACKAGE}.export"]) == "__init__.py"
