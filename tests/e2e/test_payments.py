#!/usr/bin/python3
"""Card payments through the whole stack (ADR 009, ADR 028), as customers live them.

Real nats-server, real SMTP server (aiosmtpd), the provider sandbox run
alone (`orion psp-sandbox --state FILE`, its signed webhooks sent to the
gateway) and `orion serve` with every role pointed at it (ORION_PSP_URL).
Cards are tokenized at the sandbox as a browser does (GET /payments/config,
POST /v1/payment_methods); Orion only ever sees the pm_ id. Only HTTP, the
sandbox's intents and events and the received emails are looked at.

Covers: an approved card (confirmed, the stock sold, the "confirmed" email,
one intent of the order's amount); the two declining cards (payment_failed
with the decline reason, the stock available again, the "payment_failed"
email); 3-D Secure approved and declined on the provider's page (the order
settled by the webhook); the same request 5 times with one Idempotency-Key,
one after the other and all at once (one charge, the same answer every
time); a payment in any other state (409, no charge); a card the provider
refuses to tokenize never reaches Orion, and a card sent to Orion is 400 on
every route; the provider's webhooks delivered 3 times and out of order (one
effect), with a bad or old signature (400, nothing changes); a refund the
provider refuses (refund failed, shown to admins) tried again by an admin;
the silent card settled by its webhook, and without webhooks by the payment
role asking the provider when the customer tries again (one charge); the sandbox bundled in `orion serve`; and the PCI
scan: after the payments, no file of the run (NATS store, LMDB, logs,
Maildir, the sandbox's state) holds a card number, a CVC or the holder's
name (see orion_e2e.pci_findings for the exact rules).

usage: ORION_BIN=build/cli/orion test_payments.py [-v] [TestCase.test_name]"""
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (HOLDER, Stack, StackTestCase, admin, awaiting_payment, create_product,  # noqa: E402
                       emails_by_order_status, pay, pci_findings, provider_call, register, tokenize,
                       wait_status, wait_until)

APPROVE = "4242424242424242"
DECLINE = "4000000000000002"  # card_declined / generic_decline
NO_FUNDS = "4000000000009995"  # card_declined / insufficient_funds
THREE_DS = "4000002500003155"  # asks for 3-D Secure
SILENT = "4000000000000309"  # charged, but the answer never comes
REFUND_FAILS = "4000000000005126"  # its first refund fails
INVALID = "4242424242424241"  # fails Luhn: the provider refuses to tokenize it
SENT_NUMBERS = (APPROVE, DECLINE, NO_FUNDS, THREE_DS, SILENT, REFUND_FAILS, INVALID, "5555555555554444")
WEBHOOK_SECRET = "whsec_test_orion"


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


def pay_with(client, order_id, method, key=None):
    return client.post(f"/orders/{order_id}/payment", {"payment_method": method},
                       headers={"Idempotency-Key": key} if key else None)


def answer_challenge(url, action):
    """The shopper's browser on the provider's 3-D Secure page: GET it, POST its form."""
    parsed = urllib.parse.urlparse(url)
    base = f"{parsed.scheme}://{parsed.netloc}"
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    page = provider_call(base, "GET", path, "")
    assert page.status == 200 and b"<form" in page.body, page
    r = provider_call(base, "POST", path, "", {"action": action})
    assert r.status in (200, 303), r


