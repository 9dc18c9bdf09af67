"""Every `cod` command, given bad arguments, paths, counts, encodings or environment values, as
a real process: exactly one `error:` line, at most one `hint:` line, nothing else on stderr
(no traceback, no progress line: nothing started), and the exit code README.md documents.

The commands are enumerated from the click group, so a new command without cases here fails
`test_every_command_has_cases`. Expected codes come from README.md's table (written by hand
there), not from the error classes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from cod.cli import cli, run_cli

from ..helpers import ROOT, VECTORS

# README.md, "Exit codes" (copied by hand: the test checks the documented numbers)
USAGE, INTERNAL, SPEC, MODULE, INPUT, CACHE, NOT_FOUND, CONFIG, LOCAL_PATH = 2, 1, 3, 4, 5, 8, 17, 21, 22
INTERRUPTED, BROKEN_PIPE = 130, 141
LEDGER, AUDIT, KEY_FILE = 23, 24, 25
FRAUD = 28
NO_LEDGER = {"COD_LEDGER": "http://127.0.0.1:9"}  # the discard port: nothing listens
GOOD_ID = "12D3KooWHRMGxtPCU3AALEJ2pAcZ94CziSq52UMbMKWoTPtP9Kdf"
LEDGER_CASES_KEY = b"k" * 32

HELLO = str(VECTORS / "hello.wasm")
TIMEOUT = 60
"""Seconds after which a command that should have refused at once counts as hung (a bound, not a speed test)."""
Arg = str | bytes


@dataclass(frozen=True)
class Case:
    """``cod ARGV`` with ``ENV`` (``{tmp}`` is the test's directory) exits ``code`` naming ``text``."""

    argv: tuple[Arg, ...]
    code: int
    text: str = ""
    env: dict[str, Arg] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def __str__(self) -> str:
        env = " ".join(f"{k}={v!r}" for k, v in self.env.items())
        return f"{env} cod {' '.join(repr(a) if isinstance(a, bytes) else a for a in self.argv)}".strip()


def case(*argv: Arg, code: int, text: str = "", env: dict[str, Arg] | None = None,
         files: dict[str, bytes] | None = None) -> Case:
    return Case(tuple(argv), code, text, env or {}, files or {})


CONFIG_FILE = "config/cod/config.json"  # the legacy JSON file, under XDG_CONFIG_HOME={tmp}/config
CONFIG_TOML = "config/cod/config.toml"

CASES: dict[str, list[Case]] = {
    "": [
        case("nosuch", code=USAGE, text="No such command"),
        case("--bogus", code=USAGE, text="--bogus"),
    ],
    "run": [
        case("run", code=USAGE, text="MODULE"),
        case("run", HELLO, "--bogus", code=USAGE, text="--bogus"),
        case("run", "-f", code=USAGE, text="-f"),
        case("run", "-f", "{tmp}/none.json", code=INPUT, text="cannot read job file"),
        case("run", "-f", "{tmp}/job.json", code=SPEC, text="unknown key", files={"job.json": b'{"modul": "x"}'}),
        case("run", "-f", "{tmp}/job.json", HELLO, code=USAGE, text="not both", files={"job.json": b"{}"}),
        case("run", "--detach", HELLO, code=USAGE, text="--detach goes with --verify"),
        case("run", HELLO, "--engine", "nope", code=USAGE, text="--engine"),
        # counts: refused before anything starts (no "Starting an embedded devstack" line)
        case("run", HELLO, "--verify", "0", code=USAGE, text="--verify"),
        case("run", HELLO, "--verify", "-1", code=USAGE, text="--verify"),
        case("run", HELLO, "--verify", "33", code=USAGE, text="at most 32"),
        case("run", HELLO, "--quorum", "2", code=USAGE, text="--quorum"),
        case("run", HELLO, "--verify", "1", "--quorum", "0", code=USAGE, text="--quorum"),
        # spec limits
        case("run", HELLO, "--fuel", "0", code=SPEC, text="limits.fuel"),
        case("run", HELLO, "--fuel", "-1", code=SPEC, text="limits.fuel"),
        case("run", HELLO, "--fuel", str(2**64), code=SPEC, text="limits.fuel"),
        case("run", HELLO, "--fuel", "\u0663", code=SPEC, text="limits.fuel"),  # ARABIC-INDIC DIGIT THREE
        case("run", HELLO, "--fuel", "9" * 5000, code=SPEC, text="limits.fuel"),
        case("run", HELLO, "--memory", "lots", code=SPEC, text="limits.memory_bytes"),
        case("run", HELLO, "--memory", "9" * 5000, code=SPEC, text="limits.memory_bytes"),
        case("run", HELLO, "--memory", "99999999999999999999TiB", code=SPEC, text="limits.memory_bytes"),
        case("run", HELLO, "--memory", "0", code=SPEC, text="limits.memory_bytes"),
        case("run", HELLO, "--max-stdout", "1PiB", code=SPEC, text="limits.stdout_bytes"),
        case("run", HELLO, "--timeout", "0s", code=SPEC, text="limits.timeout_ms"),
        case("run", HELLO, "--timeout", "1.5s", code=SPEC, text="limits.timeout_ms"),
        case("run", HELLO, "--timeout", "9" * 30 + "h", code=SPEC, text="limits.timeout_ms"),
        # text bound for the spec
        case("run", HELLO, b"\xff", code=SPEC, text="args[1]"),
        case("run", HELLO, "-e", "NOEQUALS", code=SPEC, text="KEY=VALUE"),
        case("run", HELLO, "-e", "=x", code=SPEC, text="KEY=VALUE"),
        case("run", HELLO, "-e", b"A=\xff", code=SPEC, text="env.A"),
        case("run", HELLO, "--seed", "", code=SPEC, text="seed"),
        case("run", HELLO, "--seed", b"\xfe\xff", code=SPEC, text="seed"),
        case("run", HELLO, "--entry-point", b"\xff", code=SPEC, text="entry_point"),
        case("run", HELLO, "-i", str(VECTORS / "data/wordcount") + ":relative", code=SPEC, text="not absolute"),
        case("run", HELLO, "-i", os.fsencode(VECTORS / "data/wordcount") + b":/in\xff", code=SPEC,
             text="inputs.path"),
        # module and inputs
        case("run", "{tmp}/missing.wasm", code=INPUT, text="cannot read module"),
        case("run", str(VECTORS), code=INPUT, text="cannot read module"),
        case("run", "/dev/zero", code=INPUT, text="not a regular file"),  # read for ever before
        case("run", str(ROOT / "README.md"), code=MODULE, text="not a WebAssembly module"),
        case("run", HELLO, "-i", "{tmp}/missing", code=INPUT, text="does not exist"),
        case("run", HELLO, "-i", "/dev/zero", code=INPUT, text="is not a directory or a regular file"),
        case("run", HELLO, "-i", "ipfs://bafy:/x", code=INPUT, text="not a CIDv1"),
        case("run", HELLO, "--require-local", code=USAGE, text="--require-local"),
        case("run", HELLO, "-i", b"{tmp}/\xff", code=INPUT, text="does not exist"),
        # destinations
        case("run", HELLO, "--car", "{tmp}/missing/r.car", code=LOCAL_PATH, text="--car"),
        case("run", HELLO, "--car", "{tmp}", code=USAGE, text="--car"),
        case("run", HELLO, "--output-dir", "{tmp}/file/r", code=LOCAL_PATH, text="is not a directory",
             files={"file": b"x"}),
        case("run", HELLO, "--output-dir", "{tmp}/file", code=USAGE, text="--output-dir", files={"file": b"x"}),
        case("run", HELLO, "--cache-dir", "{tmp}/file/c", code=CACHE, text="cache", files={"file": b"x"}),
        case("run", HELLO, code=CACHE, text="cache", files={"file": b"x"},
             env={"COD_CACHE_DIR": "", "XDG_CACHE_HOME": "", "HOME": "{tmp}/file"}),
        # nodes: --node, COD_NODES, the config file
        case("run", HELLO, "--verify", "1", "--node", "garbage", code=USAGE, text="--node"),
        case("run", HELLO, "--verify", "1", "--node", "http://127.0.0.1:99999", code=USAGE, text="--node"),
        case("run", HELLO, "--verify", "1", "--node", b"http://\xff:1234", code=USAGE, text="not UTF-8"),
        case("run", HELLO, "--node", "http://127.0.0.1:1234", code=USAGE, text="--verify"),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="COD_NODES", env={"COD_NODES": "ftp://x"}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="COD_NODES", env={"COD_NODES": "http://[::1"}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="not UTF-8", env={"COD_NODES": b"http://\xff"}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="not valid JSON", files={CONFIG_FILE: b"nodes = 1"}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="not UTF-8",
             files={CONFIG_FILE: b'{"nodes": ["\xff"]}'}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="not one string",
             files={CONFIG_FILE: b'{"nodes": "http://127.0.0.1:1234"}'}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="not a table", files={CONFIG_FILE: b'["http://a:1"]'}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="not one string",
             files={CONFIG_TOML: b'nodes = "http://127.0.0.1:1234"'}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="not valid TOML", files={CONFIG_TOML: b'nodes = ['}),
        case("run", HELLO, code=CONFIG, text="unknown key 'node'", files={CONFIG_TOML: b'node = []'}),
        case("run", HELLO, code=CONFIG, text="limits.fuel", files={CONFIG_TOML: b'[limits]\nfuel = -1'}),
        case("run", HELLO, code=CONFIG, text="limits.memory", files={CONFIG_TOML: b'[limits]\nmemory = "lots"'}),
        case("run", HELLO, code=CONFIG, text="COD_TIMEOUT", env={"COD_TIMEOUT": "soon"}),
        case("run", HELLO, code=CONFIG, text="larger than", files={CONFIG_TOML: b"#" * (1 << 20) + b"\n"}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="http://", files={CONFIG_FILE: b'{"nodes": ["a:1"]}'}),
        case("run", HELLO, "--verify", "1", code=CONFIG, text="config file", env={"XDG_CONFIG_HOME": "{tmp}/file"},
             files={"file": b"x"}),
    ],
    "serve": [
        case("serve", code=USAGE, text="--data-dir"),
        case("serve", "--data-dir", "{tmp}/d", "--port", "99999", code=USAGE, text="--port"),
        case("serve", "--data-dir", "{tmp}/d", "--port", "-1", code=USAGE, text="--port"),
        case("serve", "--data-dir", "{tmp}/d", "--port", "http", code=USAGE, text="--port"),
        case("serve", "--data-dir", "{tmp}/d", "--concurrency", "0", code=USAGE, text="--concurrency"),
        case("serve", "--data-dir", "{tmp}/d", "--queue-size", "-1", code=USAGE, text="--queue-size"),
        # ASCII digits only (point 27): int() takes Arabic-Indic digits and underscores
        case("serve", "--data-dir", "{tmp}/d", "--port", "\u0660", code=USAGE,
             text="'\u0660' is not a number in ASCII digits: give e.g. 1234"),
        case("serve", "--data-dir", "{tmp}/d", "--max-fuel", "1_000", code=USAGE, text="not a number in ASCII digits"),
        case("serve", "--data-dir", "{tmp}/file", code=USAGE, text="--data-dir", files={"file": b"x"}),
        case("serve", "--data-dir", "{tmp}/d", "--dataset", "{tmp}/missing", code=USAGE, text="--dataset"),
        case("serve", "--data-dir", "{tmp}/d", "--dataset", "{tmp}/file", code=USAGE, text="--dataset",
             files={"file": b"x"}),
        case("serve", "--data-dir", "{tmp}/d", "--private-module", "{tmp}/file", code=INPUT,
             text="not a WebAssembly module", files={"file": b"x"}),
        case("serve", "--data-dir", "{tmp}/d", "--gateway", "ftp://gw", code=USAGE, text="--gateway"),
        case("serve", "--data-dir", "{tmp}/d", "--peer", "http://", code=USAGE, text="--peer"),
    ],
    "devstack": [
        case("devstack", "--nodes", "0", code=USAGE, text="--nodes"),
        case("devstack", "--nodes", "-1", code=USAGE, text="--nodes"),
        case("devstack", "--nodes", "33", code=USAGE, text="1 to 32"),
        case("devstack", "--nodes", "3", "--bad-nodes", "5", code=USAGE, text="--bad-nodes"),
        case("devstack", "--bad-nodes", "-1", code=USAGE, text="--bad-nodes"),
        case("devstack", "--bad-mode", "sometimes", code=USAGE, text="--bad-mode"),
        case("devstack", "--nodes", "x", code=USAGE, text="--nodes"),
        case("devstack", "--base-dir", "{tmp}/file/x", code=LOCAL_PATH, text="--base-dir", files={"file": b"x"}),
    ],
    "get": [
        case("get", code=USAGE, text="JOB"),
        case("get", "bafynosuchjob", code=NOT_FOUND, text="no job"),
        case("get", b"\xff", code=USAGE, text="JOB"),
        case("get", "bafy%", code=USAGE, text="JOB"),
        case("get", "bafynosuchjob", code=LOCAL_PATH, text="file", env={"COD_HOME": "{tmp}/file/home"},
             files={"file": b"x"}),
    ],
    "describe": [
        case("describe", code=USAGE, text="JOB"),
        case("describe", "bafynosuchjob", code=NOT_FOUND, text="no job"),
        case("describe", "", code=USAGE, text="JOB"),
        case("describe", b"\xff", code=USAGE, text="JOB"),
    ],
    "cancel": [
        case("cancel", code=USAGE, text="JOB"),
        case("cancel", "bafynosuchjob", code=NOT_FOUND, text="no job"),
        case("cancel", b"\xff", code=USAGE, text="JOB"),
        case("cancel", "x", "--nope", code=USAGE, text="--nope"),
    ],
    "logs": [
        case("logs", code=USAGE, text="JOB"),
        case("logs", "bafynosuchjob", code=NOT_FOUND, text="no job"),
        case("logs", b"\xff", code=USAGE, text="JOB"),
        case("logs", "x", "--stdout", "--nope", code=USAGE, text="--nope"),
    ],
    "list": [
        case("list", "--outcome", code=USAGE, text="--outcome"),
        case("list", "--json", "--limit", "0", code=USAGE, text="--limit"),
        case("list", "--limit", "-1", code=USAGE, text="--limit"),
        case("list", "--limit", "0", code=USAGE, text="--limit"),
        case("list", "--limit", "many", code=USAGE, text="--limit"),
        case("list", "--limit", "\u0661", code=USAGE, text="not a number in ASCII digits: give e.g. 50"),
        case("list", code=LOCAL_PATH, text="file", env={"COD_HOME": "{tmp}/file/home"}, files={"file": b"x"}),
        case("list", code=LOCAL_PATH, text="file", env={"COD_HOME": "", "HOME": "{tmp}/file"}, files={"file": b"x"}),
    ],
    "config": [
        case("config", "nosuch", code=USAGE, text="No such command"),
    ],
    "dashboard": [
        case("dashboard", "--interval", "0", code=USAGE, text="--interval"),
        case("dashboard", "--interval", "nan", code=USAGE, text="--interval"),
        case("dashboard", "--limit", "0", code=USAGE, text="--limit"),
        case("dashboard", "--ledger", "ledger.example", code=USAGE, text="--ledger"),
        case("dashboard", "--once", code=CONFIG, text="COD_LEDGER", env={"COD_LEDGER": "x"}),
        case("dashboard", "--json", code=LOCAL_PATH, text="file", env={"COD_HOME": "{tmp}/file/home"},
             files={"file": b"x"}),
        case("dashboard", "extra", code=USAGE, text="extra"),
    ],
    "config show": [
        case("config", "show", code=CONFIG, text="unknown key", files={CONFIG_TOML: b"x = 1"}),
        case("config", "show", code=CONFIG, text="COD_NODES", env={"COD_NODES": "nonsense"}),
        case("config", "show", "--bogus", code=USAGE, text="--bogus"),
        case("config", "show", code=CONFIG, text="nests too deeply",
             files={CONFIG_TOML: b"nodes = " + b"[" * 3000 + b"]" * 3000}),
        case("config", "show", code=CONFIG, text="nests too deeply", files={CONFIG_FILE: b"[" * 3000 + b"]" * 3000}),
        case("config", "show", code=CONFIG, text="NUL", files={CONFIG_TOML: b'moderator_key = "a\\u0000b"'}),
    ],
    "config path": [
        case("config", "path", "extra", code=USAGE, text="extra"),
    ],
    "config init": [
        case("config", "init", code=USAGE, text="already exists", files={CONFIG_TOML: b""}),
        case("config", "init", code=LOCAL_PATH, text="not a directory", env={"XDG_CONFIG_HOME": "{tmp}/file"},
             files={"file": b"x"}),
    ],
    "nodes": [
        case("nodes", "extra", code=USAGE, text="extra"),
        case("nodes", code=LOCAL_PATH, text="file", env={"COD_HOME": "{tmp}/file/home"}, files={"file": b"x"}),
        case("nodes", "--check", code=CONFIG, text="COD_NODES", env={"COD_NODES": "garbage"}),
        case("nodes", "--json", "--bogus", code=USAGE, text="--bogus"),
    ],
    "nodes forget": [
        case("nodes", "forget", code=USAGE, text="NODE_ID"),
        case("nodes", "forget", "", code=USAGE, text="not a node ID"),
        case("nodes", "forget", "a%b", code=USAGE, text="not a node ID"),
        case("nodes", "forget", b"\xff", code=USAGE, text="not a node ID"),
        case("nodes", "forget", "nosuchnode", code=USAGE, text="no known node"),
    ],
    "add": [
        case("add", code=USAGE, text="PATHS"),
        case("add", "{tmp}/missing", code=USAGE, text="does not exist"),
        case("add", "/dev/zero", code=INPUT, text="neither a regular file nor a directory"),
        case("add", HELLO, code=INPUT, text="content store", env={"COD_STORE": "{tmp}/file"}, files={"file": b"x"}),
    ],
    "cid": [
        case("cid", code=USAGE, text="PATH"),
        case("cid", "{tmp}/missing", code=USAGE, text="does not exist"),
        case("cid", b"{tmp}/\xff", code=USAGE, text="does not exist"),
        case("cid", "/dev/zero", code=INPUT, text="neither a file nor a directory"),  # read for ever before
    ],
    "profile": [
        case("profile", "extra", code=USAGE, text="extra"),
    ],
    "fraud": [case("fraud", "nope", code=USAGE, text="No such command")],
    "fraud show": [
        case("fraud", "show", code=USAGE, text="FILE"),
        case("fraud", "show", "{tmp}/missing", code=INPUT, text="cannot read the fraud proof"),
        case("fraud", "show", "{tmp}/p", code=FRAUD, text="not strict JSON", files={"p": b"{"}),
    ],
    "fraud list": [case("fraud", "list", "extra", code=USAGE, text="extra")],
    "fraud verify": [
        case("fraud", "verify", code=USAGE, text="FILE"),
        case("fraud", "verify", "{tmp}/p", "--referee-fuel", "0", code=USAGE, text="--referee-fuel"),
        case("fraud", "verify", "{tmp}/p", "--node", "ftp://x", code=USAGE, text="--node"),
        case("fraud", "verify", "{tmp}/p", code=FRAUD, text="unknown key 'x'", files={"p": b'{"x":1}'}),
    ],
    "keygen": [
        case("keygen", code=USAGE, text="FILE"),
        case("keygen", "{tmp}/file", code=KEY_FILE, text="exists already", files={"file": b"x"}),
        case("keygen", "{tmp}/missing/k", code=KEY_FILE, text="cannot create"),
    ],
    "ledger": [case("ledger", "nosuch", code=USAGE, text="No such command")],
    "ledger init": [
        case("ledger", "init", code=USAGE, text="--data-dir"),
        case("ledger", "init", "--data-dir", "{tmp}/l", "--root-key", "nope", "--threshold", "1", code=USAGE,
             text="root key"),
        case("ledger", "init", "--data-dir", "{tmp}/l", "--root-key", GOOD_ID, "--threshold", "2", code=USAGE,
             text="threshold"),
        case("ledger", "init", "--data-dir", "{tmp}/l", "--root-key", GOOD_ID, "--threshold", "0", code=USAGE,
             text="--threshold"),
    ],
    "ledger serve": [
        case("ledger", "serve", code=USAGE, text="--data-dir"),
        case("ledger", "serve", "--data-dir", "{tmp}/l", "--port", "99999", code=USAGE, text="--port"),
        case("ledger", "serve", "--data-dir", "{tmp}/l", "--scan-interval", "nan", code=USAGE,
             text="'nan' is not a number in ASCII digits"),
        case("ledger", "serve", "--data-dir", "{tmp}/l", "--scan-interval", "1e999", code=USAGE,
             text="not a finite number"),
        case("ledger", "serve", "--data-dir", "{tmp}/l", "--witness", "garbage", code=USAGE, text="--witness"),
        case("ledger", "serve", "--data-dir", "{tmp}/l", "--scan-node", "ftp://x", code=USAGE, text="--scan-node"),
        case("ledger", "serve", "--data-dir", "{tmp}/l", "--address-limit", "0:1000", code=USAGE,
             text="--address-limit '0:1000' is not BURST:REFILL_MS"),
        case("ledger", "serve", "--data-dir", "{tmp}/l", "--key-limit", "60/1", code=USAGE, text="--key-limit"),
        case("ledger", "serve", "--data-dir", "{tmp}/l", "--anonymous-limit", "١٠:50", code=USAGE,
             text="--anonymous-limit"),
        case("ledger", "serve", "--data-dir", "{tmp}/nothing", code=LOCAL_PATH, text="ledger"),
    ],
    "ledger info": [
        case("ledger", "info", code=USAGE, text="no ledger is configured"),
        case("ledger", "info", code=LEDGER, text="cannot reach the ledger", env=NO_LEDGER),
        case("ledger", "info", "--ledger", "garbage", code=USAGE, text="--ledger"),
        case("ledger", "info", code=CONFIG, text="COD_LEDGER", env={"COD_LEDGER": "ftp://x"}),
    ],
    "ledger notary": [
        case("ledger", "notary", code=USAGE, text="RESULT_CID"),
        case("ledger", "notary", "bafyx", code=LEDGER, text="cannot reach the ledger", env=NO_LEDGER),
        case("ledger", "notary", "bafyx", "--min-cosignatures", "1", code=USAGE, text="--witness", env=NO_LEDGER),
        case("ledger", "notary", "bafyx", "--witness", "garbage", code=USAGE, text="--witness", env=NO_LEDGER),
        case("ledger", "notary", "bafyx", "--vkey", "garbage", code=USAGE, text="--vkey", env=NO_LEDGER),
    ],
    "ledger proof": [
        case("ledger", "proof", code=USAGE, text="RESULT_CID"),
        case("ledger", "proof", "bafyx", code=LEDGER, text="cannot reach the ledger", env=NO_LEDGER),
    ],
    "ledger verify": [
        case("ledger", "verify", code=USAGE, text="--data-dir"),
        case("ledger", "verify", "--data-dir", "{tmp}", "--url", "http://127.0.0.1:9", code=USAGE, text="exactly one"),
        case("ledger", "verify", "--data-dir", "{tmp}/nothing", code=AUDIT, text="ledger"),
        case("ledger", "verify", "--url", "http://127.0.0.1:9", code=LEDGER, text="127.0.0.1:9"),
        case("ledger", "verify", "--data-dir", "{tmp}", "--min-cosignatures", "1", code=USAGE, text="--witness"),
    ],
    "ledger bless": [case("ledger", "bless", "nosuch", code=USAGE, text="No such command")],
    "ledger bless import": [
        case("ledger", "bless", "import", code=USAGE, text="FILE"),
        case("ledger", "bless", "import", "{tmp}/missing.json", "--key", "{tmp}/k", code=INPUT, text="cannot read"),
        case("ledger", "bless", "import", "{tmp}/b.json", "--key", "{tmp}/k", code=INPUT, text="not JSON",
             files={"b.json": b"[1,"}),
        case("ledger", "bless", "import", "{tmp}/b.csv", "--key", "{tmp}/k", code=INPUT, text="cid",
             files={"b.csv": b"x,y\n1,2\n"}),
        case("ledger", "bless", "import", "{tmp}/b.json", "--key", "{tmp}/missing.key", code=KEY_FILE,
             text="key file", files={"b.json": b'["bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"]'},
             env=NO_LEDGER),
        case("ledger", "bless", "import", "{tmp}/b.json", "--key", "{tmp}/k", code=USAGE, text="blesses no CID",
             files={"b.json": b'["nope"]'}),
    ],
    "ledger moderator": [case("ledger", "moderator", "nosuch", code=USAGE, text="No such command")],
    "ledger moderator propose": [
        case("ledger", "moderator", "propose", code=USAGE, text="add|remove"),
        case("ledger", "moderator", "propose", "promote", GOOD_ID, "--key", "{tmp}/k", code=USAGE, text="promote"),
        case("ledger", "moderator", "propose", "add", GOOD_ID, code=USAGE, text="--key"),
        case("ledger", "moderator", "propose", "add", GOOD_ID, "--key", "{tmp}/missing.key", code=KEY_FILE,
             text="key file", env=NO_LEDGER),
    ],
    "ledger moderator approve": [
        case("ledger", "moderator", "approve", code=USAGE, text="PROPOSAL"),
        case("ledger", "moderator", "approve", "abc", code=USAGE, text="--key"),
    ],
    "ledger moderator list": [
        case("ledger", "moderator", "list", code=LEDGER, text="cannot reach the ledger", env=NO_LEDGER),
    ],
    "ledger witness": [
        case("ledger", "witness", code=USAGE, text="--data-dir"),
        case("ledger", "witness", "--data-dir", "{tmp}/w", "--log", "not a vkey", code=USAGE, text="--log"),
    ],
    "moderation": [case("moderation", "nosuch", code=USAGE, text="No such command")],
    "moderation queue": [
        case("moderation", "queue", code=USAGE, text="no ledger is configured"),
        case("moderation", "queue", code=LEDGER, text="cannot reach the ledger", env=NO_LEDGER),
    ],
    "moderation show": [
        case("moderation", "show", code=USAGE, text="JOB"),
        case("moderation", "show", "bafyx", code=LEDGER, text="cannot reach the ledger", env=NO_LEDGER),
    ],
    "moderation approve": [
        case("moderation", "approve", "bafyx", "--reason", "r", code=USAGE, text="--datacap"),
        case("moderation", "approve", "bafyx", "--datacap", "lots", "--reason", "r", code=USAGE, text="DataCap"),
        case("moderation", "approve", "bafyx", "--datacap", "0", "--reason", "r", code=USAGE, text="DataCap"),
        case("moderation", "approve", "bafyx", "--datacap", "2EiB", "--reason", "r", code=USAGE, text="DataCap"),
        case("moderation", "approve", "bafyx", "--datacap", "1.5B", "--reason", "r", code=USAGE, text="whole"),
        case("moderation", "approve", "bafyx", "--datacap", "1TiB", code=USAGE, text="--reason"),
    ],
    "moderation reject": [
        case("moderation", "reject", "bafyx", code=USAGE, text="--reason"),
        case("moderation", "reject", "bafyx", "--reason", "r", code=LEDGER, text="cannot reach the ledger",
             env=NO_LEDGER),
    ],
}


