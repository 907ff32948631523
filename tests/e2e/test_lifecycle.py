#!/usr/bin/python3
"""Starting and stopping the shop as people do (issue 19).

`orion serve` here is the embedded default a newcomer runs: no ORION_NATS_URL,
so it starts its own nats-server with the store under the data directory.

1. /readyz turns 200 only when every role can serve: with two busy loops on
   the machine's cores during start-up, the first login with the start-up
   admin's credentials right after /readyz is 200 succeeds (several starts).

usage: ORION_BIN=build/cli/orion test_lifecycle.py [-v]"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import Client, Process, free_port, wait_until  # noqa: E402

ADMIN_EMAIL = "root@orion.test"
ADMIN_PASSWORD = "admin-password-1"
STOP_BOUND_S = 3.0


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def children(pid):
    """Pids whose parent is pid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def alive(pid):
    """True while pid runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def describe(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return f"{pid}: gone"
    return f"{pid}: " + " ".join(a.decode(errors="replace") for a in argv if a)


class Shop:
    """`orion serve` on a data directory of its own, with its embedded
    nats-server, in a session of its own (its pid is its process group)."""

    def __init__(self, tag, demo=False, http_port=0, **env):
        self.dir = tempfile.mkdtemp(prefix=f"orion-e2e-{tag}-")
        self.data_dir = os.path.join(self.dir, "data")
        self.demo = demo
        self.env_extra = {k: str(v) for k, v in env.items()}
        self.serve = None
        self.http_port = http_port or None  # 0: serve takes a free one and announces it
        self.nats_pid = None
        self.runs = 0

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORION_")}
        env.update({
            "ORION_DATA_DIR": self.data_dir,
            "ORION_HTTP_ADDR": f"127.0.0.1:{self.http_port or 0}",
            "ORION_ADMIN_EMAIL": ADMIN_EMAIL,
            "ORION_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ORION_LOG_LEVEL": "info",
            "ORION_AUTH_ADDRESS_BURST": "100000",
            "ORION_AUTH_ADDRESS_PER_MINUTE": "100000",
            "ORION_PASSWORD_MEMORY_KIB": "8192",
        })
        env.update(self.env_extra)
        return env

    def launch(self):
        """Starts serve without waiting for anything."""
        self.runs += 1
        argv = [os.environ["ORION_BIN"], "serve"] + (["--demo"] if self.demo else [])
        log = os.path.join(self.dir, f"serve-{self.runs}.log")
        self.serve = Process(argv, self.env(), log).start()

    def start(self, timeout=60):
        self.launch()
        wait_until(lambda: self.serve.announced() or not self.serve.running(), timeout, what="serve to start")
        assert self.serve.running(), f"serve exited:\n{self.serve.log()[-3000:]}"
        m = re.search(r"Orion is running: http://127\.0\.0\.1:(\d+) \(NATS at nats://127\.0\.0\.1:(\d+)\)",
                      self.serve.log())
        assert m, self.serve.log()[-2000:]
        self.http_port = int(m.group(1))
        nats = [p for p in children(self.pid) if "nats-server" in describe(p)]
        assert len(nats) == 1, [describe(p) for p in children(self.pid)]
        self.nats_pid = nats[0]
        return self

    @property
    def pid(self):
        return self.serve.proc.pid

    def wait_ready(self, timeout=30):
        c = Client(self.http_port)
        wait_until(lambda: c.request("GET", "/readyz").status == 200, timeout, interval=0.01, what="/readyz 200")

    def wait_gone(self, bound):
        """Polls until orion and its nats-server are gone, at most `bound`
        seconds; returns (orion's exit code or None, seconds, still running)."""
        start = time.monotonic()
        while True:
            code = self.serve.proc.poll()
            running = [p for p in (self.pid, self.nats_pid) if alive(p)]
            if code is not None and not running:
                return code, time.monotonic() - start, []
            if time.monotonic() - start > bound:
                return code, time.monotonic() - start, [describe(p) for p in running]
            time.sleep(0.01)

    def close(self):
        if self.serve is not None and self.serve.running():
            self.serve.kill9()
        if self.nats_pid is not None and alive(self.nats_pid):
            os.kill(self.nats_pid, signal.SIGKILL)
        if os.environ.get("ORION_E2E_KEEP"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Readiness(unittest.TestCase):
    STARTS = 5

    def first_ready(self, port, timeout=60):
        """Polls /readyz from the moment serve starts, as a load balancer would;
        returns once it is 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.005)
        self.fail("/readyz never turned 200")

    def test_the_first_login_after_readyz_succeeds_under_cpu_load(self):
        busy = [subprocess.Popen(["/usr/bin/python3", "-c", "while True: pass"]) for _ in range(2)]
        try:
            for i in range(self.STARTS):
                shop = Shop(f"ready{i}", http_port=free_port())
                try:
                    shop.launch()
                    self.first_ready(shop.http_port)
                    r = Client(shop.http_port).post("/auth/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
                    self.assertEqual(r.status, 200, f"start {i + 1}: the first login after /readyz 200: {r}")
                    body = Client(shop.http_port).request("GET", "/readyz").json()
                    self.assertTrue(body.get("ready") and body.get("started") and body.get("caught_up") and
                                    body.get("consumers"), body)
                finally:
                    shop.close()
        finally:
            for p in busy:
                p.kill()
                p.wait()


if __name__ == "__main__":
    unittest.main(verbosity=2)
