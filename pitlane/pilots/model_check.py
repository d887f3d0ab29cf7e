"""Verify a model file before this process's TFLite interpreter sees it: a corrupt file is one line, never a
signal.

TFLite's Python interpreter does not run the flatbuffer verifier, so a truncated or bit-flipped ``.tflite``
can segfault the process that loads it (an interrupted copy is enough). ``verify_model`` therefore checks,
in order: the expected sha256 (when the caller has one, e.g. from a signed bundle), the file's magic bytes
against its suffix (a ``.keras`` zip named ``.h5``, ...), and for ``.tflite`` a first load and one
inference of the *same bytes* in a child process. The child is forked from a persistent "zygote" process
that imported the interpreter once (a TensorFlow import costs seconds; a fork costs milliseconds), so a
crash costs one fork, and the zygote is respawned if it ever dies itself. The caller then loads the bytes
it verified (``model_content``), never the path again.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from pitlane.errors import UserError

TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier at bytes 4..8 of every .tflite
ZIP_MAGIC = b"PK\x03\x04"  # a Keras 3 .keras file is a zip
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # a legacy Keras .h5 file
PROBE_TIMEOUT_S = 60.0  # [s] a load + one inference longer than this counts as a hang
_HEADER = struct.Struct("!Q")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str = ""  # why not, in words
    crashed: bool = False  # the probe child died by a signal (what this process was spared)


def file_kind(data: bytes) -> str | None:
    """What the bytes are by their magic: tflite, keras (zip), h5, or None."""
    if data[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    if data.startswith(ZIP_MAGIC):
        return "keras"
    if data.startswith(HDF5_MAGIC):
        return "h5"
    return None


_KIND_NAMES = {
    "tflite": "a TFLite model",
    "keras": "a Keras model (.keras zip)",
    "h5": "a Keras model (HDF5)",
}
_SUFFIX_KIND = {".tflite": "tflite", ".keras": "keras", ".h5": "h5"}


def check_kind(path: Path, data: bytes) -> None:
    """UserError when the bytes are not what the file's suffix says."""
    want = _SUFFIX_KIND.get(path.suffix.lower())
    if want is None:
        return
    found = file_kind(data)
    if found == want:
        return
    if not data:
        raise UserError(f"model {path} is empty (an interrupted copy?)")
    if found is None:
        raise UserError(
            f"model {path} is not {_KIND_NAMES[want]} (its first bytes are not; truncated or corrupt?)"
        )
    right = {v: k for k, v in _SUFFIX_KIND.items()}[found]
    raise UserError(f"model {path} is {_KIND_NAMES[found]} named {path.suffix}; rename it to {right}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_verified(path: Path, expected_sha256: str | None = None) -> bytes:
    """The model's bytes, checked against ``expected_sha256`` (hex, optionally ``sha256:``-prefixed) and
    against its suffix. The hook for signed bundles: the caller passes the digest the signature covers."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"model {path} cannot be read: {exc.strerror or exc}") from None
    return check_verified(path, data, expected_sha256)


def check_verified(path: Path, data: bytes, expected_sha256: str | None = None) -> bytes:
    """`data` (the bytes of the model `path` names), checked as `read_verified` checks a file's."""
    if expected_sha256 is not None:
        want = expected_sha256.lower().removeprefix("sha256:")
        got = sha256_hex(data)
        if got != want:
            raise UserError(f"model {path} has sha256 {got[:16]}..., not the expected {want[:16]}...")
    check_kind(path, data)
    return data


# ------------------------------------------------------------------------------------------------ client
class Prober:
    """Client of the zygote process: ``probe(data)`` -> Verdict; respawns the zygote when it dies."""

    def __init__(self, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.respawns = 0

    def _start(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self.respawns += 1
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pitlane.pilots.model_check"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        return self._proc

    def probe(self, data: bytes) -> Verdict:
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(_HEADER.pack(len(data)) + data)
                proc.stdin.flush()
                line = self._read_line(proc, self.timeout_s + 120.0)  # + the zygote's own start-up
            except (BrokenPipeError, OSError, TimeoutError) as exc:
                self.close()
                return Verdict(False, f"the model probe process failed ({type(exc).__name__})")
            if not line:
                self.close()
                return Verdict(False, "the model probe process died")
            result = json.loads(line)
            return Verdict(bool(result["ok"]), str(result.get("detail", "")), bool(result.get("crashed")))

    @staticmethod
    def _read_line(proc: subprocess.Popen, timeout_s: float) -> bytes:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        if not ready:
            raise TimeoutError
        return proc.stdout.readline()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


_PROBER: Prober | None = None
_VERIFIED: set[str] = set()  # sha256 of bytes that loaded fine in a probe child (this process only)


def probe_tflite(data: bytes) -> Verdict:
    """Load and run ``data`` once in a child; cached per content digest for this process."""
    global _PROBER
    digest = sha256_hex(data)
    if digest in _VERIFIED:
        return Verdict(True)
    if _PROBER is None:
        _PROBER = Prober()
    verdict = _PROBER.probe(data)
    if verdict.ok:
        _VERIFIED.add(digest)
    return verdict


def trust_probed(sha256: str) -> None:
    """Bytes of this digest loaded and ran in another process's probe (an evaluation worker's parent): this
    process skips its own probe of them. Bytes of any other digest are still probed."""
    _VERIFIED.add(sha256.lower().removeprefix("sha256:"))


def verify_tflite(path: Path, data: bytes) -> None:
    """UserError (one line) unless ``data`` loads and runs in a child process."""
    verdict = probe_tflite(data)
    if not verdict.ok:
        raise UserError(f"model {path} is not a usable TFLite model: {verdict.detail}")


# ------------------------------------------------------------------------------------------------ zygote
def _try_model(data: bytes) -> dict:
    """In the probe child: what the pilot will do with these bytes (load, signatures, one inference)."""
    import numpy as np

    interpreter = _interpreter_class()(model_content=data, num_threads=1)
    signatures = interpreter.get_signature_list()
    if signatures:
        runner = interpreter.get_signature_runner()
        details = runner.get_input_details()
        feeds = {k: np.zeros(d["shape"], dtype=d["dtype"]) for k, d in details.items()}
        runner(**feeds)
    else:
        interpreter.allocate_tensors()
        for d in interpreter.get_input_details():
            interpreter.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
        interpreter.invoke()
        for d in interpreter.get_output_details():
            interpreter.get_tensor(d["index"])
    return {"ok": True}


def _interpreter_class():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            from tensorflow.lite.python.interpreter import Interpreter
    return Interpreter


def _child(data: bytes, out_fd: int) -> None:
    import faulthandler

    faulthandler.disable()  # a crash here is the verdict; no stack dump on the zygote's stderr
    try:
        result = _try_model(data)
    except BaseException as exc:  # noqa: BLE001 - any failure is the verdict
        text = " ".join(str(exc).split())[:300]
        result = {"ok": False, "detail": f"{type(exc).__name__}: {text}"}
    os.write(out_fd, json.dumps(result).encode())
    os._exit(0)


def _judge(data: bytes, timeout_s: float) -> dict:
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():  # the child only loads a model and exits: no lock it could need
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: load, report, exit without running any atexit handler
        os.close(read_fd)
        _child(data, write_fd)
    os.close(write_fd)
    chunks, deadline_left = [], timeout_s
    while True:
        ready, _, _ = select.select([read_fd], [], [], deadline_left)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_fd)
            return {"ok": False, "detail": f"loading it hung for {timeout_s:.0f} s"}
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return {"ok": False, "crashed": True, "detail": f"loading it crashed TFLite's interpreter ({name})"}
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"ok": False, "detail": f"the probe exited with status {os.waitstatus_to_exitcode(status)}"}


def _serve(timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Zygote loop: import the interpreter once, then judge each model sent on stdin in a forked child."""
    _interpreter_class()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        (size,) = _HEADER.unpack(header)
        data = stdin.read(size)
        result = _judge(data, timeout_s)
        stdout.write(json.dumps(result).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    _serve()
