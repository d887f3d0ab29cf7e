"""The CLI starts quietly: no donkeycar banner, no TensorFlow/CUDA registration lines, unless -v.

Each check runs in a fresh interpreter: in the test process donkeycar and TensorFlow are long imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BANNER = "using donkey v"


def _python(code: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=full_env
    )


@pytest.mark.slow
def test_tensorflow_starts_without_cuda_noise_and_v_brings_it_back():
    """On a machine without a GPU TensorFlow's import writes cuFFT/cuDNN/cuBLAS registration lines and
    `failed call to cuInit` to fd 2; with the CLI's quieting stderr stays empty."""
    code = (
        "import sys; from pitlane.cli import quiet_libraries; {setup}"
        "import donkeycar, tensorflow as tf; tf.config.list_physical_devices('GPU'); "
        "tf.constant(1.0) + 1.0; print('done')"
    )
    quiet = _python(code.format(setup="quiet_libraries(); "))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "done\n"
    assert quiet.stderr == ""
    loud = _python(code.format(setup=""))  # what -v leaves alone
    assert BANNER in loud.stdout
    if not Path("/dev/nvidia0").exists():  # the noise this guards against, seen where it occurs
        assert "Unable to register" in loud.stderr or "cuInit" in loud.stderr


def test_a_warning_written_during_the_quiet_import_still_comes_out():
    code = (
        "import os; from pitlane.quiet import filtered_fd2\n"
        "with filtered_fd2():\n"
        "    os.write(2, b'E0000 cuda_dnn.cc] Unable to register cuDNN factory: x\\n')\n"
        "    os.write(2, b'a real warning\\n')\n"
    )
    run = _python(code)
    assert run.returncode == 0 and run.stderr == "a real warning\n"
