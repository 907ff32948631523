#!/usr/bin/python3
"""Operators' signals through the whole stack (issue 7): a product's stock
crossing its low-stock threshold emails every admin exactly once per crossing
and re-arms when the stock comes back; the live inventory feed shows the
alert; the mail delivery log lists every email with its outcome.

Real nats-server (a NATS user per role), real SMTP server (aiosmtpd), `orion
serve` with every role; only HTTP, the CLI and the received emails are looked
at. The stock actor decides the crossing (ADR 012), the mail role sends the
alerts and records the log (ADR 013).

usage: ORION_BIN=build/cli/orion test_operations.py [-v]"""
import http.client
import json
import os
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import Client, StackTestCase, login_or_none, register, wait_status, wait_until  # noqa: E402

ROOT = "root@orion.test"  # ORION_ADMIN_EMAIL of the stack
SECOND_ADMIN = "second-admin@orion.test"
THRESHOLD = 3
STOCK = 5


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Operations(StackTestCase):
    NAME = "operations"

    @classmethod
    def set_up_class(cls):
        r = subprocess.run([cls.stack.orion, "admin", "create-user", "--email", SECOND_ADMIN, "--password",
                            "second-admin-pw-1", "--name", "Second", "--role", "admin"],
                           env=cls.stack.env(), capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        cls.second = wait_until(lambda: login_or_none(cls.stack.http_port, SECOND_ADMIN, "second-admin-pw-1"),
                                20, interval=0.2, what="the second admin's login")

    def alerts(self, product_name):
        """{recipient: number of low-stock emails about product_name}."""
        counts = {}
        for m in self.stack.messages():
            if (m["Subject"] or "").startswith("Low stock") and product_name in m["Subject"]:
                counts[str(m["To"])] = counts.get(str(m["To"]), 0) + 1
        return counts

    def wait_alerts(self, product_name, each):
        return wait_until(lambda: (lambda c: c if all(c.get(a, 0) >= each for a in (ROOT, SECOND_ADMIN)) else None)(
            self.alerts(product_name)), 30, interval=0.2, what=f"{each} low-stock email(s) to each admin")

    def place(self, customer, product_id, quantity):
        r = customer.post("/cart/items", {"product_id": product_id, "quantity": quantity})
        self.assertEqual(r.status, 200, r)
        r = customer.post("/orders", {}, headers={"Idempotency-Key": unique("k")})
        self.assertEqual(r.status, 202, r)
        order_id = r.json()["id"]
        wait_status(customer, order_id, "awaiting_confirmation")
        # the saga takes the order's lines out of the cart after reserving
        wait_until(lambda: customer.get("/cart").json()["items"] == [], 10, what="the cart to be emptied")
        return order_id

    def cancel(self, customer, order_id):
        r = customer.post(f"/orders/{order_id}/cancel", {})
        self.assertEqual(r.status, 200, r)
        wait_status(customer, order_id, "cancelled")

    def available(self, product_id):
        r = self.admin.get(f"/admin/products/{product_id}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_a_crossing_alerts_every_admin_once_and_re_arms(self):
        name = unique("Lamp")
        r = self.admin.post("/admin/products", {
            "sku": unique("low"), "name": name, "description": "e2e", "price_cents": 900, "currency": "EUR",
            "category": "e2e", "initial_stock": STOCK, "low_stock_threshold": THRESHOLD})
        self.assertEqual(r.status, 201, r)
        product = r.json()
        self.assertEqual(product["low_stock_threshold"], THRESHOLD)
        self.assertFalse(product["low"])
        customer_email = f"{unique('c')}@example.com"
        customer = register(self.stack.http_port, customer_email)

        # 5 -> 2 available: below 3, one alert to each admin
        first = self.place(customer, product["id"], 3)
        self.assertEqual(self.wait_alerts(name, 1), {ROOT: 1, SECOND_ADMIN: 1})
        view = wait_until(lambda: (lambda v: v if v["low"] else None)(self.available(product["id"])), 20,
                          what="the admin view to show low")
        self.assertEqual(view["available"], 2)

        # a further sale while low: no new alert
        second = self.place(customer, product["id"], 1)
        self.assertEqual(self.available(product["id"])["reserved"], 4)

        # both cancelled: back to 5 >= 3, re-armed; then a new crossing, one more each
        self.cancel(customer, first)
        self.cancel(customer, second)
        wait_until(lambda: (lambda v: v if not v["low"] and v["available"] == STOCK else None)(
            self.available(product["id"])), 20, what="the stock back above the threshold")
        self.assertEqual(self.alerts(name), {ROOT: 1, SECOND_ADMIN: 1}, "no email while low or on the re-arm")
        self.place(customer, product["id"], 4)
        self.assertEqual(self.wait_alerts(name, 2), {ROOT: 2, SECOND_ADMIN: 2})
        self.assertNotIn(customer_email, self.alerts(name))

        # the live feed, replayed from the start, shows both crossings and the re-arm in order
        kinds = [e for e in feed_events(self.stack.http_port, self.admin.token, after=0,
                                        product_id=product["id"]) if e[0] != "stock"]
        self.assertEqual([k for k, _ in kinds], ["low_stock", "low_stock_cleared", "low_stock"], kinds)
        self.assertEqual(kinds[0][1]["available"], 2)
        self.assertEqual(kinds[0][1]["threshold"], THRESHOLD)

        # the delivery log: each alert delivered at the first attempt, per admin
        def logged():
            r = self.admin.get("/admin/mail?status=delivered&limit=100")
            self.assertEqual(r.status, 200, r)
            items = [i for i in r.json()["items"] if i["kind"] == "low_stock" and i["product_id"] == product["id"]]
            return items if len(items) == 4 else None
        items = wait_until(logged, 20, interval=0.2, what="the four alerts in the delivery log")
        self.assertEqual(sorted(i["recipient"] for i in items), sorted([ROOT, ROOT, SECOND_ADMIN, SECOND_ADMIN]))
        for i in items:
            self.assertEqual(i["attempts"], 1, i)
            self.assertIsNotNone(i["delivered_at"], i)
            self.assertIsNone(i["last_error"], i)

    def test_the_delivery_log_lists_an_orders_emails_for_admins_only(self):
        r = self.admin.post("/admin/products", {
            "sku": unique("log"), "name": unique("Mug"), "description": "e2e", "price_cents": 500,
            "currency": "EUR", "category": "e2e", "initial_stock": 50})
        self.assertEqual(r.status, 201, r)
        product_id = r.json()["id"]
        customer_email = f"{unique('c')}@example.com"
        customer = register(self.stack.http_port, customer_email)
        order_id = self.place(customer, product_id, 1)
        self.cancel(customer, order_id)

        def logged():
            r = self.admin.get(f"/admin/mail?order_id={order_id}")
            self.assertEqual(r.status, 200, r)
            items = r.json()["items"]
            # an email is listed from its claim on (status pending, ADR 024) until its outcome
            settled = all(i["status"] != "pending" for i in items)
            return items if settled and {i["kind"] for i in items} >= {"awaiting_confirmation", "cancelled"} else None
        items = wait_until(logged, 20, interval=0.2, what="the order's emails in the delivery log, sent")
        for i in items:
            self.assertEqual(i["order_id"], order_id)
            self.assertEqual(i["recipient"], customer_email)
            self.assertEqual(i["status"], "delivered", i)
        self.assertEqual(customer.get(f"/admin/mail?order_id={order_id}").status, 403)
        self.assertEqual(Client(self.stack.http_port).get("/admin/mail").status, 401)
        r = self.admin.get("/admin/mail?status=lost")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.headers.get("content-type", "").split(";")[0], "application/problem+json")


def feed_events(port, token, after, product_id, idle_s=2.0):
    """(event name, data) of GET /admin/inventory/events?after=N for product_id, read
    until the feed has been quiet for idle_s (it has caught up with the stream)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=idle_s)
    conn.request("GET", f"/api/v1/admin/inventory/events?after={after}",
                 headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    out, event, data = [], None, None
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            line = resp.fp.readline().decode()
            if line in ("\n", "\r\n"):
                if event is not None and data is not None:
                    payload = json.loads(data)
                    if payload.get("product_id") == product_id:
                        out.append((event, payload))
                event, data = None, None
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line == "":
                break
    except (TimeoutError, OSError):
        pass  # quiet for idle_s: caught up (keep-alives come every 15 s)
    finally:
        conn.close()
    return out


if __name__ == "__main__":
    unittest.main(verbosity=2)
