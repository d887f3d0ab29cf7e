"""Users' homes: one folder per user under the hub's data folder, seeded with pitlane's notebooks.

Seeding copies a notebook only where the user has none of that name, so a user's edited copy is never
replaced (a new notebook of a later pitlane still arrives). User names are checked before any path is made
from them: they become folder names (and nothing else).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

NOTEBOOKS_ENV = "PITLANE_NOTEBOOKS"  # the image sets it; a checkout uses its notebooks/ folder
USERNAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"  # a folder name on every filesystem, and a valid MLflow tag


def notebooks_dir() -> Path:
    """Where the notebooks every home is seeded with come from."""
    if os.environ.get(NOTEBOOKS_ENV):
        return Path(os.environ[NOTEBOOKS_ENV])
    return Path(__file__).resolve().parents[2] / "notebooks"


def home_of(users: Path, name: str) -> Path:
    if not re.match(USERNAME_PATTERN, name):
        raise ValueError(f"user name {name!r} does not match {USERNAME_PATTERN}")
    return users / name


def seed_home(home: Path, notebooks: Path) -> list[str]:
    """Create `home` (0700) and copy in each notebook it lacks; returns the names copied."""
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    copied = []
    for source in sorted(notebooks.glob("*.ipynb")):
        target = home / source.name
        if target.exists():
            continue
        tmp = target.with_name(f".{target.name}.seeding")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        copied.append(source.name)
    return copied
