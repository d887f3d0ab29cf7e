"""Users' homes: seeded with the notebooks a user lacks, never over the user's own copy; names checked."""

from __future__ import annotations

import pytest

from pitlane.hub.homes import home_of, notebooks_dir, seed_home


def test_a_new_home_gets_every_notebook_and_only_its_owner_may_enter(tmp_path):
    home = home_of(tmp_path / "users", "alice")
    copied = seed_home(home, notebooks_dir())
    assert copied == ["Download_Data.ipynb", "Fleet_Data.ipynb", "simple_train.ipynb"]
    assert (home / "simple_train.ipynb").read_bytes() == (notebooks_dir() / "simple_train.ipynb").read_bytes()
    assert home.stat().st_mode & 0o777 == 0o700


def test_a_users_own_copy_is_never_replaced_and_a_new_notebook_still_arrives(tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "a.ipynb").write_text("shipped a")
    home = tmp_path / "users" / "bob"
    seed_home(home, shipped)
    (home / "a.ipynb").write_text("bob's edits")
    (shipped / "b.ipynb").write_text("a notebook of a later pitlane")
    assert seed_home(home, shipped) == ["b.ipynb"]
    assert (home / "a.ipynb").read_text() == "bob's edits"
    assert not list(home.glob(".*seeding"))


@pytest.mark.parametrize("name", ["../alice", "Alice", "a/b", "", "x" * 40, ".hidden"])
def test_a_name_that_is_no_plain_folder_name_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="does not match"):
        home_of(tmp_path, name)
