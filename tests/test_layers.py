"""The layer contract (pyproject.toml, [tool.importlinter]) holds on the real tree and breaks on an import
that runs up: run import-linter on a copy of the package with one deliberate violation each."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "pitlane", tmp_path / "pitlane", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_real_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # pilots sit below train: a model pilot reaching up for training code breaks the layers
        ("pilots/model.py", "import pitlane.train.train", "every import runs down"),
        # the twin's core never imports one of its adapters
        ("twin/world.py", "import pitlane.twin.server", "the core never imports an adapter"),
        # only pitlane.cli registers a domain's CLI
        ("car/run.py", "import pitlane.twin.cli", "only pitlane.cli registers it"),
    ],
)
def test_an_upward_import_breaks_the_contract(tree: Path, module: str, line: str, contract: str):
    path = tree / "pitlane" / module
    path.write_text(path.read_text() + f"\n{line}  # deliberate upward import\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "1 broken" in result.stdout
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert len(broken) == 1 and contract in broken[0], result.stdout


def test_a_new_package_must_be_given_its_layer(tree: Path):
    (tree / "pitlane" / "newthing").mkdir()
    (tree / "pitlane" / "newthing" / "__init__.py").write_text('"""Not placed in the layer order yet."""\n')
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "pitlane.newthing" in result.stdout
