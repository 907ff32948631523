#!/usr/bin/python3
"""The migration of a log written before ADR 027 (ADR 032), through the whole stack.

The store is tests/fixtures/legacy-store.tar.gz: written by `orion serve` of
commit 251de20, before personal data was sealed (tests/fixtures/
make_legacy_store.py): an admin and three customers with clear emails, names
and password hashes on public-hash subjects, their orders and emails, the
snapshots, and the durable consumers of the side-effect roles. On a real
nats-server with a user per role (the migration runs as ops):
- the migration refuses while `orion serve` runs;
- it is killed (SIGKILL) in the middle of the copy, right after the old stream
  is deleted, and in the middle of the copy back; each next run goes on, and
  the last one completes;
- `--verify` passes; a second run changes nothing (the stream's files are the
  same bytes);
- a scan of every file of the NATS store (the snapshots' too) finds none of
  the fixture's emails, names, password hashes or public-hash subjects, and
  at the end neither does a scan of every file Orion wrote;
- `orion replay` shows the customers' fields opened; `orion rebuild
  --verify` (a full rebuild equals the live read models built after the
  migration) and `orion verify-log` pass;
- through `orion serve`, the migrated customers log in with their old
  password (the blind index finds them) and see their orders.
And with the embedded server (no ORION_NATS_URL): refused while `orion serve`
runs on the data directory, migrated once it stopped. And migrated before the
new version first starts (the README's way): every account moves to its blind
index, the start-up admin's too, and logs in with its old password.

usage: ORION_BIN=build/cli/orion test_migrate_personal_data.py [-v]"""
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tarfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (Client, Process, Stack, emails_by_order_status, login_or_none,  # noqa: E402
                       wait_until)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


def public_hash_subject(email):
    """The user subject of an email before ADR 027: BLAKE2b-128 keyed with a public constant."""
    return "u" + hashlib.blake2b(email.encode(), digest_size=16, key=b"orion.user.email").hexdigest()


