#!/usr/bin/python3
"""The checkout through the whole stack, as a shop's customers live it.

Real nats-server, real SMTP server (aiosmtpd), `orion serve` with every role;
only HTTP and the received emails are looked at. Covers: the happy path to
awaiting_payment with the link taken from the email; out of stock; cancel;
expiry; a second customer locked out of the first one's order; a reused or
wrong token; and the oversell test: 50 customers, 10 units.

usage: ORION_BIN=build/cli/orion test_checkout.py [-v] [TestCase.test_name]"""
import os
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (Stack, StackTestCase, admin, confirmation_link, create_product, emails_by_order_status,  # noqa: E402
                       login, parallel, query_token, register, wait_port, wait_status, wait_until)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def inventory_of(admin_client, product_id):
    r = admin_client.get(f"/admin/products/{product_id}")
    assert r.status == 200, r
    return r.json()


class Checkout(StackTestCase):
    NAME = "checkout"

    def customer(self):
        return register(self.stack.http_port, f"{unique('c')}@example.com")

    def place(self, client, product_id, quantity, key=None):
        r = client.post("/cart/items", {"product_id": product_id, "quantity": quantity})
        self.assertEqual(r.status, 200, r)
        r = client.post("/orders", {}, headers={"Idempotency-Key": key} if key else None)
        self.assertEqual(r.status, 202, r)
        order = r.json()
        self.assertEqual(order["status"], "pending")
        return order["id"]

    def test_happy_path_to_awaiting_payment_with_the_link_from_the_email(self):
        product = create_product(self.admin, unique("sku"), 5, price=1999)
        c = self.customer()
        order_id = self.place(c, product, 2)
        order = wait_status(c, order_id, "awaiting_confirmation")
        self.assertEqual(order["total_cents"], 2 * 1999)
        self.assertEqual([h["status"] for h in order["history"]], ["pending", "awaiting_confirmation"])
        # stock is held, the cart was emptied
        stock = inventory_of(self.admin, product)
        self.assertEqual((stock["reserved"], stock["available"]), (2, 3))
        # the saga empties the cart on OrderReserved, right after the status changes
        wait_until(lambda: c.get("/cart").json()["items"] == [], 10, what="the cart to be emptied")
        # the link from the email: its page, then the confirmation
        link = confirmation_link(self.stack, order_id)
        # no ORION_PUBLIC_URL: the link's base is the gateway's address as bound (port 0 asked)
        self.assertTrue(link.startswith(f"http://127.0.0.1:{self.stack.http_port}/api/v1/orders/"), link)
        path = link[link.index("/api/v1/"):]
        page = c.request("GET", path, headers={"Accept": "text/html"})
        self.assertEqual(page.status, 200, page)
        self.assertIn("text/html", page.headers["content-type"])
        self.assertIn(b"<form", page.body)
        token = query_token(link)
        anonymous = self.stack.client()
        r = anonymous.post(f"/orders/{order_id}/confirm", {"token": token})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "awaiting_payment")
        # the link used again (a retry after a lost answer) answers what happened (ADR 015)
        r = anonymous.post(f"/orders/{order_id}/confirm", {"token": token})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "awaiting_payment")
        self.assertEqual(len(r.json()["history"]), 3, "nothing appended")
        # one email per status reached
        wait_until(lambda: emails_by_order_status(self.stack).get((order_id, "awaiting_payment")), 15,
                   what="the awaiting_payment email")
        counts = emails_by_order_status(self.stack)
        self.assertEqual(counts.get((order_id, "awaiting_confirmation")), 1)
        self.assertEqual(counts.get((order_id, "awaiting_payment")), 1)

    def test_out_of_stock_cancels_names_the_product_and_holds_nothing(self):
        scarce = create_product(self.admin, unique("sku"), 1)
        plenty = create_product(self.admin, unique("sku"), 10)
        c = self.customer()
        self.assertEqual(c.post("/cart/items", {"product_id": plenty, "quantity": 3}).status, 200)
        order_id = self.place(c, scarce, 2)
        order = wait_status(c, order_id, "cancelled")
        self.assertEqual(order["history"][-1]["reason"], "out_of_stock")
        self.assertEqual(inventory_of(self.admin, scarce)["reserved"], 0)
        # the order is cancelled first, then the saga releases the line it held (ADR 007 addendum)
        wait_until(lambda: inventory_of(self.admin, plenty)["reserved"] == 0, 10, what="the release of plenty")
        wait_until(lambda: emails_by_order_status(self.stack).get((order_id, "cancelled")), 15,
                   what="the cancellation email")
        self.assertNotIn((order_id, "awaiting_confirmation"), emails_by_order_status(self.stack))

    def test_cancel_by_the_customer_releases_the_stock(self):
        product = create_product(self.admin, unique("sku"), 4)
        c = self.customer()
        order_id = self.place(c, product, 3)
        wait_status(c, order_id, "awaiting_confirmation")
        r = c.post(f"/orders/{order_id}/cancel")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "cancelled")
        self.assertEqual(r.json()["history"][-1]["reason"], "customer")
        wait_until(lambda: inventory_of(self.admin, product)["reserved"] == 0, 10, what="the release")
        self.assertEqual(inventory_of(self.admin, product)["available"], 4)
        again = c.post(f"/orders/{order_id}/cancel")  # a retry answers what happened (ADR 015)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(len(again.json()["history"]), len(r.json()["history"]), "nothing appended")
        wait_until(lambda: emails_by_order_status(self.stack).get((order_id, "cancelled")), 15,
                   what="the cancellation email")

    def test_another_customer_cannot_read_confirm_cancel_or_stream_my_order(self):
        product = create_product(self.admin, unique("sku"), 5)
        owner, other = self.customer(), self.customer()
        order_id = self.place(owner, product, 1)
        wait_status(owner, order_id, "awaiting_confirmation")
        self.assertEqual(other.get(f"/orders/{order_id}").status, 404)
        self.assertEqual(other.post(f"/orders/{order_id}/cancel").status, 404)
        self.assertEqual(other.get(f"/orders/{order_id}/events",
                                   headers={"Accept": "text/event-stream"}).status, 404)
        self.assertNotIn(order_id, [o["id"] for o in other.get("/orders").json()["items"]])
        # confirming needs the token, not a login: a wrong one is refused
        wrong = "A" * 43
        self.assertEqual(other.post(f"/orders/{order_id}/confirm", {"token": wrong}).status, 403)
        self.assertEqual(other.post(f"/orders/{order_id}/confirm", {"token": "short"}).status, 400)
        self.assertEqual(owner.get(f"/orders/{order_id}").json()["status"], "awaiting_confirmation")

    def test_idempotency_key(self):
        product = create_product(self.admin, unique("sku"), 5)
        c = self.customer()
        key = unique("key")
        first = self.place(c, product, 1, key=key)
        again = c.post("/orders", {}, headers={"Idempotency-Key": key})
        self.assertEqual(again.status, 200, again)  # placed before: the first order
        self.assertEqual(again.json()["id"], first)
        other_body = c.post("/orders", {"note": "x"}, headers={"Idempotency-Key": key})
        self.assertEqual(other_body.status, 422, other_body)
        wait_status(c, first, "awaiting_confirmation")
        self.assertEqual(inventory_of(self.admin, product)["reserved"], 1, "one order, one reservation")

    def test_oversell_through_the_whole_stack(self):
        """50 customers, the same product in every cart, 10 units: exactly 10 orders hold stock."""
        product = create_product(self.admin, unique("sku"), 10)
        customers = parallel(lambda _: self.customer(), list(range(50)), threads=10)
        for c in customers:
            self.assertEqual(c.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)

        def place(c):
            r = c.post("/orders", {})
            self.assertEqual(r.status, 202, r)
            return r.json()["id"]
        order_ids = parallel(place, customers, threads=50)
        finals = parallel(lambda i: wait_status(customers[i], order_ids[i],
                                                {"awaiting_confirmation", "cancelled"}, 30),
                          list(range(50)), threads=50)
        held = [o for o in finals if o["status"] == "awaiting_confirmation"]
        refused = [o for o in finals if o["status"] == "cancelled"]
        self.assertEqual(len(held), 10)
        self.assertEqual(len(refused), 40)
        self.assertTrue(all(o["history"][-1]["reason"] == "out_of_stock" for o in refused))
        stock = inventory_of(self.admin, product)
        self.assertEqual((stock["on_hand"], stock["reserved"], stock["available"]), (10, 10, 0))
        # cancel the 10: everything is available again
        for o in held:
            owner = customers[finals.index(o)]
            self.assertEqual(owner.post(f"/orders/{o['id']}/cancel").status, 200)
        wait_until(lambda: inventory_of(self.admin, product)["reserved"] == 0, 15, what="every release")
        self.assertEqual(inventory_of(self.admin, product)["available"], 10)


