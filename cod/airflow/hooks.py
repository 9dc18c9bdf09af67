"""The Airflow connection that names a cod network: :class:`CodHook`.

A connection of type ``cod`` holds the node URLs and, optionally, a ledger and gateways::

    AIRFLOW_CONN_COD_DEFAULT='{"conn_type": "cod",
        "extra": {"nodes": ["http://10.0.0.1:1234", "http://10.0.0.2:1234"],
                  "ledger": "http://10.0.0.9:8470"}}'

``nodes`` is a list or a comma-separated string; a connection with a host and no ``nodes``
names one node (``http://HOST:PORT``). Without any node the configured ones are used
(COD_NODES, the cod config file), as ``cod run --verify`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseHook

from ..errors import ConfigError
from ..urls import node_url_problem


@dataclass(frozen=True)
class CodNetwork:
    """Where a task's jobs go: node URLs, an optional ledger URL and IPFS gateways."""

    nodes: list[str]
    ledger: str | None = None
    gateways: list[str] = field(default_factory=list)


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
        connection = self.get_connection(self.cod_conn_id)
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
    if not nodes and host:
        nodes = _urls(f"{schema or 'http'}://{host}" + (f":{port}" if port else ""), f"{where}: host")
    if not nodes:
        from verifier.network import configured_nodes

        nodes = configured_nodes()
    ledger = extra.get("ledger")
    if ledger is not None and (not isinstance(ledger, str) or node_url_problem(ledger)):
        raise ConfigError(f"{where}: extra 'ledger' {ledger!r} is not an http(s) URL",
                          'set it to the ledger\'s base URL, e.g. "http://10.0.0.9:8470"')
    return CodNetwork(nodes, ledger, _urls(extra.get("gateways"), f"{where}: extra 'gateways'"))


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
