"""The development server in a child process, on a free port (tests, benchmarks)."""

import os
import queue
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerProcess:
    """Starts `python -m serving.server` on port 0 and waits for its port.

    The server prints one line, `Serving model ... on HOST:PORT`, once it
    listens; further stdout lines are kept for `next_line`.

    Args:
        model_base_path: string. The folder holding `model_name/<version>/`.
        model_name: string.
        args: more `serving.server` flags, e.g. `["--workers", "8"]`.
        script: optional Python source to run instead of the module (e.g.
            one that patches the server, then calls `serving.server.main`);
            it gets the flags as `sys.argv[1:]`.
        log_path: optional file for the server's stderr (default: dropped).
        env: optional dict of environment variables to set for the server
            (e.g. `{"CUDA_VISIBLE_DEVICES": ""}`).
        start_timeout: float. Seconds to wait for the port.

    Example:
    ```python
    server = ServerProcess("/models", "cmaclip", ["--poll-seconds", "0.2"])
    channel = grpc.insecure_channel(server.address)
    ...
    server.stop()
    ```
    """

    def __init__(self, model_base_path, model_name, args=(), script=None,
                 log_path=None, env=None, start_timeout=180):
        flags = ["--model-base-path", model_base_path, "--model-name", model_name,
                 "--port", "0", *args]
        if script is None:
            argv = [sys.executable, "-m", "serving.server", *flags]
        else:
            argv = [sys.executable, "-c", script, *flags]
        self.model_base_path = model_base_path
        self.log_path = log_path
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            argv, cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})), stdout=subprocess.PIPE, stderr=self._log,
            text=True,
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        first = self.next_line(start_timeout)
        self.port = int(first.rsplit(":", 1)[1])
        self.address = f"127.0.0.1:{self.port}"

    def _read_stdout(self):
        for line in self.process.stdout:
            self._lines.put(line.strip())

    def next_line(self, timeout):
        """The server's next stdout line; stops it and raises if none comes."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            log = ""
            if self.log_path:
                with open(self.log_path) as f:
                    log = f":\n{f.read()[-3000:]}"
            raise RuntimeError(
                f"The server printed nothing in {timeout}s{log}"
            ) from None

    def stop(self, timeout=60):
        """SIGTERM (in-flight requests finish), then SIGKILL after `timeout` s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