class Expiry(unittest.TestCase):
    def test_an_unconfirmed_order_expires_and_releases_its_stock(self):
        stack = Stack("expiry")
        try:
            stack.start_nats()
            stack.start_smtp()
            stack.start_serve("all", wait_http=True, ORION_RESERVATION_TTL=2)
            a = admin(stack)
            product = create_product(a, unique("sku"), 3)
            c = register(stack.http_port, f"{unique('c')}@example.com")
            self.assertEqual(c.post("/cart/items", {"product_id": product, "quantity": 2}).status, 200)
            r = c.post("/orders", {})
            self.assertEqual(r.status, 202, r)
            order_id = r.json()["id"]
            wait_status(c, order_id, "awaiting_confirmation")
            self.assertEqual(inventory_of(a, product)["reserved"], 2)
            order = wait_status(c, order_id, "cancelled", timeout=15)
            self.assertEqual(order["history"][-1]["reason"], "expired")
            wait_until(lambda: inventory_of(a, product)["reserved"] == 0, 10, what="the release")
            # the link of the expired order no longer works
            token = query_token(confirmation_link(stack, order_id))
            self.assertEqual(stack.client().post(f"/orders/{order_id}/confirm", {"token": token}).status, 409)
            wait_until(lambda: emails_by_order_status(stack).get((order_id, "cancelled")), 15,
                       what="the expiry email")
        finally:
            stack.close()


