#!/usr/bin/python3
"""Starting and stopping the shop as people do (issue 19).

`orion serve` here is the embedded default a newcomer runs: no ORION_NATS_URL,
so it starts its own nats-server with the store under the data directory.

1. Ctrl-C in a terminal is SIGINT to the whole foreground process group: with
   serve started in a session of its own (setsid, as a terminal would), SIGINT
   to the group stops orion and its nats-server within 3 s with exit 0, and a
   restart on the same data directory finds every product and order the API
   acknowledged before the signal. The same for SIGTERM to orion alone.
2. A second signal while the first stop is under way ends the process at once
   (exit 130 for SIGINT), and the nats-server with it. The stop is held up by
   an SMTP server that accepts connections and never answers, so the mail
   role is in a send when the signals come.
3. /readyz turns 200 only when every role can serve: with two busy loops on
   the machine's cores during start-up, the first login with the start-up
   admin's credentials right after /readyz is 200 succeeds (several starts).
4. A `nats.url` left behind by an unclean stop (orion killed with SIGKILL),
   or naming a port nobody listens on: `orion replay --from 1` says once that
   the address does not answer and starts its own nats-server. An address
   that accepts and stays silent is not taken for stale (no second
   nats-server on the store).
5. The confirmation email a newcomer opens in <data dir>/mail/new is
   readable as it is: the link stands whole on a line of its own, and the
   token in it confirms the order. A name with an accent makes the parts
   quoted-printable: a mail client decodes the link, and in the raw file it
   is split only by soft breaks (its "=" written =3D).

The 3 s bound is the specification of item 3, not a benchmark; the test polls
and, on failure, prints what is still running and the end of the log.

usage: ORION_BIN=build/cli/orion test_lifecycle.py [-v]"""
import email
import email.policy
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import Client, Process, free_port, login, register, wait_until  # noqa: E402

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
            # one customer places an order per write it checks, none paid: the
            # limits of ADR 026 raised, as in orion_e2e.py
            "ORION_MAX_OPEN_ORDERS": "16",
            "ORION_MAX_UNITS_PER_PRODUCT": "1000000",
            "ORION_ORDERS_BURST": "100000",
            "ORION_ORDERS_PER_MINUTE": "100000",
            # its customers order right after registering, as in orion_e2e.py (ADR 031)
            "ORION_REQUIRE_EMAIL_VERIFICATION": "0",
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


