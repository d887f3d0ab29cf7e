"""A real registry for the image tests: Debian's docker-registry on a free port of 127.0.0.1."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
from helpers import free_port


@pytest.fixture(scope="module")
def registry_host(tmp_path_factory):
    storage = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = storage / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}/data\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"http://{host}/v2/", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        yield host
    finally:
        proc.terminate()
        proc.wait()
