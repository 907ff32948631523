#!/usr/bin/python3
"""Accounts with sealed personal data (ADR 027), through the whole stack.

Real nats-server (per-role users, monitoring on), real SMTP server and
`orion serve`:
- a registration of an address that has an account stores no data key (the
  keystore's stream keeps its count): no orphan key of nobody; nor does a
  restart for the start-up admin of ORION_ADMIN_EMAIL;
- a key the gateway's cache lacks is read off the event loop: with every
  keystore read slowed to 2 s, a login that needs one waits, while the
  catalog answers at once;
- POST /me/password: a wrong current password is 401, a weak new one 400
  naming new_password (and nothing changes), the right ones 204, after which
  every earlier token (the caller's and another session's) is 401 on /me, the
  old password logs in no more and the new one does;
- GET /me/export: after one order, the caller's export holds their email and
  name, the order (by id) and its confirmation email (to the caller's
  address); another customer's export holds only their own data.

usage: ORION_BIN=build/cli/orion test_accounts.py [-v]"""
import os
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import Client, StackTestCase, admin, create_product, login_or_none, wait_until  # noqa: E402

KEYS = "ORION_KEYS"
PASSWORD = "Velvet-canyon-94"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


class Accounts(StackTestCase):
    NAME = "accounts"

    def keys(self):
        """The keystore's message count once it stopped moving (the monitoring lags a little)."""
        last = self.stack.stream_messages(KEYS)
        while True:
            time.sleep(0.5)
            now = self.stack.stream_messages(KEYS)
            if now == last:
                return now
            last = now

    def register(self, email, name="Ada"):
        return self.stack.client().post("/auth/register", {"email": email, "password": PASSWORD, "name": name})

    def test_a_second_registration_of_an_address_stores_no_key(self):
        email = unique("ada")
        self.assertEqual(self.register(email).status, 202)
        wait_until(lambda: login_or_none(self.stack.http_port, email, PASSWORD), 10, what="the account")
        keys = self.keys()
        again = self.register(email.upper(), name="Someone Else")
        self.assertEqual(again.status, 202, again)
        self.assertEqual(self.keys(), keys, "a key was made for an address with an account")

    def test_a_restart_makes_no_key_for_the_start_up_admin(self):
        keys = self.keys()
        self.stack.serves["all"].stop(20)
        self.stack.start_serve("all", wait_http=True)
        self.assertEqual(self.keys(), keys, "ORION_ADMIN_EMAIL's account got a new key")

    def test_a_key_read_does_not_hold_the_event_loop(self):
        email = unique("grace")
        self.assertEqual(self.register(email, name="Grace").status, 202)
        wait_until(lambda: login_or_none(self.stack.http_port, email, PASSWORD), 10, what="the account")
        # a fresh gateway: its cache of keys is empty, and every read of the keystore takes 2 s
        self.stack.serves["all"].stop(20)
        self.stack.start_serve("all", wait_http=True, ORION_FAULT_KEY_READ_DELAY_MS="2000")
        outcome = {}

        def log_in():
            started = time.monotonic()
            outcome["client"] = login_or_none(self.stack.http_port, email, PASSWORD)
            outcome["seconds"] = time.monotonic() - started

        t = threading.Thread(target=log_in)
        t.start()
        time.sleep(0.3)  # the login waits on its key now
        catalog = Client(self.stack.http_port)
        started = time.monotonic()
        r = catalog.get("/products?limit=1")
        elapsed = time.monotonic() - started
        t.join(30)
        self.assertEqual(r.status, 200, r)
        self.assertLess(elapsed, 1.0, "the catalog waited for another request's key")
        self.assertIsNotNone(outcome.get("client"), "the login failed")
        self.assertGreaterEqual(outcome["seconds"], 1.9, "the login did not need the key: the test proves nothing")

    def test_a_password_change_ends_every_earlier_token(self):
        email = unique("hedy")
        self.assertEqual(self.register(email, name="Hedy").status, 202)
        first = wait_until(lambda: login_or_none(self.stack.http_port, email, PASSWORD), 10, what="the account")
        second = login_or_none(self.stack.http_port, email, PASSWORD)
        self.assertIsNotNone(second)
        new_password = "Orchid-lantern-57-river"
        # a wrong current password changes nothing
        r = first.post("/me/password", {"current_password": "Wrong-password-00", "new_password": new_password})
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.headers.get("content-type"), "application/problem+json", r)
        # a weak new password (registration's rules) is a field error
        r = first.post("/me/password", {"current_password": PASSWORD, "new_password": "password123"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.headers.get("content-type"), "application/problem+json", r)
        self.assertIn("new_password", [e["field"] for e in r.json()["errors"]], r)
        r = first.post("/me/password", {"current_password": PASSWORD, "new_password": email.split("@")[0] + "-X9"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(first.get("/me").status, 200, "a refused change ended the token")
        # the change
        r = first.post("/me/password", {"current_password": PASSWORD, "new_password": new_password})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(first.get("/me").status, 401, "the caller's token still works")
        self.assertEqual(second.get("/me").status, 401, "another session's token still works")
        old = Client(self.stack.http_port).post("/auth/login", {"email": email, "password": PASSWORD})
        self.assertEqual(old.status, 401, old)
        again = login_or_none(self.stack.http_port, email, new_password)
        self.assertIsNotNone(again, "the new password does not log in")
        me = again.get("/me")
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json()["email"], email)

    def customer(self, prefix, name):
        email = unique(prefix)
        self.assertEqual(self.register(email, name=name).status, 202)
        return wait_until(lambda: login_or_none(self.stack.http_port, email, PASSWORD), 10, what="the account")

    def test_an_export_holds_the_callers_data_and_only_theirs(self):
        product = create_product(admin(self.stack), unique("exp").split("@")[0].upper(), 10, price=1900)
        ada = self.customer("ada-export", "Ada Export")
        bob = self.customer("bob-export", "Bob Export")
        self.assertEqual(ada.post("/cart/items", {"product_id": product, "quantity": 2}).status, 200)
        placed = ada.post("/orders", {})
        self.assertIn(placed.status, (200, 202), placed)
        order_id = placed.json()["id"]

        def with_confirmation_email():
            r = ada.get("/me/export")
            self.assertEqual(r.status, 200, r)
            emails = [e for e in r.json()["emails"] if e["order_id"] == order_id]
            return r.json() if any(e["kind"] == "awaiting_confirmation" for e in emails) else None
        export = wait_until(with_confirmation_email, 20, interval=0.2, what="the confirmation email in the export")
        self.assertEqual(export["profile"]["email"], ada.email)
        self.assertEqual(export["profile"]["name"], "Ada Export")
        self.assertEqual(export["profile"]["role"], "customer")
        orders = {o["id"]: o for o in export["orders"]}
        self.assertIn(order_id, orders)
        self.assertEqual(orders[order_id]["items"][0]["product_id"], product)
        self.assertEqual(orders[order_id]["total_cents"], 3800)
        for e in export["emails"]:
            self.assertEqual(e["recipient"], ada.email, e)
        # another customer sees only their own (empty) history
        r = bob.get("/me/export")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), "application/json", r)
        other = r.json()
        self.assertEqual(other["profile"]["email"], bob.email)
        self.assertEqual(other["orders"], [])
        self.assertEqual(other["emails"], [])
        self.assertNotIn(order_id, r.body.decode())
        self.assertNotIn(ada.email, r.body.decode())
        # no token, no export
        self.assertEqual(Client(self.stack.http_port).get("/me/export").status, 401)


if __name__ == "__main__":
    unittest.main()
