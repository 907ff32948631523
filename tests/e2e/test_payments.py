#!/usr/bin/python3
"""Card payments through the whole stack (ADR 009), as customers live them.

Real nats-server, real SMTP server (aiosmtpd), the provider sandbox run
alone (`orion psp-sandbox --state FILE`, so the test can list its charges)
and `orion serve` with every role pointed at it (ORION_PSP_URL). Only HTTP,
the sandbox's charge list and the received emails are looked at.

Covers: an approved card (confirmed, the stock sold, the "confirmed" email,
one charge of the order's amount); the two declining cards (payment_failed
with the decline reason, the stock available again, the "payment_failed"
email); the same request 5 times with one Idempotency-Key, one after the
other and all at once (one charge, the same answer every time); a payment
in any other state (409, no charge); the silent card with a short
reservation TTL (503, then the order cancelled as expired, its stock
released and the late charge refunded at the sandbox); the sandbox bundled
in `orion serve` (no ORION_PSP_URL); and the PCI scan: after the payments,
no file of the run (NATS store, LMDB, logs, Maildir, the sandbox's state)
holds a card number, a CVC or the holder's name (see orion_e2e.pci_findings
for the exact rules).

usage: ORION_BIN=build/cli/orion test_payments.py [-v] [TestCase.test_name]"""
import os
import sys
import threading
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (HOLDER, Stack, StackTestCase, admin, awaiting_payment, create_product,  # noqa: E402
                       emails_by_order_status, pay, pci_findings, register, wait_status, wait_until)

APPROVE = "4242424242424242"
DECLINE = "4000000000000002"  # card_declined / generic_decline
NO_FUNDS = "4000000000009995"  # card_declined / insufficient_funds
SILENT = "4000000000000309"  # charged, but the answer never comes
INVALID = "4242424242424241"  # fails Luhn: refused before any charge
SENT_NUMBERS = (APPROVE, DECLINE, NO_FUNDS, SILENT, INVALID)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def inventory_of(admin_client, product_id):
    r = admin_client.get(f"/admin/products/{product_id}")
    assert r.status == 200, r
    return r.json()


def email_sent(stack, order_id, status, timeout=15):
    wait_until(lambda: emails_by_order_status(stack).get((order_id, status)), timeout,
               what=f"the {status} email of {order_id}")
    return emails_by_order_status(stack)[(order_id, status)]


