"""`make demo-ledger`: the whole FIL+ flow with real commands on an embedded local network.

Each step is a real `cod` command run as a user would type it (printed with its output):
keys, a ledger with one root key holder, a moderator voted in, the word-count input blessed,
a verified run on three nodes reported to the ledger, the moderator's approval, the notary's
query with its inclusion proof checked against the signed checkpoint, and the offline audit.
Everything lives in one temporary directory, removed at the end (``--keep DIR`` keeps it).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "vectors" / "wordcount.wasm"
DATA = ROOT / "vectors" / "data" / "wordcount"
READY_TIMEOUT_S = 30


def cod(*args: str, env: dict[str, str], check: bool = True, show: bool = True) -> str:
    """Run ``cod ARGS`` as a user would, print the command and (``show``) its output, return stdout."""
    print(f"$ cod {' '.join(_quote(a) for a in args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "cod", *args], env=env, capture_output=True, text=True)
    out = done.stdout + done.stderr if show or done.returncode else done.stderr
    if out.strip():
        print("  " + out.strip().replace("\n", "\n  "), flush=True)
    if check and done.returncode != 0:
        raise SystemExit(f"demo-ledger: `cod {args[0]}` failed with exit code {done.returncode}")
    return done.stdout


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./:=+@" for c in arg) else json.dumps(arg)


def start_ledger(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`cod ledger serve --port 0` in the background; returns the process and its URL."""
    print(f"$ cod ledger serve --data-dir {data_dir} --port 0 &", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "cod", "ledger", "serve", "--data-dir", str(data_dir),
                             "--port", "0"], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        print("  " + line.rstrip(), flush=True)
        if "http://" in line:
            return proc, line[line.index("http://"):].split()[0]
    raise SystemExit("demo-ledger: the ledger did not start")


def check_notary_answer(answer: dict[str, Any], vkey: str) -> None:
    """What a notary does with GET /v1/results/{cid}: check the checkpoint's signature with the
    log's verifier key, then the decision leaf's inclusion proof against the checkpoint's root."""
    from cod.ledger import merkle
    from cod.ledger.checkpoint import Checkpoint
    from cod.ledger.note import Verifier, open_note

    proof = answer["proof"]
    text, _ = open_note(proof["checkpoint"].encode(), [Verifier.from_vkey(vkey)])
    checkpoint = Checkpoint.parse(text if isinstance(text, bytes) else text.encode())
    leaf = base64.b64decode(proof["leaf"])
    path = [base64.b64decode(h) for h in proof["inclusion_path"]]
    merkle.check_record(path, checkpoint.size, checkpoint.root, proof["leaf_index"], merkle.leaf_hash(leaf))
    decision = json.loads(leaf)["statement"]
    print(f"  notary: checkpoint signed by {vkey.split('+')[0]}, size {checkpoint.size}; decision leaf "
          f"{proof['leaf_index']} is in it: {decision['action']} {decision['result']} "
          f"with {decision['datacap']} bytes of DataCap", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="keep the demo's files in this directory")
    options = parser.parse_args()
    work = Path(options.keep or tempfile.mkdtemp(prefix="cod-demo-ledger-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, XDG_CONFIG_HOME=str(work / "config"), XDG_CACHE_HOME=str(work / "cache"),
               COD_HOME=str(work / "home"), PYTHONPATH=str(ROOT))
    env.pop("COD_NODES", None)
    env.pop("COD_LEDGER", None)
    ledger: subprocess.Popen[str] | None = None
    try:
        print("# 1. keys: a root key holder (governs the moderator set) and a moderator")
        root_id = cod("keygen", str(work / "root.key"), env=env).split()[-1]
        moderator_id = cod("keygen", str(work / "moderator.key"), env=env).split()[-1]
        print("# 2. a ledger whose moderator set one root key governs, served on loopback")
        cod("ledger", "init", "--data-dir", str(work / "ledger"), "--root-key", root_id, "--threshold", "1",
            env=env)
        ledger, url = start_ledger(work / "ledger", env)
        env["COD_LEDGER"] = url
        cod("ledger", "info", env=env)
        info = json.loads(cod("ledger", "info", "--json", env=env, show=False))
        cod("ledger", "moderator", "propose", "add", moderator_id, "--key", str(work / "root.key"), env=env)
        print("# 3. (1) the word-count input is FIL+ data: bless its CID")
        input_cid = cod("cid", str(DATA), env=env).split()[-1]
        (work / "blessed.json").write_text(json.dumps([input_cid]))
        cod("ledger", "bless", "import", str(work / "blessed.json"), "--key", str(work / "moderator.key"),
            env=env)
        print("# 4. (3) a verified run on three nodes, reported to the ledger as evidence")
        run = json.loads(cod("run", "--verify", "3", str(MODULE), "-i", str(DATA), "--json",
                             "--output-dir", str(work / "results"), env=env, show=False))
        print(f"  {run['outcome']}: job {run['job_cid']}\n  result {run['result_cid']}, agreed by "
              f"{len(run['groups'].get(run['result_cid'], []))} nodes\n  ledger: {json.dumps(run.get('ledger'))}",
              flush=True)
        print("# 5. (4) the moderator looks at the queue and approves with DataCap")
        cod("moderation", "queue", env=env)
        cod("moderation", "show", run["job_cid"], env=env)
        cod("moderation", "approve", run["job_cid"], "--datacap", "1TiB", "--reason",
            "word counts of a public-domain corpus: useful, reproducible", "--key", str(work / "moderator.key"),
            env=env)
        print("# 6. (5) the notary asks about the result CID and checks the proof offline")
        proof = json.loads(cod("ledger", "proof", run["result_cid"], "--json", env=env))
        check_notary_answer({"proof": proof}, info["vkey"])
        cod("ledger", "notary", run["result_cid"], "--vkey", info["vkey"], env=env)  # ... and that nothing undid it
        print("# 7. anyone audits the whole log offline, pinning the log's key")
        cod("ledger", "verify", "--url", url, "--vkey", info["vkey"], env=env)
    finally:
        if ledger is not None:
            ledger.send_signal(signal.SIGTERM)
            ledger.wait(timeout=READY_TIMEOUT_S)
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