class Stopping(unittest.TestCase):
    def setUp(self):
        self.shop = None

    def tearDown(self):
        if self.shop is not None:
            self.shop.close()

    def acknowledged_writes(self, shop):
        """Products and orders the API acknowledged (201/202): ([product ids], customer, [order ids])."""
        a = login(shop.http_port, ADMIN_EMAIL, ADMIN_PASSWORD)
        products = []
        for i in range(8):
            r = a.post("/admin/products", {"sku": unique("sig"), "name": f"Signal {i}", "description": "e2e",
                                           "price_cents": 700 + i, "currency": "EUR", "category": "e2e",
                                           "initial_stock": 50})
            self.assertEqual(r.status, 201, r)
            products.append(r.json()["id"])
        customer = register(shop.http_port, f"{unique('c')}@example.com")
        orders = []
        for i in range(4):
            r = customer.post("/cart/items", {"product_id": products[i], "quantity": 1})
            self.assertEqual(r.status, 200, r)
            r = customer.post("/orders", {}, headers={"Idempotency-Key": unique("k")})
            self.assertEqual(r.status, 202, r)
            orders.append(r.json()["id"])
        return products, customer, orders

    def stop_and_check(self, how):
        shop = self.shop = Shop(f"stop-{how}").start()
        shop.wait_ready()
        products, customer, orders = self.acknowledged_writes(shop)
        url_file = os.path.join(shop.data_dir, "nats.url")
        self.assertTrue(os.path.exists(url_file))

        if how == "group-sigint":
            os.killpg(shop.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        else:
            os.kill(shop.pid, signal.SIGTERM)
        code, took, running = shop.wait_gone(STOP_BOUND_S)
        self.assertEqual(running, [], f"still running {took:.2f} s after the signal: {running}\n"
                                      f"{shop.serve.log()[-3000:]}")
        self.assertEqual(code, 0, shop.serve.log()[-3000:])
        self.assertLessEqual(took, STOP_BOUND_S)
        self.assertFalse(os.path.exists(url_file), "a clean stop removes nats.url")
        print(f"\n  {how}: everything gone {took:.2f} s after the signal", file=sys.stderr)

        # a restart on the same data directory: everything acknowledged is there
        # as soon as /readyz is 200 (readiness: the read models caught up)
        shop.start()
        shop.wait_ready()
        public = Client(shop.http_port)
        for pid in products:
            r = public.get(f"/products/{pid}")
            self.assertEqual(r.status, 200, (pid, r))
        customer.port, customer.conn = shop.http_port, None
        for oid in orders:
            r = customer.get(f"/orders/{oid}")
            self.assertEqual(r.status, 200, (oid, r))
        os.kill(shop.pid, signal.SIGTERM)
        code, took, running = shop.wait_gone(STOP_BOUND_S)
        self.assertEqual((code, running), (0, []), shop.serve.log()[-3000:])

    def test_sigint_to_the_process_group_stops_everything_and_loses_nothing(self):
        self.stop_and_check("group-sigint")

    def test_sigterm_to_orion_alone_stops_everything_and_loses_nothing(self):
        self.stop_and_check("sigterm")

    def test_a_stop_with_nats_already_gone_waits_on_nothing(self):
        """The nats-server killed first (a crash, an OOM kill): a stop must not
        wait on drains, flushes or consumer deletions over a connection that
        is gone."""
        shop = self.shop = Shop("nats-gone").start()
        shop.wait_ready()
        self.acknowledged_writes(shop)
        os.kill(shop.nats_pid, signal.SIGKILL)
        time.sleep(0.5)  # the roles see the connection drop
        os.kill(shop.pid, signal.SIGTERM)
        code, took, running = shop.wait_gone(STOP_BOUND_S)
        self.assertEqual(running, [], f"still running {took:.2f} s after the signal: {running}\n"
                                      f"{shop.serve.log()[-3000:]}")
        self.assertEqual(code, 0, shop.serve.log()[-3000:])
        print(f"\n  NATS gone first: everything gone {took:.2f} s after the signal", file=sys.stderr)

    def test_a_second_signal_exits_at_once(self):
        # An SMTP server that takes connections and never says a word: the
        # mail role is in a send (up to its timeouts) when the stop begins.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        held = []

        def hold():
            while True:
                try:
                    held.append(silent.accept()[0])
                except OSError:
                    return
        threading.Thread(target=hold, daemon=True).start()
        try:
            shop = self.shop = Shop("second", ORION_SMTP_URL=f"smtp://127.0.0.1:{silent.getsockname()[1]}")
            shop.start()
            shop.wait_ready()
            a = login(shop.http_port, ADMIN_EMAIL, ADMIN_PASSWORD)
            r = a.post("/admin/products", {"sku": unique("snd"), "name": "Second", "description": "e2e",
                                           "price_cents": 500, "currency": "EUR", "category": "e2e",
                                           "initial_stock": 5})
            self.assertEqual(r.status, 201, r)
            customer = register(shop.http_port, f"{unique('c')}@example.com")
            self.assertEqual(customer.post("/cart/items", {"product_id": r.json()["id"], "quantity": 1}).status, 200)
            self.assertEqual(customer.post("/orders", {}).status, 202)
            wait_until(lambda: held, 20, what="the confirmation email's connection to the silent SMTP server")

            os.killpg(shop.pid, signal.SIGINT)
            wait_until(lambda: '"msg":"stopping"' in shop.serve.log(), 5, interval=0.01, what="the stop to begin")
            self.assertIsNone(shop.serve.proc.poll(), "the first stop was to be still under way")
            os.killpg(shop.pid, signal.SIGINT)
            code, took, running = shop.wait_gone(STOP_BOUND_S)
            self.assertEqual(running, [], f"still running {took:.2f} s after the second signal: {running}\n"
                                          f"{shop.serve.log()[-3000:]}")
            self.assertEqual(code, 128 + signal.SIGINT, shop.serve.log()[-3000:])
            self.assertIn("stopped at once by a second signal", shop.serve.log())
            self.assertFalse(os.path.exists(os.path.join(shop.data_dir, "nats.url")))
            print(f"\n  second SIGINT: everything gone {took:.2f} s after it, exit {code}", file=sys.stderr)
        finally:
            silent.close()
            for c in held:
                c.close()


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


class StaleAddress(unittest.TestCase):
    def setUp(self):
        self.shop = Shop("stale").start()

    def tearDown(self):
        self.shop.close()

    def replay(self):
        return subprocess.run([os.environ["ORION_BIN"], "replay", "--from", "1"], env=self.shop.env(),
                              capture_output=True, text=True, timeout=60)

    def check_replay_starts_its_own_server(self, url):
        r = self.replay()
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        events = [l for l in r.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(any('"type":"UserRegistered"' in l for l in events), r.stdout[-2000:])
        notes = [l for l in r.stderr.splitlines() if "does not answer" in l]
        self.assertEqual(len(notes), 1, r.stderr[-3000:])
        self.assertIn(url, notes[0])
        self.assertNotIn("cannot connect", r.stderr)

    def test_a_nats_url_left_by_a_killed_serve_is_ignored(self):
        shop = self.shop
        shop.wait_ready()
        url_file = os.path.join(shop.data_dir, "nats.url")
        with open(url_file) as f:
            url = f.read().strip()
        shop.serve.kill9()  # its nats-server dies with it (PDEATHSIG)
        wait_until(lambda: not alive(shop.nats_pid), 10, what="the nats-server to die with orion")
        self.assertTrue(os.path.exists(url_file), "an unclean stop leaves nats.url")
        self.check_replay_starts_its_own_server(url)

    def test_a_nats_url_naming_a_closed_port_is_ignored(self):
        shop = self.shop
        shop.wait_ready()
        os.kill(shop.pid, signal.SIGTERM)
        self.assertEqual(shop.wait_gone(10)[0], 0)
        url = f"nats://127.0.0.1:{free_port()}"
        with open(os.path.join(shop.data_dir, "nats.url"), "w") as f:
            f.write(url + "\n")
        self.check_replay_starts_its_own_server(url)
        # a command that needs a running serve says there is none
        r = subprocess.run([os.environ["ORION_BIN"], "stock", "sku-1", "get"], env=shop.env(),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("no running `orion serve`", r.stderr)
        self.assertEqual(len([l for l in r.stderr.splitlines() if "does not answer" in l]), 1, r.stderr)

    def test_a_silent_address_is_not_taken_for_stale(self):
        """Something accepts at the recorded address and says nothing (as a
        starved serve might): the CLI must not start a second nats-server on
        the store; it tries the address and fails, saying it cannot connect."""
        shop = self.shop
        shop.wait_ready()
        os.kill(shop.pid, signal.SIGTERM)
        self.assertEqual(shop.wait_gone(10)[0], 0)
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            url = f"nats://127.0.0.1:{silent.getsockname()[1]}"
            with open(os.path.join(shop.data_dir, "nats.url"), "w") as f:
                f.write(url + "\n")
            r = self.replay()
        self.assertNotEqual(r.returncode, 0, r.stdout[-2000:])
        self.assertNotIn("does not answer", r.stderr)
        self.assertNotIn("nats-server ready", r.stderr, "a second nats-server was started")
        self.assertIn("cannot connect", r.stderr)


class ReadableMail(unittest.TestCase):
    def setUp(self):
        self.shop = Shop("mail").start()
        self.shop.wait_ready()

    def tearDown(self):
        self.shop.close()

    def confirmation_email(self, order_id):
        """(raw bytes, parsed message) of the order's confirmation email in the Maildir."""
        new = os.path.join(self.shop.data_dir, "mail", "new")

        def find():
            for name in os.listdir(new) if os.path.isdir(new) else []:
                with open(os.path.join(new, name), "rb") as f:
                    raw = f.read()
                if f"<{order_id}.awaiting_confirmation@orion>".encode() in raw:
                    return raw
            return None
        raw = wait_until(find, 20, what=f"the confirmation email of {order_id} in {new}")
        return raw, email.message_from_bytes(raw, policy=email.policy.default)

    def order(self, name):
        a = login(self.shop.http_port, ADMIN_EMAIL, ADMIN_PASSWORD)
        r = a.post("/admin/products", {"sku": unique("m"), "name": name, "description": "e2e", "price_cents": 450,
                                       "currency": "EUR", "category": "e2e", "initial_stock": 5})
        self.assertEqual(r.status, 201, r)
        customer = register(self.shop.http_port, f"{unique('c')}@example.com")
        self.assertEqual(customer.post("/cart/items", {"product_id": r.json()["id"], "quantity": 1}).status, 200)
        r = customer.post("/orders", {})
        self.assertEqual(r.status, 202, r)
        return customer, r.json()["id"]

    def decoded_link(self, message, order_id):
        text = message.get_body(preferencelist=("plain",)).get_content()
        m = re.search(r"(http://\S+/api/v1/orders/" + re.escape(order_id) + r"/confirm\?token=[A-Za-z0-9_-]+)", text)
        self.assertIsNotNone(m, text)
        return m.group(1)

    def test_the_confirmation_link_stands_whole_in_the_raw_file(self):
        customer, order_id = self.order("Plain Mug")
        raw, message = self.confirmation_email(order_id)
        pattern = (r"^http://127\.0\.0\.1:\d+/api/v1/orders/" + re.escape(order_id) +
                   r"/confirm\?token=[A-Za-z0-9_-]+$")
        lines = [l for l in raw.decode("ascii").split("\r\n") if re.match(pattern, l)]
        self.assertEqual(len(lines), 1, raw.decode("ascii", "replace")[:3000])
        self.assertEqual(lines[0], self.decoded_link(message, order_id))
        # the token read off the raw file confirms the order
        token = lines[0].split("token=", 1)[1]
        r = Client(self.shop.http_port).post(f"/orders/{order_id}/confirm", {"token": token})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "awaiting_payment")

    def test_a_name_with_an_accent_makes_the_parts_quoted_printable(self):
        customer, order_id = self.order("Caf\u00e9 cr\u00e8me 250 g")
        raw, message = self.confirmation_email(order_id)
        plain = message.get_body(preferencelist=("plain",))
        self.assertEqual(plain["Content-Transfer-Encoding"], "quoted-printable")
        self.assertIn("Caf\u00e9 cr\u00e8me 250 g", plain.get_content())
        link = self.decoded_link(message, order_id)
        raw_text = raw.decode("ascii")  # quoted-printable: the file is ASCII
        self.assertTrue(all(len(l) <= 78 for l in raw_text.split("\r\n")))
        self.assertIn("Caf=C3=A9 cr=C3=A8me 250 g", raw_text)
        self.assertIn(link.replace("=", "=3D"), raw_text.replace("=\r\n", ""))
        r = Client(self.shop.http_port).post(f"/orders/{order_id}/confirm", {"token": link.split("token=", 1)[1]})
        self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    unittest.main(verbosity=2)
