"""The Airflow provider (cod.airflow) with the real Apache Airflow from PyPI (make test installs
cod[airflow]): the provider entry point, the connection, and examples/cod_pipeline.py run by
`dag.test()` against a real local network (`cod devstack` with podman's Docker API), WASM ->
Docker -> WASM, each stage mounting the previous one's result CID from XCom; and a stage a
lying node makes a mismatch fails its task with the groups in the log.

Expected values come from the vectors (wordcount.json) and from counting here, in Python, the
bytes each stage read; never from the code under test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cod.content.store import ContentStore
from cod.errors import ConfigError

from ..helpers import ROOT, VECTORS, load_vector
from ..test_docker import IMAGE, engine_socket  # noqa: F401  (a module-scoped fixture: podman's Docker API)

EXAMPLE = ROOT / "examples" / "cod_pipeline.py"
DRIVER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("cod_pipeline", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
run = module.dag.test()
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print("COD-DAG-RESULT " + json.dumps({"state": str(run.state), "tasks": states}), flush=True)
"""


def test_the_provider_is_registered_with_airflow() -> None:
    from importlib.metadata import entry_points

    found = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("cod.airflow")]
    assert len(found) == 1
    info = found[0].load()()
    assert info["package-name"] == "cod"
    assert info["connection-types"] == [{"hook-class-name": "cod.airflow.hooks.CodHook", "connection-type": "cod",
                                         "hook-name": "cod network"}]
    proc = subprocess.run([sys.executable, "-c", "from airflow.providers_manager import ProvidersManager as P; "
                           "m = P(); print('COD-PROVIDER', 'cod' in m.providers, 'cod' in m.hooks)"],
                          capture_output=True, text=True, timeout=120, env=_airflow_env(Path("/tmp"), {}))
    assert "COD-PROVIDER True True" in proc.stdout, (proc.stdout + proc.stderr)[-2000:]


def test_the_hook_reads_the_network_from_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from cod.airflow.hooks import CodHook

    monkeypatch.setenv("AIRFLOW_CONN_COD_DEFAULT", json.dumps(
        {"conn_type": "cod", "extra": {"nodes": "http://10.0.0.1:1234, http://10.0.0.2:1234",
                                       "ledger": "http://10.0.0.9:8470"}}))
    network = CodHook().get_conn()
    assert network.nodes == ["http://10.0.0.1:1234", "http://10.0.0.2:1234"]
    assert network.ledger == "http://10.0.0.9:8470"
    monkeypatch.setenv("AIRFLOW_CONN_LAB", json.dumps({"conn_type": "cod", "host": "10.0.0.5", "port": 4001}))
    assert CodHook("lab").get_conn().nodes == ["http://10.0.0.5:4001"]
    for bad in ({"nodes": ["ftp://x"]}, {"nodes": 7}, {"nodes": ["http://a:1"], "ledger": "nope"}):
        monkeypatch.setenv("AIRFLOW_CONN_BAD", json.dumps({"conn_type": "cod", "extra": bad}))
        with pytest.raises(ConfigError) as refused:
            CodHook("bad").get_conn()
        assert "'bad'" in refused.value.message and refused.value.hint


