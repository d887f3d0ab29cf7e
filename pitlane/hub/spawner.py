"""The local hub's spawner: each user's JupyterLab a process of this machine, in its own home and sandbox.

No Docker and no Kubernetes: JupyterHub's SimpleLocalProcessSpawner starts `jupyterhub-singleuser` of
pitlane's locked environment (so its `python3` kernel is that environment), here with the user's home made
and seeded first (homes.seed_home: never over a user's own copy) and the server wrapped in the sandbox that
hides every other home (sandbox.sandbox_argv).
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import Bool, List, Unicode, default

from pitlane.hub.homes import home_of, seed_home
from pitlane.hub.sandbox import sandbox_argv, software_under_tmp


class HomeSpawner(SimpleLocalProcessSpawner):
    """SimpleLocalProcessSpawner with homes under DATA/users/<name>, seeded notebooks and the sandbox."""

    data_dir = Unicode(config=True, help="the hub's data folder; homes are DATA/users/<name>")
    notebooks_dir = Unicode(config=True, help="notebooks copied into a home that lacks them")
    sandbox = Bool(True, config=True, help="run each server in bubblewrap, seeing only its own home")
    server_cmd = List(Unicode(), config=True, help="the single-user server (jupyterhub-singleuser)")

    @default("home_dir")
    def _default_home_dir(self) -> str:
        return str(home_of(Path(self.data_dir) / "users", self.user.name))

    async def start(self):  # type: ignore[override]
        home = Path(self.home_dir)
        copied = seed_home(home, Path(self.notebooks_dir))
        if copied:
            self.log.info("seeded %s's home with %s", self.user.name, ", ".join(copied))
        wrap = sandbox_argv(home, Path(self.data_dir), keep=software_under_tmp()) if self.sandbox else []
        self.cmd = [*wrap, *self.server_cmd]
        if os.geteuid() == 0:  # the server sees uid 0 (root's, or the sandbox's own): Jupyter needs consent
            self.args = [*self.args, "--ServerApp.allow_root=True"]  # type: ignore[has-type]  # a traitlet
        return await super().start()
