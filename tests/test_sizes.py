"""Size discipline (STYLE.md, issue 19): no module of pitlane/ over 600 lines, no function over 80, so each
reads top to bottom. A module or function that grows past them is split before it merges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pitlane"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80  # from the `def` line to the last line of the body, nested functions included


def module_sizes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root.parent)): len(p.read_text().splitlines()) for p in sorted(root.rglob("*.py"))
    }


def function_sizes(root: Path) -> dict[str, int]:
    """`path:qualified.name` -> lines of every function and method (async ones too)."""
    sizes: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str, path: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    sizes[f"{path}:{name}"] = child.end_lineno - child.lineno + 1
                visit(child, name + ".", path)
            else:
                visit(child, prefix, path)

    for p in sorted(root.rglob("*.py")):
        visit(ast.parse(p.read_text()), "", str(p.relative_to(root.parent)))
    return sizes


def test_no_module_over_600_lines():
    over = {m: n for m, n in module_sizes(PACKAGE).items() if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines (split them by job): {over}"


def test_no_function_over_80_lines():
    over = {f: n for f, n in function_sizes(PACKAGE).items() if n > MAX_FUNCTION_LINES}
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines (split them into parts): {over}"


@pytest.mark.parametrize("lines", [81, 200])
def test_the_checker_sees_a_long_function_and_a_long_module(tmp_path, lines):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "".join(f"        x{i} = {i}\n" for i in range(lines - 1))
    (pkg / "long.py").write_text("class A:\n    async def run(self):\n" + body)
    (pkg / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert function_sizes(pkg)["pkg/long.py:A.run"] == lines
    assert module_sizes(pkg)["pkg/big.py"] == MAX_MODULE_LINES + 1
