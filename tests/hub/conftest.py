"""A real `pitlane hub serve` (JupyterHub, its proxy, the twin, a registry, MLflow, the idle culler) and a
headless chromium to drive it, as a data scientist would."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PASSWORD = "hub-browser-test"


@dataclass(frozen=True)
class Hub:
    url: str  # http://127.0.0.1:PORT/
    data: Path
    proc: subprocess.Popen
    lines: list[str]  # what `pitlane hub serve` printed
    password: str = PASSWORD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def small_simple_train(home: Path, **params) -> Path:
    """A user's own copy of simple_train.ipynb with their settings (as if they had edited it): the hub must
    leave it as it is."""
    nb = json.loads((REPO / "notebooks" / "simple_train.ipynb").read_text())
    index = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
    text = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb["cells"].insert(index + 1, {"cell_type": "code", "execution_count": None, "id": "small", "metadata": {},
                                   "outputs": [], "source": [text]})  # fmt: skip
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    home.mkdir(parents=True, exist_ok=True)
    path = home / "simple_train.ipynb"
    path.write_text(json.dumps(nb))
    return path


def start_hub(data: Path, *extra: str, timeout_s: float = 180) -> Hub:
    port = free_port()
    env = dict(os.environ, PITLANE_HUB_PASSWORD=PASSWORD, PYTHONPATH=str(REPO))
    argv = [
        sys.executable,
        "-m",
        "pitlane.cli",
        "hub",
        "serve",
        "--port",
        str(port),
        "--data",
        str(data),
        *extra,
    ]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
    )
    lines: list[str] = []
    got: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            got.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if got.get(timeout=1).startswith("hub: homes"):
                return Hub(f"http://127.0.0.1:{port}/", data, proc, lines)
        except queue.Empty:
            if proc.poll() is not None:
                break
    stop_hub(proc)
    raise AssertionError("the hub did not start:\n" + "\n".join(lines[-30:]))


def stop_hub(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """One hub for the module; each test logs in as a user of its own (alice, bob, carol, dave)."""
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap; .ci/run installs it)")
    data = tmp_path_factory.mktemp("hub")
    # alice edited her copy: small settings (the hub must not replace it with the shipped one)
    small_simple_train(data / "users" / "alice", LAPS=3, EPOCHS=8, EVAL_LAPS=1)
    h = start_hub(data)
    yield h
    stop_hub(h.proc)


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)  # --no-sandbox: chromium's own sandbox refuses to run as root (CI)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()
