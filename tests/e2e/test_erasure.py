#!/usr/bin/python3
"""Erasure by crypto-shredding (ADR 027), through the whole stack.

Real nats-server (per-role users), real SMTP server (aiosmtpd), the provider
sandbox and `orion serve`. A customer registers, orders, confirms with the
link of the email, pays (a card tokenized at the provider) and gets
the emails; then `orion admin erase` erases them while other customers
order. Then:
- logins and the customer's old token are refused;
- `orion replay` prints "[erased]" where it printed the email and the name;
- `orion rebuild --verify` finds no difference and `orion verify-log` passes;
- a scan of every file Orion wrote (the NATS store, the keystore, the LMDB
  generations, the mail markers, the sandbox's state, the logs) finds
  neither the email, nor the name, nor the public hash of the email that
  subjects held before ADR 027 (a hash anyone could compute). The SMTP
  server's mailbox is the customer's inbox, not Orion's, and is not scanned.
And the crash: `orion admin erase` killed (SIGKILL) right after the key is
destroyed and before CustomerErased; the customer is erased for every reader
already (the key is gone), and the next run completes the erasure.

usage: ORION_BIN=build/cli/orion test_erasure.py [-v]"""
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (StackTestCase, awaiting_payment, create_product, emails_by_order_status,  # noqa: E402
                       login_or_none, pay, register, wait_until)

APPROVE = "4242424242424242"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def public_hash_subject(email):
    """The user subject of an email before ADR 027: BLAKE2b-128 keyed with a public constant."""
    return "u" + hashlib.blake2b(email.encode(), digest_size=16, key=b"orion.user.email").hexdigest()


