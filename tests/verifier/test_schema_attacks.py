"""Attacks on the node answers the requester reads (verifier.schema)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("hostile", ["/root/.ssh", "../../etc/passwd", "~/.cod/node.key", "bafy:/inputs", ""])
def test_a_result_cid_that_would_render_to_a_local_path_is_refused_at_the_answer(hostile: str) -> None:
    """Airflow chains stages by ``inputs=["{{ ...['result_cid'] }}:/inputs"]``; a local path
    there would make the requester upload its own files (as ``cod run -i PATH`` does, which is
    the DAG author's choice). The value comes from nodes' answers, so hostile nodes agreeing on
    ``/root/.ssh`` must not get it into XCom: a done record's result_cid must be a CID. The
    empty text passed the check (a parse failure compared its canonical form "" to "") and so
    could group and be judged as a result; now it is refused like any other non-CID."""
    from cod.errors import CodError
    from verifier import schema

    job = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    with pytest.raises(CodError, match="result_cid"):
        schema.job_record("n", {"job_cid": job, "state": "done", "result_cid": hostile, "statement": {}}, job)
