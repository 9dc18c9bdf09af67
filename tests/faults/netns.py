"""Compute nodes on hosts of their own: one network namespace per `cod serve`, joined to the
host namespace by a veth pair, and the faults a network can have (nftables loss and
partition, a tc tbf rate limit) plus SIGKILL of the node.

Everything is named ``cod-`` + a run tag + an index, uses addresses of 10.213.0.0/16 that exist
only on the veth pairs made here, and is removed by name in :meth:`Host.destroy`. Traffic goes
nowhere else: the host side of each pair is the only peer of its node.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT = 8401  # every namespace has its own port space, so one fixed port serves them all
NET_PREFIX = "10.213"
MTU = 1500
START_TIMEOUT_S = 60.0  # a node prints its URL once its executor is warm; on a loaded machine that can take a while
TOOLS = ("ip", "nft", "tc")
CHECKS = ("5% packet loss", "partition then heal", "slow link (tc tbf) during an upload",
          "200 ms latency proxy", "SIGKILL during an upload", "SIGKILL during a job")


class NetError(RuntimeError):
    """A namespace, link or rule could not be set up (the fault suite's own failure, not cod's)."""


def run(*argv: str, check: bool = True) -> str:
    """Run one ip/nft/tc command; its stdout. Raises NetError with its stderr when it fails."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def missing_prerequisites() -> list[str]:
    """Why the suite cannot run here (empty when it can): not root, a tool missing, or no netns."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root")
    reasons += [f"no `{tool}` (make fault-tools installs it)" for tool in TOOLS if shutil.which(tool) is None]
    if reasons:
        return reasons
    probe = f"cod-probe{os.getpid()}"
    try:
        run("ip", "netns", "add", probe)
    except NetError as exc:
        return [f"cannot create a network namespace: {exc}"]
    finally:
        run("ip", "netns", "del", probe, check=False)
    return []


def run_subnet() -> int:
    """The third octet of this run's 10.213.S.0/24: the first one no interface of this host uses."""
    used = run("ip", "-o", "-4", "addr", "show")
    start = os.getpid() % 256
    for step in range(256):
        octet = (start + step) % 256
        if f" {NET_PREFIX}.{octet}." not in used:
            return octet
    raise NetError(f"every {NET_PREFIX}.x.0/24 is in use on this host")


