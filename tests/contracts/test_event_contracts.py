#!/usr/bin/python3
"""Every event and command type the code defines is in asyncapi/asyncapi.yaml,
every event has a definition in its schemas/<aggregate>-events.json, and the
document and the schemas name no type the code does not define.

usage: test_event_contracts.py ORION_BIN ASYNCAPI_YAML SCHEMAS_DIR

The types come from the code itself: `orion contracts` (cli/contracts.c) prints
"event <aggregate> <Type>" and "command <aggregate> <Type>" for every actor
kind `orion serve` runs, from each aggregate's *_event_type/*_command_type.

In the document, the commands of aggregate A are the messages (by key) of the
channel orion.cmd.A.{id}; its events are the `type` consts of the oneOf of the
commit message(s) of the channel orion.evt.A.{id}. A $ref into another file
(../schemas/x.json#/$defs/Y) is looked up as SCHEMAS_DIR/x.json, so the
document may be checked from a copy elsewhere.
Prints every difference and exits 1 if there are any."""
import json
import os
import re
import subprocess
import sys

import yaml

CHANNEL = re.compile(r"^orion\.(cmd|evt)\.([a-z]+)\.\{[A-Za-z]+\}$")

# The schema file of an aggregate's events is schemas/<aggregate>-events.json,
# except that sku claims belong to the product role and live in product-events.json.
SCHEMA_FILE = {"sku": "product"}


def defined(orion):
    """{("event"|"command", aggregate, Type)} from `orion contracts`."""
    out = subprocess.run([orion, "contracts"], check=True, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=60).stdout
    types = set()
    for line in out.splitlines():
        what, aggregate, name = line.split(" ")
        types.add((what, aggregate, name))
    return types


class Document:
    def __init__(self, path, schemas_dir):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        self.schemas_dir = schemas_dir
        self.files = {}

    def schema_file(self, name):
        """The parsed SCHEMAS_DIR/name, or None if it does not exist."""
        if name not in self.files:
            path = os.path.join(self.schemas_dir, name)
            self.files[name] = None
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    self.files[name] = json.load(f)
        return self.files[name]

    def resolve(self, ref):
        """The value ref points to, or None if it points nowhere."""
        target, _, pointer = ref.partition("#")
        node = self.doc if target == "" else self.schema_file(os.path.basename(target))
        for part in [p for p in pointer.split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def refs(self, node):
        """Every $ref string under node."""
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    yield value
                else:
                    yield from self.refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from self.refs(value)

    def documented(self, problems):
        """{("event"|"command", aggregate, Type)} of the document; appends
        dangling references to problems."""
        types = set()
        for channel_name, channel in self.doc.get("channels", {}).items():
            m = CHANNEL.match(channel.get("address", ""))
            if not m:
                continue
            kind, aggregate = m.group(1), m.group(2)
            for key, ref in channel.get("messages", {}).items():
                message = self.resolve(ref.get("$ref", "")) if "$ref" in ref else ref
                if message is None:
                    problems.append(f"channel {channel_name}: message {key} refers to nothing: {ref}")
                    continue
                for inner in self.refs(message):
                    if self.resolve(inner) is None:
                        problems.append(f"channel {channel_name}: message {key} refers to nothing: {inner}")
                if kind == "cmd":
                    types.add(("command", aggregate, key))
                    continue
                for name in self.event_consts(message):
                    types.add(("event", aggregate, name))
        return types

    @staticmethod
    def event_consts(message):
        """The `type` consts of a commit message's items (allOf ... oneOf)."""
        items = message.get("payload", {}).get("items", {})
        for part in items.get("allOf", []):
            for choice in part.get("oneOf", []) if isinstance(part, dict) else []:
                const = choice.get("properties", {}).get("type", {}).get("const")
                if isinstance(const, str):
                    yield const


def schema_name(aggregate):
    return f"{SCHEMA_FILE.get(aggregate, aggregate)}-events.json"


def main():
    orion, document, schemas_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    have = defined(orion)
    doc = Document(document, schemas_dir)
    problems = []
    want = doc.documented(problems)
    events = {t for t in have if t[0] == "event"}
    if not events or not {t for t in want if t[0] == "event"}:
        print(f"nothing to compare: {len(events)} event types defined, {len(want)} types documented")
        return 1
    for what, aggregate, name in sorted(have - want):
        problems.append(f"{what} {aggregate} {name}: defined but not in {document}")
    for what, aggregate, name in sorted(want - have):
        problems.append(f"{what} {aggregate} {name}: in {document} but not defined by the code")
    # Every event has a definition in its schema file; every capitalized
    # definition there (the lowercase ones are shared field types) is a type
    # of one of the file's aggregates.
    files = {}
    for what, aggregate, name in have:
        files.setdefault(schema_name(aggregate), set()).add(name)
    for what, aggregate, name in sorted(events):
        schema = doc.schema_file(schema_name(aggregate))
        if schema is None:
            problems.append(f"event {aggregate} {name}: no {schema_name(aggregate)} in {schemas_dir}")
        elif name not in schema.get("$defs", {}):
            problems.append(f"event {aggregate} {name}: no $defs/{name} in {schema_name(aggregate)}")
    for file, names in sorted(files.items()):
        schema = doc.schema_file(file) or {}
        for name in sorted(schema.get("$defs", {})):
            if name[:1].isupper() and name not in names:
                problems.append(f"{file}: $defs/{name} is no type the code defines")
    for line in problems:
        print(line)
    print(f"{len(events)} event and {len(have) - len(events)} command types defined, "
          f"{len(want)} documented, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
