"""The local hub as a data scientist meets it: from `pitlane hub serve` to a logged-in JupyterLab with a running
kernel and to a first cell's output (first start included: a fresh data folder), the run time of
simple_train.ipynb on small settings, and the hub's memory with two users.

    PYTHONPATH=. .venv/bin/python bench/bench_hub.py [--laps 3 --epochs 8] [--no-notebook]

Needs what the hub needs (bubblewrap, Node.js's configurable-http-proxy, docker-registry) and Debian's chromium
with chromium-driver. Prints one line per figure and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-hub-password"
FIRST = {"cells": [{"cell_type": "code", "execution_count": None, "id": "first", "metadata": {}, "outputs": [],
                    "source": ["print('first cell', 6 * 7)"]}],
         "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
         "nbformat": 4, "nbformat_minor": 5}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(
        options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    )


def until(driver, predicate, timeout_s: float = 600):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(lambda d: predicate(d))


def css(driver, selector: str):
    return driver.find_elements("css selector", selector)


def login_and_open(driver, url: str, user: str, notebook: str) -> None:
    """Log in, wait for JupyterLab, open the notebook and wait for its kernel to be idle."""
    driver.get(url + "hub/login")
    until(driver, lambda d: css(d, "#username_input"))
    css(driver, "#username_input")[0].send_keys(user)
    css(driver, "#password_input")[0].send_keys(PASSWORD)
    css(driver, "#login_submit")[0].click()
    until(driver, lambda d: "/lab" in d.current_url and css(d, ".jp-LabShell"))
    driver.get(f"{url}user/{user}/lab/tree/{notebook}")
    until(driver, lambda d: css(d, ".jp-Notebook .jp-Cell"))
    until(driver, lambda d: any("| Idle" in e.text for e in css(d, ".jp-StatusBar-TextItem")))


def run_all(driver) -> None:
    def started(d):
        return any("*" in p.text or any(c.isdigit() for c in p.text) for p in css(d, ".jp-InputPrompt"))  # noqa: E731

    selector = '.jp-NotebookPanel-toolbar [data-command="notebook:restart-run-all"]'

    def shown(d):  # the open tab's button (another tab's is in the page, hidden)
        return [e for e in css(d, selector) if e.is_displayed()]

    for _ in range(3):
        until(driver, shown)[0].click()
        until(driver, lambda d: css(d, ".jp-Dialog .jp-mod-accept"))[0].click()
        try:
            until(driver, started, 30)
            return
        except Exception:  # noqa: BLE001 - a click that landed while the page was wiring up: click again
            continue


def outputs(driver) -> str:
    return "\n".join(e.text for e in css(driver, ".jp-OutputArea-output"))


def tree_rss_mb(root: int) -> dict[str, float]:
    """Resident memory [MB] of a process and its descendants, grouped: the hub's side and each user's server."""
    parent: dict[int, int] = {}
    rss: dict[int, float] = {}
    cmd: dict[int, str] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            pid = int(status.parent.name)
            parent[pid] = int(fields["PPid"])
            rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
            cmd[pid] = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, KeyError, ValueError):
            continue
    hub_side = "hub (hub, proxy, twin, registry, MLflow, culler)"
    groups: dict[str, float] = {hub_side: rss.get(root, 0.0)}
    for pid in rss:
        chain, p = [], pid
        while p in parent and p != root:
            chain.append(p)
            p = parent[p]
        if p != root or not chain:
            continue
        words = [
            w for q in chain for w in cmd.get(q, "").split() if "/users/" in w
        ]  # a user's sandbox above it?
        user = words[0].rstrip("/").rsplit("/", 1)[-1] if words else None
        key = f"user {user} (server and kernel)" if user else hub_side
        groups[key] = groups.get(key, 0.0) + rss[pid]
    return {k: round(v, 1) for k, v in groups.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--laps", type=int, default=3, help="simple_train's LAPS")
    ap.add_argument("--epochs", type=int, default=8, help="simple_train's EPOCHS")
    ap.add_argument("--no-notebook", action="store_true", help="skip the simple_train run")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    for user in ("ann", "ben"):
        (data / "users" / user).mkdir(parents=True)
        (data / "users" / user / "first.ipynb").write_text(json.dumps(FIRST))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, PITLANE_HUB_PASSWORD=PASSWORD, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "pitlane.cli", "hub", "serve", "--port", str(port), "--data", str(data)]
    figures: dict[str, object] = {"cores": os.cpu_count()}
    driver = browser()  # chromium's own start is not the hub's: started before the clock
    t0 = time.monotonic()
    hub = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert hub.stdout is not None
        for line in hub.stdout:
            if line.startswith("hub: homes"):
                break
        figures["hub_up_s"] = round(time.monotonic() - t0, 1)
        print(f"hub_up_s: {figures['hub_up_s']}", flush=True)
        login_and_open(driver, url, "ann", "first.ipynb")
        figures["lab_with_idle_kernel_s"] = round(time.monotonic() - t0, 1)
        run_all(driver)
        until(driver, lambda d: "first cell 42" in outputs(d))
        figures["first_cell_output_s"] = round(time.monotonic() - t0, 1)
        second = browser()
        try:
            login_and_open(second, url, "ben", "first.ipynb")
            run_all(second)
            until(second, lambda d: "first cell 42" in outputs(d))
            time.sleep(2)
            memory = tree_rss_mb(hub.pid)
            figures["memory_two_users_mb"] = memory
            figures["memory_total_mb"] = round(sum(memory.values()), 1)
            print(json.dumps(figures), flush=True)
        finally:
            second.quit()
        if not args.no_notebook:
            sys.path.insert(0, str(REPO / "tests" / "hub"))
            from conftest import small_simple_train

            small_simple_train(data / "users" / "ann", LAPS=args.laps, EPOCHS=args.epochs, EVAL_LAPS=1)
            driver.get(f"{url}user/ann/lab/tree/simple_train.ipynb")
            until(driver, lambda d: css(d, ".jp-Notebook .jp-Cell"))
            until(driver, lambda d: any("| Idle" in e.text for e in css(d, ".jp-StatusBar-TextItem")))
            t1 = time.monotonic()
            run_all(driver)
            until(
                driver, lambda d: "a release manager runs" in outputs(d) or "not pushed" in outputs(d), 1800
            )
            figures["simple_train_small_s"] = round(time.monotonic() - t1, 1)
            figures["simple_train_settings"] = f"LAPS={args.laps} EPOCHS={args.epochs} EVAL_LAPS=1"
            figures["gate"] = "PASS" if "GATE PASS" in outputs(driver) else "FAIL"
    finally:
        driver.quit()
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=120)
        shutil.rmtree(data, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