def _airflow_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COD_"))}
    env.update({"AIRFLOW_HOME": str(home / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE.parent), "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "COD_HOME": str(home / "cod"), "COD_CONFIG": str(home / "no-config.toml"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with a migrated SQLite metadata DB and the example DAG serialized (Airflow 3
    runs only serialized DAGs)."""
    home = tmp_path_factory.mktemp("af")
    airflow = str(Path(sys.executable).parent / "airflow")
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        proc = subprocess.run([airflow, *command], capture_output=True, text=True, timeout=300,
                              env=_airflow_env(home, {}))
        assert proc.returncode == 0, f"airflow {' '.join(command)}: {proc.stderr[-3000:]}"
    return home


class _Devstack:
    """`cod devstack` in its own process (the DAG's tasks run their own event loops)."""

    def __init__(self, base: Path, nodes: int, bad: int, env: dict[str, str]) -> None:
        (base / "nodes").mkdir(parents=True)
        self.log = base / "devstack.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "cod", "devstack", "--nodes", str(nodes),
                                      "--bad-nodes", str(bad), "--base-dir", str(base / "nodes")],
                                     stdout=subprocess.PIPE, stderr=open(self.log, "w"), text=True, env=env)
        assert self.proc.stdout is not None
        self.urls: list[str] = []
        for line in self.proc.stdout:
            found = re.match(r"node \S+ at (http://\S+)", line)
            if found:
                self.urls.append(found.group(1))
            if len(self.urls) == nodes:
                break
        assert len(self.urls) == nodes, self.log.read_text()[-2000:]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


@pytest.fixture
def network(tmp_path: Path, engine_socket: str) -> Iterator[Any]:  # noqa: F811
    stacks: list[_Devstack] = []

    def start(nodes: int = 3, bad: int = 0) -> _Devstack:
        env = dict(os.environ, DOCKER_HOST=f"unix://{engine_socket}", CONTAINERS_CONF=str(
            Path(engine_socket).parent / "containers.conf"))
        stack = _Devstack(tmp_path / f"stack{len(stacks)}", nodes, bad, env)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.stop()


def _run_dag(airflow_home: Path, work: Path, urls: list[str]) -> tuple[dict[str, Any], str]:
    (work / "driver.py").write_text(DRIVER)
    env = _airflow_env(airflow_home, {
        "AIRFLOW_CONN_COD_DEFAULT": json.dumps({"conn_type": "cod", "extra": {"nodes": urls}}),
        "COD_HOME": str(work / "cod"), "COD_EXAMPLE_IMAGE": IMAGE, "COD_EXAMPLE_OUT": str(work / "out")})
    proc = subprocess.run([sys.executable, str(work / "driver.py"), str(EXAMPLE)], cwd=work, capture_output=True,
                          text=True, timeout=600, env=env)
    text = proc.stdout + proc.stderr
    found = re.search(r"COD-DAG-RESULT (.*)", proc.stdout)
    assert found, text[-4000:]
    return json.loads(found.group(1)), text


def _counts(root: Path, mount: str) -> str:
    """What the word-count module writes for a directory mounted at ``mount``: one line per file,
    `lines words bytes path`, paths in byte order (derived here, not by cod)."""
    out = []
    for path in sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: str(p.relative_to(root)).encode()):
        data = path.read_bytes()
        lines = data.count(b"\n")
        out.append(f"{lines} {len(data.split())} {len(data)} {mount}/{path.relative_to(root)}\n")
    return "".join(out)


def test_a_wasm_docker_wasm_pipeline_passes_result_cids_through_xcom(airflow_home: Path, network: Any,
                                                                      tmp_path: Path) -> None:
    stack = network(3)
    result, log = _run_dag(airflow_home, tmp_path, stack.urls)
    assert result == {"state": "success", "tasks": {"count": "success", "lines": "success", "recount": "success",
                                                    "fetch": "success"}}, log[-4000:]
    store = ContentStore(tmp_path / "cod" / "store")
    # stage 1 is the word-count vector's own job: its result CID is the vector's
    vector = load_vector("wordcount")["expect"]
    first = store.get(vector["result_cid"])
    assert first is not None and (first / "stdout").read_text() == vector["stdout"]
    count_txt = (first / "outputs" / "count.txt").read_bytes()
    # the final results (fetched by CodGetOperator) count stage 2's results, which hold stage 1's
    # stdout and the number of lines of its count.txt, as busybox's wc -l prints it
    final = (tmp_path / "out" / "outputs" / "count.txt").read_text()
    second_lines = str(count_txt.count(b"\n")) + "\n"
    assert "/inputs/outputs/lines.txt" in final
    stage2 = tmp_path / "stage2"
    (stage2 / "outputs").mkdir(parents=True)
    (stage2 / "outputs" / "lines.txt").write_text(second_lines)
    (stage2 / "stdout").write_text(vector["stdout"])
    (stage2 / "stderr").write_text("")
    (stage2 / "exitCode").write_text("0")
    assert final == _counts(stage2, "/inputs"), log[-3000:]
    assert "never verifiable" in log and "VERIFIED" in log