class Payments(StackTestCase):
    NAME = "payments"
    PSP = True

    def customer(self):
        return register(self.stack.http_port, f"{unique('p')}@example.com")

    def test_an_approved_card_confirms_sells_the_stock_and_emails(self):
        product = create_product(self.admin, unique("sku"), 5, price=1999)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, 2)
        self.assertEqual(inventory_of(self.admin, product)["reserved"], 2)
        r = pay(c, order_id, APPROVE, key=unique("k"))
        self.assertEqual(r.status, 200, r)
        order = r.json()
        self.assertEqual(order["status"], "confirmed")
        self.assertEqual(order["payment"], {"brand": "visa", "last4": "4242"})
        self.assertEqual([h["status"] for h in order["history"]][-2:], ["awaiting_payment", "confirmed"])
        # read-your-writes: the next GET already says so
        self.assertEqual(c.get(f"/orders/{order_id}").json()["status"], "confirmed")
        # the stock is sold: no longer reserved, no longer on hand
        wait_until(lambda: inventory_of(self.admin, product)["reserved"] == 0, 10, what="the commit")
        stock = inventory_of(self.admin, product)
        self.assertEqual((stock["on_hand"], stock["reserved"], stock["available"]), (3, 0, 3))
        self.assertEqual(email_sent(self.stack, order_id, "confirmed"), 1)
        charges = self.stack.charges(order_id)
        self.assertEqual(len(charges), 1, charges)
        self.assertEqual((charges[0]["status"], charges[0]["amount"], charges[0]["currency"]),
                         ("succeeded", 2 * 1999, "eur"))
        self.assertFalse(charges[0]["refunded"])

    def test_declined_cards_fail_the_payment_release_the_stock_and_email(self):
        for number, reason in ((DECLINE, "generic_decline"), (NO_FUNDS, "insufficient_funds")):
            with self.subTest(card=number):
                product = create_product(self.admin, unique("sku"), 4)
                c = self.customer()
                order_id = awaiting_payment(self.stack, c, product, 3)
                r = pay(c, order_id, number, key=unique("k"))
                self.assertEqual(r.status, 200, r)
                order = r.json()
                self.assertEqual(order["status"], "payment_failed")
                self.assertEqual(order["history"][-1]["reason"], reason)
                self.assertIsNone(order["payment"])
                wait_until(lambda p=product: inventory_of(self.admin, p)["reserved"] == 0, 10,
                           what="the release")
                stock = inventory_of(self.admin, product)
                self.assertEqual((stock["on_hand"], stock["available"]), (4, 4))
                self.assertEqual(email_sent(self.stack, order_id, "payment_failed"), 1)
                self.assertNotIn((order_id, "confirmed"), emails_by_order_status(self.stack))
                charges = self.stack.charges(order_id)
                self.assertEqual([ch["status"] for ch in charges], ["failed"], charges)
                # payment_failed is final
                self.assertEqual(pay(c, order_id, APPROVE).status, 409)

    def test_the_same_request_five_times_one_after_the_other_is_one_charge(self):
        product = create_product(self.admin, unique("sku"), 5)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, 1)
        key = unique("k")
        replies = [pay(c, order_id, APPROVE, key=key) for _ in range(5)]
        self.assertEqual([r.status for r in replies], [200] * 5, replies)
        self.assertEqual(len({r.body for r in replies}), 1, "the same answer every time")
        self.assertEqual(replies[0].json()["status"], "confirmed")
        self.assertEqual(len(self.stack.charges(order_id)), 1)
        # the same key with another card is not a retry
        self.assertEqual(pay(c, order_id, "5555555555554444", key=key).status, 422)
        self.assertEqual(len(self.stack.charges(order_id)), 1)

    def test_the_same_request_five_times_at_once_is_one_charge(self):
        product = create_product(self.admin, unique("sku"), 5)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, 1)
        key = unique("k")
        replies = [None] * 5
        start = threading.Barrier(5)

        def click(i):
            client = self.stack.client()
            client.token = c.token
            start.wait()
            replies[i] = pay(client, order_id, APPROVE, key=key)
        threads = [threading.Thread(target=click, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([r.status for r in replies], [200] * 5, replies)
        self.assertEqual(len({r.body for r in replies}), 1, "the same answer every time")
        self.assertEqual(replies[0].json()["status"], "confirmed")
        self.assertEqual(len(self.stack.charges(order_id)), 1)
        self.assertEqual(email_sent(self.stack, order_id, "confirmed"), 1)

    def test_a_payment_in_any_other_state_is_409_and_charges_nothing(self):
        product = create_product(self.admin, unique("sku"), 10)
        c = self.customer()
        # pending or awaiting_confirmation (the saga may have reserved already)
        self.assertEqual(c.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)
        r = c.post("/orders", {})
        self.assertEqual(r.status, 202, r)
        early = r.json()["id"]
        self.assertEqual(pay(c, early, APPROVE).status, 409)
        wait_status(c, early, "awaiting_confirmation")
        self.assertEqual(pay(c, early, APPROVE, key=unique("k")).status, 409)
        # cancelled
        self.assertEqual(c.post(f"/orders/{early}/cancel").status, 200)
        self.assertEqual(pay(c, early, APPROVE).status, 409)
        self.assertEqual(self.stack.charges(early), [])
        # confirmed: another key, or none, is a second payment
        paid = awaiting_payment(self.stack, c, product, 1)
        self.assertEqual(pay(c, paid, APPROVE, key=unique("k")).status, 200)
        self.assertEqual(pay(c, paid, APPROVE, key=unique("k")).status, 409)
        self.assertEqual(pay(c, paid, APPROVE).status, 409)
        self.assertEqual(len(self.stack.charges(paid)), 1)
        # somebody else's order does not exist for me
        other = self.customer()
        self.assertEqual(pay(other, paid, APPROVE).status, 404)

    def test_an_invalid_card_is_refused_before_any_charge(self):
        product = create_product(self.admin, unique("sku"), 3)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, 1)
        r = pay(c, order_id, INVALID, key=unique("k"))
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["errors"][0]["field"], "card.number")
        r = pay(c, order_id, APPROVE, exp_year=2020)
        self.assertEqual(r.status, 400, r)
        self.assertTrue(r.json()["errors"][0]["field"].startswith("card.exp_"), r)
        self.assertEqual(self.stack.charges(order_id), [])
        self.assertEqual(c.get(f"/orders/{order_id}").json()["status"], "awaiting_payment")

    def test_z_pci_scan_of_every_file_of_the_run(self):
        """Runs after the tests above (unittest sorts by name) on the same stack, and
        makes one payment of each kind itself, so it also stands alone."""
        product = create_product(self.admin, unique("sku"), 10)
        c = self.customer()
        for number, want in ((APPROVE, 200), (DECLINE, 200), (NO_FUNDS, 200), (INVALID, 400)):
            order_id = awaiting_payment(self.stack, c, product, 1)
            self.assertEqual(pay(c, order_id, number, key=unique("k")).status, want)
            if want == 200:
                email_sent(self.stack, order_id, "confirmed" if number == APPROVE else "payment_failed")
        # stop the writers so every byte is on disk, then look at everything
        for p in self.stack.serves.values():
            self.assertEqual(p.stop(20), 0, "serve did not stop cleanly")
        self.stack.psp.stop(10)
        self.stack.nats.stop(10)
        findings, scanned = pci_findings([self.stack.dir], numbers=SENT_NUMBERS, texts=(HOLDER,))
        kinds = {
            "NATS store": [p for p in scanned if p.startswith(os.path.join(self.stack.dir, "nats") + os.sep)],
            "LMDB": [p for p in scanned if os.path.basename(p) == "data.mdb"],
            "logs": [p for p in scanned if p.endswith(".log")],
            "Maildir": [p for p in scanned if p.startswith(self.stack.mailbox_dir + os.sep)],
            "sandbox state": [p for p in scanned if p == self.stack.psp_state],
        }
        for kind, files in kinds.items():
            self.assertTrue(files, f"the scan saw no file of the {kind}")
        print(f"\n  PCI scan: {len(scanned)} files, " + ", ".join(f"{k} {len(v)}" for k, v in kinds.items()),
              file=sys.stderr)
        self.assertEqual(findings, [], "card data found:\n" + "\n".join(findings[:50]))