def command_paths(group: click.Group, prefix: str = "") -> list[str]:
    """Every command under ``group``, recursively, by its path ("" is the group itself)."""
    paths = [prefix]
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}".strip()
        paths.extend(command_paths(command, path) if isinstance(command, click.Group) else [path])
    return paths


def test_every_command_has_cases() -> None:
    assert sorted(command_paths(cli)) == sorted(CASES), "give every cod command bad-argument cases in CASES"
    assert all(CASES.values())


def environment(tmp: Path, extra: dict[str, Arg]) -> dict[str, Arg]:
    env: dict[str, Arg] = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp / "home"), "COD_HOME": str(tmp / "cod-home"),
        "COD_CACHE_DIR": str(tmp / "cache"), "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(extra)
    return {k: fill(v, tmp) for k, v in env.items() if v != ""}


def fill(arg: Arg, tmp: Path) -> Arg:
    if isinstance(arg, bytes):
        return arg.replace(b"{tmp}", os.fsencode(tmp))
    return arg.replace("{tmp}", str(tmp))


def cod(tmp: Path, argv: tuple[Arg, ...], env: dict[str, Arg]) -> subprocess.CompletedProcess[bytes]:
    """``python -m cod ARGV`` in ``tmp``; bytes arguments and environment values go through as bytes."""
    return subprocess.run([sys.executable, "-m", "cod", *(fill(a, tmp) for a in argv)], cwd=tmp,
                          env=environment(tmp, env), capture_output=True, timeout=TIMEOUT)


