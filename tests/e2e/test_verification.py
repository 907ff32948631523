#!/usr/bin/python3
"""Verified accounts and password reset by emailed links (ADR 031), through
the whole stack with the real SMTP server; every link is taken from the
email the server received.

Verification (ORION_REQUIRE_EMAIL_VERIFICATION=1, as in production):
- a new registration answers 202 {"status": "verification_sent"}; the account
  logs in but POST /orders is 403 (problem+json saying why); the emailed
  link's page (GET) holds a form that posts the token and no script; POST
  /auth/verify answers the account; the same link again is 410; the account
  then places an order;
- the start-up admin (ORION_ADMIN_EMAIL) and an account of `orion admin
  create-user` are verified: they order at once, and get no verification email;
- a registration of an address that has an account answers the same 202 and
  the same body, changes nothing (the first password still logs in, the new
  one does not), and the owner gets a "you already have an account" email;
- a password reset: 202 for a known and an unknown address alike (no email
  for the unknown one); a weak new password is a field error; the reset ends
  every earlier token, the old password, its own link (410 on reuse) and any
  earlier reset link (400);
- no enumeration: register, password-reset and login answer a known and an
  unknown address with the same status and the same body. The medians of 20
  requests of each are printed (recorded in bench/RESULTS.md), never asserted.

Expired links (ORION_VERIFY_TOKEN_TTL=1, ORION_RESET_TOKEN_TTL=1, a stack of
their own): a verification or reset link used after its time is 410.

usage: ORION_BIN=build/cli/orion test_verification.py [-v]"""
import os
import re
import statistics
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orion_e2e import (Client, StackTestCase, account_link, confirmation_link, create_product,  # noqa: E402
                       login_or_none, wait_until)

PASSWORD = "Velvet-canyon-94"
SAMPLES = 20


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def link_token(link):
    """The token of an emailed link, in its query or (the storefront's reset
    page) its fragment's."""
    return re.search(r"[?&]token=([A-Za-z0-9_.-]+)$", link).group(1)


def problem(test, reply, status):
    test.assertEqual(reply.status, status, reply)
    test.assertEqual(reply.headers.get("content-type"), "application/problem+json", reply)
    return reply.json()


