#!/usr/bin/python3
"""Lost confirmation links (issue 14, finding 8) through the whole stack.

Real nats-server, an SMTP server (aiosmtpd) and `orion serve`, with a small
attempt bound (ORION_MAIL_MAX_ATTEMPTS=2: about a second of retries) so an
outage outlives it at once:

- a confirmation email is retried past the attempt bound for as long as its
  order awaits confirmation (until the order's deadline), so an SMTP outage
  longer than the bound does not lose the link: once the server is back, the
  email arrives;
- the customer asks for the confirmation email again
  (POST /orders/{id}/confirmation-email → 202): a second copy arrives, with
  its own Message-ID; asking again at once is 429; another customer's order
  is 404; an order that no longer awaits confirmation is 409;
- an admin resends an email from the mail log (POST /admin/mail/{id}/resend
  → 202); a customer may not (403); an unknown email is 404.

usage: ORION_BIN=build/cli/orion test_mail_resend.py [-v]"""
import re
import sys
import time
import unittest
import uuid

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from orion_e2e import (StackTestCase, confirmation_link, create_product, query_token, register,  # noqa: E402
                       wait_status, wait_until)

PASSWORD = "Hazel-compass-river-27"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class LostConfirmationLinks(StackTestCase):
    NAME = "mail-resend"
    SERVE_ENV = {"ORION_MAIL_MAX_ATTEMPTS": "2", "ORION_RESERVATION_TTL": "300"}

    @classmethod
    def set_up_class(cls):
        cls.product = create_product(cls.admin, unique("RESEND").upper(), 100)

    def customer(self):
        return register(self.stack.http_port, f"{unique('c')}@example.com", password=PASSWORD)

    def place(self, customer):
        r = customer.post("/cart/items", {"product_id": self.product, "quantity": 1})
        self.assertEqual(r.status, 200, r)
        r = customer.post("/orders", {})
        self.assertEqual(r.status, 202, r)
        order = r.json()["id"]
        wait_status(customer, order, "awaiting_confirmation")
        return order

    def confirmation_entry(self, order):
        r = self.admin.get(f"/admin/mail?order_id={order}")
        self.assertEqual(r.status, 200, r)
        entries = [e for e in r.json()["items"] if e["kind"] == "awaiting_confirmation"]
        return entries[0] if entries else None

    def message_ids(self, order):
        return sorted(str(m.get("Message-ID", "")).strip() for m in self.stack.messages()
                      if f"<{order}.awaiting_confirmation" in str(m.get("Message-ID", "")))

    def test_a_confirmation_is_retried_past_the_attempt_bound_until_its_deadline(self):
        customer = self.customer()
        self.stack.stop_smtp()
        try:
            order = self.place(customer)
            # well past the bound of 2 attempts (about 0.75 s of backoff)
            entry = wait_until(lambda: (lambda e: e if e and e["attempts"] > 3 else None)(
                self.confirmation_entry(order)), 30, interval=0.5, what="more attempts than the bound")
            self.assertEqual(entry["status"], "pending", entry)
        finally:
            self.stack.start_smtp()
        link = confirmation_link(self.stack, order, timeout=60)
        r = self.stack.client().post(f"/orders/{order}/confirm", {"token": query_token(link)})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.confirmation_entry(order)["status"], "delivered")

    def test_the_customer_asks_for_the_confirmation_email_again(self):
        customer = self.customer()
        order = self.place(customer)
        link = confirmation_link(self.stack, order)
        wait_until(lambda: (self.confirmation_entry(order) or {}).get("status") == "delivered", 15,
                   what="the first email delivered")
        r = customer.post(f"/orders/{order}/confirmation-email")
        self.assertEqual(r.status, 202, r)
        ids = wait_until(lambda: (lambda i: i if len(i) == 2 else None)(self.message_ids(order)), 20,
                         what="a second copy")
        self.assertEqual(ids, [f"<{order}.awaiting_confirmation.r1@orion>", f"<{order}.awaiting_confirmation@orion>"])
        copies = [m for m in self.stack.messages()
                  if str(m.get("Message-ID", "")).strip() == f"<{order}.awaiting_confirmation.r1@orion>"]
        self.assertIn(query_token(link), copies[0].get_body(preferencelist=("plain",)).get_content())
        # at once again: too soon
        r = customer.post(f"/orders/{order}/confirmation-email")
        self.assertEqual(r.status, 429, r)
        # somebody else's order is not found
        self.assertEqual(self.customer().post(f"/orders/{order}/confirmation-email").status, 404)
        # once confirmed, there is nothing to resend
        r = self.stack.client().post(f"/orders/{order}/confirm", {"token": query_token(link)})
        self.assertEqual(r.status, 200, r)
        wait_status(customer, order, "awaiting_payment")
        self.assertEqual(customer.post(f"/orders/{order}/confirmation-email").status, 409)

    def test_an_admin_resends_from_the_mail_log(self):
        customer = self.customer()
        order = self.place(customer)
        confirmation_link(self.stack, order)
        entry = wait_until(lambda: (lambda e: e if e and e["status"] == "delivered" else None)(
            self.confirmation_entry(order)), 15, what="the email delivered")
        self.assertEqual(customer.post(f"/admin/mail/{entry['id']}/resend").status, 403)
        r = self.admin.post(f"/admin/mail/{entry['id']}/resend")
        self.assertEqual(r.status, 202, r)
        wait_until(lambda: len(self.message_ids(order)) == 2, 20, what="the resent copy")
        self.assertEqual(self.admin.post("/admin/mail/m00000000000000000000000000000000/resend").status, 404)


if __name__ == "__main__":
    unittest.main()
