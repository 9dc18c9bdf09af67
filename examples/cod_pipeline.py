"""A three-stage cod pipeline on Apache Airflow: WASM -> Docker -> WASM.

1. ``count``: the word-count module over a directory, verified by 3 nodes.
2. ``lines``: a docker job (unverifiable, one node) that reads stage 1's results, mounted by
   their CID from XCom, and writes how many lines the count has.
3. ``recount``: the word-count module again, over stage 2's results, by CID, verified by 3.
4. ``fetch``: stage 3's agreed results downloaded and checked against their CID.

The network is the Airflow connection ``cod_default`` (see cod.airflow.hooks), e.g.::

    export AIRFLOW_CONN_COD_DEFAULT='{"conn_type": "cod", "extra": {"nodes": ["http://127.0.0.1:4001",
        "http://127.0.0.1:4002", "http://127.0.0.1:4003"]}}'

and the settings below come from the environment (a DAG file is parsed by Airflow itself, so
it reads no command line): COD_EXAMPLE_DATA (the directory to count; default the word-count
vector's data), COD_EXAMPLE_IMAGE (the docker image; default busybox), COD_EXAMPLE_OUT (where
``fetch`` puts the results; default ./cod-results/pipeline).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from cod.airflow.operators import CodDockerRunOperator, CodGetOperator, CodWasmRunOperator

ROOT = Path(os.environ.get("COD_EXAMPLE_ROOT", Path(__file__).resolve().parents[1]))
WORDCOUNT = str(ROOT / "vectors" / "wordcount.wasm")
DATA = os.environ.get("COD_EXAMPLE_DATA", str(ROOT / "vectors" / "data" / "wordcount"))
IMAGE = os.environ.get("COD_EXAMPLE_IMAGE", "busybox")
OUT = os.environ.get("COD_EXAMPLE_OUT", "cod-results/pipeline")

with DAG("cod_pipeline", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         tags=["cod"], doc_md=__doc__) as dag:
    count = CodWasmRunOperator(task_id="count", module=WORDCOUNT, inputs=[f"{DATA}:/inputs"], verify=3)
    lines = CodDockerRunOperator(
        task_id="lines", image=IMAGE,
        command=["sh", "-c", "wc -l < /inputs/outputs/count.txt > /outputs/lines.txt; cat /inputs/stdout"],
        inputs=["{{ ti.xcom_pull(task_ids='count')['result_cid'] }}:/inputs"])
    recount = CodWasmRunOperator(task_id="recount", module=WORDCOUNT,
                                 inputs=["{{ ti.xcom_pull(task_ids='lines')['result_cid'] }}:/inputs"], verify=3)
    fetch = CodGetOperator(task_id="fetch", job_cid="{{ ti.xcom_pull(task_ids='recount')['job_cid'] }}",
                           output_dir=OUT)
    count >> lines >> recount >> fetch

if __name__ == "__main__":
    dag.test()
