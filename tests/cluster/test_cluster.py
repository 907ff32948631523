#!/usr/bin/python3
"""The cluster test (suite `cluster`; issue 6, item 4): Orion on a 3-node
JetStream cluster survives the loss of a NATS node and of one instance of
every role in the middle of a checkout load.

Layout, as README "Production layout" describes it, on loopback ports:
  - three nats-server processes clustered (routes), each with its own store
    and monitoring port, and a NATS user per role with only that role's
    permissions (`orion nats-config --generate`, ADR 014); Orion gets all
    three URLs in ORION_NATS_URL and ORION_STREAM_REPLICAS=3, so ORION_EVT,
    ORION_SNAP and the durable consumers are R3;
  - two `orion serve` instances of every role, one process per instance,
    each with its own ORION_DATA_DIR (its "host": read models, mail and
    payment markers are local) and the same ORION_JWT_SECRET, ORION_MASTER_KEY and admin
    account; two gateways on two HTTP ports, the clients spread over both;
  - one `orion psp-sandbox` and one SMTP server (aiosmtpd).

The load: CUSTOMERS customers each order one unit of one of PRODUCTS
products whose stock together is less than CUSTOMERS (oversell pressure),
confirm with the emailed link and pay with 4242...; WORKERS threads. Once
KILL_AFTER orders are accepted the test kill -9s the NATS node that leads
ORION_EVT (and restarts it RESTART_AFTER_S later) and kill -9s the "a"
instance of every role, which stay dead: the "b" instances carry the rest.
Clients retry a request on the other gateway after a connection error or a
502/503/504, with the same Idempotency-Key where the API takes one.

Then: every accepted order is readable and in a final state (or a waiting
state, listed); per product the stock actor's sold + reserved never exceed
the initial stock, sold equals the confirmed orders and reserved what the
live orders hold; every paid order has exactly one charge at the provider
and every email went out exactly once at the SMTP sink (per Message-ID, that
is per order and status), though two payment and two mail instances worked
side by side (ADR 024: their claims are appends with an expected version);
the streams and consumers are R3 with every replica current after the
restart; and `orion rebuild --verify` finds the surviving projectors' read
models equal to a fresh rebuild.

usage: ORION_BIN=build/cli/orion test_cluster.py [-v]
(ORION_E2E_KEEP=1 keeps the temp dir with every log.)"""
import email
import email.policy
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from orion_e2e import (FINAL, Client, Process, Stack, admin, tokenize_at, create_product, free_port,  # noqa: E402
                       wait_port, wait_until)

CUSTOMERS = 60
PRODUCTS = 3
STOCK_EACH = 15  # 45 units for 60 customers
WORKERS = 10
KILL_AFTER = 12  # accepted orders before the faults
RESTART_AFTER_S = 5
STEP_DEADLINE_S = 60  # how long one client step may keep retrying
APPROVE = "4242424242424242"
ROLES = ["stock", "product", "user", "cart", "order", "checkout", "payment", "mail", "projector", "gateway"]
WAITING = {"awaiting_confirmation", "awaiting_payment"}
RETRYABLE = {502, 503, 504}
_SANITIZER = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:")
_ORDER_ID = re.compile(r"\bo[0-9a-f]{32}\b")
_LINK = re.compile(r"/orders/([A-Za-z0-9_-]+)/confirm\?token=([A-Za-z0-9_-]+)")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def log(*args):
    print(" ", *args, file=sys.stderr, flush=True)


def serve_roles(orion):
    """The roles `orion serve` accepts: ROLES, plus timers once it exists."""
    out = subprocess.run([orion, "serve", "--help"], capture_output=True, text=True, timeout=20).stdout
    roles = list(ROLES)
    if re.search(r"\btimers\b", out):
        roles.append("timers")
    return roles