class DurableDeadlines(unittest.TestCase):
    def test_a_deadline_survives_a_restart_of_every_process(self):
        stack = Stack("restart")
        try:
            stack.start_nats()
            stack.start_smtp()
            stack.start_serve("all", wait_http=True, ORION_RESERVATION_TTL=3)
            a = admin(stack)
            product = create_product(a, unique("sku"), 5)
            c = register(stack.http_port, f"{unique('c')}@example.com")
            self.assertEqual(c.post("/cart/items", {"product_id": product, "quantity": 4}).status, 200)
            r = c.post("/orders", {})
            self.assertEqual(r.status, 202, r)
            order_id = r.json()["id"]
            wait_status(c, order_id, "awaiting_confirmation")
            # everything stops: orion, then nats-server; the deadline passes while nothing runs
            self.assertEqual(stack.serves["all"].stop(20), 0, "serve did not stop cleanly")
            stack.nats.stop(10)
            time.sleep(4)
            stack.nats.start()
            self.assertTrue(wait_port(stack.nats_port), "nats-server did not come back")
            stack.start_serve("all", wait_http=True, ORION_RESERVATION_TTL=3)
            c = login(stack.http_port, c.email, "customer-password-1")
            order = wait_status(c, order_id, "cancelled", timeout=20)
            self.assertEqual(order["history"][-1]["reason"], "expired")
            a = admin(stack)
            wait_until(lambda: inventory_of(a, product)["reserved"] == 0, 10, what="the release")
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