def signed_post(client, body, secret=WEBHOOK_SECRET, t=None):
    """POSTs body (bytes) to the webhook, signed as the provider signs."""
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return client.request("POST", "/api/v1/webhooks/psp", raw=body, content_type="application/json",
                          headers={"Orion-PSP-Signature": f"t={t},v1={mac}"})


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
                self.assertEqual(self.stack.charges(order_id), [])
                self.assertEqual([i["status"] for i in self.stack.intents(order_id)],
                                 ["requires_payment_method"])
                # payment_failed is final
                self.assertEqual(pay(c, order_id, APPROVE).status, 409)

    def test_3ds_approved_or_declined_on_the_providers_page_settles_by_webhook(self):
        for action, want in (("approve", "confirmed"), ("decline", "payment_failed")):
            with self.subTest(action=action):
                product = create_product(self.admin, unique("sku"), 3)
                c = self.customer()
                order_id = awaiting_payment(self.stack, c, product, 1)
                r = pay(c, order_id, THREE_DS, key=unique("k"))
                self.assertEqual(r.status, 200, r)
                order = r.json()
                self.assertEqual(order["status"], "awaiting_payment")
                self.assertEqual(order["payment"]["status"], "requires_action")
                url = order["payment"]["next_action"]["url"]
                answer_challenge(url, action)
                order = wait_status(c, order_id, want, timeout=20)
                self.assertEqual(email_sent(self.stack, order_id, want), 1)
                if want == "confirmed":
                    self.assertEqual(order["payment"], {"brand": "visa", "last4": "3155"})
                    self.assertEqual(len(self.stack.charges(order_id)), 1)
                else:
                    self.assertEqual(self.stack.charges(order_id), [])

    def test_the_same_request_five_times_one_after_the_other_is_one_charge(self):
        product = create_product(self.admin, unique("sku"), 5)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, 1)
        key, method = unique("k"), tokenize(c, APPROVE)
        replies = [pay_with(c, order_id, method, key=key) for _ in range(5)]
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
        key, method = unique("k"), tokenize(c, APPROVE)
        replies = [None] * 5
        start = threading.Barrier(5)

        def click(i):
            client = self.stack.client()
            client.token = c.token
            start.wait()
            replies[i] = pay_with(client, order_id, method, key=key)
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
        self.assertEqual(self.stack.intents(early), [])
        # confirmed: another key, or none, is a second payment
        paid = awaiting_payment(self.stack, c, product, 1)
        self.assertEqual(pay(c, paid, APPROVE, key=unique("k")).status, 200)
        self.assertEqual(pay(c, paid, APPROVE, key=unique("k")).status, 409)
        self.assertEqual(pay(c, paid, APPROVE).status, 409)
        self.assertEqual(len(self.stack.charges(paid)), 1)
        # somebody else's order does not exist for me
        other = self.customer()
        self.assertEqual(pay(other, paid, APPROVE).status, 404)

    def test_a_card_never_reaches_orion(self):
        product = create_product(self.admin, unique("sku"), 3)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, 1)
        # an invalid number is refused by the provider: there is nothing to send Orion
        r = c.get("/payments/config")
        config = r.json()
        r = provider_call(config["provider_url"], "POST", "/v1/payment_methods", config["publishable_key"],
                          {"type": "card", "card[number]": INVALID, "card[exp_month]": "12",
                           "card[exp_year]": "2030", "card[cvc]": "737"})
        self.assertEqual((r.status, r.json()["error"]["code"]), (402, "incorrect_number"), r)
        # a card sent to Orion itself: 400 on any route, nothing stored
        card = {"number": APPROVE, "exp_month": 12, "exp_year": 2030, "cvc": "737", "holder_name": HOLDER}
        for path, body in ((f"/orders/{order_id}/payment", {"card": card}),
                           (f"/orders/{order_id}/payment", {"payment_method": APPROVE}),
                           ("/cart/items", {"product_id": product, "quantity": 1, "card": card}),
                           ("/me/password", {"current_password": "x", "new_password": APPROVE})):
            r = c.post(path, body, headers={"Idempotency-Key": unique("k")})
            self.assertEqual((r.status, r.json().get("code")), (400, "card_data_refused"), (path, r))
        # and on every route of the API, whatever its method, whoever calls
        routes = subprocess.run([self.stack.orion, "routes"], env=self.stack.env(), capture_output=True,
                                text=True, timeout=30, check=True).stdout.splitlines()
        body = json.dumps({"card": card}).encode()
        checked = 0
        for line in routes:
            method, pattern, _access = line.split()
            if not pattern.startswith("/api/v1/") or pattern == "/api/v1/openapi.yaml":
                continue  # the operations routes take no body
            path = re.sub(r"\{[a-z_]+\}", order_id, pattern)
            for client in (c, self.stack.client()):
                r = client.request(method, path, raw=body, content_type="application/json")
                self.assertEqual((r.status, r.json().get("code")), (400, "card_data_refused"),
                                 (method, path, r))
                checked += 1
        self.assertGreater(checked, 60)
        # an id the provider never issued: 400, nothing charged
        r = pay_with(c, order_id, "pm_nobody_issued_this", key=unique("k"))
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.stack.charges(order_id), [])
        self.assertEqual(c.get(f"/orders/{order_id}").json()["status"], "awaiting_payment")

    def test_webhooks_again_out_of_order_or_forged_change_nothing(self):
        product = create_product(self.admin, unique("sku"), 5)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, 1)
        self.assertEqual(pay(c, order_id, APPROVE, key=unique("k")).status, 200)
        intent = self.stack.intents(order_id)[0]["id"]
        wait_until(lambda: any(e["data"]["object"]["id"] == intent and e.get("delivered")
                               for e in self.stack.events("payment_intent.succeeded")), 15,
                   what="the webhook of the success, delivered")
        event = [e for e in self.stack.events("payment_intent.succeeded") if e["data"]["object"]["id"] == intent][0]
        body = json.dumps({k: v for k, v in event.items() if k not in ("delivery_count", "delivered")}).encode()
        before = c.get(f"/orders/{order_id}").json()
        hook = self.stack.client()
        # the same event three more times, and a stale failure of the same intent after it
        for _ in range(3):
            r = signed_post(hook, body)
            self.assertEqual(r.status, 200, r)
        stale = dict(event, id=unique("evt"), type="payment_intent.payment_failed")
        stale["data"] = {"object": dict(event["data"]["object"], status="requires_payment_method",
                                        last_payment_error={"type": "card_error", "code": "card_declined",
                                                            "decline_code": "generic_decline"})}
        self.assertEqual(signed_post(hook, json.dumps(stale).encode()).status, 200)
        # forged, foreign or old: 400
        self.assertEqual(signed_post(hook, body, secret="whsec_other").status, 400)
        self.assertEqual(signed_post(hook, body, t=int(time.time()) - 301).status, 400)
        self.assertEqual(hook.request("POST", "/api/v1/webhooks/psp", raw=body,
                                      content_type="application/json").status, 400)
        after = c.get(f"/orders/{order_id}").json()
        self.assertEqual((after["status"], after["history"]), (before["status"], before["history"]))
        self.assertEqual(len(self.stack.charges(order_id)), 1)
        time.sleep(1)  # an email the repeats would cause would be on its way by now
        self.assertEqual(email_sent(self.stack, order_id, "confirmed"), 1)
        self.assertNotIn((order_id, "payment_failed"), emails_by_order_status(self.stack))

    def test_a_refund_the_provider_refuses_is_shown_and_an_admin_tries_again(self):
        product = create_product(self.admin, unique("sku"), 2)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, 1)
        self.assertEqual(pay(c, order_id, REFUND_FAILS, key=unique("k")).status, 200)
        r = c.post(f"/orders/{order_id}/cancel")
        self.assertEqual((r.status, r.json()["status"]), (200, "cancelled"), r)
        wait_until(lambda: (c.get(f"/orders/{order_id}").json()["refund"] or {}).get("status") == "failed", 20,
                   what="the refused refund")
        order = self.admin.get(f"/orders/{order_id}")  # not the admin's order: 404 there ...
        self.assertEqual(order.status, 404)
        # ... the admin tries it again
        r = self.admin.post(f"/admin/orders/{order_id}/refund")
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: c.get(f"/orders/{order_id}").json()["refund"]["status"] == "succeeded", 20,
                   what="the refund tried again")
        self.assertEqual(self.admin.post(f"/admin/orders/{order_id}/refund").status, 409)
        self.assertTrue(self.stack.charges(order_id)[0]["refunded"])
        # a customer may not
        self.assertEqual(c.post(f"/admin/orders/{order_id}/refund").status, 403)

    def test_the_silent_card_is_settled_by_its_webhook(self):
        product = create_product(self.admin, unique("sku"), 2)
        c = self.customer()
        order_id = awaiting_payment(self.stack, c, product, 1)
        r = pay(c, order_id, SILENT, key=unique("k"))
        self.assertIn(r.status, (200, 503), r)  # 200 once the webhook recorded it, else 503
        wait_status(c, order_id, "confirmed", timeout=30)
        self.assertEqual(len(self.stack.charges(order_id)), 1)
        self.assertEqual(email_sent(self.stack, order_id, "confirmed"), 1)

    def test_z_pci_scan_of_every_file_of_the_run(self):
        """Runs after the tests above (unittest sorts by name) on the same stack, and
        makes one payment of each kind itself, so it also stands alone."""
        product = create_product(self.admin, unique("sku"), 10)
        c = self.customer()
        for number, want in ((APPROVE, "confirmed"), (DECLINE, "payment_failed"), (NO_FUNDS, "payment_failed")):
            order_id = awaiting_payment(self.stack, c, product, 1)
            self.assertEqual(pay(c, order_id, number, key=unique("k")).status, 200)
            email_sent(self.stack, order_id, want)
        order_id = awaiting_payment(self.stack, c, product, 1)
        self.assertEqual(c.post(f"/orders/{order_id}/payment", {"card": {"number": APPROVE, "cvc": "737",
                                                                         "holder_name": HOLDER}}).status, 400)
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
    def test_without_webhooks_a_retry_of_the_silent_card_is_settled_by_asking_the_provider(self):
        stack = Stack("silent")
        stack.psp_webhooks = False  # the provider never tells: the payment role must ask
        stack.psp_args = ["--silent-hold-ms", "8000"]  # the held connection ends after 8 s, not 120
        try:
            stack.start_nats()
            stack.start_smtp()
            stack.start_psp()
            # the payment waits 5 s for the provider, not 25: the retries come sooner
            stack.start_serve("all", wait_http=True, ORION_PAYMENT_TIMEOUT_MS=5000)
            a = admin(stack)
            product = create_product(a, unique("sku"), 5)
            c = register(stack.http_port, f"{unique('s')}@example.com")
            order_id = awaiting_payment(stack, c, product, 2)
            key, method = unique("k"), tokenize(c, SILENT)
            r = pay_with(c, order_id, method, key=key)
            self.assertEqual(r.status, 503, r)
            # the customer tries again with the same key: the payment role asks the
            # provider about the attempt that had no answer, finds the charge, and
            # the order is paid, once
            def retried():
                r = pay_with(c, order_id, method, key=key)
                self.assertIn(r.status, (200, 409, 503), r)  # 409 in_progress while the attempt may still answer
                return r.status == 200 and r.json()["status"] == "confirmed"
            wait_until(retried, 90, interval=2, what="a retry that finds the charge")
            self.assertEqual(len(stack.charges(order_id)), 1)
            self.assertFalse(stack.charges(order_id)[0]["refunded"])
            email_sent(stack, order_id, "confirmed")
            self.assertEqual(stack.events("payment_intent.succeeded")[0]["delivered"], False)
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
            product = create_product(a, unique("sku"), 3)
            c = register(stack.http_port, f"{unique('b')}@example.com")
            order_id = awaiting_payment(stack, c, product, 1)
            r = pay(c, order_id, APPROVE, key=unique("k"))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], "confirmed")
            r = pay(c, awaiting_payment(stack, c, product, 1), DECLINE)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], "payment_failed")
            # 3-D Secure: the bundled sandbox's webhooks reach this gateway
            order_id = awaiting_payment(stack, c, product, 1)
            r = pay(c, order_id, THREE_DS, key=unique("k"))
            answer_challenge(r.json()["payment"]["next_action"]["url"], "approve")
            wait_status(c, order_id, "confirmed", timeout=20)
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
