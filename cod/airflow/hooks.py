"""The Airflow connection that names a cod network: :class:`CodHook`.

A connection of type ``cod`` holds the node URLs and, optionally, a ledger and gateways::

    AIRFLOW_CONN_COD_DEFAULT='{"conn_type": "cod",
        "extra": {"nodes": ["http://10.0.0.1:1234", "http://10.0.0.2:1234"],
                  "ledger": "http://10.0.0.9:8470"}}'

``nodes`` is a list or a comma-separated string; a connection with a host and no ``nodes``
names one node (``http://HOST:PORT``). Without any node the configured ones are used
(COD_NODES, the cod config file), as ``cod run --verify`` does; so they are when there is no
``cod_default`` connection at all (as Airflow's AWS provider falls back to its default
credential chain), and with none of them an embedded devstack runs the job. A connection an
operator names (``cod_conn_id``) that does not exist is an error. ``CodNetwork.source`` says
where the network came from; the operators log it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from ..errors import ConfigError
from ..urls import node_url_problem


@dataclass(frozen=True)
class CodNetwork:
    """Where a task's jobs go: node URLs, an optional ledger URL and IPFS gateways."""

    nodes: list[str]
    ledger: str | None = None
    gateways: list[str] = field(default_factory=list)
    source: str = ""  # where it came from, for the task log


class CodHook(BaseHook):  # type: ignore[misc]  # Airflow's classes are untyped here
    """Reads a ``cod`` connection into a :class:`CodNetwork`."""

    conn_name_attr = "cod_conn_id"
    default_conn_name = "cod_default"
    conn_type = "cod"
    hook_name = "cod network"

    def __init__(self, cod_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.cod_conn_id = cod_conn_id

    def get_conn(self) -> CodNetwork:
        """The network of the connection; with no ``cod_default`` connection, the one cod's CLI
        would use (``configured_network``). ConfigError for a named connection that is missing."""
        try:
            connection = self.get_connection(self.cod_conn_id)
        except AirflowNotFoundException:
            if self.cod_conn_id != self.default_conn_name:
                raise ConfigError(f"Airflow connection {self.cod_conn_id!r} is not defined",
                                  "add it (airflow connections add, or AIRFLOW_CONN_<ID>), or leave cod_conn_id out "
                                  "to use COD_NODES, the cod config file or an embedded devstack") from None
            return configured_network(f"no Airflow connection {self.default_conn_name!r}")
        return network_of(self.cod_conn_id, connection.host, connection.port, connection.schema,
                          connection.extra_dejson)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {"hidden-fields": ["login", "password"],
                "placeholders": {"extra": '{"nodes": ["http://10.0.0.1:1234"], "ledger": "http://10.0.0.9:8470"}'}}


def network_of(conn_id: str, host: str | None, port: int | None, schema: str | None,
               extra: dict[str, Any]) -> CodNetwork:
    """The network a connection names; ConfigError naming the connection and the bad value."""
    where = f"Airflow connection {conn_id!r}"
    nodes = _urls(extra.get("nodes"), f"{where}: extra 'nodes'")
    source = f"{where}: extra 'nodes'"
    if not nodes and host:
        nodes = _urls(f"{schema or 'http'}://{host}" + (f":{port}" if port else ""), f"{where}: host")
        source = f"{where}: host"
    ledger = extra.get("ledger")
    if ledger is not None and (not isinstance(ledger, str) or node_url_problem(ledger)):
        raise ConfigError(f"{where}: extra 'ledger' {ledger!r} is not an http(s) URL",
                          'set it to the ledger\'s base URL, e.g. "http://10.0.0.9:8470"')
    gateways = _urls(extra.get("gateways"), f"{where}: extra 'gateways'")
    if not nodes:
        configured = configured_network(f"{where} names no node")
        return CodNetwork(configured.nodes, ledger, gateways, configured.source)
    return CodNetwork(nodes, ledger, gateways, source)


def configured_network(why: str) -> CodNetwork:
    """The network `cod run --verify` uses with no --node: COD_NODES, else the cod config file
    (its ledger and gateways too), else an embedded devstack (no nodes). ``why`` starts the
    source line the task log shows. ConfigError for a bad COD_ value or config file."""
    from ..config import load

    config = load()
    nodes = config.nodes
    where = config.source("nodes") if nodes else "an embedded devstack (no COD_NODES, no nodes in the cod config file)"
    return CodNetwork(nodes, config.ledger, config.gateways, f"{why}: nodes from {where}")


def _urls(value: Any, where: str) -> list[str]:
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ConfigError(f"{where} must be a list of URLs or a comma-separated string, not {type(value).__name__}",
                          'e.g. "nodes": ["http://10.0.0.1:1234", "http://10.0.0.2:1234"]')
    urls = [item.strip() for item in items if item.strip()]
    for url in urls:
        problem = node_url_problem(url)
        if problem is not None:
            raise ConfigError(f"{where}: {url!r} {problem}", "give each node as http://HOST:PORT")
    return urls
