"""Fixtures: a real ``sstemu serve`` on a free port, built from this repository.

The binary is ``$SSTEMU_BIN`` if set, else built once per session with ``go build``. The
server listens on 127.0.0.1:0 and the tests read the bound address from its JSON
"listening" log line. ``$SSTEMU_TEST_ADDR`` points the tests at an already running server
instead (then the restart tests, which need their own process, are skipped, saying so).
"""

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "python"))

import sstemu  # noqa: E402

START_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def sstemu_bin(tmp_path_factory):
    """The path of an sstemu binary of this repository."""
    b = os.environ.get("SSTEMU_BIN")
    if b:
        return b
    out = str(tmp_path_factory.mktemp("bin") / "sstemu")
    subprocess.run(["go", "build", "-o", out, "./cmd/sstemu"], cwd=REPO, check=True)
    return out


class Server:
    """A running ``sstemu serve``; ``addr`` is where it listens."""

    def __init__(self, binary, *flags, listen="127.0.0.1:0"):
        self.binary, self.flags = binary, flags
        self.log = tempfile.TemporaryFile()
        self.logged = threading.Condition()  # notified after each chunk the drain thread writes
        self.proc = subprocess.Popen([binary, "serve", "--listen", listen, "--log-format", "json", *flags],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addr = self._wait_listening()
        # Keep reading its log, so that a full pipe never blocks the server.
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self):
        for chunk in iter(lambda: os.read(self.proc.stderr.fileno(), 65536), b""):
            with self.logged:
                self.log.write(chunk)
                self.logged.notify_all()
        with self.logged:
            self.drained = True
            self.logged.notify_all()

    drained = False  # the server's stderr has ended

    def log_text(self):
        """Everything the server logged so far."""
        with self.logged:
            self.log.flush()
            self.log.seek(0)
            text = self.log.read().decode(errors="replace")
            self.log.seek(0, os.SEEK_END)
            return text

    def wait_log(self, needle, timeout=10.0):
        """The log once it contains ``needle``: the server writes a line after the event a
        client sees (a closed connection), and the drain thread reads it later still."""
        deadline = time.monotonic() + timeout
        with self.logged:
            while True:
                text = self.log_text()
                left = deadline - time.monotonic()
                if needle in text or self.drained or left <= 0:
                    return text
                self.logged.wait(left)

    def _wait_listening(self):
        deadline = time.monotonic() + START_TIMEOUT
        buf = b""
        fd = self.proc.stderr.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("sstemu serve exited (%s) before listening: %s" % (self.proc.wait(), buf.decode(errors="replace")))
            self.log.write(chunk)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                # the front end's line: layer=tcpfront (older builds: component=tcpfront)
                if rec.get("message") == "listening" and "tcpfront" in (rec.get("layer"), rec.get("component")):
                    return rec["addr"]
        self.stop()
        raise RuntimeError("sstemu serve did not report listening within %g s" % START_TIMEOUT)

    def stop(self):
        """SIGTERM, then wait for the clean exit (and the end of its log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "drain", None) is not None:
            self.drain.join(timeout=10)


@pytest.fixture(scope="session")
def server_addr(sstemu_bin):
    """HOST:PORT of the session's server."""
    ext = os.environ.get("SSTEMU_TEST_ADDR")
    if ext:
        yield ext
        return
    s = Server(sstemu_bin)
    yield s.addr
    s.stop()


@pytest.fixture(scope="session")
def dev(server_addr):
    """A Device on the session's server, also made the default device."""
    d = sstemu.connect(server_addr)
    sstemu.set_default_device(d)
    yield d
    d.close()


@pytest.fixture
def own_server(sstemu_bin):
    """A factory of servers owned by one test (stopped at its end): own_server(*flags, listen=...)."""
    if os.environ.get("SSTEMU_TEST_ADDR"):
        pytest.skip("needs its own sstemu process; $SSTEMU_TEST_ADDR points at an external server")
    started = []

    def start(*flags, listen="127.0.0.1:0"):
        s = Server(sstemu_bin, *flags, listen=listen)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def assert_close(got, want, k, what=""):
    """got (float32) against a float64 reference: |got - want| ≤ 1e-5·K·(1 + |want|) elementwise.

    K is the length of the dot products behind each element (float32 rounding grows with it).
    """
    import torch
    assert got.shape == want.shape, "%s: shape %s, want %s" % (what, tuple(got.shape), tuple(want.shape))
    assert got.dtype == torch.float32, "%s: dtype %s" % (what, got.dtype)
    t = 1e-5 * max(k, 1)
    err = (got.double() - want.double()).abs()
    bound = t * (1 + want.double().abs())
    assert bool((err <= bound).all()), "%s: max |diff| %g (tolerance 1e-5·K = %g relative)" % (what, err.max().item(), t)