class Verification(StackTestCase):
    NAME = "verification"
    SERVE_ENV = {
        "ORION_REQUIRE_EMAIL_VERIFICATION": "1",
        # the enumeration test sends 20 failed logins per address: the per-account
        # budgets (tested in test_login_limits) raised so both answer 401
        "ORION_AUTH_ACCOUNT_ADDRESS_BURST": "100000",
        "ORION_AUTH_ACCOUNT_PER_HOUR": "100000",
    }

    def register(self, email, password=PASSWORD, name="Ada"):
        return Client(self.stack.http_port).post("/auth/register",
                                                 {"email": email, "password": password, "name": name})

    def customer(self, prefix):
        """A registered customer, logged in, and its address."""
        email = unique(prefix)
        self.assertEqual(self.register(email).status, 202)
        return wait_until(lambda: login_or_none(self.stack.http_port, email, PASSWORD), 10,
                          what="the account"), email

    def test_an_account_verifies_its_address_by_the_emailed_link_then_orders(self):
        product = create_product(self.admin, uuid.uuid4().hex[:12].upper(), 10, price=990)
        email = unique("ada")
        r = self.register(email)
        self.assertEqual((r.status, r.json()), (202, {"status": "verification_sent"}), r)
        client = wait_until(lambda: login_or_none(self.stack.http_port, email, PASSWORD), 10, what="the account")
        self.assertEqual(client.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)
        refused = problem(self, client.post("/orders", {}), 403)
        self.assertIn("verify your email address", refused["detail"])
        link, _ = account_link(self.stack, email, "account_verify")
        self.assertRegex(link, r"^http://127\.0\.0\.1:\d+/api/v1/auth/verify\?token=u[0-9a-f]{32}\.[A-Za-z0-9_-]{43}$")
        token = link_token(link)
        # the link's page: a form that posts the token, no script (the strict CSP)
        page = Client(self.stack.http_port).request("GET", link[link.index("/api/v1"):],
                                                    headers={"Accept": "text/html"})
        self.assertEqual(page.status, 200, page)
        self.assertTrue(page.headers.get("content-type", "").startswith("text/html"), page.headers)
        html = page.body.decode()
        self.assertIn('<form method="post" action="/api/v1/auth/verify">', html)
        self.assertIn(f'value="{token}"', html)
        self.assertNotIn("<script", html)
        # the GET changed nothing (mail scanners follow links)
        problem(self, client.post("/orders", {}), 403)
        verified = Client(self.stack.http_port).post("/auth/verify", {"token": token})
        self.assertEqual(verified.status, 200, verified)
        self.assertEqual(verified.json()["email"], email)
        self.assertEqual(set(verified.json()), {"id", "email", "name", "role"})
        self.assertEqual(client.get("/me").json()["id"], verified.json()["id"])
        again = problem(self, Client(self.stack.http_port).post("/auth/verify", {"token": token}), 410)
        self.assertIn("used", again["detail"])
        placed = client.post("/orders", {})
        self.assertIn(placed.status, (200, 202), placed)
        # a token this server did not make
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        problem(self, Client(self.stack.http_port).post("/auth/verify", {"token": forged}), 400)
        self.assertIn("token", [e["field"] for e in problem(
            self, Client(self.stack.http_port).post("/auth/verify", {"token": "nope"}), 400)["errors"]])

    def test_the_verification_form_posts_the_token_and_answers_a_page(self):
        _, email = self.customer("grace")
        link, _ = account_link(self.stack, email, "account_verify")
        body = "token=" + link_token(link)
        r = Client(self.stack.http_port).request("POST", "/api/v1/auth/verify", raw=body.encode(),
                                                 content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 200, r)
        self.assertIn("verified", r.body.decode())
        r = Client(self.stack.http_port).request("POST", "/api/v1/auth/verify", raw=body.encode(),
                                                 content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 410, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/html"), r.headers)

    def test_registering_a_known_address_changes_nothing_and_tells_the_owner(self):
        _, email = self.customer("hedy")
        first = self.register(email.upper(), password="Orchid-lantern-57-river", name="Someone Else")
        self.assertEqual((first.status, first.json()), (202, {"status": "verification_sent"}), first)
        link, _ = account_link(self.stack, email, "account_exists")
        self.assertTrue(link.endswith("/forgot-password"), link)
        self.assertIsNotNone(login_or_none(self.stack.http_port, email, PASSWORD))
        self.assertIsNone(login_or_none(self.stack.http_port, email, "Orchid-lantern-57-river"))

    def test_the_start_up_admin_and_a_cli_account_are_verified(self):
        email = unique("cli")
        r = subprocess.run([self.stack.orion, "admin", "create-user", "--email", email, "--password",
                            PASSWORD, "--name", "Cli", "--role", "customer"],
                           env=self.stack.env(), capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        cli = wait_until(lambda: login_or_none(self.stack.http_port, email, PASSWORD), 20, what="the account")
        product = create_product(self.admin, uuid.uuid4().hex[:12].upper(), 5, price=700)
        for client in (self.admin, cli):
            self.assertEqual(client.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)
            placed = client.post("/orders", {})
            self.assertIn(placed.status, (200, 202), placed)
        # the mail role got that far: a verification email of the account (older) would be there
        confirmation_link(self.stack, placed.json()["id"])
        self.assertEqual([m for m in self.stack.messages()
                          if str(m["To"]) == email and str(m.get("X-Orion-Status", "")).startswith("account_")],
                         [], "an account made by the CLI got an account email")

    def test_a_password_reset_ends_every_token_and_every_earlier_link(self):
        client, email = self.customer("lise")
        other_session = login_or_none(self.stack.http_port, email, PASSWORD)
        anonymous = Client(self.stack.http_port)
        r = anonymous.post("/auth/password-reset", {"email": email})
        self.assertEqual(r.status, 202, r)
        first, count = account_link(self.stack, email, "account_reset")
        self.assertRegex(first, r"/reset-password\?token=u[0-9a-f]{32}\.[A-Za-z0-9_-]{43}$")
        self.assertEqual(anonymous.post("/auth/password-reset", {"email": email.upper()}).status, 202)
        second, _ = account_link(self.stack, email, "account_reset", after=count)
        self.assertNotEqual(first, second)
        new_password = "Harbour-quartz-lantern-27"
        weak = problem(self, anonymous.post("/auth/password-reset/confirm",
                                            {"token": link_token(second), "password": "password123"}), 400)
        self.assertIn("password", [e["field"] for e in weak["errors"]])
        # the earlier link was replaced by the second
        problem(self, anonymous.post("/auth/password-reset/confirm",
                                     {"token": link_token(first), "password": new_password}), 400)
        r = anonymous.post("/auth/password-reset/confirm", {"token": link_token(second), "password": new_password})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(client.get("/me").status, 401, "a token from before the reset still works")
        self.assertEqual(other_session.get("/me").status, 401, "another session's token still works")
        self.assertIsNone(login_or_none(self.stack.http_port, email, PASSWORD), "the old password still logs in")
        fresh = login_or_none(self.stack.http_port, email, new_password)
        self.assertIsNotNone(fresh, "the new password does not log in")
        used = problem(self, anonymous.post("/auth/password-reset/confirm",
                                            {"token": link_token(second), "password": "Another-pass-word-88"}), 410)
        self.assertIn("used", used["detail"])
        # the link reached the address: it is verified now
        product = create_product(self.admin, uuid.uuid4().hex[:12].upper(), 5, price=500)
        self.assertEqual(fresh.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)
        self.assertIn(fresh.post("/orders", {}).status, (200, 202))

    def test_a_reset_of_an_unknown_address_answers_the_same_and_sends_nothing(self):
        nobody = unique("nobody")
        r = Client(self.stack.http_port).post("/auth/password-reset", {"email": nobody})
        self.assertEqual((r.status, r.json()), (202, {"status": "reset_sent"}), r)
        # a known address's reset, asked after, arrives; by then the unknown one would have too
        _, email = self.customer("known")
        Client(self.stack.http_port).post("/auth/password-reset", {"email": email})
        account_link(self.stack, email, "account_reset")
        self.assertEqual([m for m in self.stack.messages() if str(m["To"]) == nobody], [])

    def timed(self, request):
        started = time.perf_counter()
        r = request()
        return r, time.perf_counter() - started

    def test_no_enumeration_through_register_reset_or_login(self):
        _, known = self.customer("known")
        cases = {
            "register": lambda email: Client(self.stack.http_port).post(
                "/auth/register", {"email": email, "password": "Thistle-ferry-cobalt-31", "name": "X"}),
            "password-reset": lambda email: Client(self.stack.http_port).post(
                "/auth/password-reset", {"email": email}),
            "login": lambda email: Client(self.stack.http_port).post(
                "/auth/login", {"email": email, "password": "Wrong-password-00"}),
        }
        report = []
        for name, call in cases.items():
            times = {"known": [], "unknown": []}
            answers = {"known": set(), "unknown": set()}
            for _ in range(SAMPLES):
                for who in ("known", "unknown"):
                    r, seconds = self.timed(lambda: call(known if who == "known" else unique("nobody")))
                    times[who].append(seconds)
                    answers[who].add((r.status, r.body))
            self.assertEqual(len(answers["known"]), 1, f"{name}: the known address got different answers")
            self.assertEqual(answers["known"], answers["unknown"], f"{name}: the answers tell the addresses apart")
            report.append(f"{name}: {next(iter(answers['known']))[0]}; median known "
                          f"{statistics.median(times['known']) * 1000:.1f} ms, unknown "
                          f"{statistics.median(times['unknown']) * 1000:.1f} ms ({SAMPLES} each)")
        print("\n" + "\n".join(report), file=sys.stderr)


class ExpiredLinks(StackTestCase):
    NAME = "expired-links"
    SERVE_ENV = {"ORION_VERIFY_TOKEN_TTL": "1", "ORION_RESET_TOKEN_TTL": "1"}

    def test_a_link_used_after_its_time_is_410(self):
        email = unique("late")
        anonymous = Client(self.stack.http_port)
        self.assertEqual(anonymous.post("/auth/register", {"email": email, "password": PASSWORD,
                                                           "name": "Late"}).status, 202)
        verify, _ = account_link(self.stack, email, "account_verify")
        wait_until(lambda: login_or_none(self.stack.http_port, email, PASSWORD), 10, what="the account")
        self.assertEqual(anonymous.post("/auth/password-reset", {"email": email}).status, 202)
        reset, _ = account_link(self.stack, email, "account_reset")
        time.sleep(2.1)  # both links' second is over
        expired = problem(self, anonymous.post("/auth/verify", {"token": link_token(verify)}), 410)
        self.assertIn("expired", expired["detail"])
        expired = problem(self, anonymous.post("/auth/password-reset/confirm",
                                               {"token": link_token(reset), "password": "Harbour-quartz-lantern-27"}),
                          410)
        self.assertIn("expired", expired["detail"])
        self.assertIsNotNone(login_or_none(self.stack.http_port, email, PASSWORD), "the password changed")


if __name__ == "__main__":
    unittest.main()
