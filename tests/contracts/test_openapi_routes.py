#!/usr/bin/python3
"""Every route the gateway serves is in gateway/openapi.yaml, and every
operation of the document is served (same method, same path template).

usage: test_openapi_routes.py ORION_BIN OPENAPI_YAML
Prints the differences and exits 1 if there are any."""
import subprocess
import sys

import yaml

METHODS = {"get", "put", "post", "delete", "patch"}


def served(orion):
    out = subprocess.run([orion, "routes"], check=True, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=60).stdout
    routes = set()
    for line in out.splitlines():
        method, path = line.split(" ", 1)
        if method.lower() in METHODS:
            routes.add((method.upper(), path))
    return routes


def documented(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return {(method.upper(), template)
            for template, item in doc.get("paths", {}).items()
            for method in item if method in METHODS}


def main():
    orion, document = sys.argv[1], sys.argv[2]
    have, want = served(orion), documented(document)
    if not have or not want:
        print(f"nothing to compare: {len(have)} routes served, {len(want)} documented")
        return 1
    undocumented = sorted(have - want)
    unserved = sorted(want - have)
    for method, path in undocumented:
        print(f"served but not documented: {method} {path}")
    for method, path in unserved:
        print(f"documented but not served: {method} {path}")
    print(f"{len(have)} routes served, {len(want)} operations documented")
    return 1 if undocumented or unserved else 0


if __name__ == "__main__":
    sys.exit(main())
