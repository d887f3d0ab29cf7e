"""Quiet start-up for the CLI: no donkeycar banner, no TensorFlow/CUDA registration lines (unless -v).

`import donkeycar` prints a figlet banner on stdout; `import tensorflow` makes its C++ libraries write
"Unable to register cuFFT/cuDNN/cuBLAS factory", "computation placer already registered" and absl's
pre-init notice straight to file descriptor 2, before any log level applies. Both are imported lazily all
over pitlane, so `install()` puts a finder on `sys.meta_path` that runs each one's first import with the
banner swallowed, or with fd 2 captured and replayed without the known noise lines (anything else written
meanwhile, a warning from another thread say, still comes out). TF_CPP_MIN_LOG_LEVEL=3 silences the later
C++ lines, such as "failed call to cuInit" on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

NOISE = re.compile(
    r"Unable to register cu(FFT|DNN|BLAS) factory"
    r"|computation placer already registered"
    r"|All log messages before absl::InitializeLog\(\) is called"
    r"|failed call to cuInit"
    r"|oneDNN custom operations are on"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|rebuild TensorFlow with the appropriate compiler flags"
    r"|Could not find cuda drivers on your machine"
)


@contextlib.contextmanager
def no_stdout() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def filtered_fd2(noise: re.Pattern[str] = NOISE) -> Iterator[None]:
    """Capture what anything in this process writes to fd 2; replay it afterwards minus `noise` lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not noise.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, quiet: Callable[[], contextlib.AbstractContextManager]) -> None:
        self.loader, self.quiet = loader, quiet

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with self.quiet():
            self.loader.exec_module(module)

    def __getattr__(self, name: str):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self.loader, name)


class QuietImports(importlib.abc.MetaPathFinder):
    """Runs the first import of each named top-level package inside its quieting context."""

    def __init__(self) -> None:
        self.pending: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
            "donkeycar": no_stdout,
            "tensorflow": filtered_fd2,
        }

    def find_spec(self, fullname, path, target=None):
        quiet = self.pending.pop(fullname, None)
        if quiet is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, quiet)
        return spec


def install() -> None:
    """Quiet the libraries' start-up from now on in this process (idempotent)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not any(isinstance(f, QuietImports) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietImports())
