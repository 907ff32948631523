#!/usr/bin/python3
"""Every response body of a full flow matches gateway/openapi.yaml (issue 14, finding 9).

A whole stack (nats-server, an SMTP server, the provider sandbox, `orion serve`)
is driven through accounts, the catalog, admin products and inventory, the cart,
an order placed, confirmed from its email and paid, another cancelled, the mail
log and logout, with the errors a client meets on the way (400, 401, 403, 404,
409, 422). Each answer's status must be one the document lists for the route,
and a JSON or problem+json body must validate against the schema the document
gives for that status: the check a validating proxy (Stoplight Prism) made by
hand, kept as a test. The validator below implements the JSON Schema subset the
document uses ($ref, allOf/oneOf/anyOf, type with null, properties, required,
additionalProperties, items, enum, const, bounds, lengths, pattern).

usage: ORION_BIN=build/cli/orion test_response_bodies.py [-v]"""
import os
import re
import sys
import unittest
import uuid

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from orion_e2e import (StackTestCase, Client, account_link, confirmation_link, create_product, query_token,  # noqa: E402
                       register, wait_status, wait_until, tokenize)

OPENAPI = os.path.join(HERE, "..", "..", "gateway", "openapi.yaml")
PREFIX = "/api/v1"


class SchemaError(AssertionError):
    pass


class Validator:
    """A JSON Schema (2020-12 subset) validator over one OpenAPI document."""

    # keyword pairs bounding a number, a string's length and an array's size
    BOUNDS = (("minimum", "maximum", lambda v: v, (int, float)), ("minLength", "maxLength", len, str),
              ("minItems", "maxItems", len, list))

    def __init__(self, document):
        self.doc = document

    def resolve(self, ref):
        assert ref.startswith("#/"), ref
        node = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def check(self, value, schema, where="$"):
        if "$ref" in schema:
            self.check(value, self.resolve(schema["$ref"]), where)
        for sub in schema.get("allOf", []):
            self.check(value, sub, where)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                passed = sum(1 for sub in schema[key] if self.passes(value, sub, where))
                if passed == 0 or (key == "oneOf" and passed > 1):
                    raise SchemaError(f"{where}: {passed} of the {key} schemas match {value!r}")
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(self.is_type(value, t) for t in types):
                raise SchemaError(f"{where}: {value!r} is not {types}")
        if "enum" in schema and value not in schema["enum"]:
            raise SchemaError(f"{where}: {value!r} not in {schema['enum']}")
        if "const" in schema and value != schema["const"]:
            raise SchemaError(f"{where}: {value!r} is not {schema['const']!r}")
        for low, high, measure, kinds in self.BOUNDS:
            if isinstance(value, kinds) and not isinstance(value, bool):
                size = measure(value)
                if low in schema and size < schema[low]:
                    raise SchemaError(f"{where}: {value!r} is below {low} {schema[low]}")
                if high in schema and size > schema[high]:
                    raise SchemaError(f"{where}: {value!r} is above {high} {schema[high]}")
        if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaError(f"{where}: {value!r} does not match {schema['pattern']}")
        if isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                self.check(item, schema["items"], f"{where}[{i}]")
        if isinstance(value, dict):
            for name in schema.get("required", []):
                if name not in value:
                    raise SchemaError(f"{where}: required {name!r} missing from {sorted(value)}")
            properties = schema.get("properties", {})
            for name, item in value.items():
                if name in properties:
                    self.check(item, properties[name], f"{where}.{name}")
                elif schema.get("additionalProperties") is False:
                    raise SchemaError(f"{where}: {name!r} is not in the schema")
                elif isinstance(schema.get("additionalProperties"), dict):
                    self.check(item, schema["additionalProperties"], f"{where}.{name}")

    def passes(self, value, schema, where):
        try:
            self.check(value, schema, where)
            return True
        except SchemaError:
            return False

    @staticmethod
    def is_type(value, name):
        return {
            "null": value is None,
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "string": isinstance(value, str),
            "array": isinstance(value, list),
            "object": isinstance(value, dict),
        }[name]


