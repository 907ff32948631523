#!/usr/bin/python3
"""Correlation ids and metrics through the whole stack (issue 6, item 6).

Real nats-server, SMTP server (aiosmtpd), the provider sandbox and one
`orion serve` with every role, logging at debug level and with
ORION_METRICS_ADDR set. A customer places an order sending
`X-Request-Id: test-corr-…`, confirms it with the emailed link and pays with
the approving sandbox card, sending the same id on each request (a client's
own correlation id for one checkout). Then:

- every answer echoes the id in X-Request-Id (a malformed one is replaced by
  a fresh "r" + 32 hex digits);
- the serve log has JSON lines with that correlation_id from the gateway, an
  actor, the saga, mail and payment;
- `orion replay --correlation ID` finds OrderPlaced and the stock reservation
  the saga made for it, and `orion replay --order` still tells the story;
- ORION_METRICS_ADDR has non-zero counts of the saga step histogram, the
  email latency histogram and the provider calls, and the conflict/retry
  counters exist; the public listener does not serve /metrics (issue 14).

usage: ORION_BIN=build/cli/orion test_observability.py [-v] [TestCase.test_name]"""
import http.client
import json
import os
import re
import subprocess
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (StackTestCase, confirmation_link, create_product,  # noqa: E402
                       query_token, register, tokenize, wait_port, wait_status, wait_until)

APPROVE = "4242424242424242"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def log_lines(stack, correlation_id):
    """The serve log's JSON lines carrying correlation_id."""
    lines = []
    for text in stack.serves["all"].log().splitlines():
        if not text.startswith("{"):
            continue
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if line.get("correlation_id") == correlation_id:
            lines.append(line)
    return lines


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read().decode()
        assert r.status == 200, (r.status, body[:300])
        assert r.getheader("Content-Type", "").startswith("text/plain; version=0.0.4"), r.getheaders()
        return body
    finally:
        conn.close()


