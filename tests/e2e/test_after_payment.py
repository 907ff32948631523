#!/usr/bin/python3
"""An order's life after payment (ADR 028 §3), through the whole stack.

Real nats-server, real SMTP server (aiosmtpd), the provider sandbox run alone
(`orion psp-sandbox --state FILE`, so the test can list its charges and read
its refunds) and `orion serve` with every role. Payment is today's flow
(POST /orders/{id}/payment with a test card, as test_payments.py). Only HTTP,
the sandbox's charges and state file, and the received emails are looked at.

Covers: an admin ships a paid order (the customer sees shipped with the
carrier and tracking number and gets one email naming them, escaped in
HTML), a repeated ship is answered as it is and another tracking number is
409, a cancel after shipping is 409 for the customer and the admin, deliver
makes it delivered with one more email, and the sale stands (no refund); a
paid order cancelled by its customer puts its units back on hand, is
refunded exactly once at the sandbox, and says so in its email; an admin
cancels a paid order too; the admin routes refuse customers (403), unknown
orders (404) and bad bodies (400 with the field).

usage: ORION_BIN=build/cli/orion test_after_payment.py [-v] [TestCase.test_name]"""
import json
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (StackTestCase, awaiting_payment, create_product, emails_by_order_status,  # noqa: E402
                       pay, register, wait_status, wait_until)

APPROVE = "4242424242424242"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def stock_of(admin_client, product_id):
    r = admin_client.get(f"/admin/products/{product_id}")
    assert r.status == 200, r
    return r.json()


def field_names(reply):
    return {e["field"] for e in reply.json().get("errors", [])}