def extract_fixture(dest):
    """tests/fixtures/legacy-store.tar.gz (a directory nats/) into dest."""
    with tarfile.open(os.path.join(FIXTURES, "legacy-store.tar.gz")) as tar:
        # the "data" filter where this Python has it (3.11.4+): plain files only
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def store_files(root):
    """{path: bytes} of every file under root."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    files[path] = f.read()
    return files


class MigratePersonalData(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(FIXTURES, "legacy-store.json")) as f:
            cls.fixture = json.load(f)
        cls.stack = Stack("migrate")
        try:
            extract_fixture(cls.stack.dir)  # nats/: the store of the fixture
            cls.nats_dir = os.path.join(cls.stack.dir, "nats")
            cls.stack.start_nats()  # per-role users (ADR 014): the migration runs as ops
            cls.stack.start_smtp()
            cls.stack.start_psp()
        except BaseException:
            cls.stack.close()  # tearDownClass does not run after a failed setUpClass
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def orion(self, *args, **env):
        return subprocess.run([self.stack.orion, *args], env=self.stack.env(**env), capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)

    def needles(self):
        """What must not be in the store after the migration: the fixture's clear
        values, and every public-hash subject (anyone holding an address could
        compute it)."""
        customers = self.fixture["customers"]
        values = [c["email"] for c in customers] + [c["name"] for c in customers if c["name"]]
        values += [public_hash_subject(c["email"]) for c in customers]
        return values + self.hashes

    def scan(self, root=None, spare=()):
        """The needles found in the files under root (the NATS store by default);
        the SMTP server's mailbox and log are the customers' side, not Orion's."""
        root = root or self.nats_dir
        skipped = (os.path.join(self.stack.dir, "mailbox"), os.path.join(self.stack.dir, "smtp.log"))
        found = []
        for path, data in store_files(root).items():
            if path.startswith(skipped):
                continue
            found += [f"{os.path.relpath(path, root)}: {n[:16]}" for n in self.needles()
                      if n not in spare and n.encode() in data]
        return found

    def consumer_floors(self):
        """{durable: ack floor (stream sequence)} of ORION_EVT (the server's monitoring /jsz)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.nats_monitor_port, timeout=10)
        try:
            conn.request("GET", "/jsz?accounts=true&streams=true&consumers=true")
            doc = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return {c["name"]: c["ack_floor"]["stream_seq"] for a in doc.get("account_details") or []
                for s in a.get("stream_detail") or [] if s["name"] == "ORION_EVT"
                for c in s.get("consumer_detail") or []}

    def test_migration(self):
        # the fixture holds clear personal data: the scan below can find it
        before = self.orion("replay", "--aggregate", "user")
        self.assertEqual(before.returncode, 0, before.stderr)
        registered = [json.loads(l) for l in before.stdout.splitlines() if '"UserRegistered"' in l]
        self.hashes = [e["data"]["password_hash"] for e in registered]
        self.assertEqual(sorted(e["data"]["email"] for e in registered),
                         sorted(c["email"] for c in self.fixture["customers"]))
        self.assertTrue(all(e["subject"].endswith(public_hash_subject(e["data"]["email"])) for e in registered))
        self.assertTrue(self.scan(), "the fixture's store holds the clear values")
        r = self.orion("migrate-personal-data", "--verify")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("a clear personal field", r.stdout, "--verify on the old log names what is clear")

        # refused while the shop runs
        self.stack.start_serve("all", wait_http=True)
        r = self.orion("migrate-personal-data", "--quiet")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("the shop is running", r.stderr)
        self.stack.serves["all"].stop(20)
        floors = self.consumer_floors()
        self.assertIn("orion_mail", floors)

        # killed in the copy, after the delete, in the copy back: each run goes on
        for point in ("copy:20", "deleted", "back:10"):
            r = self.orion("migrate-personal-data", "--quiet", ORION_FAULT_MIGRATE_KILL=point)
            self.assertEqual(r.returncode, -9, f"killed at {point}: {r.stdout}{r.stderr}")
            v = self.orion("migrate-personal-data", "--verify", "--quiet")
            self.assertEqual(v.returncode, 1, f"not done after {point}: {v.stdout}{v.stderr}")
            if point == "deleted":  # the shop does not start on a part of the log
                serve = subprocess.run([self.stack.orion, "serve"], env=self.stack.env(), capture_output=True,
                                       text=True, timeout=60, stdin=subprocess.DEVNULL)
                self.assertEqual(serve.returncode, 1, serve.stdout[-2000:] + serve.stderr[-2000:])
                self.assertIn("a migration of personal data is under way", serve.stdout + serve.stderr)
        r = self.orion("migrate-personal-data")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("ORION_EVT replaced", r.stdout)
        self.assertIn("consumer orion_mail restored", r.stderr)
        after = self.consumer_floors()
        self.assertEqual(after.keys(), floors.keys())
        for name, floor in floors.items():  # the roles go on where they stood, not from the start
            self.assertGreaterEqual(after[name], floor, name)
        # progress on stderr, to the whole log: the fixture's commits and what the shop wrote
        # on it before it stopped (how many mail log commits made it in varies with timing)
        written = re.search(r"migrate: writing ORION_EVT: (\d+)/\1 \(100%\)", r.stderr)
        self.assertIsNotNone(written, r.stderr)
        self.assertGreaterEqual(int(written.group(1)), 47)
        self.assertIn(f"migrate: checking ORION_EVT: {written.group(1)}/{written.group(1)} (100%)", r.stderr)

        r = self.orion("migrate-personal-data", "--verify", "--quiet")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(" 0 findings", r.stdout)

        # a second run changes nothing: every stream's message blocks are the
        # same bytes (the consumers' state files the server writes on its own)
        def blocks():
            return {p: d for p, d in store_files(os.path.join(self.nats_dir, "jetstream")).items()
                    if p.endswith(".blk")}
        files = blocks()
        self.assertTrue(any("/ORION_EVT/" in p for p in files), files.keys())
        r = self.orion("migrate-personal-data", "--quiet")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("nothing to migrate", r.stdout)
        self.assertEqual(blocks(), files)

        # nothing clear in the store, the snapshots included
        self.assertEqual(self.scan(), [])

        # replay opens the fields; the accounts are on the blind index
        after = self.orion("replay", "--aggregate", "user")
        self.assertEqual(after.returncode, 0, after.stderr)
        moved = {e["data"]["user_id"]: e for e in
                 (json.loads(l) for l in after.stdout.splitlines() if '"UserRegistered"' in l)}
        # the start-up admin `orion serve` registered on the blind index when it
        # was started before the migration: root@orion.test has two accounts,
        # the old one kept apart (ADR 032)
        self.assertEqual(len(moved), len(registered) + 1)
        for old in registered:
            new = moved[old["data"]["user_id"]]
            self.assertEqual((old["seq"], old["data"]["email"], old["data"]["name"], old["causation_id"][:9]),
                             (new["seq"], new["data"]["email"], new["data"]["name"], new["causation_id"][:9]))
            self.assertNotEqual(old["subject"], new["subject"])
        r = self.orion("verify-log", "--quiet")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(" 0 impossible states", r.stdout)

        # the operator's last steps: rebuild the read models, start the shop
        r = self.orion("rebuild", "--quiet")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.stack.start_serve("all", wait_http=True)
        for customer in self.fixture["customers"]:
            if customer["name"] is None:
                continue
            c = wait_until(lambda: login_or_none(self.stack.http_port, customer["email"], self.fixture["password"]),
                           20, interval=0.2, what=f"the login of {customer['email']}")
            me = c.get("/me")
            self.assertEqual(me.status, 200, me)
            self.assertEqual((me.json()["email"], me.json()["name"]), (customer["email"], customer["name"]))
        orders = self.fixture["orders"]
        ada = login_or_none(self.stack.http_port, "ada.legacy@example.com", self.fixture["password"])
        r = ada.get(f"/orders/{orders['confirmed']}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "confirmed")
        self.assertEqual(Client(self.stack.http_port).post(
            "/auth/login", {"email": "ada.legacy@example.com", "password": "not-the-password"}).status, 401)
        wait_until(lambda: self.orion("rebuild", "--verify", "--quiet").returncode == 0, 30, interval=1,
                   what="rebuild --verify with no difference")
        # no order's email sent twice (only the open order's cancellation is new: its
        # deadline passed long ago)
        sent = emails_by_order_status(self.stack)
        self.assertTrue(all(n == 1 for n in sent.values()), sent)
        self.assertNotIn((orders["confirmed"], "paid"), sent)
        self.stack.serves["all"].stop(20)
        # every file Orion wrote: the NATS store, the LMDB generation the rebuild
        # made (the one built from the old log is gone), the logs, the sandbox
        # (the admin's address is configuration, ORION_ADMIN_EMAIL, and serve's
        # log names it when it creates the account)
        self.assertEqual(self.scan(self.stack.dir, spare=("root@orion.test",)), [],
                         "nothing clear after the shop ran on the migrated log")



class MigratedBeforeTheFirstStart(unittest.TestCase):
    """The path the README gives: the new version's shop is not started before
    the migration, so every account, the start-up admin's too, moves to its
    blind index, and the admin logs in with the password it always had."""

    def test_every_account_moves_and_logs_in(self):
        with open(os.path.join(FIXTURES, "legacy-store.json")) as f:
            fixture = json.load(f)
        stack = Stack("migrate-first")
        try:
            extract_fixture(stack.dir)
            stack.start_nats()
            stack.start_smtp()
            stack.start_psp()
            r = subprocess.run([stack.orion, "migrate-personal-data", "--quiet"], env=stack.env(),
                               capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("4 accounts to move to the blind index (0 registered again", r.stdout)
            self.assertNotIn("kept apart: its address", r.stdout)
            r = subprocess.run([stack.orion, "rebuild", "--quiet"], env=stack.env(), capture_output=True,
                               text=True, timeout=120, stdin=subprocess.DEVNULL)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            stack.start_serve("all", wait_http=True)
            for address, password in [("root@orion.test", "admin-password-1")] + [
                    (c["email"], fixture["password"]) for c in fixture["customers"] if c["name"]]:
                wait_until(lambda: login_or_none(stack.http_port, address, password), 20, interval=0.2,
                           what=f"the login of {address}")
            root = login_or_none(stack.http_port, "root@orion.test", "admin-password-1")
            self.assertEqual(root.get("/me").json()["role"], "admin")
        finally:
            stack.close()

class EmbeddedServer(unittest.TestCase):
    """The newcomer's layout: no ORION_NATS_URL, `orion serve` runs its own
    nats-server on <data dir>/nats. The migration refuses while that serve runs
    (its nats.url is live), then starts the embedded server itself."""

    def test_refused_while_serve_runs_then_migrated(self):
        stack = Stack("migrate-embedded")
        try:
            extract_fixture(stack.data_dir)  # <data dir>/nats: where serve keeps its store
            env = stack.env()
            del env["ORION_NATS_URL"]
            serve = Process([stack.orion, "serve"], env, os.path.join(stack.dir, "serve.log")).start()
            stack.serves["embedded"] = serve
            wait_until(lambda: serve.announced() or not serve.running(), 40, what="serve")
            self.assertTrue(serve.running(), serve.log()[-2000:])

            def migrate(*args):
                return subprocess.run([stack.orion, "migrate-personal-data", "--quiet", *args], env=env,
                                      capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            r = migrate()
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("orion serve is running", r.stderr)
            self.assertEqual(serve.stop(20), 0)
            r = migrate()
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("ORION_EVT replaced", r.stdout)
            r = migrate("--verify")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(" 0 findings", r.stdout)
        finally:
            stack.close()

if __name__ == "__main__":
    unittest.main()
