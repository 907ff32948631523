#!/usr/bin/python3
"""Answers stay true under retries (suite `fault`; issue 13, ADR 015).

Each case freezes the nats-server (SIGSTOP) while a request is in flight, so
that the gateway gives up (503 after its 3 s wait) and the command lands only
after the server resumes (SIGCONT): exactly the slow acknowledgement a real
failover or a paused process produces. The client then retries, as a client
must after a 503, and the retry must answer what happened:

1. a cancel: 200 cancelled (not 409), the stock released once;
2. a confirmation: 200 awaiting_payment (not 409);
3. a cart add with an Idempotency-Key: the quantity counted once;
4. POST /orders without a key: one order for the cart, whatever the retries.

usage: ORION_BIN=build/cli/orion test_retries_faults.py [-v]"""
import contextlib
import os
import signal
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (StackTestCase, confirmation_link, create_product, query_token, register,  # noqa: E402
                       wait_status, wait_until)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Retries(StackTestCase):
    NAME = "retries"

    @staticmethod
    def stopped(pid):
        """Whether every thread of pid is stopped (state T in /proc)."""
        tasks = f"/proc/{pid}/task"
        for tid in os.listdir(tasks):
            try:
                with open(f"{tasks}/{tid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                continue
            if state not in ("T", "t"):
                return False
        return True

    @contextlib.contextmanager
    def frozen_nats(self):
        """The nats-server stopped for the block, resumed after (also on failure).
        The block starts once every thread of the server has stopped: a signal
        takes effect on each thread when it is next scheduled, and on a busy box
        a thread could still have served the block's first request."""
        pid = self.stack.nats.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(lambda: self.stopped(pid), 5.0, interval=0.002, what="the nats-server to stop")
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def customer(self):
        return register(self.stack.http_port, f"{unique('c')}@orion.test")

    def inventory(self, product):
        r = self.admin.get(f"/admin/products/{product}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def awaiting_confirmation(self, c, product, quantity=1):
        self.assertEqual(c.post("/cart/items", {"product_id": product, "quantity": quantity}).status, 200)
        r = c.post("/orders", {})
        self.assertEqual(r.status, 202, r)
        order_id = r.json()["id"]
        wait_status(c, order_id, "awaiting_confirmation")
        return order_id

    def lost_answer(self, call):
        """Runs call with the server frozen: its answer must be a 503 (the
        command is not lost, only its answer)."""
        with self.frozen_nats():
            r = call()
        self.assertEqual(r.status, 503, r)
        return r

    def test_a_cancel_retried_after_a_lost_answer_is_200(self):
        product = create_product(self.admin, unique("sku"), 5)
        c = self.customer()
        order_id = self.awaiting_confirmation(c, product, 2)
        self.assertEqual(self.inventory(product)["reserved"], 2)
        self.lost_answer(lambda: c.post(f"/orders/{order_id}/cancel"))
        wait_status(c, order_id, "cancelled")
        again = c.post(f"/orders/{order_id}/cancel")
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["status"], "cancelled")
        self.assertEqual(again.json()["history"][-1]["reason"], "customer")
        wait_until(lambda: self.inventory(product)["reserved"] == 0, 15, what="the release")
        self.assertEqual(self.inventory(product)["available"], 5, "released once")

    def test_a_confirmation_retried_after_a_lost_answer_is_200(self):
        product = create_product(self.admin, unique("sku"), 5)
        c = self.customer()
        order_id = self.awaiting_confirmation(c, product)
        token = query_token(confirmation_link(self.stack, order_id))
        anonymous = self.stack.client()
        self.lost_answer(lambda: anonymous.post(f"/orders/{order_id}/confirm", {"token": token}))
        wait_status(c, order_id, "awaiting_payment")
        again = anonymous.post(f"/orders/{order_id}/confirm", {"token": token})
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["status"], "awaiting_payment")

    def test_a_keyed_cart_add_retried_after_a_lost_answer_counts_once(self):
        product = create_product(self.admin, unique("sku"), 50)
        c = self.customer()
        body = {"product_id": product, "quantity": 2}
        key = {"Idempotency-Key": unique("add")}
        self.lost_answer(lambda: c.post("/cart/items", body, headers=key))
        for _ in range(3):
            r = c.post("/cart/items", body, headers=key)
            self.assertEqual(r.status, 200, r)
            self.assertEqual([i["quantity"] for i in r.json()["items"]], [2], r)
        time.sleep(0.5)
        self.assertEqual([i["quantity"] for i in c.get("/cart").json()["items"]], [2])

    def test_an_order_placed_again_after_a_lost_answer_is_the_same_order(self):
        product = create_product(self.admin, unique("sku"), 5)
        c = self.customer()
        self.assertEqual(c.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)
        self.lost_answer(lambda: c.post("/orders", {}))
        ids = set()
        for _ in range(3):
            r = c.post("/orders", {})
            self.assertIn(r.status, (200, 202), r)
            ids.add(r.json()["id"])
        self.assertEqual(len(ids), 1, ids)
        order_id = ids.pop()
        wait_status(c, order_id, "awaiting_confirmation")
        listed = [o["id"] for o in c.get("/orders").json()["items"]]
        self.assertEqual(listed, [order_id], "one cart, one order")
        self.assertEqual(self.inventory(product)["reserved"], 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