class AfterPayment(StackTestCase):
    NAME = "after-payment"
    PSP = True

    def customer(self):
        return register(self.stack.http_port, f"{unique('ap')}@example.com")

    def paid_order(self, stock=5, quantity=2, price=1999):
        """A confirmed order of quantity units of a new product: (client, order id, product id)."""
        product = create_product(self.admin, unique("sku"), stock, price=price)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, quantity)
        r = pay(c, order_id, APPROVE, key=unique("k"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "confirmed")
        self.assertIsNone(r.json()["shipment"])
        # the sale is committed: nothing reserved, on hand down
        wait_until(lambda: stock_of(self.admin, product)["reserved"] == 0, 15, what="the commit")
        self.assertEqual(stock_of(self.admin, product)["on_hand"], stock - quantity)
        return c, order_id, product

    def email(self, order_id, status, timeout=15):
        """The one email of (order, status): (text, html); fails if none or more than one."""
        wait_until(lambda: emails_by_order_status(self.stack).get((order_id, status)), timeout,
                   what=f"the {status} email of {order_id}")
        found = [m for m in self.stack.messages()
                 if str(m.get("Message-ID", "")).strip() == f"<{order_id}.{status}@orion>"]
        self.assertEqual(len(found), 1, f"one {status} email")
        m = found[0]
        return (m.get_body(preferencelist=("plain",)).get_content(),
                m.get_body(preferencelist=("html",)).get_content())

    def refunds_of(self, charge_id):
        """The refunds the sandbox recorded for charge_id (its state file, one JSON line each)."""
        out = []
        with open(self.stack.psp_state, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                # ADR 009's charge refunds, and ADR 028's refunds by intent (charge_id: the intent's id)
                if record.get("type") in ("refund", "intent_refund") and charge_id in (
                        record["refund"].get("charge"), record["refund"].get("payment_intent")):
                    out.append(record["refund"])
        return out

    def test_ship_then_deliver_with_one_email_each_and_no_cancel_after_shipping(self):
        c, order_id, product = self.paid_order()
        # customers may not ship
        self.assertEqual(c.post(f"/admin/orders/{order_id}/ship",
                                {"carrier": "DHL", "tracking_number": "JD1"}).status, 403)
        # bad bodies name the field
        r = self.admin.post(f"/admin/orders/{order_id}/ship", {"carrier": "DHL"})
        self.assertEqual(r.status, 400, r)
        self.assertIn("tracking_number", field_names(r))
        r = self.admin.post(f"/admin/orders/{order_id}/ship", {"carrier": "DHL", "tracking_number": "JD\u00e91"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(field_names(r), {"tracking_number"})
        r = self.admin.post(f"/admin/orders/{order_id}/ship", {"carrier": "", "tracking_number": "JD1"})
        self.assertEqual(r.status, 400, r)
        self.assertIn("carrier", field_names(r))
        self.assertEqual(self.admin.post(f"/admin/orders/{unique('o')}/ship",
                                         {"carrier": "DHL", "tracking_number": "JD1"}).status, 404)
        # deliver before shipping: 409
        self.assertEqual(self.admin.post(f"/admin/orders/{order_id}/deliver").status, 409)

        carrier, tracking = "DHL <Express> & Co", "JD014600003SE"
        r = self.admin.post(f"/admin/orders/{order_id}/ship", {"carrier": carrier, "tracking_number": tracking})
        self.assertEqual(r.status, 200, r)
        order = r.json()
        self.assertEqual(order["status"], "shipped")
        self.assertEqual(order["shipment"]["carrier"], carrier)
        self.assertEqual(order["shipment"]["tracking_number"], tracking)
        self.assertIsNone(order["shipment"]["delivered_at"])
        self.assertEqual(order["payment"], {"brand": "visa", "last4": "4242"})
        # the customer sees it (read-your-writes: the next GET already does)
        mine = c.get(f"/orders/{order_id}").json()
        self.assertEqual(mine["status"], "shipped")
        self.assertEqual(mine["shipment"]["tracking_number"], tracking)
        self.assertEqual([h["status"] for h in mine["history"]][-2:], ["confirmed", "shipped"])
        text, html = self.email(order_id, "shipped")
        self.assertIn(f"Carrier: {carrier}", text)
        self.assertIn(f"Tracking number: {tracking}", text)
        self.assertIn("DHL &lt;Express&gt; &amp; Co", html)
        self.assertNotIn("<Express>", html)

        # the same shipment again is answered as it is; another one is refused
        r = self.admin.post(f"/admin/orders/{order_id}/ship", {"carrier": carrier, "tracking_number": tracking})
        self.assertEqual((r.status, r.json()["status"]), (200, "shipped"), r)
        self.assertEqual(self.admin.post(f"/admin/orders/{order_id}/ship",
                                         {"carrier": carrier, "tracking_number": "OTHER"}).status, 409)
        # no cancel after shipping, by anyone
        r = c.post(f"/orders/{order_id}/cancel")
        self.assertEqual(r.status, 409, r)
        r = self.admin.post(f"/admin/orders/{order_id}/cancel", {"reason": "too late"})
        self.assertEqual(r.status, 409, r)

        self.assertEqual(c.post(f"/admin/orders/{order_id}/deliver").status, 403)
        r = self.admin.post(f"/admin/orders/{order_id}/deliver")
        self.assertEqual(r.status, 200, r)
        order = r.json()
        self.assertEqual(order["status"], "delivered")
        self.assertIsNotNone(order["shipment"]["delivered_at"])
        self.assertEqual([h["status"] for h in order["history"]],
                         ["pending", "awaiting_confirmation", "awaiting_payment", "confirmed", "shipped",
                          "delivered"])
        text, _ = self.email(order_id, "delivered")
        self.assertIn("was delivered", text)
        r = self.admin.post(f"/admin/orders/{order_id}/deliver", {})
        self.assertEqual((r.status, r.json()["status"]), (200, "delivered"), r)
        self.assertEqual(c.post(f"/orders/{order_id}/cancel").status, 409)

        # the sale stands: the units stay sold, the charge is not refunded
        self.assertEqual(stock_of(self.admin, product)["on_hand"], 3)
        charges = self.stack.charges(order_id)
        self.assertEqual([(ch["status"], ch["refunded"]) for ch in charges], [("succeeded", False)], charges)
        counts = emails_by_order_status(self.stack)
        self.assertEqual((counts.get((order_id, "shipped")), counts.get((order_id, "delivered"))), (1, 1))
        self.assertNotIn((order_id, "cancelled"), counts)

    def test_a_paid_order_cancelled_by_its_customer_returns_its_units_and_is_refunded_once(self):
        c, order_id, product = self.paid_order(stock=5, quantity=2, price=1999)
        r = c.post(f"/orders/{order_id}/cancel")
        self.assertEqual(r.status, 200, r)
        order = r.json()
        self.assertEqual(order["status"], "cancelled")
        self.assertEqual(order["history"][-1]["reason"], "customer")
        self.assertEqual([h["status"] for h in order["history"]][-2:], ["confirmed", "cancelled"])
        # the sold units are back on hand
        wait_until(lambda: stock_of(self.admin, product)["on_hand"] == 5, 15, what="the return of the units")
        stock = stock_of(self.admin, product)
        self.assertEqual((stock["on_hand"], stock["reserved"], stock["available"]), (5, 0, 5))
        # refunded at the sandbox, exactly once
        wait_until(lambda: all(ch["refunded"] for ch in self.stack.charges(order_id)), 20, what="the refund")
        charges = self.stack.charges(order_id)
        self.assertEqual(len(charges), 1, charges)
        refunds = self.refunds_of(charges[0]["id"])
        self.assertEqual(len(refunds), 1, refunds)
        self.assertEqual(refunds[0]["amount"], 2 * 1999)
        text, _ = self.email(order_id, "cancelled")
        self.assertIn("after it was paid", text)
        self.assertIn("We are refunding 39.98 EUR to your visa card ending in 4242", text)
        self.assertNotIn("Nothing was charged", text)
        # a repeat is answered as it is; nothing ships any more; nothing moves twice
        r = c.post(f"/orders/{order_id}/cancel")
        self.assertEqual((r.status, r.json()["status"]), (200, "cancelled"), r)
        self.assertEqual(self.admin.post(f"/admin/orders/{order_id}/ship",
                                         {"carrier": "DHL", "tracking_number": "JD1"}).status, 409)
        self.assertEqual(stock_of(self.admin, product)["on_hand"], 5)
        self.assertEqual(len(self.refunds_of(charges[0]["id"])), 1)

    def test_an_admin_cancels_a_paid_order_and_an_open_one(self):
        c, order_id, product = self.paid_order(stock=4, quantity=1)
        self.assertEqual(c.post(f"/admin/orders/{order_id}/cancel", {"reason": "fraud check"}).status, 403)
        r = self.admin.post(f"/admin/orders/{order_id}/cancel", {})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(field_names(r), {"reason"})
        self.assertEqual(self.admin.post(f"/admin/orders/{unique('o')}/cancel", {"reason": "x"}).status, 404)
        r = self.admin.post(f"/admin/orders/{order_id}/cancel", {"reason": "the customer phoned"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json()["status"], r.json()["history"][-1]["reason"]), ("cancelled", "admin"))
        wait_until(lambda: stock_of(self.admin, product)["on_hand"] == 4, 15, what="the return of the units")
        wait_until(lambda: all(ch["refunded"] for ch in self.stack.charges(order_id)), 20, what="the refund")
        self.assertEqual(len(self.refunds_of(self.stack.charges(order_id)[0]["id"])), 1)
        text, _ = self.email(order_id, "cancelled")
        self.assertIn("cancelled by the shop after it was paid", text)

        # an order not yet paid: its reservation is released, nothing is refunded
        other = create_product(self.admin, unique("sku"), 3)
        c2 = self.customer()
        open_id = awaiting_payment(self.stack, c2, other, 2)
        r = self.admin.post(f"/admin/orders/{open_id}/cancel", {"reason": "out of season"})
        self.assertEqual((r.status, r.json()["status"]), (200, "cancelled"), r)
        wait_until(lambda: stock_of(self.admin, other)["available"] == 3, 15, what="the release")
        self.assertEqual(stock_of(self.admin, other)["on_hand"], 3)
        self.assertEqual(self.stack.charges(open_id), [])
        wait_status(c2, open_id, "cancelled")


if __name__ == "__main__":
    unittest.main()
