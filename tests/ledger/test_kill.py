"""kill -9 during appends: the ledger reopens, keeps every acknowledged append, and the audit finds nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from cod.ledger.audit import audit_dir
from cod.ledger.log import Ledger
from tests.helpers import ROOT
from tests.ledger.bkit import governed

CHILD = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from cod.ledger import entries
from cod.ledger.log import Ledger
from tests.ledger.bkit import MOD, NODES, agreeing, cid, spec

ledger = Ledger.open(Path({path!r}))
i = ledger.size
while True:
    if i % 5 == 0:   # a blessing and a judged job: derived rows in several tables
        data = cid(f"data {{i}}")
        ledger.bless([entries.sign_bless_batch(MOD, {{data: [i]}}, origin=ledger.origin)])
        s = spec(data)
        ledger.report_evidence(s, agreeing(s, 2))
    batch = [entries.sign_refusal(NODES[k % 4], job=cid(f"job {{i}}.{{k}}"), policy="fil-plus-only", inputs=[],
                                  reason="refused") for k in range(1 + i % 7)]
    ledger.append_signed(batch)
    print(ledger.size, flush=True)
    i += 1
"""

ROUNDS = 5


def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    governed(tmp_path).close()
    path = tmp_path / "ledger"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), path=str(path)))
    rng = random.Random(20261122)
    acknowledged = 0
    for _ in range(ROUNDS):
        child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert child.stdout is not None
        try:
            for _ in range(rng.randint(1, 60)):
                line = child.stdout.readline()
                assert line, child.stderr.read() if child.stderr else "the child ended"
                acknowledged = int(line)
        finally:
            os.kill(child.pid, signal.SIGKILL)   # mid-append, wherever it is now
            child.wait()
            child.stdout.close()
            if child.stderr:
                child.stderr.close()
        reopened = Ledger.open(path)
        assert reopened.size >= acknowledged   # every append it reported is there
        reopened.close()
        assert audit_dir(path) == []
