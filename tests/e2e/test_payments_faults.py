#!/usr/bin/python3
"""A payment process killed between the provider's answer and the event
(suite `fault`; ADR 009, section 4).

The shop runs as two processes against one nats-server, with the provider
sandbox alone (its state in a file, so it survives its own restart):
  front    --roles stock,product,user,cart,order,checkout,projector,gateway,mail
  payment  --roles payment, first with ORION_FAULT_PAYMENT_KILL_AFTER_CHARGE=1:
           it raises SIGKILL right after the provider answered the charge,
           before any event is appended.

The customer pays (a card tokenized at the provider) with an
Idempotency-Key: the request fails (503) and the provider has charged once;
its webhook finds no payment role to record it (503, so the provider sends
it again). The payment process comes back without the fault
(and the sandbox is restarted too, from its state file) on another listening
address, as another payment host would; the customer's retry
with the same key and body gets the provider's stored first answer: 200
confirmed, exactly one charge, the stock sold, one "confirmed" email.

usage: ORION_BIN=build/cli/orion test_payments_faults.py [-v]"""
import os
import signal
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (Stack, admin, awaiting_payment, create_product, emails_by_order_status,  # noqa: E402
                       free_port, register, tokenize, wait_until)

FRONT = "stock,product,user,cart,order,checkout,projector,gateway,mail"
FAULT_ENV = "ORION_FAULT_PAYMENT_KILL_AFTER_CHARGE"
APPROVE = "4242424242424242"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def pay(client, order_id, method, key):
    """The customer's request, the same every time: one payment method, one key."""
    return client.post(f"/orders/{order_id}/payment", {"payment_method": method}, headers={"Idempotency-Key": key})


class PaymentCrash(unittest.TestCase):
    def test_kill_9_between_the_charge_and_the_event_then_a_retry_is_one_charge(self):
        stack = Stack("payfault")
        try:
            stack.start_nats()
            stack.start_smtp()
            stack.start_psp()
            # the gateway gives up on the killed payment process after 6 s, not 25
            stack.start_serve("front", FRONT, wait_http=True, ORION_PAYMENT_TIMEOUT_MS=6000)
            victim = stack.start_serve("payment", "payment", **{FAULT_ENV: "1"})
            a = admin(stack)
            product = create_product(a, unique("sku"), 5, price=4200)
            c = register(stack.http_port, f"{unique('f')}@example.com")
            order_id = awaiting_payment(stack, c, product, 2)
            key, method = unique("k"), tokenize(c, APPROVE)

            started = time.monotonic()
            r = pay(c, order_id, method, key)
            self.assertEqual(r.status, 503, r)
            print(f"\n  the failed request took {time.monotonic() - started:.1f}s", file=sys.stderr)
            victim.proc.wait(timeout=10)
            self.assertEqual(victim.proc.returncode, -signal.SIGKILL, "the payment process was not killed")
            # the provider charged; nothing was recorded
            charges = stack.charges(order_id)
            self.assertEqual([ch["status"] for ch in charges], ["succeeded"], charges)
            self.assertEqual(c.get(f"/orders/{order_id}").json()["status"], "awaiting_payment")

            # the sandbox restarts from its state file, the payment process without the fault
            stack.psp.stop(10)
            stack.start_psp()
            self.assertEqual(len(stack.charges(order_id)), 1, "the charge did not survive the restart")
            victim.env.pop(FAULT_ENV, None)
            # as another payment host taking over: its own listening address. A
            # payment host took its 3-D Secure return page from it (the default
            # public URL), so this one sent the provider other parameters under
            # the same idempotency key and the retry was refused 422 (seen in
            # the cluster suite)
            victim.env["ORION_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
            victim.start()
            wait_until(lambda: victim.log().count("Orion is running") >= 2 or not victim.running(), 40,
                       what="the restarted payment process")
            self.assertTrue(victim.running(), victim.log()[-3000:])

            r = pay(c, order_id, method, key)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], "confirmed")
            self.assertEqual(r.json()["payment"], {"brand": "visa", "last4": "4242"})
            charges = stack.charges(order_id)
            self.assertEqual(len(charges), 1, f"charged more than once: {charges}")
            self.assertEqual((charges[0]["status"], charges[0]["refunded"], charges[0]["amount"]),
                             ("succeeded", False, 2 * 4200))
            # the same answer again, still one charge
            again = pay(c, order_id, method, key)
            self.assertEqual((again.status, again.body), (200, r.body))
            self.assertEqual(len(stack.charges(order_id)), 1)
            wait_until(lambda: a.get(f"/admin/products/{product}").json()["reserved"] == 0, 10, what="the commit")
            stock = a.get(f"/admin/products/{product}").json()
            self.assertEqual((stock["on_hand"], stock["available"]), (3, 3))
            wait_until(lambda: emails_by_order_status(stack).get((order_id, "confirmed")), 15,
                       what="the confirmed email")
            time.sleep(1)
            self.assertEqual(emails_by_order_status(stack)[(order_id, "confirmed")], 1)
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