def samples(text, name):
    """{labels text: value} of the samples of name (exact metric name)."""
    out = {}
    for line in text.splitlines():
        m = re.match(re.escape(name) + r"(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


class Observability(StackTestCase):
    NAME = "observability"
    PSP = True

    @classmethod
    def serve_env(cls):
        # port 0: the listener's port is the kernel's pick, read from the log
        return {"ORION_LOG_LEVEL": "debug", "ORION_METRICS_ADDR": "127.0.0.1:0"}

    @classmethod
    def set_up_class(cls):
        listening = [json.loads(line) for line in cls.stack.serves["all"].log().splitlines()
                     if '"msg":"metrics listening"' in line]
        assert listening, "ORION_METRICS_ADDR did not listen"
        cls.metrics_port = int(listening[0]["port"])
        assert wait_port(cls.metrics_port), "the metrics listener does not answer"
        cls.corr = unique("test-corr")
        cls.order_id = cls.checkout(cls.corr)

    @classmethod
    def checkout(cls, corr):
        """Places, confirms and pays one order, every request sent with corr."""
        stack = cls.stack
        hdr = {"X-Request-Id": corr}
        product = create_product(cls.admin, unique("sku"), 5, price=1500)
        c = register(stack.http_port, f"{unique('o')}@example.com")
        r = c.post("/cart/items", {"product_id": product, "quantity": 2}, headers=hdr)
        assert r.status == 200, r
        r = c.post("/orders", {}, headers=hdr)
        assert r.status == 202, r
        assert r.headers.get("x-request-id") == corr, r.headers
        order_id = r.json()["id"]
        wait_status(c, order_id, "awaiting_confirmation")
        token = query_token(confirmation_link(stack, order_id))
        r = stack.client().post(f"/orders/{order_id}/confirm", {"token": token},
                                headers={"X-Correlation-Id": corr})
        assert r.status == 200 and r.json()["status"] == "awaiting_payment", r
        assert r.headers.get("x-request-id") == corr, r.headers
        r = c.post(f"/orders/{order_id}/payment", {"payment_method": tokenize(c, APPROVE)}, headers=hdr)
        assert r.status == 200, r
        wait_status(c, order_id, "confirmed")
        cls.customer = c
        return order_id

    def test_every_answer_echoes_the_request_id_or_a_fresh_one(self):
        c = self.stack.client()
        r = c.request("GET", "/healthz", headers={"X-Request-Id": "abc-123.x:y_z"})
        self.assertEqual(r.headers.get("x-request-id"), "abc-123.x:y_z")
        for bad in ("has space", "x" * 200, "quote\"", ""):
            r = c.request("GET", "/healthz", headers={"X-Request-Id": bad})
            self.assertRegex(r.headers.get("x-request-id", ""), r"^r[0-9a-f]{32}$", bad)
        r = c.get("/no/such/path")
        self.assertEqual(r.status, 404)
        self.assertRegex(r.headers.get("x-request-id", ""), r"^r[0-9a-f]{32}$")

    def test_the_log_follows_the_correlation_id_through_every_role(self):
        def sources():
            lines = log_lines(self.stack, self.corr)
            found = {
                "gateway": any(line["msg"] == "request answered" and line.get("route") == "/api/v1/orders"
                               for line in lines),
                "actor": any(line["msg"] == "command answered" and line.get("aggregate") == "order"
                             and line.get("type") == "PlaceOrder" for line in lines),
                "stock actor": any(line["msg"] == "command answered" and line.get("aggregate") == "stock"
                                   for line in lines),
                "saga": any(line["msg"] == "saga command answered" and line.get("step") == "reserve"
                            for line in lines),
                "mail": any(line["msg"] == "mail sent" and line.get("order") == self.order_id
                            for line in lines),
                "payment": any(line["msg"] == "payment succeeded" and line.get("order_id") == self.order_id
                               for line in lines),
            }
            return found if all(found.values()) else None
        try:
            wait_until(sources, 15, interval=0.2, what="log lines of every role")
        except AssertionError:
            lines = log_lines(self.stack, self.corr)
            self.fail(f"missing sources; lines with the id: {[line['msg'] for line in lines]}")
        # no line of the story lost its id: the order's mail lines carry the request's,
        # its payment lines the request's or, when the provider's webhook told it too
        # (ADR 028), the id of that webhook's request
        for text in self.stack.serves["all"].log().splitlines():
            if self.order_id in text and '"mail sent"' in text:
                self.assertIn('"correlation_id":"' + self.corr + '"', text)
            if self.order_id in text and '"payment succeeded"' in text:
                self.assertRegex(text, '"correlation_id":"(' + re.escape(self.corr) + '|r[0-9a-f]{32})"')

    def replay(self, *args):
        env = self.stack.env()
        out = subprocess.run([self.stack.orion, "replay", *args], env=env, capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        return [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]

    def test_replay_finds_the_story_by_correlation_and_by_order(self):
        events = self.replay("--correlation", self.corr)
        types = {(e["type"], e["subject"].split(".")[2]) for e in events}
        for expected in [("OrderPlaced", "order"), ("StockReserved", "stock"), ("OrderReserved", "order"),
                         ("OrderPaid", "order"), ("StockCommitted", "stock")]:
            self.assertIn(expected, types)
        self.assertTrue(all(e["correlation_id"] == self.corr for e in events))
        story = self.replay("--order", self.order_id)
        story_types = {e["type"] for e in story}
        for expected in ("OrderPlaced", "StockReserved", "CartCheckedOut", "OrderPaid", "StockCommitted"):
            self.assertIn(expected, story_types)

    def check_metrics(self, text):
        steps = samples(text, "orion_saga_step_duration_seconds_count")
        reserve = [v for k, v in steps.items() if 'step="reserve"' in k and 'outcome="accepted"' in k]
        self.assertTrue(reserve and reserve[0] >= 1, steps)
        commit = [v for k, v in steps.items() if 'step="commit"' in k]
        self.assertTrue(commit and commit[0] >= 1, steps)
        emails = samples(text, "orion_email_latency_seconds_count")
        self.assertGreaterEqual(emails.get('{status="awaiting_confirmation"}', 0), 1, emails)
        self.assertGreaterEqual(emails.get('{status="confirmed"}', 0), 1, emails)
        sent = samples(text, "orion_email_sent_total")
        self.assertGreaterEqual(sum(sent.values()), 2, sent)
        conflicts = samples(text, "orion_command_conflicts_total")
        retries = samples(text, "orion_command_retries_total")
        self.assertIn('{kind="stock"}', conflicts)
        self.assertIn('{kind="order"}', conflicts)
        self.assertTrue(any('kind="stock"' in k for k in retries), retries)
        provider = samples(text, "orion_payment_provider_duration_seconds_count")
        self.assertGreaterEqual(provider.get('{operation="charge",result="2xx"}', 0), 1, provider)
        outcomes = samples(text, "orion_payment_outcomes_total")
        self.assertGreaterEqual(outcomes.get('{outcome="approved"}', 0), 1, outcomes)
        self.assertIn("", samples(text, "orion_projection_lag_events"))
        self.assertGreater(samples(text, "orion_projection_position").get("", 0), 0)

    def settled_metrics(self, port):
        """The metrics text once the order's story has reached them: the projection has a position, the
        confirmed email was sent and the saga committed the stock (the mail role and the saga act after
        the order is confirmed, so the order's status alone does not say their metrics were observed)."""
        def settled():
            text = scrape(port)
            emails = samples(text, "orion_email_latency_seconds_count")
            steps = samples(text, "orion_saga_step_duration_seconds_count")
            done = (samples(text, "orion_projection_position").get("", 0) > 0
                    and emails.get('{status="confirmed"}', 0) >= 1
                    and any('step="commit"' in k for k in steps))
            return text if done else None
        try:
            return wait_until(settled, 15, interval=0.2, what="the projection position and the confirmed email")
        except AssertionError:
            return scrape(port)  # check_metrics then says what is missing

    def test_metrics_count_saga_steps_emails_payments_and_conflicts(self):
        self.check_metrics(self.settled_metrics(self.metrics_port))

    def test_the_public_listener_does_not_serve_metrics(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.http_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 404)
        finally:
            conn.close()



if __name__ == "__main__":
    unittest.main()