def assert_one_error(proc: subprocess.CompletedProcess[bytes], code: int, text: str) -> str:
    """The stderr of a refused command: one error line (+ one hint), nothing else; returns the error line."""
    stderr = proc.stderr.decode("utf-8", "backslashreplace")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in lines if line.startswith("error: ")]
    hints = [line for line in lines if line.startswith("hint: ")]
    assert len(errors) == 1 and len(hints) <= 1, stderr
    assert lines[0] == errors[0] and len(lines) == len(errors) + len(hints), f"more than error/hint: {stderr}"
    assert proc.returncode == code, stderr
    assert text in errors[0], stderr
    return errors[0]


def listing(tmp: Path) -> list[str]:
    """What a refused command may not add to its working directory (the module cache and the
    requester's records, opened before a job is looked up, aside)."""
    return sorted(p.name for p in tmp.iterdir() if p.name not in ("cache", "cod-home"))


ALL_CASES = [c for cases in CASES.values() for c in cases]


@dataclass(frozen=True)
class Outcome:
    proc: subprocess.CompletedProcess[bytes]
    before: list[str]
    after: list[str]


def attempt(item: Case, tmp: Path) -> Outcome:
    for name, content in item.files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(content)
    before = listing(tmp)
    try:
        proc = cod(tmp, item.argv, item.env)
    except subprocess.TimeoutExpired as exc:  # a refusal is immediate: this command started something
        proc = subprocess.CompletedProcess(exc.cmd, -1, b"", b"hung: still running after %d s" % exc.timeout)
    return Outcome(proc, before, listing(tmp))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Outcome]:
    """Every case run once, a few processes at a time (each is a short-lived interpreter)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {n: pool.submit(attempt, item, tmp_path_factory.mktemp("case"))
                   for n, item in enumerate(ALL_CASES)}
        return {n: future.result() for n, future in futures.items()}


@pytest.mark.parametrize("n", range(len(ALL_CASES)), ids=[str(c) for c in ALL_CASES])
def test_bad_arguments_give_one_error_line(outcomes: dict[int, Outcome], n: int) -> None:
    item, outcome = ALL_CASES[n], outcomes[n]
    assert_one_error(outcome.proc, item.code, item.text)
    assert outcome.proc.stdout == b""
    assert outcome.after == outcome.before  # no results, CAR, devstack or staging directory was made


def test_a_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cod(tmp_path, ("serve", "--data-dir", "{tmp}/d", "--port", str(port)), {})
    # the node converts bind errors into its own CodError; until then main's last resort holds
    stderr = proc.stderr.decode("utf-8", "backslashreplace")
    assert "Traceback" not in stderr and proc.returncode != 0
    assert len([line for line in stderr.splitlines() if line.startswith("error: ")]) == 1, stderr


@pytest.mark.parametrize("argv", [["profile"], ["list"], ["devstack", "--nodes", "1"]], ids=" ".join)
def test_a_closed_stdout_is_a_silent_141(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "tmp").mkdir()
    if argv == ["list"]:  # one record to print
        from verifier.reputation import Records

        Records(tmp_path / "cod-home" / "requester.db").record_job("bagaaieratest", "verified", None, 1, 1, {}, [])
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before cod writes a byte: every write is EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "cod", *argv], cwd=tmp_path, stdout=write_end,
                              stderr=subprocess.PIPE, env=environment(tmp_path, {"TMPDIR": str(tmp_path / "tmp")}),
                              timeout=TIMEOUT)
    finally:
        os.close(write_end)
    assert proc.returncode == BROKEN_PIPE, proc.stderr
    assert proc.stderr == b""
    assert list((tmp_path / "tmp").iterdir()) == []  # a devstack stopped its nodes and removed their data


def test_ctrl_c_ends_a_local_run_at_once(tmp_path: Path) -> None:
    """fuelbomb loops in wasm without calling the host: before, SIGINT waited for --timeout."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cod", "run", str(VECTORS / "fuelbomb.wasm"), "--fuel", str(10**14),
         "--timeout", "600s", "--output-dir", str(tmp_path / "r")],
        cwd=tmp_path, env=environment(tmp_path, {}), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    try:
        # wait until the guest runs (its staging directory exists), for at most TIMEOUT seconds
        deadline = time.monotonic() + TIMEOUT
        while not any(p.name.startswith(".cod-staging-") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # a bound against the hang, not a speed test
    finally:
        proc.kill()
        proc.wait()
    completed = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_one_error(completed, INTERRUPTED, "interrupted")
    assert not (tmp_path / "r").exists()


def test_an_unexpected_exception_is_an_internal_error(capfd: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    @cli.command(name="boom-test")
    def boom() -> None:
        """Raise something no one expected, as a bug would."""
        raise ZeroDivisionError("division by zero")

    try:
        monkeypatch.delenv("COD_DEBUG", raising=False)
        assert run_cli(["boom-test"]) == INTERNAL
        err = capfd.readouterr().err.splitlines()
        assert err == ["error: internal error: ZeroDivisionError: division by zero",
                       "hint: this is a bug in cod: rerun with COD_DEBUG=1 for the traceback and report it"]
        monkeypatch.setenv("COD_DEBUG", "1")
        assert run_cli(["boom-test"]) == INTERNAL
        err = capfd.readouterr().err.splitlines()
        assert err[0] == "Traceback (most recent call last):"
        assert err[-2] == "error: internal error: ZeroDivisionError: division by zero"
    finally:
        del cli.commands["boom-test"]