@dataclass
class Host:
    """One namespace with one node: ``10.213.S.4i+1`` on the host side, ``+2`` inside."""

    tag: str
    index: int
    subnet: int
    data_dir: Path
    proc: subprocess.Popen[str] | None = None
    node_id: str = ""
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir.with_suffix(".log")

    @property
    def netns(self) -> str:
        return f"cod-{self.tag}-{self.index}"

    @property
    def veth(self) -> str:  # interface names are at most 15 bytes
        return f"cod{self.tag}v{self.index}"

    @property
    def address(self) -> str:
        return f"{NET_PREFIX}.{self.subnet}.{4 * self.index + 2}"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{PORT}"

    def ns(self, *argv: str, check: bool = True) -> str:
        return run("ip", "netns", "exec", self.netns, *argv, check=check)

    def create(self) -> None:
        """The namespace and its veth pair, both ends up, loopback up inside."""
        gateway = f"{NET_PREFIX}.{self.subnet}.{4 * self.index + 1}"
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", self.veth + "p")
        for end in (self.veth, self.veth + "p"):  # one wire packet per skb, so loss and shaping act per packet
            run("ip", "link", "set", end, "gso_max_size", str(MTU), "gso_max_segs", "1")
        run("ip", "link", "set", self.veth + "p", "netns", self.netns)
        run("ip", "addr", "add", f"{gateway}/30", "dev", self.veth)
        run("ip", "link", "set", self.veth, "up")
        self.ns("ip", "addr", "add", f"{self.address}/30", "dev", self.veth + "p")
        self.ns("ip", "link", "set", self.veth + "p", "up")
        self.ns("ip", "link", "set", "lo", "up")

    # -- the node ----------------------------------------------------------------------
    def start(self) -> None:
        """Launch `cod serve` inside the namespace (same data dir on a restart)."""
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, sys.executable, "-m", "cod", "serve", "--data-dir",
                 str(self.data_dir), "--host", self.address, "--port", str(PORT), "--concurrency", "1"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, env=env)

    def wait_ready(self) -> None:
        """Block until the node prints `cod node <id> serving on <url>`; NetError if it does not."""
        assert self.proc is not None and self.proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()  # type: ignore[union-attr]
                                                             ), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not line or "serving on" not in line[0]:
            raise NetError(f"node in {self.netns} did not start: {self.log.read_text()[-2000:]}")
        self.node_id = line[0].split()[2]

    def kill(self, whole_host: bool = True) -> None:
        """SIGKILL the node; with ``whole_host``, also every process left in its namespace (its
        executor workers), as when the machine it stands for dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        if whole_host:
            self.kill_leftovers()

    def leftovers(self) -> list[int]:
        """The processes still in the namespace (only ever ones this suite started there)."""
        return [int(pid) for pid in run("ip", "netns", "pids", self.netns, check=False).split()]

    def kill_leftovers(self) -> None:
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def job_state_on_disk(self, job_cid: str) -> str | None:
        """The job's state as the node recorded it, read from its SQLite file: the one way to
        watch a node that is cut off from the network (a read-only look, never a write)."""
        try:
            with sqlite3.connect(f"file:{self.data_dir / 'jobs.db'}?mode=ro", uri=True, timeout=5) as db:
                row = db.execute("SELECT state FROM jobs WHERE job_cid = ?", [job_cid]).fetchone()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None

    # -- faults ------------------------------------------------------------------------
    def _fault_table(self) -> None:
        self.ns("nft", "add", "table", "inet", "codfault")
        self.ns("nft", "add", "chain", "inet", "codfault", "in", "{ type filter hook input priority 0; }")
        self.ns("nft", "add", "chain", "inet", "codfault", "out", "{ type filter hook output priority 0; }")

    def loss(self, percent: int) -> None:
        """Drop ``percent``% of the packets into the node (all of them counted, then the dropped)."""
        self._fault_table()
        self.ns("nft", "add", "rule", "inet", "codfault", "in", "iifname", self.veth + "p", "counter")
        self.ns("nft", "add", "rule", "inet", "codfault", "in", "iifname", self.veth + "p", "numgen", "random",
                "mod", "100", "<", str(percent), "counter", "drop")

    def partition(self) -> None:
        """Drop everything on the veth, both ways: the node is cut off, its connections stay open."""
        self._fault_table()
        self.ns("nft", "add", "rule", "inet", "codfault", "in", "iifname", self.veth + "p", "counter", "drop")
        self.ns("nft", "add", "rule", "inet", "codfault", "out", "oifname", self.veth + "p", "counter", "drop")

    def counters(self) -> list[int]:
        """The packet counters of the fault rules, in rule order (input chain first)."""
        listing = self.ns("nft", "list", "table", "inet", "codfault", check=False).split()
        return [int(listing[i + 1]) for i, word in enumerate(listing) if word == "packets"]

    def heal(self) -> None:
        self.ns("nft", "delete", "table", "inet", "codfault", check=False)

    def slow(self, rate: str) -> None:
        """Limit what the host sends to the node (uploads) to ``rate`` with a token bucket."""
        run("tc", "qdisc", "add", "dev", self.veth, "root", "tbf", "rate", rate, "burst", "32kbit",
            "latency", "400ms")

    def unslow(self) -> None:
        run("tc", "qdisc", "del", "dev", self.veth, "root", check=False)

    def sent_bytes(self) -> int:
        """Bytes the host side of the pair has sent towards the node."""
        return int((Path("/sys/class/net") / self.veth / "statistics" / "tx_bytes").read_text())

    def destroy(self) -> None:
        """Kill the node and remove the pair and the namespace, by name; never raises."""
        try:
            self.kill()
        except (NetError, subprocess.SubprocessError, OSError):
            pass
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        run("ip", "link", "del", self.veth, check=False)
        run("ip", "netns", "del", self.netns, check=False)


class Fabric:
    """The hosts of one test: created together, destroyed together (also on failure)."""

    def __init__(self, tag: str, subnet: int, base: Path) -> None:
        self.tag, self.subnet, self.base = tag, subnet, base
        self.hosts: list[Host] = []

    def add(self, count: int) -> list[Host]:
        """``count`` more hosts, each with a node started; they start in parallel."""
        fresh = []
        for _ in range(count):
            index = len(self.hosts)
            host = Host(self.tag, index, self.subnet, self.base / f"node{index}")
            self.hosts.append(host)
            host.create()
            host.start()
            fresh.append(host)
        for host in fresh:
            host.wait_ready()
        return fresh

    def destroy(self) -> None:
        for host in self.hosts:
            host.destroy()
        self.hosts = []
