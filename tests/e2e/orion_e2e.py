"""orion_e2e — black-box test support: real processes on free loopback ports.

A Stack starts what a deployment has: a nats-server with JetStream, an SMTP
server (aiosmtpd writing a Maildir), optionally the card payment provider
sandbox (`orion psp-sandbox`, its state in a file), and `orion serve`
processes with chosen roles, all against one data directory. Everything is stopped by Stack.close(),
which the tests call in `finally`; every child also dies with the test
process (start_new_session + an atexit kill). Clients speak HTTP with the
standard library only, as any client of API.md would.

Email verification (ADR 031) is off in these stacks
(ORION_REQUIRE_EMAIL_VERIFICATION=0 in Stack.env): most tests are about
orders, and their fresh customers place them at once. A test of verification
turns it on (SERVE_ENV) and follows the emailed links (verification_link,
reset_link).
"""
import atexit
import email
import email.policy
import http.client
import json
import os
import sys
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

_children = []


def _kill_all():
    for p in _children:
        if p.poll() is None:
            p.kill()


atexit.register(_kill_all)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hold_port(port=0):
    """A socket bound to a loopback port and not listening, kept by the caller: no other
    process (another test's server) can take the port meanwhile, and a connection to it is
    refused, as to a server that is down."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    return s


def wait_port(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Process:
    """A child process with its output in a log file."""

    def __init__(self, argv, env, log_path):
        self.argv, self.env, self.log_path = argv, env, log_path
        self.proc = None
        self.log_offset = 0

    def start(self):
        try:
            self.log_offset = os.path.getsize(self.log_path)  # where this run's output begins
        except FileNotFoundError:
            self.log_offset = 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _children.append(self.proc)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def announced(self):
        """True once this run (since the last start) printed that it is running."""
        return "Orion is running" in self.log()[self.log_offset:]

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


class Stack:
    """nats-server + aiosmtpd + orion serve processes sharing one data dir."""

    def __init__(self, tag, orion_bin=None, env_extra=None):
        self.dir = tempfile.mkdtemp(prefix=f"orion-e2e-{tag}-")
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir)
        self.orion = orion_bin or os.environ["ORION_BIN"]
        self.nats = None
        self.smtp = None
        # held until the SMTP server starts: tests take it down for minutes (an outage),
        # and a port merely found free could meanwhile go to another test's server, which
        # would then get (or refuse) this stack's emails
        self.smtp_hold = hold_port()
        self.smtp_port = self.smtp_hold.getsockname()[1]
        self.mailbox_dir = os.path.join(self.dir, "mailbox")
        self.nats_port = free_port()
        self.nats_monitor_port = free_port()
        # learnt from the first gateway's announcement: it binds port 0, so no
        # other process can take a port found free here before serve binds it
        self.http_port = None
        self.serves = {}
        self.env_extra = dict(env_extra or {})
        self.psp = None
        self.psp_port = free_port()
        self.psp_key = "sk_test_orion"
        self.psp_state = os.path.join(self.dir, "psp-state.jsonl")
        self.psp_webhooks = True  # False: the sandbox keeps its events, sends none (no --webhook-url)
        self.psp_args = []  # more options of `orion psp-sandbox`

    # ---- servers ----
    def start_nats(self, auth=True):
        """nats-server; with auth (the default) a user per role (ADR 014): the
        credentials made by `orion nats-config --generate` and its block as the
        server's configuration, so every role runs with its own permissions."""
        store = os.path.join(self.dir, "nats")
        argv = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.nats_port), "-m",
                str(self.nats_monitor_port), "-sd", store]
        if auth:
            self.nats_credentials = os.path.join(self.dir, "nats-credentials")
            conf = os.path.join(self.dir, "nats-auth.conf")
            with open(conf, "w") as out:
                subprocess.run([self.orion, "nats-config", "--generate", "--credentials", self.nats_credentials],
                               stdout=out, env=self.env(), check=True)
            argv += ["-c", conf]
        self.nats = Process(argv, dict(os.environ), os.path.join(self.dir, "nats.log")).start()
        assert wait_port(self.nats_port), "nats-server did not start"

    def start_smtp(self):
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.mailbox_dir, sub), exist_ok=True)
        if self.smtp_hold:
            self.smtp_hold.close()
            self.smtp_hold = None
        self.smtp = Process(["/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.smtp_port}",
                             "-c", "aiosmtpd.handlers.Mailbox", self.mailbox_dir], dict(os.environ),
                            os.path.join(self.dir, "smtp.log")).start()
        assert wait_port(self.smtp_port), "aiosmtpd did not start"

    def stop_smtp(self):
        if self.smtp:
            self.smtp.stop(5)
            self.smtp = None
            self.smtp_hold = hold_port(self.smtp_port)  # down: refused, and nobody else's

    def start_psp(self):
        """The provider sandbox alone, its state in a file (it survives a restart);
        every `orion serve` started after this is pointed at it (ORION_PSP_URL).
        Its signed webhooks go to the gateway (ADR 028): once the first gateway
        has announced its port, the sandbox is started again with that URL."""
        argv = [self.orion, "psp-sandbox", "--listen", f"127.0.0.1:{self.psp_port}", "--key", self.psp_key,
                "--state", self.psp_state] + list(self.psp_args)
        if self.http_port is not None and self.psp_webhooks:
            argv += ["--webhook-url", f"http://127.0.0.1:{self.http_port}/api/v1/webhooks/psp"]
        if self.psp is None or self.psp.argv != argv:
            if self.psp is not None:
                self.psp.stop(10)
            self.psp = Process(argv, self.env(), os.path.join(self.dir, "psp.log"))
        self.psp.start()
        assert wait_port(self.psp_port), f"the psp sandbox did not listen:\n{self.psp.log()[-2000:]}"

    @property
    def psp_url(self):
        return f"http://127.0.0.1:{self.psp_port}"

    def intents(self, order_id):
        """The sandbox's payment intents of order_id, newest first
        (GET /v1/payment_intents?metadata[order_id]=)."""
        query = urllib.parse.urlencode({"metadata[order_id]": order_id})
        r = provider_call(self.psp_url, "GET", f"/v1/payment_intents?{query}", self.psp_key)
        assert r.status == 200, r
        return r.json()["data"]

    def charges(self, order_id):
        """The intents of order_id that charged the card (succeeded), each with
        `refunded` (all of it refunded), newest first."""
        return [dict(i, refunded=i.get("amount_refunded", 0) >= i["amount"]) for i in self.intents(order_id)
                if i["status"] == "succeeded"]

    def events(self, type_=None):
        """The sandbox's webhook events, newest first (GET /v1/events)."""
        query = "?" + urllib.parse.urlencode({"type": type_}) if type_ else ""
        r = provider_call(self.psp_url, "GET", f"/v1/events{query}", self.psp_key)
        assert r.status == 200, r
        return r.json()["data"]

    def env(self, **extra):
        env = dict(os.environ)
        for k in [k for k in env if k.startswith("ORION_")]:
            del env[k]
        env.update({
            "ORION_DATA_DIR": self.data_dir,
            "ORION_HTTP_ADDR": f"127.0.0.1:{self.http_port or 0}",
            "ORION_NATS_URL": f"nats://127.0.0.1:{self.nats_port}",
            "ORION_SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "ORION_ADMIN_EMAIL": "root@orion.test",
            "ORION_ADMIN_PASSWORD": "admin-password-1",
            "ORION_LOG_LEVEL": "info",
            # every test customer registers and logs in from 127.0.0.1, and keeps its
            # kept-alive connection: hundreds of clients at one address
            "ORION_AUTH_ADDRESS_BURST": "100000",
            "ORION_AUTH_ADDRESS_PER_MINUTE": "100000",
            "ORION_HTTP_MAX_CONNECTIONS_PER_ADDRESS": "100000",
            # hundreds of test customers: Argon2id with 8 MiB instead of 64 (the floor)
            "ORION_PASSWORD_MEMORY_KIB": "8192",
            # the flows leave many orders of one customer unpaid, in bursts, some of
            # more than 10 units: the limits of ADR 026 raised (the highest open
            # orders allowed), not weakened by default; tests/integration/
            # test_order_limits.c tests the defaults
            "ORION_MAX_OPEN_ORDERS": "16",
            "ORION_MAX_UNITS_PER_PRODUCT": "1000000",
            "ORION_ORDERS_BURST": "100000",
            "ORION_ORDERS_PER_MINUTE": "100000",
            # see the module's docstring: verification is the subject of test_verification.py only
            "ORION_REQUIRE_EMAIL_VERIFICATION": "0",
        })
        if getattr(self, "nats_credentials", None):
            env["ORION_NATS_CREDENTIALS"] = self.nats_credentials
        if self.psp is not None:
            env["ORION_PSP_URL"] = self.psp_url
            env["ORION_PSP_KEY"] = self.psp_key
        env.update(self.env_extra)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start_serve(self, name, roles=None, wait_http=False, **env):
        argv = [self.orion, "serve"] + (["--roles", roles] if roles else [])
        p = Process(argv, self.env(**env), os.path.join(self.dir, f"serve-{name}.log")).start()
        self.serves[name] = p
        wait_until(lambda: "Orion is running" in p.log() or not p.running(), 40, what=f"serve {name}")
        assert p.running(), f"serve {name} exited:\n{p.log()[-3000:]}"
        announced = re.search(r"Orion is running: http://127\.0\.0\.1:(\d+) ", p.log())
        if announced:
            port = int(announced.group(1))
            assert self.http_port in (None, port), (self.http_port, port)
            first = self.http_port is None
            self.http_port = port
            p.env["ORION_HTTP_ADDR"] = f"127.0.0.1:{port}"  # a restart of p keeps its port
            if first and self.psp is not None and self.psp.running() and self.psp_webhooks:
                self.start_psp()  # now with the gateway's webhook URL
        if wait_http:
            assert wait_port(self.http_port), "the gateway did not listen"
        return p

    def close(self):
        for p in self.serves.values():
            p.stop(20)
        if self.smtp:
            self.smtp.stop(5)
        if self.smtp_hold:
            self.smtp_hold.close()
        if self.psp:
            self.psp.stop(10)
        if self.nats:
            self.nats.stop(10)
        if os.environ.get("ORION_E2E_KEEP"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def print_problems(self, test, lines=40):
        """The last warning and error lines of every orion serve's log, to stderr."""
        for name, p in self.serves.items():
            bad = [l for l in p.log().splitlines() if '"level":"warn"' in l or '"level":"error"' in l
                   or "Sanitizer" in l or "runtime error" in l]
            print(f"--- {test} failed; serve {name}: {len(bad)} warning/error lines, the last {lines}:",
                  file=sys.stderr)
            for l in bad[-lines:]:
                print(l[:400], file=sys.stderr)

    def stream_messages(self, stream):
        """How many messages the JetStream stream holds now (the server's monitoring /jsz)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.nats_monitor_port, timeout=10)
        try:
            conn.request("GET", "/jsz?accounts=true&streams=true")
            doc = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        for account in doc.get("account_details") or []:
            for s in account.get("stream_detail") or []:
                if s["name"] == stream:
                    return s["state"]["messages"]
        raise AssertionError(f"no stream {stream}")

    # ---- mail ----
    def messages(self):
        """Every message the SMTP server received, parsed."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.mailbox_dir, sub)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                with open(os.path.join(d, name), "rb") as f:
                    out.append(email.message_from_bytes(f.read(), policy=email.policy.default))
        return out

    def client(self):
        return Client(self.http_port)


class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Client:
    """One keep-alive HTTP connection; not shared between threads."""

    def __init__(self, port, token=None):
        self.port, self.token = port, token
        self.conn = None

    def request(self, method, path, body=None, headers=None, raw=None, content_type=None):
        hdrs = {"Accept": "application/json"}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if content_type:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise

    def get(self, path, **kw):
        return self.request("GET", "/api/v1" + path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", "/api/v1" + path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", "/api/v1" + path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", "/api/v1" + path, **kw)


def login(port, email_addr, password):
    c = Client(port)
    r = c.post("/auth/login", {"email": email_addr, "password": password})
    assert r.status == 200, r
    c.token = r.json()["access_token"]
    c.email = email_addr
    return c


def login_or_none(port, email_addr, password):
    """A client logged in as email_addr, or None while the login is refused
    (the users read model may not have the account yet)."""
    c = Client(port)
    r = c.post("/auth/login", {"email": email_addr, "password": password})
    if r.status != 200:
        return None
    c.token = r.json()["access_token"]
    c.email = email_addr
    return c


def register(port, email_addr, password="customer-password-1", name="Customer"):
    c = Client(port)
    r = c.post("/auth/register", {"email": email_addr, "password": password, "name": name})
    assert r.status == 202 and r.json() == {"status": "verification_sent"}, r
    return login(port, email_addr, password)


def admin(stack):
    """The admin of ORION_ADMIN_EMAIL, once the users read model has it (serve
    creates the account at start-up; the model follows within moments)."""
    return wait_until(lambda: login_or_none(stack.http_port, "root@orion.test", "admin-password-1"), 15,
                      interval=0.2, what="the admin account")


class StackTestCase(unittest.TestCase):
    """A test class over one whole stack (nats-server, SMTP, every role in one
    `orion serve`, and the provider sandbox if PSP), started once for the class
    and always stopped. Subclasses set NAME (and PSP, SERVE_ENV) and may add
    set-up in set_up_class, which runs inside the same guard."""
    NAME = "stack"
    PSP = False
    SERVE_ENV = {}

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(cls.NAME)
        try:
            cls.stack.start_nats()
            cls.stack.start_smtp()
            if cls.PSP:
                cls.stack.start_psp()
            cls.stack.start_serve("all", wait_http=True, **cls.serve_env())
            cls.admin = admin(cls.stack)
            cls.set_up_class()
        except BaseException:
            cls.stack.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def run(self, result=None):
        """Runs the test; when it fails, prints the warnings and errors the
        servers logged (the stack's logs are deleted with it), so that a
        failure in CI says what the servers saw."""
        before = len(result.failures) + len(result.errors) if result is not None else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            self.stack.print_problems(f"{type(self).__name__}.{self._testMethodName}")
        return outcome

    @classmethod
    def serve_env(cls):
        return dict(cls.SERVE_ENV)

    @classmethod
    def set_up_class(cls):
        pass


def create_product(admin_client, sku, stock, price=1250, name=None):
    r = admin_client.post("/admin/products", {
        "sku": sku, "name": name or f"Product {sku}", "description": "e2e", "price_cents": price,
        "currency": "EUR", "category": "e2e", "initial_stock": stock})
    assert r.status == 201, r
    return r.json()["id"]


FINAL = {"confirmed", "cancelled", "payment_failed"}


def wait_status(client, order_id, statuses, timeout=20):
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)

    def check():
        r = client.get(f"/orders/{order_id}")
        return r.json() if r.status == 200 and r.json()["status"] in statuses else None
    return wait_until(check, timeout, interval=0.05, what=f"order {order_id} in {statuses}")


def confirmation_link(stack, order_id, timeout=15):
    """The confirm link of order_id from its awaiting_confirmation email."""
    def find():
        for m in stack.messages():
            if order_id not in (m["Subject"] or "") and order_id not in str(m.get("Message-ID", "")):
                continue
            text = m.get_body(preferencelist=("plain",))
            body = text.get_content() if text else ""
            match = re.search(r"(https?://\S+/orders/" + re.escape(order_id) + r"/confirm\?token=[A-Za-z0-9_-]+)",
                              body)
            if match:
                return match.group(1)
        return None
    return wait_until(find, timeout, what=f"the confirmation email of {order_id}")


def account_link(stack, to, kind, after=0, timeout=15):
    """The link of an account email of kind ("account_verify", "account_reset",
    "account_exists") to `to` once more than `after` of them arrived: (link of
    the newest, how many arrived). The verification link is
    <public url>/api/v1/auth/verify?token=..., the reset link the storefront's
    /reset-password?token=..."""
    def find():
        found = []
        for sub in ("new", "cur"):
            d = os.path.join(stack.mailbox_dir, sub)
            for name in os.listdir(d) if os.path.isdir(d) else []:
                path = os.path.join(d, name)
                with open(path, "rb") as f:
                    m = email.message_from_bytes(f.read(), policy=email.policy.default)
                if str(m["To"]) != to or str(m.get("X-Orion-Status", "")) != kind:
                    continue
                text = m.get_body(preferencelist=("plain",))
                match = re.search(r"(https?://\S+)", text.get_content() if text else "")
                found.append((os.stat(path).st_mtime_ns, match.group(1) if match else None))
        if len(found) <= after:
            return None
        return max(found)[1], len(found)
    return wait_until(find, timeout, what=f"a {kind} email to {to}")


def emails_by_order_status(stack):
    """{(order id, status): count} from the deterministic Message-IDs <order.status@orion>."""
    counts = {}
    for m in stack.messages():
        mid = str(m.get("Message-ID", ""))
        match = re.match(r"<([A-Za-z0-9_-]+)\.([a-z_]+)@orion>", mid.strip())
        if match:
            key = (match.group(1), match.group(2))
            counts[key] = counts.get(key, 0) + 1
    return counts


def parallel(fn, items, threads=50):
    """fn(item) for every item on `threads` threads; returns results in order, re-raises the first error."""
    results = [None] * len(items)
    errors = []
    lock = threading.Lock()
    index = [0]

    def worker():
        while True:
            with lock:
                i = index[0]
                index[0] += 1
            if i >= len(items) or errors:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # noqa: B902 - re-raised below
                errors.append(e)
                return
    ts = [threading.Thread(target=worker) for _ in range(min(threads, len(items)))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return results


def query_token(link):
    return urllib.parse.parse_qs(urllib.parse.urlparse(link).query)["token"][0]


# ---- payments (ADR 009, ADR 028) ----

HOLDER = "Grace Q. Cardholder"  # a holder name no file may ever contain
TEST_CVC = "737"


def provider_call(url, method, path, key, form=None, headers=None):
    """One request to the payment provider at url (its base): form-encoded
    body, Bearer key; the Reply."""
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    hdrs = {"Authorization": f"Bearer {key}"}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    hdrs.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def tokenize_at(provider_url, publishable_key, number, exp_month=12, exp_year=2030, cvc=TEST_CVC):
    """POST {provider_url}/v1/payment_methods with the publishable key: the pm_ id."""
    r = provider_call(provider_url, "POST", "/v1/payment_methods", publishable_key,
                      {"type": "card", "card[number]": number, "card[exp_month]": str(exp_month),
                       "card[exp_year]": str(exp_year), "card[cvc]": cvc})
    assert r.status == 200, r
    return r.json()["id"]


def tokenize(client, number, **card_fields):
    """Tokenizes a card as a browser does (ADR 028): the provider's URL and
    publishable key from GET /payments/config, then tokenize_at. The pm_ id."""
    r = client.get("/payments/config")
    assert r.status == 200, r
    config = r.json()
    return tokenize_at(config["provider_url"], config["publishable_key"], number, **card_fields)


def pay(client, order_id, number, key=None, **card_fields):
    """Tokenizes number at the provider, then pays order_id with the payment
    method: the Reply of POST /orders/{id}/payment."""
    method = tokenize(client, number, **card_fields)
    return client.post(f"/orders/{order_id}/payment", {"payment_method": method},
                       headers={"Idempotency-Key": key} if key else None)


def awaiting_payment(stack, client, product_id, quantity):
    """Puts quantity of product_id in the cart, places the order and confirms it
    with the token of its email; returns the order id (status awaiting_payment)."""
    r = client.post("/cart/items", {"product_id": product_id, "quantity": quantity})
    assert r.status == 200, r
    r = client.post("/orders", {})
    assert r.status == 202, r
    order_id = r.json()["id"]
    wait_status(client, order_id, "awaiting_confirmation")
    token = query_token(confirmation_link(stack, order_id))
    r = stack.client().post(f"/orders/{order_id}/confirm", {"token": token})
    assert r.status == 200 and r.json()["status"] == "awaiting_payment", r
    return order_id


# ---- the PCI scan ----
#
# A finding is either
# 1. any card number the tests sent (given as `numbers`), as ASCII digits
#    anywhere in any file, even inside a longer run of digits or letters;
# 2. any other run of 13 to 19 ASCII digits that is not part of a longer
#    alphanumeric token, has a card-like prefix (4 visa; 51-55 and 2221-2720
#    mastercard; 34, 37 amex; 6011, 644-649, 65 discover) and passes Luhn.
#    The prefix rule is what lets the scan see everything else without false
#    alarms: 13-digit millisecond and 19-digit nanosecond timestamps of this
#    century start with 1, and hex ids, hashes and base64 tokens are longer
#    alphanumeric tokens. No other exception is made;
# 3. a "cvc" key followed by a value: "cvc" (any case, also card[cvc] and
#    card%5Bcvc%5D) then up to 6 bytes that are not letters or digits (quotes,
#    colon, equals sign, a msgpack string header) or %XX escapes, and then 3
#    or 4 digits;
# 4. the holder name the tests sent (`texts`).
# Files are read whole in 8 MiB pieces that overlap by 64 bytes, binary or not.

_DIGIT_RUN = re.compile(rb"(?<![0-9A-Za-z])[0-9]{13,19}(?![0-9A-Za-z])")
_CVC_VALUE = re.compile(rb"(?i)cvc(?:[^0-9A-Za-z]|%[0-9A-Fa-f]{2}){0,6}[0-9]{3,4}(?![0-9])")
_CHUNK = 8 << 20
_OVERLAP = 64


def luhn_valid(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_like_prefix(digits):
    two, three, four = int(digits[:2]), int(digits[:3]), int(digits[:4])
    return (digits[0] == "4" or 51 <= two <= 55 or 2221 <= four <= 2720 or two in (34, 37) or four == 6011
            or 644 <= three <= 649 or two == 65)


def pci_findings(roots, numbers=(), texts=()):
    """Scans every file under roots; returns ([finding], {category: files scanned})."""
    needles = [n.encode() for n in numbers] + [t.encode() for t in texts]
    findings, scanned = [], {}
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                scanned[path] = True
                for what in _scan_file(path, needles):
                    findings.append(f"{path}: {what}")
    return findings, scanned


def _scan_file(path, needles):
    found = set()
    tail = b""
    offset = 0
    with open(path, "rb") as f:
        while True:
            piece = f.read(_CHUNK)
            if not piece:
                break
            data = tail + piece
            base = offset - len(tail)
            for n in needles:
                at = data.find(n)
                if at >= 0:
                    found.add(f"the test value {n[:4].decode()}... at byte {base + at}")
            for m in _DIGIT_RUN.finditer(data):
                digits = m.group().decode()
                if card_like_prefix(digits) and luhn_valid(digits):
                    found.add(f"a Luhn-valid card-like number {digits[:4]}...{digits[-4:]} at byte "
                              f"{base + m.start()}")
            for m in _CVC_VALUE.finditer(data):
                found.add(f"a cvc with a value at byte {base + m.start()}")
            offset += len(piece)
            tail = data[-_OVERLAP:]
    return sorted(found)
