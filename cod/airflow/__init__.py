"""cod's Apache Airflow provider: verified WebAssembly jobs, docker jobs and result downloads as
Airflow tasks (installed with ``pip install 'cod[airflow]'``, found by Airflow through the
``apache_airflow_provider`` entry point).

- :class:`cod.airflow.hooks.CodHook`: the node list and settings, held as an Airflow connection
  of type ``cod`` (default ID ``cod_default``).
- :class:`cod.airflow.operators.CodWasmRunOperator`, :class:`~cod.airflow.operators.CodDockerRunOperator`
  and :class:`~cod.airflow.operators.CodGetOperator`.

Each run operator returns (so pushes to XCom) ``{"job_cid", "outcome", "result_cid", ...}``;
a later stage mounts an earlier one's results by CID:
``inputs=["{{ ti.xcom_pull(task_ids='stage1')['result_cid'] }}:/inputs"]``. This module
imports nothing of Airflow: Airflow reads :func:`get_provider_info` while it starts.
"""

from __future__ import annotations

from typing import Any

PACKAGE = "cod"


def get_provider_info() -> dict[str, Any]:
    """What Airflow's provider manager reads (the schema of airflow's provider_info)."""
    from .. import __version__

    return {
        "package-name": PACKAGE,
        "name": "cod",
        "description": "Verified compute over data: WebAssembly jobs run by several cod nodes, their signed "
                       "results compared; docker jobs run unverifiable.",
        "versions": [__version__],
        "integrations": [{"integration-name": "cod", "tags": ["software"]}],
        "operators": [{"integration-name": "cod", "python-modules": ["cod.airflow.operators"]}],
        "hooks": [{"integration-name": "cod", "python-modules": ["cod.airflow.hooks"]}],
        "connection-types": [{"hook-class-name": "cod.airflow.hooks.CodHook", "connection-type": "cod",
                              "hook-name": "cod network"}],
    }