class Erasure(StackTestCase):
    NAME = "erasure"
    PSP = True

    def orion(self, *args, **env):
        return subprocess.run([self.stack.orion, *args], env=self.stack.env(**env), capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)

    def replay_users(self):
        r = self.orion("replay", "--aggregate", "user")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def customer_who_ordered_and_paid(self):
        email, name = f"{unique('zelda')}@example.com", f"Zelda {unique('Erasable')}"
        c = register(self.stack.http_port, email, "erasable-Password-77", name)
        product = create_product(self.admin, unique("sku"), 20, price=1500)
        order_id = awaiting_payment(self.stack, c, product, 1)
        r = pay(c, order_id, APPROVE, key=unique("k"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "confirmed")
        wait_until(lambda: emails_by_order_status(self.stack).get((order_id, "confirmed")), 20,
                   what="the confirmed email")
        return email, name, c

    def open_order(self, client, quantity):
        """An order of quantity units of a new product (10 in stock) placed by client and holding
        its stock; returns (product id, order id)."""
        product = create_product(self.admin, unique("open"), 10, price=900)
        self.assertEqual(client.post("/cart/items", {"product_id": product, "quantity": quantity}).status, 200)
        r = client.post("/orders", {})
        self.assertEqual(r.status, 202, r)
        wait_until(lambda: self.admin.get(f"/admin/products/{product}").json()["available"] == 10 - quantity, 20,
                   what="the open order's stock reserved")
        return product, r.json()["id"]

    def others_ordering(self, stop):
        """Load while the erasure runs: other customers register and order."""
        product = create_product(self.admin, unique("load"), 1000, price=700)
        while not stop.is_set():
            c = register(self.stack.http_port, f"{unique('load')}@example.com")
            self.assertEqual(c.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)
            self.assertEqual(c.post("/orders", {}).status, 202)

    def test_a_customer_erased_over_http_loses_logins_open_orders_and_readable_rows(self):
        # one customer paid (an admin erases them), another has an order awaiting confirmation
        # (they erase themselves: DELETE /me)
        paid_email, paid_name, paid = self.customer_who_ordered_and_paid()
        paid_id = paid.get("/me").json()["id"]
        paid_order = paid.get("/orders").json()["items"][0]["id"]
        email, name = f"{unique('yuri')}@example.com", f"Yuri {unique('Open')}"
        c = register(self.stack.http_port, email, "erasable-Password-77", name)
        product, open_order = self.open_order(c, 3)

        r = self.admin.post(f"/admin/customers/{paid_id}/erase")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(paid.post("/orders", {}).status, 401, "the erased customer's token is refused")
        self.assertEqual(self.admin.post(f"/admin/customers/{paid_id}/erase").status, 204, "harmless again")
        self.assertEqual(c.delete("/me", body={"password": "wrong-Password-00"}).status, 401)
        r = c.delete("/me", body={"password": "erasable-Password-77"})
        self.assertEqual(r.status, 204, r)
        # logins end; the open order was cancelled and its stock released
        for e in (email, paid_email):
            self.assertIsNone(login_or_none(self.stack.http_port, e, "erasable-Password-77"))
        self.assertEqual(c.get("/me").status, 401)
        wait_until(lambda: self.admin.get(f"/admin/products/{product}").json()["available"] == 10, 20,
                   what=f"order {open_order} cancelled and its stock released")
        # the admin order desk shows the paid order without the person
        desk = self.admin.get(f"/admin/orders/{paid_order}").json()
        self.assertEqual(desk["status"], "confirmed")
        self.assertIsNone(desk["customer"]["email"])
        self.assertTrue(desk["items"] and desk["total_cents"] > 0, "the order keeps items and amounts")
        # the admin's delivery log shows the emails without the person
        items = self.admin.get(f"/admin/mail?order_id={paid_order}").json()["items"]
        self.assertTrue(items)
        self.assertEqual({i["recipient"] for i in items}, {"[erased]"})
        # replay and rebuild
        text = self.replay_users()
        self.assertGreaterEqual(text.count('"type":"CustomerErased"'), 2)
        self.assertIn('"[erased]"', text)
        for needle in (email, name, paid_email, paid_name):
            self.assertNotIn(needle, text)
        wait_until(lambda: self.orion("rebuild", "--verify", "--quiet").returncode == 0, 30, interval=1,
                   what="rebuild --verify with no difference")

    def test_an_erased_customer_is_gone_from_every_file_and_the_tools_still_work(self):
        email, name, client = self.customer_who_ordered_and_paid()
        self.assertIn(email, self.replay_users(), "before the erasure, replay opens the sealed fields")
        # and an open order, holding stock: the command line cancels it first, as HTTP does
        product, open_order = self.open_order(client, 4)
        stop = threading.Event()
        load = threading.Thread(target=self.others_ordering, args=(stop,))
        load.start()
        try:
            r = self.orion("admin", "erase", "--email", email)
        finally:
            stop.set()
            load.join()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cancelled 1 open order", r.stdout)
        wait_until(lambda: self.admin.get(f"/admin/products/{product}").json()["available"] == 10, 20,
                   what=f"order {open_order} cancelled and its stock released")
        desk = self.admin.get(f"/admin/orders/{open_order}").json()
        self.assertEqual(desk["status"], "cancelled")
        self.assertIsNone(desk["customer"]["email"], "the desk shows the order without the person")
        self.assertEqual(self.orion("admin", "erase", "--email", email).returncode, 0, "again: harmless")
        # logins and the old token end
        wait_until(lambda: login_or_none(self.stack.http_port, email, "erasable-Password-77") is None, 10,
                   what="logins refused")
        self.assertEqual(client.get("/me").status, 401)
        text = self.replay_users()
        self.assertIn('"type":"CustomerErased"', text)
        self.assertIn('"[erased]"', text)
        self.assertNotIn(email, text)
        self.assertNotIn(name, text)
        # the read models equal a rebuild, the log is sound
        wait_until(lambda: self.orion("rebuild", "--verify", "--quiet").returncode == 0, 30, interval=1,
                   what="rebuild --verify with no difference")
        r = self.orion("verify-log")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # every file Orion wrote, with the processes stopped (all written out)
        self.stack.serves["all"].stop(20)
        self.stack.psp.stop(10)
        self.stack.nats.stop(10)
        needles = [email.encode(), name.encode(), public_hash_subject(email).encode()]
        skipped = {os.path.realpath(self.stack.mailbox_dir), os.path.realpath(os.path.join(self.stack.dir, "smtp.log"))}
        findings, scanned = [], 0
        for dirpath, _, names in os.walk(self.stack.dir):
            if any(os.path.realpath(dirpath).startswith(s) for s in skipped):
                continue
            for file_name in names:
                path = os.path.join(dirpath, file_name)
                if os.path.islink(path) or not os.path.isfile(path) or os.path.realpath(path) in skipped:
                    continue
                scanned += 1
                with open(path, "rb") as f:
                    data = f.read()
                findings += [f"{path}: {n[:12]!r}" for n in needles if n in data]
        self.assertGreater(scanned, 20, "the NATS store, LMDB, markers, sandbox and logs were scanned")
        self.assertEqual(findings, [])

    def test_a_crash_between_the_key_and_the_event_converges(self):  # runs first: the scan stops the stack
        email, name, _ = self.customer_who_ordered_and_paid()
        r = self.orion("admin", "erase", "--email", email, ORION_FAULT_ERASE_KILL="after_key")
        self.assertEqual(r.returncode, -9, "killed by SIGKILL after destroying the key")
        text = self.replay_users()
        self.assertIn('"type":"ErasureRequested"', text)
        self.assertNotIn('"type":"CustomerErased"', text)
        self.assertNotIn(email, text, "the key is gone: nothing of the customer opens any more")
        self.assertIsNone(login_or_none(self.stack.http_port, email, "erasable-Password-77"))
        # every erasure the log records, carried through: this one is finished
        r = self.orion("admin", "erase", "--all")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("1 finished now", r.stdout)
        r = self.orion("admin", "erase", "--email", email)
        self.assertEqual(r.returncode, 0, "erasing again is harmless")
        self.assertEqual(self.replay_users().count('"type":"CustomerErased"'), 1, "recorded once")
        wait_until(lambda: self.orion("rebuild", "--verify", "--quiet").returncode == 0, 30, interval=1,
                   what="rebuild --verify with no difference")

    def keystore_dir(self):
        for dirpath, dirnames, _ in os.walk(os.path.join(self.stack.dir, "nats")):
            if "ORION_KEYS" in dirnames:
                return os.path.join(dirpath, "ORION_KEYS")
        raise AssertionError("no ORION_KEYS stream directory in the NATS store")

    def restart_nats(self, between=None):
        """nats-server stopped, between() run on its files, started again; waits for the shop."""
        self.stack.nats.stop(20)
        if between:
            between()
        self.stack.nats.start()
        wait_until(lambda: self.orion("replay", "--aggregate", "user").returncode == 0, 30, interval=0.5,
                   what="the event store back")

    def test_a_restored_keystore_gets_the_erased_keys_destroyed_again(self):
        # ADR 027, "Backups": a keystore backup taken before an erasure brings the key back
        email, name, _ = self.customer_who_ordered_and_paid()
        backup = os.path.join(self.stack.dir, "keys-backup")
        self.restart_nats(lambda: shutil.copytree(self.keystore_dir(), backup))
        r = self.orion("admin", "erase", "--email", email)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(email, self.replay_users())
        keys_dir = self.keystore_dir()
        self.restart_nats(lambda: (shutil.rmtree(keys_dir), shutil.copytree(backup, keys_dir)))
        self.assertIn(email, self.replay_users(), "the restored keystore opens the erased customer again")
        r = self.orion("admin", "erase", "--all")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("1 key destroyed again", r.stdout)
        text = self.replay_users()
        self.assertNotIn(email, text)
        self.assertNotIn(name, text)
        r = self.orion("admin", "erase", "--all")
        self.assertIn("0 keys destroyed again", r.stdout, "nothing left to do")
        shutil.rmtree(backup)


if __name__ == "__main__":
    unittest.main()