class Contract:
    """The document's routes, and the check of one answer against them."""

    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.validator = Validator(self.doc)
        self.routes = []
        for template, item in self.doc["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            self.routes.append((re.compile(pattern), template, item))
        self.checked = set()

    def operation(self, method, path):
        path = path.split("?")[0]
        for pattern, template, item in self.routes:
            if pattern.match(path) and method.lower() in item:
                return template, item[method.lower()]
        raise AssertionError(f"{method} {path} is not in the document")

    def response(self, spec):
        return self.validator.resolve(spec["$ref"]) if "$ref" in spec else spec

    def check(self, method, path, reply):
        template, op = self.operation(method, path)
        responses = op["responses"]
        status = str(reply.status)
        assert status in responses or "default" in responses, (
            f"{method} {template}: status {status} is not documented ({sorted(responses)}); {reply}")
        spec = self.response(responses.get(status, responses.get("default")))
        content = spec.get("content", {})
        ctype = (reply.headers.get("content-type") or "").split(";")[0].strip()
        if not reply.body:
            assert not content or status == "204", f"{method} {template} {status}: no body, the document has one"
        elif ctype in ("application/json", "application/problem+json"):
            assert ctype in content, f"{method} {template} {status}: {ctype} is not documented ({list(content)})"
            try:
                self.validator.check(reply.json(), content[ctype]["schema"])
            except SchemaError as e:
                raise AssertionError(f"{method} {template} {status}: {e}\nbody: {reply.body[:600]!r}") from None
        self.checked.add((method, template, status))
        return reply


CONTRACT = Contract(OPENAPI)


class Checked(Client):
    """A client whose every answer is checked against the document."""

    def request(self, method, path, body=None, headers=None, raw=None, content_type=None):
        reply = super().request(method, path, body=body, headers=headers, raw=raw, content_type=content_type)
        return CONTRACT.check(method, path, reply)


def checked(client):
    return Checked(client.port, client.token)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class ResponseBodies(StackTestCase):
    NAME = "contract"
    PSP = True

    def test_a_full_flow_matches_the_document(self):
        stack = self.stack
        anonymous = checked(Client(stack.http_port))
        admin = checked(self.admin)

        # accounts
        email = f"{unique('contract')}@example.com"
        r = anonymous.post("/auth/register", {"email": email, "password": "Saffron-kettle-meadow-92", "name": "C"})
        self.assertEqual(r.status, 202, r)
        # the emailed links (ADR 031), taken from the received emails
        verify, _ = account_link(stack, email, "account_verify")
        token = verify.split("token=", 1)[1]
        self.assertEqual(anonymous.post("/auth/verify", {"token": token}).status, 200)
        self.assertEqual(anonymous.post("/auth/verify", {"token": token}).status, 410)
        self.assertEqual(anonymous.post("/auth/verify", {"token": "x"}).status, 400)
        self.assertEqual(anonymous.post("/auth/password-reset", {"email": email}).status, 202)
        reset, _ = account_link(stack, email, "account_reset")
        self.assertEqual(anonymous.post("/auth/password-reset/confirm",
                                        {"token": reset.split("token=", 1)[1], "password": "password1"}).status, 400)
        self.assertEqual(anonymous.post("/auth/password-reset/confirm",
                                        {"token": reset.split("token=", 1)[1],
                                         "password": "Saffron-kettle-meadow-93"}).status, 204)
        self.assertEqual(anonymous.post("/auth/register", {"email": "nope", "password": "x", "name": ""}).status,
                         400)
        self.assertEqual(anonymous.post("/auth/login", {"email": email, "password": "wrong-password-0"}).status,
                         401)
        buyer_email = f"{unique('buyer')}@example.com"
        customer = checked(register(stack.http_port, buyer_email))
        self.assertEqual(customer.get("/me").status, 200)
        self.assertEqual(anonymous.get("/me").status, 401)

        # catalog and admin products
        sku = unique("SKU").upper()
        r = admin.post("/admin/products", {"sku": sku, "name": "Contract tea", "description": "A test.",
                                           "price_cents": 1500, "currency": "EUR", "category": "tea",
                                           "initial_stock": 20})
        self.assertEqual(r.status, 201, r)
        product = r.json()["id"]
        self.assertEqual(admin.post("/admin/products", {"sku": "", "name": ""}).status, 400)
        self.assertEqual(admin.post("/admin/products", {"sku": sku, "name": "Again", "description": "",
                                                        "price_cents": 1, "currency": "EUR", "category": "tea",
                                                        "initial_stock": 1}).status, 409)
        self.assertEqual(customer.post("/admin/products", {"sku": "X"}).status, 403)
        self.assertEqual(admin.get(f"/admin/products/{product}").status, 200)
        self.assertEqual(admin.request("PATCH", f"{PREFIX}/admin/products/{product}", {"low_stock_threshold": 3}).status,
                         200)
        self.assertEqual(admin.get("/admin/inventory?below=100").status, 200)
        self.assertEqual(admin.post(f"/admin/inventory/{product}/adjustments",
                                    {"delta": 5, "reason": "count"}).status, 200)
        self.assertEqual(admin.post(f"/admin/inventory/{product}/adjustments",
                                    {"delta": -500, "reason": "count"}).status, 409)
        self.assertEqual(anonymous.get("/products?limit=5").status, 200)
        self.assertEqual(anonymous.get(f"/products/{product}").status, 200)
        self.assertEqual(anonymous.get("/products/no-such-product").status, 404)
        self.assertEqual(anonymous.get("/products?limit=0").status, 400)

        # the cart
        self.assertEqual(customer.get("/cart").status, 200)
        self.assertEqual(customer.post("/cart/items", {"product_id": product, "quantity": 3}).status, 200)
        self.assertEqual(customer.put(f"/cart/items/{product}", {"quantity": 2}).status, 200)
        self.assertEqual(customer.post("/cart/items", {"product_id": product, "quantity": 0}).status, 400)

        # an order placed, confirmed from its email and paid
        r = customer.post("/orders", {}, headers={"Idempotency-Key": unique("k")})
        self.assertEqual(r.status, 202, r)
        order = r.json()["id"]
        wait_status(customer, order, "awaiting_confirmation")
        self.assertEqual(customer.get("/orders").status, 200)
        self.assertEqual(customer.get(f"/orders/{order}").status, 200)
        again = customer.post("/orders", {})  # the cart its checkout emptied: that order (ADR 015)
        self.assertEqual((again.status, again.json()["id"]), (200, order), again)
        self.assertEqual(customer.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)
        self.assertEqual(customer.delete("/cart").status, 204)
        self.assertEqual(customer.post("/orders", {}).status, 422)  # the cart is empty now
        token = query_token(confirmation_link(stack, order))
        wait_until(lambda: customer.post(f"/orders/{order}/confirmation-email").status == 202, 15,
                   interval=0.3, what="a resend of the delivered confirmation email")
        self.assertIn(customer.post(f"/orders/{order}/confirmation-email").status, (202, 429))
        self.assertEqual(anonymous.post(f"/orders/{order}/confirm", {"token": "A" * 43}).status, 403)
        self.assertEqual(anonymous.post(f"/orders/{order}/confirm", {"token": token}).status, 200)
        r = anonymous.get("/payments/config")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(customer.post(f"/orders/{order}/payment", {"card": {"number": "4242424242424242"}}).status,
                         400)  # card data never accepted (ADR 028)
        method = {"payment_method": tokenize(customer, "4242424242424242")}
        r = customer.post(f"/orders/{order}/payment", method, headers={"Idempotency-Key": unique("pay")})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(customer.post(f"/orders/{order}/payment", method).status, 409)

        # another order cancelled
        self.assertEqual(customer.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)
        r = customer.post("/orders", {})
        self.assertEqual(r.status, 202, r)
        second = r.json()["id"]
        wait_status(customer, second, "awaiting_confirmation")
        self.assertEqual(customer.post(f"/orders/{second}/cancel").status, 200)
        self.assertEqual(customer.post(f"/orders/{second}/cancel").status, 200)  # a retry (ADR 015)
        self.assertEqual(customer.get("/orders/o-nobody-has-this").status, 404)

        # the cart emptied, the mail log, the product deleted
        self.assertEqual(customer.post("/cart/items", {"product_id": product, "quantity": 1}).status, 200)
        self.assertEqual(customer.delete(f"/cart/items/{product}").status, 200)
        self.assertEqual(customer.delete("/cart").status, 204)
        r = admin.get(f"/admin/mail?order_id={order}")
        self.assertEqual(r.status, 200)
        paid = [e["id"] for e in r.json()["items"] if e["kind"] == "confirmed" and e["status"] == "delivered"]
        if paid:
            self.assertEqual(admin.post(f"/admin/mail/{paid[0]}/resend").status, 202)
        self.assertEqual(admin.post("/admin/mail/m00000000000000000000000000000000/resend").status, 404)

        # the admin order desk (ADR 029)
        def desk_lists_the_order():
            r = admin.get("/admin/orders?limit=5")
            return r.status == 200 and order in [o["id"] for o in r.json()["items"]]
        wait_until(desk_lists_the_order, 10, what="the order in the desk")
        r = admin.get(f"/admin/orders?status=cancelled&customer_email={buyer_email}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(admin.get("/admin/orders?since=yesterday").status, 400)
        r = admin.get(f"/admin/orders/{order}")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json()["timeline"], r)
        self.assertEqual(admin.get("/admin/orders/o-nobody-has-this").status, 404)
        self.assertEqual(customer.get("/admin/orders").status, 403)
        self.assertEqual(customer.get(f"/admin/orders/{order}").status, 403)
        self.assertEqual(admin.get("/admin/customers?limit=5").status, 200)
        r = admin.get(f"/admin/customers?q={buyer_email}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json()["items"]), 1, r)
        self.assertEqual(admin.get("/admin/customers?q=a-name").status, 400)
        self.assertEqual(customer.get("/admin/customers").status, 403)
        self.assertEqual(admin.delete(f"/admin/products/{product}").status, 204)
        self.assertEqual(admin.get(f"/admin/products/{product}").status, 404)
        self.assertEqual(admin.post(f"/admin/inventory/{product}/adjustments",
                                    {"delta": 1, "reason": "late"}).status, 404)

        # the customer's own data, and a password change
        r = customer.get("/me/export")
        self.assertEqual(r.status, 200, r)
        self.assertIn(order, [o["id"] for o in r.json()["orders"]])
        self.assertEqual(customer.post("/me/password", {"current_password": "wrong-Password-00",
                                                        "new_password": "Juniper-harbor-83-quay"}).status, 401)
        self.assertEqual(customer.post("/me/password", {"current_password": "customer-password-1",
                                                        "new_password": "password"}).status, 400)
        changer = checked(register(stack.http_port, f"{unique('changer')}@example.com"))
        self.assertEqual(changer.post("/me/password", {"current_password": "customer-password-1",
                                                       "new_password": "Juniper-harbor-83-quay"}).status, 204)
        self.assertEqual(changer.get("/me").status, 401)

        # operations, and the end of a session
        self.assertEqual(checked(Client(stack.http_port)).request("GET", "/healthz").status, 200)
        self.assertEqual(customer.post("/auth/logout").status, 204)
        self.assertEqual(customer.get("/me").status, 401)

        # every kind of answer the flow produced was checked
        statuses = {status for _, _, status in CONTRACT.checked}
        for expected in ("200", "201", "202", "204", "400", "401", "403", "404", "409", "422"):
            self.assertIn(expected, statuses, sorted(CONTRACT.checked))


class ValidatorSelfTest(unittest.TestCase):
    """The validator refuses what it must (a validator that accepts everything proves nothing)."""

    def test_the_validator_refuses_what_the_document_forbids(self):
        v = CONTRACT.validator
        levels = {"$ref": "#/components/schemas/StockLevels"}
        v.check({"on_hand": 1, "reserved": 0, "available": 1, "low_stock_threshold": 0, "low": False}, levels)
        with self.assertRaises(SchemaError):
            v.check({"on_hand": 1, "reserved": 0, "available": 1}, levels)  # the answer of issue 14
        with self.assertRaises(SchemaError):
            v.check({"on_hand": "1", "reserved": 0, "available": 1, "low_stock_threshold": 0, "low": False}, levels)
        problem = {"$ref": "#/components/schemas/Problem"}
        v.check({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "x"}, problem)
        with self.assertRaises(SchemaError):
            v.check({"title": "Not Found"}, problem)


if __name__ == "__main__":
    unittest.main()
