#!/usr/bin/python3
"""Every command and subcommand of `orion` answers --help and -h (issue 19,
item 7): its usage and options on stdout, nothing on stderr, exit 0, the
same text for both spellings, without NATS (ORION_NATS_URL names a port
nobody listens on) and without a data directory (ORION_DATA_DIR names one
that does not exist, and still does not afterwards).

The commands come from `orion --help`'s "commands:" section, which cli/orion.c
renders from the table main dispatches through, and recursively from the
"commands:" section of a command's own help (admin's subcommands): a command
added without help fails here.

usage: test_cli_help.py ORION_BIN"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import unittest

ORION = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.environ["ORION_BIN"])


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listed_commands(text):
    """The names in the "commands:" section of a help text."""
    m = re.search(r"^commands:\n((?:  .*\n)+)", text, re.M)
    if not m:
        return []
    return [c for c in re.findall(r"^  ([a-z][a-z0-9-]*)\s", m.group(1), re.M) if c != "help"]


class Help(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="orion-help-")
        cls.data_dir = os.path.join(cls.tmp.name, "absent")
        cls.env = {k: v for k, v in os.environ.items() if not k.startswith("ORION_")}
        cls.env.update({"ORION_DATA_DIR": cls.data_dir, "ORION_NATS_URL": f"nats://127.0.0.1:{closed_port()}"})

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def orion(self, *args):
        return subprocess.run([ORION, *args], env=self.env, capture_output=True, text=True, timeout=20, cwd=self.tmp.name)

    def walk(self, path, seen):
        outputs = {}
        for flag in ("--help", "-h"):
            r = self.orion(*path, flag)
            what = " ".join(["orion", *path, flag])
            self.assertEqual(r.returncode, 0, f"{what}: exit {r.returncode}\n{r.stderr}")
            self.assertEqual(r.stderr, "", f"{what} wrote to stderr")
            self.assertTrue(r.stdout.startswith("usage: " + " ".join(["orion", *path])),
                            f"{what} does not start with its usage:\n{r.stdout[:300]}")
            self.assertIn("-h, --help", r.stdout, f"{what} lists no options")
            outputs[flag] = r.stdout
        self.assertEqual(outputs["--help"], outputs["-h"], f"orion {' '.join(path)}: --help and -h differ")
        seen.append(" ".join(path))
        for sub in listed_commands(outputs["--help"]):
            self.walk(path + [sub], seen)

    def test_every_command_and_subcommand_answers_help(self):
        top = self.orion("--help")
        self.assertEqual(top.returncode, 0, top.stderr)
        self.assertEqual(self.orion("-h").stdout, top.stdout)
        self.assertEqual(self.orion("help").stdout, top.stdout)
        commands = listed_commands(top.stdout)
        # the commands the README and the issue name are all listed (and so walked)
        for expected in ("serve", "replay", "rebuild", "verify-stock", "verify-log", "stock", "admin", "routes",
                         "psp-sandbox", "nats-config", "migrate-personal-data"):
            self.assertIn(expected, commands, top.stdout)
        seen = []
        for command in commands:
            self.walk([command], seen)
        self.assertIn("admin create-user", seen)
        self.assertFalse(os.path.exists(self.data_dir), "a --help created the data directory")
        print(f"\n  {len(seen)} commands answered --help and -h: {', '.join(seen)}", file=sys.stderr)

    def test_an_unknown_command_is_refused_with_the_list(self):
        r = self.orion("no-such-command")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command", r.stderr)
        self.assertIn("commands:", r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
