"""Harness code that tests and benchmarks share: `llmclf serve` in a child process on a free loopback port.

    python -m pytest -q tests/test_serve.py tests/test_web.py     # and bench/serve_load.py
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from llmclf.config import flag


def _die_with_parent():
    """On Linux, a child that gets SIGTERM when its parent dies, so a killed test run or benchmark leaves no
    server behind. libc is loaded here, in the parent: the child only makes the one call before exec. Linux
    signals the child when the *thread* that started it ends, so start servers from a long-lived thread."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return lambda: libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`llmclf serve` in a child process on a free loopback port, ready once /health answers.

    >>> with ServerProcess("runs/tiny", max_wait_ms=5) as server:      # doctest: +SKIP
    ...     urllib.request.urlopen(server.url + "/health").status
    200
    """

    def __init__(self, model: str | Path | None, startup_timeout: float = 120.0, **options):
        """`model` None serves the default (the shipped sentiment model)."""
        self.model, self.startup_timeout, self.options = model and str(model), startup_timeout, options
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="llmclf-serve-", suffix=".log", delete=False)
        self._final_log: str | None = None

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "llmclf", "serve", "--port", str(self.port)]
        if self.model is not None:
            argv += ["--model", self.model]
        for key, value in self.options.items():
            argv += [flag(key), str(value)]
        return argv

    def start(self) -> "ServerProcess":
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent())
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llmclf serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"llmclf serve did not answer /health in {self.startup_timeout:.0f} s:\n"
                           f"{self.log()[-3000:]}")

    def log(self) -> str:
        """What the server printed (uvicorn's lines, warnings, a traceback if it failed to start)."""
        if self._final_log is not None:
            return self._final_log
        return Path(self._log.name).read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (graceful: in-flight requests are answered), then SIGKILL if it hangs; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._final_log is None:
            self._final_log = self.log()
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
