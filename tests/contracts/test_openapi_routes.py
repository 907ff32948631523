#!/usr/bin/python3
"""Every route the gateway serves is in gateway/openapi.yaml, and every
operation of the document is served (same method, same path template), and
who may call it is the same on both sides: `orion routes` prints each route's
access from the gateway's one route table (public, account, admin); in the
document an operation without a security requirement is public, one with
the bearer scheme is account, admin when it is also tagged admin.

usage: test_openapi_routes.py ORION_BIN OPENAPI_YAML
Prints the differences and exits 1 if there are any."""
import subprocess
import sys

import yaml

METHODS = {"get", "put", "post", "delete", "patch"}


def served(orion):
    """{(METHOD, path): access} from `orion routes`."""
    out = subprocess.run([orion, "routes"], check=True, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=60).stdout
    routes = {}
    for line in out.splitlines():
        method, path, access = line.split(" ")
        if method.lower() in METHODS:
            routes[(method.upper(), path)] = access
    return routes


def access_of(operation, default_security):
    security = operation.get("security", default_security) or []
    if not any("bearer" in requirement for requirement in security):
        return "public"
    return "admin" if "admin" in operation.get("tags", []) else "account"


def documented(path):
    """{(METHOD, template): access} from the document."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    default_security = doc.get("security", [])
    return {(method.upper(), template): access_of(operation, default_security)
            for template, item in doc.get("paths", {}).items()
            for method, operation in item.items() if method in METHODS}


def main():
    orion, document = sys.argv[1], sys.argv[2]
    have, want = served(orion), documented(document)
    if not have or not want:
        print(f"nothing to compare: {len(have)} routes served, {len(want)} documented")
        return 1
    undocumented = sorted(set(have) - set(want))
    unserved = sorted(set(want) - set(have))
    mismatched = sorted(route for route in set(have) & set(want) if have[route] != want[route])
    for method, path in undocumented:
        print(f"served but not documented: {method} {path}")
    for method, path in unserved:
        print(f"documented but not served: {method} {path}")
    for method, path in mismatched:
        print(f"access differs: {method} {path} is {have[(method, path)]} in the route table, "
              f"{want[(method, path)]} in the document")
    print(f"{len(have)} routes served, {len(want)} operations documented")
    return 1 if undocumented or unserved or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