class SilentProvider(unittest.TestCase):
    def test_the_silent_card_ends_cancelled_with_the_charge_refunded(self):
        stack = Stack("silent")
        try:
            stack.start_nats()
            stack.start_smtp()
            stack.start_psp()
            stack.start_serve("all", wait_http=True, ORION_RESERVATION_TTL=6)
            a = admin(stack)
            product = create_product(a, unique("sku"), 5)
            c = register(stack.http_port, f"{unique('s')}@example.com")
            order_id = awaiting_payment(stack, c, product, 2)
            key = unique("k")
            r = pay(c, order_id, SILENT, key=key)
            self.assertEqual(r.status, 503, r)
            # the deadline cancels the order, its stock is released ...
            order = wait_status(c, order_id, "cancelled", timeout=30)
            self.assertEqual(order["history"][-1]["reason"], "expired")
            wait_until(lambda: inventory_of(a, product)["reserved"] == 0, 10, what="the release")
            self.assertEqual(inventory_of(a, product)["available"], 5)
            # ... and the charge that went through at the provider is refunded
            wait_until(lambda: all(ch["refunded"] for ch in stack.charges(order_id)
                                   if ch["status"] == "succeeded") and stack.charges(order_id), 30,
                       interval=0.5, what="the refund of the late charge")
            charges = stack.charges(order_id)
            self.assertEqual([(ch["status"], ch["refunded"]) for ch in charges], [("succeeded", True)])
            # a retry now finds the order cancelled
            self.assertEqual(pay(c, order_id, SILENT, key=key).status, 409)
            email_sent(stack, order_id, "cancelled")
            self.assertNotIn((order_id, "confirmed"), emails_by_order_status(stack))
        finally:
            stack.close()


class BundledSandbox(unittest.TestCase):
    def test_serve_without_a_provider_url_pays_at_its_own_sandbox(self):
        stack = Stack("bundled")
        try:
            stack.start_nats()
            stack.start_smtp()
            stack.start_serve("all", wait_http=True)  # no ORION_PSP_URL: role psp
            a = admin(stack)
            product = create_product(a, unique("sku"), 2)
            c = register(stack.http_port, f"{unique('b')}@example.com")
            order_id = awaiting_payment(stack, c, product, 1)
            r = pay(c, order_id, APPROVE, key=unique("k"))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], "confirmed")
            r = pay(c, awaiting_payment(stack, c, product, 1), DECLINE)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], "payment_failed")
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
