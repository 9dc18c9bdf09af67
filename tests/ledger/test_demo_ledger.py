"""`make demo-ledger` end to end, as real processes: keys, a ledger, a moderator voted in, a blessed
input, a verified run on an embedded network reported as evidence, an approval, the notary's
inclusion proof checked against the signed checkpoint with the log's key, and the offline audit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_ledger_runs_the_whole_flow(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "verifier.demo_ledger", "--keep", str(tmp_path / "demo")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in out + done.stderr
    for expected in ("(entry 1): in effect", "blessed 1 CID(s) in 1 entry", "verified: job bagaaiera",
                     '"eligible": true', "ENTRY  NODES", "approved job bagaaiera",
                     "decision leaf 4 is in it: approve", "with 1099511627776 bytes of DataCap", "verifies"):
        assert expected in out, f"{expected!r} missing from the demo's output:\n{out[-3000:]}"
    # the ledger the demo left is one the offline audit accepts, pinned to the key init printed
    audit = subprocess.run([sys.executable, "-m", "cod", "ledger", "verify", "--data-dir", str(tmp_path / "demo" / "ledger")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # a hand edit of the SQLite file (triggers dropped first) is caught: exit 24, the problem named
    import sqlite3

    conn = sqlite3.connect(tmp_path / "demo" / "ledger" / "ledger.sqlite")
    conn.execute("DROP TRIGGER decisions_no_update")
    conn.execute("UPDATE decisions SET datacap = datacap * 1024")
    conn.commit()
    conn.close()
    tampered = subprocess.run([sys.executable, "-m", "cod", "ledger", "verify", "--data-dir",
                               str(tmp_path / "demo" / "ledger")], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
    assert tampered.returncode == 24, tampered.stdout + tampered.stderr
    assert "decisions" in tampered.stdout + tampered.stderr and "error:" in tampered.stderr
    assert "Traceback" not in tampered.stdout + tampered.stderr