class NatsNode:
    """One nats-server of the cluster: client, route and monitoring ports."""

    def __init__(self, stack, index, route_ports):
        self.name = f"n{index}"
        self.port, self.monitor_port = free_port(), free_port()
        self.route_port = route_ports[index]
        self.conf = os.path.join(stack.dir, f"{self.name}.conf")
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in route_ports)
        with open(self.conf, "w") as f:
            f.write(f"server_name: {self.name}\n"
                    f"listen: 127.0.0.1:{self.port}\n"
                    f"http: 127.0.0.1:{self.monitor_port}\n"
                    f"jetstream {{ store_dir: \"{os.path.join(stack.dir, self.name)}\" }}\n"
                    f"include \"{os.path.basename(stack.auth_conf)}\"\n"
                    f"cluster {{\n  name: orion\n  listen: 127.0.0.1:{self.route_port}\n"
                    f"  routes: [ {routes} ]\n}}\n")
        self.process = Process(["nats-server", "-c", self.conf], dict(os.environ),
                               os.path.join(stack.dir, f"{self.name}.log"))

    def jsz(self, query=""):
        """The monitoring endpoint /jsz as JSON, None if the node does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/jsz{query}", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None


class ClusterStack(Stack):
    """Three clustered nats-servers and one `orion serve` process per role instance."""

    def __init__(self):
        super().__init__("cluster")
        # a NATS user per role with its permissions (ADR 014), as in production:
        # the credentials file every process reads, the server's authorization block
        self.nats_credentials = os.path.join(self.dir, "nats-credentials")
        self.auth_conf = os.path.join(self.dir, "nats-auth.conf")
        with open(self.auth_conf, "w") as out:
            subprocess.run([self.orion, "nats-config", "--generate", "--credentials", self.nats_credentials],
                           stdout=out, env=dict(os.environ), check=True, timeout=20)
        self.nodes = self.make_nodes()
        self.jwt_secret = secrets.token_hex(32)
        self.master_key = secrets.token_hex(32)  # every host opens the one keystore (ADR 027)
        self.gateway_ports = {}  # instance name -> HTTP port
        self.data_dirs = {}  # instance name -> ORION_DATA_DIR

    @property
    def nats_url(self):
        return ",".join(f"nats://127.0.0.1:{n.port}" for n in self.nodes)

    def make_nodes(self):
        route_ports = [free_port() for _ in range(3)]
        return [NatsNode(self, i, route_ports) for i in range(3)]

    def start_nats(self, attempts=3):
        """Starts the three nodes; a port that free_port() found free may be taken by
        another process before the node binds it: then new ports, up to attempts times."""
        for attempt in range(attempts):
            for n in self.nodes:
                n.process.start()
            late = [n for n in self.nodes if not wait_port(n.port)]
            if not late:
                break
            taken = any("address already in use" in n.process.log() for n in self.nodes)
            if not taken or attempt == attempts - 1:
                raise AssertionError(f"{late[0].name} did not listen:\n{late[0].process.log()[-2000:]}")
            log("a port was taken meanwhile; the nodes start again on new ports")
            for n in self.nodes:
                n.process.stop(10)
                shutil.rmtree(os.path.join(self.dir, n.name), ignore_errors=True)
            self.nodes = self.make_nodes()

        def one_leader():
            leaders = {((n.jsz() or {}).get("meta_cluster") or {}).get("leader") for n in self.nodes}
            return len(leaders) == 1 and None not in leaders and "" not in leaders
        wait_until(one_leader, 30, interval=0.2, what="the JetStream meta leader")

    def env(self, **extra):
        env = super().env()
        env.update({
            "ORION_NATS_URL": self.nats_url,
            "ORION_STREAM_REPLICAS": "3",
            "ORION_JWT_SECRET": self.jwt_secret,
            "ORION_MASTER_KEY": self.master_key,
            "ORION_SHARDS": "2",
            # the gateway gives up on a killed payment instance after 6 s, not 25
            "ORION_PAYMENT_TIMEOUT_MS": "6000",
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start_instances(self, specs):
        """Starts `orion serve --roles R` for every (name, R) or (name, R, env) of
        specs at once, each with a data dir of its own and env (a dict) over
        self.env(); waits until all announced."""
        procs = []
        for name, roles, *own_env in specs:
            data_dir = os.path.join(self.dir, "hosts", name)
            os.makedirs(data_dir, exist_ok=True)
            self.data_dirs[name] = data_dir
            extra = dict(own_env[0]) if own_env else {}
            extra["ORION_DATA_DIR"] = data_dir
            if "gateway" in roles.split(","):
                port = self.gateway_ports.setdefault(name, free_port())
                extra["ORION_HTTP_ADDR"] = f"127.0.0.1:{port}"
                extra["ORION_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
            else:
                extra["ORION_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
            p = Process([self.orion, "serve", "--roles", roles], self.env(**extra),
                        os.path.join(self.dir, f"serve-{name}.log")).start()
            self.serves[name] = p
            procs.append((name, p))
        for name, p in procs:
            wait_until(lambda: p.announced() or not p.running(), 60, interval=0.1, what=f"serve {name}")
            assert p.running(), f"serve {name} exited:\n{p.log()[-3000:]}"

    def stream_leader(self, stream="ORION_EVT"):
        for n in self.nodes:
            info = stream_info(n, stream)
            if info and (info.get("cluster") or {}).get("leader"):
                return next(m for m in self.nodes if m.name == info["cluster"]["leader"])
        return None

    def close(self):
        # SIGTERM everything at once, then wait: a serial stop of 20 processes is slow
        for p in self.serves.values():
            if p.running():
                p.proc.terminate()
        for p in self.serves.values():
            p.stop(20)
        for n in self.nodes:
            n.process.stop(10)
        # an ASan/UBSan build reports into the logs, mostly at exit
        self.sanitizer_reports = [f"{name}: {line.strip()}" for name, p in self.serves.items()
                                  for line in p.log().splitlines() if _SANITIZER.search(line)]
        super().close()


def stream_info(node, stream):
    """The stream's detail (config, cluster, consumers) as one node's monitor reports it."""
    jsz = node.jsz("?streams=true&consumers=true&config=true")
    for account in (jsz or {}).get("account_details") or []:
        for s in account.get("stream_detail") or []:
            if s.get("name") == stream:
                return s
    return None


def replica_states(stack):
    """Each node's own view of ORION_EVT (messages, first/last sequence): replicas that
    disagree after a failover would make read models built at different times differ."""
    out = {}
    for n in stack.nodes:
        info = stream_info(n, "ORION_EVT") or {}
        st = info.get("state") or {}
        out[n.name] = {k: st.get(k) for k in ("messages", "first_seq", "last_seq", "num_deleted")}
    return out


def stored_messages(node_dir, stream="ORION_EVT"):
    """{seq: (subject, digest of headers and data)} of one node's copy of stream, read
    from its file store (nats-server 2.9's message blocks: per record a 4-byte length
    whose top bit says "has headers", 8-byte sequence, 8-byte time, 2-byte subject
    length, the subject, the headers and data, an 8-byte hash). None when there is no
    such store or a block does not read as one (another server version's layout).
    Replicas are one Raft log: two copies that differ at a sequence are what no reader
    of Orion can tell apart (ADR 015 assumes they never do)."""
    out = {}
    blocks = []
    for root, _dirs, files in os.walk(node_dir):
        if os.path.basename(root) == "msgs" and os.path.basename(os.path.dirname(root)) == stream:
            blocks += [os.path.join(root, f) for f in files if f.endswith(".blk")]
    if not blocks:
        return None
    for path in sorted(blocks, key=lambda p: int(os.path.basename(p).split(".")[0])):
        with open(path, "rb") as f:
            b = f.read()
        i = 0
        while i + 22 <= len(b):
            length = int.from_bytes(b[i:i + 4], "little") & 0x7FFFFFFF
            if length < 30 or i + length > len(b):
                break  # the end, or a record being written
            seq = int.from_bytes(b[i + 4:i + 12], "little")
            subject_len = int.from_bytes(b[i + 20:i + 22], "little")
            if i + 22 + subject_len + 8 > i + length:
                return None
            subject = b[i + 22:i + 22 + subject_len].decode(errors="replace")
            erased = seq & (1 << 63)
            seq &= (1 << 62) - 1
            if subject and not erased:
                out[seq] = (subject, hash(b[i + 22 + subject_len:i + length - 8]))
            i += length
    return out


def replica_differences(stack, limit=10):
    """The sequences at which the nodes' copies of ORION_EVT hold different messages
    (each node's (subject, digest) there, None where a copy has none), up to limit, and
    how many there are; ([], 0) when the copies agree, None when a store cannot be read."""
    copies = [stored_messages(os.path.join(stack.dir, n.name)) for n in stack.nodes]
    if any(c is None for c in copies):
        return None
    last = min(max(c) if c else 0 for c in copies)  # a copy still catching up is not a difference
    differing = [seq for seq in range(1, last + 1) if len({c.get(seq) for c in copies}) > 1]
    return [(seq, [c.get(seq) for c in copies]) for seq in differing[:limit]], len(differing)


def consumer_replicas(stack):
    """{durable name: followers} of ORION_EVT's durable consumers, as the stream's leader
    reports them (the projectors' ordered consumers are ephemeral and R1 by design)."""
    info = leader_info(stack, "ORION_EVT") or {}
    return {c["name"]: len((c.get("cluster") or {}).get("replicas") or [])
            for c in info.get("consumer_detail") or [] if (c.get("config") or {}).get("durable_name")}


def leader_info(stack, stream):
    """The stream's detail as its leader reports it (a follower's view of the others may be stale)."""
    for n in stack.nodes:
        info = stream_info(n, stream)
        if info and (info.get("cluster") or {}).get("leader") == n.name:
            return info
    return None


class MailIndex:
    """The confirmation links by order id; each delivered message is parsed once."""

    def __init__(self, stack):
        self.stack = stack
        self.seen = set()
        self.links = {}
        self.lock = threading.Lock()

    def refresh(self):
        with self.lock:
            for sub in ("new", "cur"):
                d = os.path.join(self.stack.mailbox_dir, sub)
                for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                    if name in self.seen:
                        continue
                    self.seen.add(name)
                    with open(os.path.join(d, name), "rb") as f:
                        m = email.message_from_bytes(f.read(), policy=email.policy.default)
                    text = m.get_body(preferencelist=("plain",))
                    for order_id, token in _LINK.findall(text.get_content() if text else ""):
                        self.links.setdefault(order_id, token)

    def token(self, order_id, timeout):
        def find():
            self.refresh()
            return self.links.get(order_id)
        return wait_until(find, timeout, interval=0.2, what=f"the confirmation email of {order_id}")


class Customer:
    """A logged-in customer whose requests go to either gateway, with retries."""

    def __init__(self, ports, email_addr):
        self.ports = list(ports)
        self.email = email_addr
        self.token = None
        self.clients = {}
        self.retries = 0
        self.uncertain = False
        self.replays = 0  # 422/409 answers to a retry whose first attempt had gone through
        self.stale_answers = 0  # 200 answers whose order body was behind
        self.psp_url = None  # the provider sandbox cards are tokenized at (ADR 028)

    def _client(self, port):
        if port not in self.clients:
            self.clients[port] = Client(port)
        c = self.clients[port]
        c.token = self.token
        return c

    def call(self, method, path, body=None, headers=None, ok=(200,), deadline_s=STEP_DEADLINE_S):
        """The first reply whose status is not a retryable failure; a connection
        error or a 502/503/504 is retried on a random gateway (same headers)."""
        deadline = time.monotonic() + deadline_s
        last = None
        self.uncertain = False  # whether an attempt failed with an unknown outcome
        while True:
            port = random.choice(self.ports)
            try:
                r = self._client(port).request(method, "/api/v1" + path, body=body, headers=headers)
                if r.status not in RETRYABLE:
                    return r
                last = r
            except OSError as e:  # connection refused or reset by a killed gateway
                last = e
            self.retries += 1
            self.uncertain = True
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: still failing after {deadline_s}s: {last!r}")
            time.sleep(0.2)

    def register(self, password="customer-password-1"):
        r = self.call("POST", "/auth/register", {"email": self.email, "password": password, "name": "C"})
        assert r.status == 202, r  # a retried registration that had gone through answers the same (ADR 031)

        def login():  # 401 until the other gateway's users model has the account
            r = self.call("POST", "/auth/login", {"email": self.email, "password": password})
            assert r.status in (200, 401), r
            return r.json()["access_token"] if r.status == 200 else None
        self.token = wait_until(login, 20, interval=0.1, what=f"the login of {self.email}")

    def pay(self, order_id, key):
        """Pays with 4242... until the order is confirmed, always with the same key.

        A 409 follows a first attempt whose answer was lost: the payment went
        through (wrong_state, from a gateway without that attempt's record) or
        is still under way (in_progress, the payment instance works on it, or
        worked on it before it was killed). The order's status tells; while it
        still awaits payment the same request is sent again: the key keeps it
        to one charge, which the test checks at the provider."""
        deadline = time.monotonic() + STEP_DEADLINE_S
        # tokenized once: a retry sends the same body with the same key
        body = {"payment_method": tokenize_at(self.psp_url, "pk_test_orion", APPROVE)}
        while True:
            r = self.call("POST", f"/orders/{order_id}/payment", body, headers={"Idempotency-Key": key})
            if r.status == 200 and r.json()["status"] == "confirmed":
                return
            if r.status == 200:
                # paid, but the body came from a read model that had not caught up
                # (seen after the faults: still awaiting_confirmation); the order tells
                self.stale_answers += 1
                assert self.order(order_id, FINAL)["status"] == "confirmed", r
                return
            assert r.status == 409, r
            self.replays += 1
            order = self.order(order_id, FINAL, timeout=3, required=False)
            if order is not None:
                assert order["status"] == "confirmed", (r, order)
                return
            assert time.monotonic() < deadline, f"order {order_id} still not paid; last answer {r!r}"

    def order(self, order_id, statuses, timeout=STEP_DEADLINE_S, required=True):
        """The order once either gateway's model shows it in one of statuses; after
        timeout an AssertionError, or None if not required."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.call("GET", f"/orders/{order_id}")
            if r.status == 200 and r.json()["status"] in statuses:
                return r.json()
            if time.monotonic() > deadline:
                assert not required, f"order {order_id} not in {statuses} after {timeout}s: {r!r}"
                return None
            time.sleep(0.1)


class Cluster(unittest.TestCase):
    def test_checkout_load_survives_a_nats_node_and_one_instance_of_every_role(self):
        stack = ClusterStack()
        try:
            self.run_scenario(stack)
        finally:
            stack.close()
        self.assertEqual(stack.sanitizer_reports, [])

    def run_scenario(self, stack):
        started = time.monotonic()
        roles = serve_roles(stack.orion)
        log(f"roles: {', '.join(roles)} ({'with' if 'timers' in roles else 'without'} timers)")
        stack.start_nats()
        stack.start_smtp()
        stack.start_psp()
        # the user role first: every instance's start-up creates the admin account
        # through it; one instance alone creates the streams and the account
        stack.start_instances([("user-a", "user")])
        stack.start_instances([("user-b", "user")])
        # the actors of orders and stock log every answer (debug): a lost step's
        # "log lines that name" its order then say who answered what, on which position
        debug = {"ORION_LOG_LEVEL": "debug"}
        stack.start_instances([(f"{role}-{x}", role, debug) if role in ("order", "stock") else (f"{role}-{x}", role)
                               for role in roles if role != "user" for x in "ab"])
        gateways = [stack.gateway_ports["gateway-a"], stack.gateway_ports["gateway-b"]]
        stack.http_port = gateways[0]
        log(f"stack up in {time.monotonic() - started:.1f}s")

        a = admin(stack)
        products = [create_product(a, unique("sku"), STOCK_EACH, price=1000 + i) for i in range(PRODUCTS)]
        for port in gateways:  # both read models have the catalog before anyone orders
            for p in products:
                wait_until(lambda: Client(port).get(f"/products/{p}").status == 200, 20,
                           what=f"product {p} on :{port}")
        customers = [Customer(gateways, f"{unique('c')}@example.com") for _ in range(CUSTOMERS)]
        for c in customers:
            c.psp_url = stack.psp_url
        errors = []
        run_threads(lambda c: c.register(), customers, WORKERS, errors)
        self.assertEqual(errors, [])
        log(f"{CUSTOMERS} customers registered at {time.monotonic() - started:.1f}s")

        mail = MailIndex(stack)
        accepted = {}  # order id -> (product id, customer)
        outcomes = {}  # order id -> the status the client ended with
        lock = threading.Lock()
        enough = threading.Event()

        def shop(item):
            index, c = item
            product = products[index % PRODUCTS]
            key = f"order-{index}"
            r = c.call("POST", "/cart/items", {"product_id": product, "quantity": 1})
            assert r.status == 200, r
            # a retried add may have added twice: PUT sets the line, retries included
            r = c.call("PUT", f"/cart/items/{product}", {"quantity": 1})
            assert r.status == 200, r
            r = c.call("POST", "/orders", {}, headers={"Idempotency-Key": key})
            if r.status == 422:
                # "The cart is empty" from a gateway whose read models are behind:
                # the cart was filled through the other gateway and this one's carts
                # model has not seen it yet, or a first attempt placed the order (the
                # saga emptied the cart) but its answer was lost and this gateway's
                # orders model does not have the order of the key yet. The same key
                # again converges in both cases (202 with the one order).
                c.replays += 1
                r = wait_until(lambda: placed_again(c, key), STEP_DEADLINE_S, interval=0.2,
                               what=f"the order of key {key} on a retry")
            # 200: placed before (a retry whose first attempt went through: the
            # order as it is now, API.md); 202: placed by this request
            assert r.status in (200, 202), r
            order_id = r.json()["id"]
            with lock:
                accepted[order_id] = (product, c)
                if len(accepted) >= KILL_AFTER:
                    enough.set()
            order = c.order(order_id, {"awaiting_confirmation"} | FINAL)
            if order["status"] == "awaiting_confirmation":
                token = mail.token(order_id, STEP_DEADLINE_S)
                r = c.call("POST", f"/orders/{order_id}/confirm", {"token": token})
                if r.status == 409 and c.uncertain:  # a retry whose first attempt went through
                    c.replays += 1
                    c.order(order_id, {"awaiting_payment"} | FINAL)
                else:
                    assert r.status == 200, r
                c.pay(order_id, f"pay-{index}")
            with lock:
                outcomes[order_id] = c.order(order_id, FINAL)["status"]

        killed = []
        kill_times = {}  # instance name -> time.time() of its kill -9

        def chaos():
            if not enough.wait(120):
                return
            node = stack.stream_leader() or stack.nodes[0]
            log(f"kill -9 {node.name} (the ORION_EVT leader) after {len(accepted)} accepted orders")
            node.process.kill9()
            kill_times["nats"] = time.time()
            for name in sorted(stack.serves):
                if name.endswith("-a"):
                    stack.serves[name].kill9()
                    kill_times[name] = time.time()
                    killed.append(name)
            log(f"kill -9 {', '.join(killed)}")
            time.sleep(RESTART_AFTER_S)
            node.process.start()
            log(f"{node.name} restarted")

        chaos_thread = threading.Thread(target=chaos)
        chaos_thread.start()
        load_started = time.monotonic()
        run_threads(shop, list(enumerate(customers)), WORKERS, errors)
        enough.set()
        chaos_thread.join()
        log(f"load done in {time.monotonic() - load_started:.1f}s, {sum(c.retries for c in customers)} retries, "
            f"{sum(c.replays for c in customers)} answers 409/422 from a lagging gateway or to a retry, "
            f"{sum(c.stale_answers for c in customers)} payment 200s with a stale order")
        for e in errors:
            log(f"customer failed: {e!r}")
        for order_id in sorted({o for e in errors for o in _ORDER_ID.findall(str(e))})[:3]:
            explain_order(stack, order_id)
        if errors:
            log(f"---- the nodes' copies of ORION_EVT: {replica_states(stack)}; "
                f"differences (seq, [n0, n1, n2]) and count: {replica_differences(stack)}")
        repaired = [line for name, p in stack.serves.items() if name.startswith("checkout-")
                    for line in p.log().splitlines() if "saga step repaired" in line]
        log(f"{len(repaired)} saga steps repaired by the sweeper (events the durable consumer lost)")
        for line in repaired[:5]:
            log(line[:300])
        self.assertEqual(len(killed), len(roles), "the faults were not injected during the load")
        for name in killed:
            self.assertFalse(stack.serves[name].running(), name)
        survivors = [n for n in stack.serves if n.endswith("-b")]
        for name in survivors:
            self.assertTrue(stack.serves[name].running(), f"{name} died:\n{stack.serves[name].log()[-3000:]}")

        # ---- no order lost, every order in a valid state ----
        a.port, a.conn = stack.gateway_ports["gateway-b"], None  # gateway-a is dead
        final = {}
        by_status = {}
        for order_id, (product, owner) in accepted.items():
            owner.ports = [stack.gateway_ports["gateway-b"]]
            try:
                order = owner.order(order_id, FINAL | WAITING, timeout=30)
            except AssertionError:
                explain_order(stack, order_id)
                raise
            final[order_id] = order
            by_status.setdefault(order["status"], []).append(order_id)
        log("final states: " + ", ".join(f"{s} {len(ids)}" for s, ids in sorted(by_status.items())))
        waiting = {s: ids for s, ids in by_status.items() if s in WAITING}
        if waiting:
            log(f"orders in a waiting state: {waiting}")
        self.assertLessEqual(set(by_status), FINAL | WAITING)
        for order_id, status in outcomes.items():
            self.assertEqual(final[order_id]["status"], status, order_id)

        # ---- no oversell: the stock actors' own state ----
        for product in products:
            ids = [o for o, (p, _) in accepted.items() if p == product]
            sold = sum(1 for o in ids if final[o]["status"] == "confirmed")
            held = sum(1 for o in ids if final[o]["status"] in WAITING)
            # A confirmed order's commit (reserved -> sold) and a cancelled one's
            # release follow its status; a killed checkout instance's unacked events
            # reach the survivor after the saga's AckWait (30 s).
            try:
                state = wait_until(lambda: settled_stock(stack, product, sold, held), 45, interval=0.5,
                                   what=f"the stock of {product} to settle")
            except AssertionError:
                state = stock_state(stack, product)  # the asserts below say what differs
                explain_stock(stack, product, {o: final[o]["status"] for o in ids})
            on_hand, reserved = state["on_hand"], state["reserved"]
            log(f"{product}: sold {sold}, reserved {reserved}, on hand {on_hand} of {STOCK_EACH}")
            self.assertEqual(STOCK_EACH - on_hand, sold, f"{product}: units gone != confirmed orders")
            self.assertLessEqual(sold + reserved, STOCK_EACH, f"{product}: oversold")
            self.assertEqual(reserved, held, f"{product}: reserved != what the live orders hold")
            view = wait_until(lambda: settled_view(a, product, on_hand, reserved), 20,
                              what=f"the inventory model of {product}")
            self.assertEqual(view["available"], on_hand - reserved)
        confirmed = by_status.get("confirmed", [])
        self.assertLessEqual(len(confirmed), PRODUCTS * STOCK_EACH)
        self.assertGreater(len(confirmed), 0)

        self.assertEqual(errors, [], f"{len(errors)} customers failed (logged above)")
        self.assertEqual(len(accepted), CUSTOMERS)

        # ---- one charge per paid order, none twice (ADR 024: two payment instances) ----
        # The payment claims its attempt in the payment aggregate (an append with an
        # expected version) before it calls the provider, and the provider's
        # idempotency key keeps one charge per key: one charge object per paid order,
        # none for the others, whichever instance took the request.
        for order_id in accepted:
            charges = stack.charges(order_id)
            succeeded = [ch for ch in charges if ch["status"] == "succeeded"]
            paid = final[order_id]["status"] == "confirmed"
            self.assertEqual(len(succeeded), 1 if paid else 0,
                             f"{order_id} ({final[order_id]['status']}): {succeeded}")
            self.assertEqual(len(charges), 1 if paid else 0,
                             f"{order_id} ({final[order_id]['status']}): charged {len(charges)} times: {charges}")

        # ---- every email exactly once at the SMTP sink (ADR 024: two mail instances) ----
        # Each email is claimed in its delivery log (an append with an expected
        # version) before it is sent, so the two instances never both send it. One
        # window is left by design (ADR 013, 024): an instance killed after the SMTP
        # server's 250 and before it recorded the sending; its claim runs out and
        # the other instance sends a second copy (same Message-ID). The record is
        # an append, which stalls while the stream elects a new leader after the
        # NATS node's kill, so the window runs from just before that kill to
        # mail-a's. A second copy is accepted only for an email whose first copy
        # arrived then, and is logged.
        expected = {}
        for order_id in accepted:
            status = final[order_id]["status"]
            path = {"confirmed": ("awaiting_confirmation", "awaiting_payment", "confirmed"),
                    "awaiting_payment": ("awaiting_confirmation", "awaiting_payment"),
                    "awaiting_confirmation": ("awaiting_confirmation",),
                    "cancelled": ("cancelled",),
                    "payment_failed": ("awaiting_confirmation", "awaiting_payment", "payment_failed")}[status]
            for s in path:
                expected[(order_id, s)] = status
        # a killed instance's claims run out (30 s) before the other sends those emails
        try:
            wait_until(lambda: not [k for k in expected if k not in email_copies(stack)], 90, interval=1,
                       what="every email of every order")
        except AssertionError:
            missing = sorted(k for k in expected if k not in email_copies(stack))
            raise AssertionError(f"{len(missing)} emails never arrived: {missing[:10]}") from None
        time.sleep(2)  # a late second copy would land now
        copies = email_copies(stack)
        mail_killed, nats_killed = kill_times.get("mail-a"), kill_times.get("nats")
        twice, window = {}, {}
        for key, times in copies.items():
            if len(times) == 1:
                continue
            first = min(times)
            if len(times) == 2 and mail_killed is not None and nats_killed - 1.0 <= first <= mail_killed + 0.2:
                window[key] = times
            else:
                twice[key] = times
        if window:
            log(f"second copies from the kill window of mail-a (sent, not yet recorded): {window}")
        self.assertEqual(twice, {}, "emails sent more than once")
        self.assertLessEqual(len(window), 4, f"too many emails in the kill window: {window}")
        order_keys = {k for k in copies if k[0] in accepted}
        log(f"{len(order_keys)} order emails, each once"
            f"{f' ({len(window)} second copies from the kill window)' if window else ''}")

        # ---- R3, every replica current after the restart ----
        seen = {}

        def replicated():
            for stream in ("ORION_EVT", "ORION_SNAP"):
                info = leader_info(stack, stream) or {}
                replicas = (info.get("cluster") or {}).get("replicas") or []
                seen[stream] = {"num_replicas": (info.get("config") or {}).get("num_replicas"),
                                "cluster": info.get("cluster")}
                if seen[stream]["num_replicas"] != 3 or len(replicas) != 2 or \
                        not all(r.get("current") for r in replicas):
                    return None
            # a durable consumer's replicas follow the stream's (its config says 0)
            seen["consumers"] = consumer_replicas(stack)
            return seen["consumers"] and all(n == 2 for n in seen["consumers"].values())
        try:
            # a follower that restarted or fell behind under the load catches up by
            # itself; on this shared 2-core box under the sanitizers that took more than
            # 30 s once (CI run 8: n2 not current after 30 s, every order settled)
            wait_until(replicated, 90, interval=0.5, what="ORION_EVT and ORION_SNAP R3 with current replicas")
        except AssertionError as e:
            raise AssertionError(f"{e}: {json.dumps(seen)}") from None
        self.assertLessEqual({"orion_checkout", "orion_payment", "orion_mail"}, set(seen["consumers"]))
        log(f"R3: ORION_EVT, ORION_SNAP and the durable consumers {', '.join(sorted(seen['consumers']))}")
        # ---- the replicas hold the same log (what every reader of ADR 015 assumes) ----
        differences = replica_differences(stack)
        if differences is None:
            log("the nodes' stores could not be compared (another file store layout)")
        else:
            self.assertEqual(differences[1], 0, f"the nodes' copies of ORION_EVT differ at {differences[1]} "
                             f"sequences (n0, n1, n2): {differences[0]}")
            log("the three copies of ORION_EVT hold the same messages")

        # ---- the surviving read models equal a fresh rebuild ----
        for name in ("projector-b", "gateway-b"):
            r = subprocess.run([stack.orion, "rebuild", "--verify"],
                               env=stack.env(ORION_DATA_DIR=stack.data_dirs[name]), capture_output=True,
                               text=True, timeout=120)
            self.assertEqual(r.returncode, 0, f"orion rebuild --verify on {name}:\n{r.stdout[-2000:]}"
                             f"{r.stderr[-2000:]}\nreplicas: {replica_states(stack)}")
        log(f"total {time.monotonic() - started:.1f}s")


def explain_order(stack, order_id):
    """Prints what a stuck order's story is: its events across every aggregate
    (`orion replay --order`), the checkout saga's consumer as each node sees it,
    and the log lines that name the order. CI keeps only the output."""
    log(f"---- order {order_id}: its events")
    r = subprocess.run([stack.orion, "replay", "--order", order_id], env=stack.env(), capture_output=True,
                       text=True, timeout=60)
    for line in (r.stdout.splitlines() or [f"(replay exit {r.returncode}: {r.stderr[-500:]})"])[:60]:
        log(line[:400])
    log(f"---- where each node's copy of ORION_EVT holds orion.evt.order.{order_id}")
    for n in stack.nodes:
        copy = stored_messages(os.path.join(stack.dir, n.name))
        seqs = sorted(q for q, (subject, _) in (copy or {}).items() if subject == f"orion.evt.order.{order_id}")
        log(n.name, "unreadable store" if copy is None else seqs)
    log("---- the durable consumers of ORION_EVT, as each node reports them")
    for n in stack.nodes:
        info = stream_info(n, "ORION_EVT") or {}
        for c in info.get("consumer_detail") or []:
            if (c.get("config") or {}).get("durable_name"):
                log(n.name, c.get("name"), json.dumps({k: c.get(k) for k in (
                    "delivered", "ack_floor", "num_ack_pending", "num_redelivered", "num_waiting", "num_pending")}),
                    json.dumps((c.get("cluster") or {}).get("leader")))
    log(f"---- log lines that name {order_id}")
    for name, p in sorted(stack.serves.items()):
        lines = [line for line in p.log().splitlines() if order_id in line]
        for line in lines[-15:]:
            log(f"{name}: {line[:400]}")


def explain_stock(stack, product, statuses):
    """Prints, for a stock item whose counts do not match its orders', its events and
    the orders whose status and stock story disagree (confirmed but not committed, or
    holding nothing while waiting), each explained by explain_order."""
    r = subprocess.run([stack.orion, "replay", "--aggregate", "stock", "--id", product], env=stack.env(),
                       capture_output=True, text=True, timeout=60)
    lines = r.stdout.splitlines()
    log(f"---- stock item {product}: {len(lines)} events (replay exit {r.returncode})")
    story = {}
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        text = json.dumps(ev.get("data"))
        for order_id in statuses:
            if order_id in text:
                story.setdefault(order_id, []).append(f"{ev.get('seq')}:{ev.get('type')}")
    odd = []
    for order_id, status in sorted(statuses.items()):
        events = story.get(order_id, [])
        committed = any(e.endswith(":StockCommitted") for e in events)
        if (status == "confirmed") != committed:
            odd.append(order_id)
            log(f"{order_id} {status}: {' '.join(events) or 'no stock event'}")
    for order_id in odd[:2]:
        explain_order(stack, order_id)


def email_copies(stack):
    """{(order id, status): [arrival time of each copy]} at the SMTP sink, from the
    deterministic Message-IDs <order.status@orion> and the Maildir files' times."""
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(stack.mailbox_dir, sub)
        for name in os.listdir(d) if os.path.isdir(d) else []:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                m = email.message_from_bytes(f.read(), policy=email.policy.default)
            match = re.match(r"<([A-Za-z0-9_-]+)\.([a-z_]+)@orion>", str(m.get("Message-ID", "")).strip())
            if match:
                out.setdefault((match.group(1), match.group(2)), []).append(os.path.getmtime(path))
    return out


def placed_again(customer, key):
    r = customer.call("POST", "/orders", {}, headers={"Idempotency-Key": key})
    assert r.status in (200, 202, 422), r
    return r if r.status in (200, 202) else None


def settled_view(admin_client, product, on_hand, reserved):
    r = admin_client.get(f"/admin/products/{product}")
    if r.status == 200 and (r.json()["on_hand"], r.json()["reserved"]) == (on_hand, reserved):
        return r.json()
    return None


def settled_stock(stack, product, sold, held):
    """The stock state once its counts match the orders' (one more read after a mismatch may pass)."""
    state = stock_state(stack, product)
    assert 0 <= state["reserved"] <= state["on_hand"], f"{product} oversold: {state}"
    return state if (STOCK_EACH - state["on_hand"], state["reserved"]) == (sold, held) else None


def stock_state(stack, product):
    """The stock actor's state of product, from `orion stock ID get` (not a read model)."""
    r = subprocess.run([stack.orion, "stock", product, "get"], env=stack.env(), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-2000:])
    return json.loads(r.stdout)["state"]


def run_threads(fn, items, threads, errors):
    """fn(item) for every item on `threads` threads; failures go to errors (all items run)."""
    queue = list(items)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop(0)
            try:
                fn(item)
            except BaseException as e:  # noqa: B902 - reported by the caller
                with lock:
                    errors.append(e)
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


if __name__ == "__main__":
    unittest.main(verbosity=2)