def test_a_mismatch_fails_the_stage_with_the_groups_in_the_log(airflow_home: Path, network: Any,
                                                               tmp_path: Path) -> None:
    stack = network(3, bad=1)
    result, log = _run_dag(airflow_home, tmp_path, stack.urls)
    assert result["state"] == "failed" and result["tasks"]["count"] == "failed", log[-4000:]
    assert result["tasks"]["lines"] != "success"
    assert "was not verified (mismatch)" in log
    assert "DISAGREES" in log and re.search(r"group \S+: signed by 2 node\(s\)", log), log[-4000:]
    assert re.search(r"group \S+: signed by 1 node\(s\)", log)


@pytest.mark.parametrize("inputs, expected", [
    ([None], "inputs[0] rendered to None"),
    (["None:/inputs"], "inputs[0] rendered to 'None:/inputs'"),
    ([""], "inputs[0] rendered to ''"),
    (["bafkreinotacid:/x"], "cod: "),
    (["/no/such/dir:/inputs"], "does not exist"),
])
def test_junk_inputs_fail_the_task_clearly(inputs: list[Any], expected: str, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """What a template renders when the stage it pulls from pushed nothing, or a typo: the task
    fails with cod's message (an AirflowException), before any node is asked."""
    from airflow.sdk.exceptions import AirflowException

    from cod.airflow.operators import CodDockerRunOperator, CodWasmRunOperator

    monkeypatch.setenv("COD_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_COD_DEFAULT", json.dumps({"conn_type": "cod",
                                                               "extra": {"nodes": ["http://127.0.0.1:9"]}}))
    for operator in (CodWasmRunOperator(task_id="w", module=str(VECTORS / "wordcount.wasm"), inputs=inputs),
                     CodDockerRunOperator(task_id="d", image="busybox", command=["true"], inputs=inputs)):
        with pytest.raises(AirflowException) as failed:
            operator.execute({})
        assert expected in str(failed.value) and "Traceback" not in str(failed.value)


def test_bad_limits_and_a_bad_module_fail_the_task_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowException

    from cod.airflow.operators import CodWasmRunOperator

    monkeypatch.setenv("COD_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_COD_DEFAULT", json.dumps({"conn_type": "cod",
                                                               "extra": {"nodes": ["http://127.0.0.1:9"]}}))
    cases = [({"limits": {"fule": 1}}, "unknown key(s) fule"), ({"limits": {"fuel": -1}}, "fuel must be positive"),
             ({"limits": {"fuel": "lots"}}, "fuel must be positive"),
             ({"module": str(tmp_path / "missing.wasm")}, "cod: ")]
    for options, expected in cases:
        kwargs: dict[str, Any] = {"module": str(VECTORS / "hello.wasm"), **options}
        with pytest.raises(AirflowException) as failed:
            CodWasmRunOperator(task_id="w", **kwargs).execute({})
        assert expected in str(failed.value)


def test_a_templated_input_must_render_to_a_cid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An input a template rendered must name content by CID: one that renders to a path on the
    worker (its credentials file, where the DAG meant an upstream result_cid) fails the task before
    anything is hashed or sent, unless the operator says allow_local_inputs=True. A path written
    literally in the DAG stays allowed. The one node here is dead: a task that got past the
    inputs fails on it, which shows how far it went."""
    from airflow.sdk.exceptions import AirflowException

    from cod.airflow.operators import CodDockerRunOperator, CodWasmRunOperator

    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = do-not-upload\n")
    monkeypatch.setenv("COD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRFLOW_CONN_COD_DEFAULT", json.dumps({"conn_type": "cod",
                                                               "extra": {"nodes": ["http://127.0.0.1:9"]}}))
    upstream = load_vector("wordcount")["expect"]["result_cid"]
    module = str(VECTORS / "wordcount.wasm")

    def failure(operator: Any, src: str) -> str:
        operator.render_template_fields({"params": {"src": src}})
        with pytest.raises(AirflowException) as failed:
            operator.execute({})
        return str(failed.value)

    for make in (lambda **kw: CodWasmRunOperator(task_id="w", module=module, **kw),
                 lambda **kw: CodDockerRunOperator(task_id="d", image="busybox", command=["true"], **kw)):
        refused = failure(make(inputs=["{{ params.src }}:/inputs"]), str(secret))
        assert "inputs[0]" in refused and "template" in refused and "allow_local_inputs=True" in refused, refused
        assert str(secret) in refused and "can take this job" not in refused  # before any node was asked
        for reached in (failure(make(inputs=[f"{secret}:/inputs"]), ""),  # a literal path: the DAG's own
                        failure(make(inputs=["{{ params.src }}:/inputs"], allow_local_inputs=True), str(secret)),
                        failure(make(inputs=["{{ params.src }}:/inputs"]), upstream),
                        failure(make(inputs=["ipfs://{{ params.src }}"]), upstream)):
            assert "node(s) can take this job" in reached, reached  # past the inputs, failed on the dead node
    # a module is checked here first: a rendered path to a file that is no module is never sent either
    refused = failure(CodWasmRunOperator(task_id="m", module="{{ params.src }}"), str(secret))
    assert "not a WebAssembly module" in refused and "can take this job" not in refused, refused


def test_with_no_cod_default_connection_the_network_is_found_as_the_cli_finds_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """No `cod_default` connection: COD_NODES, else the cod config file, else an embedded devstack,
    as `cod run --verify` does, and the task log says which. A connection the operator names
    (cod_conn_id) that does not exist is still an error naming it."""
    from airflow.sdk.exceptions import AirflowException

    from cod.airflow.hooks import CodHook
    from cod.airflow.operators import CodGetOperator, CodWasmRunOperator

    for name in [k for k in os.environ if k.startswith(("AIRFLOW_CONN_", "COD_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    embedded = CodHook().get_conn()
    assert embedded.nodes == [] and "embedded devstack" in embedded.source
    (tmp_path / "config" / "cod").mkdir(parents=True)
    (tmp_path / "config" / "cod" / "config.toml").write_text('nodes = ["http://127.0.0.1:8"]\n')
    from_file = CodHook().get_conn()
    assert from_file.nodes == ["http://127.0.0.1:8"] and "config.toml" in from_file.source, from_file.source
    monkeypatch.setenv("COD_NODES", "http://127.0.0.1:9")
    from_env = CodHook().get_conn()
    assert from_env.nodes == ["http://127.0.0.1:9"] and "COD_NODES" in from_env.source, from_env.source
    capfd.readouterr()
    with pytest.raises(AirflowException) as failed:  # it went to COD_NODES' one node, which is dead
        CodWasmRunOperator(task_id="w", module=str(VECTORS / "hello.wasm"), verify=1).execute({})
    assert "node(s) can take this job" in str(failed.value) and "isn't defined" not in str(failed.value)
    logged = "".join(capfd.readouterr())  # the task log (Airflow's structlog writes to the console)
    assert "cod: network: no Airflow connection 'cod_default': nodes from environment COD_NODES" in logged, logged
    with pytest.raises(AirflowException) as failed:
        CodGetOperator(task_id="g", job_cid="bagaaierax", output_dir=str(tmp_path / "out")).execute({})
    assert "isn't defined" not in str(failed.value)
    with pytest.raises(ConfigError) as missing:
        CodHook("lab").get_conn()
    assert "'lab'" in missing.value.message and "not defined" in missing.value.message and missing.value.hint
