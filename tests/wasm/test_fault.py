"""The devstack liar's fault (SPEC 11.8): one flipped byte at a counted WASI call, on real modules.

Expected values come from the vectors (their recorded outputs) and from the modules' sources:
probe.c reads the clock 6 times (realtime and monotonic, 3 times each), once more after its
sleep, then calls random_get once and time(NULL) once: 9 countable calls. wordcount.c reads
each of its 4 input files to the end: 3 files with data (a read with data and one at the end)
and one empty file (one read at the end): 7 countable calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cod import Engine, JobSpec, run
from cod.wasm.fault import NEVER, Fault

from ..helpers import VECTORS, load_vector

PROBE = load_vector("probe")
WORDCOUNT = load_vector("wordcount")
EPOCH_NS = PROBE["spec"]["clock"]["epoch_ns"]
TICK_NS = PROBE["spec"]["clock"]["tick_ns"]


def _run(vector: dict[str, Any], engine: Engine, out: Path, fault: Fault | None) -> tuple[str, str]:
    spec = JobSpec.from_dict(vector["spec"])
    sources = {item.path: str(VECTORS / vector["inputs"][item.path]) for item in spec.inputs}
    result = run(spec, (VECTORS / vector["module"]).read_bytes(), sources, out, engine, fault=fault)
    return result.result_cid, (out / "stdout").read_text(errors="replace")


def _clock_line(name: str, ns: int) -> str:
    return f"{name} {ns // 10**9}.{ns % 10**9:09d}"


def test_no_fault_and_a_counter_leave_the_result_as_it_is(engine: Engine, tmp_path: Path) -> None:
    for n, fault in enumerate([None, Fault.counter(), Fault(9)]):  # 9: one past probe's last counted call
        cid, stdout = _run(PROBE, engine, tmp_path / f"r{n}", fault)
        assert (cid, stdout) == (PROBE["expect"]["result_cid"], PROBE["expect"]["stdout"])
        if fault is not None:
            assert (fault.calls, fault.fired) == (9, None)


def test_an_early_fault_flips_the_first_clock_byte_and_changes_the_result(engine: Engine, tmp_path: Path) -> None:
    fault = Fault(0)
    cid, stdout = _run(PROBE, engine, tmp_path / "r", fault)
    assert (fault.calls, fault.fired) == (9, 0)
    assert cid != PROBE["expect"]["result_cid"]
    honest = _clock_line("realtime", EPOCH_NS)
    assert honest in PROBE["expect"]["stdout"]
    # clock_time_get writes a little-endian u64: its first byte is the value's low byte
    assert stdout == PROBE["expect"]["stdout"].replace(honest, _clock_line("realtime", EPOCH_NS ^ 0xFF), 1)


def test_the_second_call_is_the_first_monotonic_read(engine: Engine, tmp_path: Path) -> None:
    cid, stdout = _run(PROBE, engine, tmp_path / "r", Fault(1))
    honest = _clock_line("monotonic", EPOCH_NS + TICK_NS)
    assert stdout == PROBE["expect"]["stdout"].replace(honest, _clock_line("monotonic", (EPOCH_NS + TICK_NS) ^ 0xFF))
    assert cid != PROBE["expect"]["result_cid"]


def test_a_random_get_fault_flips_the_first_random_byte(engine: Engine, tmp_path: Path) -> None:
    fault = Fault(7)  # the 8th countable call: random_get
    cid, stdout = _run(PROBE, engine, tmp_path / "r", fault)
    (line,) = [x for x in PROBE["expect"]["stdout"].splitlines() if x.startswith("random ")]
    first = int(line[7:9], 16)
    assert stdout == PROBE["expect"]["stdout"].replace(line, f"random {first ^ 0xFF:02x}{line[9:]}")
    assert fault.fired == 7 and cid != PROBE["expect"]["result_cid"]


def test_a_call_that_returns_nothing_passes_the_fault_to_the_next_that_returns_data(engine: Engine,
                                                                                     tmp_path: Path) -> None:
    """wordcount's call 1 is the read at the end of its first file: call 2 (the next file's first
    read) takes the flip. Flipping a letter's byte changes no count: the result stays honest,
    which is why a liar checks its lie (cod.node.liar)."""
    fault = Fault(1)
    cid, stdout = _run(WORDCOUNT, engine, tmp_path / "r", fault)
    assert (fault.calls, fault.fired) == (7, 2)
    assert (cid, stdout) == (WORDCOUNT["expect"]["result_cid"], WORDCOUNT["expect"]["stdout"])
    late = Fault(5)  # calls 5 and 6 are reads at the end of a file and the empty file: nothing to flip
    _run(WORDCOUNT, engine, tmp_path / "r2", late)
    assert (late.calls, late.fired) == (7, None)


def test_the_wire_form_and_its_bounds() -> None:
    fault = Fault.from_json({"at": 3})
    assert fault == Fault(3) and fault.to_json() == {"at": 3, "calls": 0, "fired": None}
    assert Fault.from_json(Fault(4, calls=9, fired=5).to_json()) == Fault(4)  # a fresh one: state is per run
    for bad in (-1, NEVER + 1, True, 1.0, "0"):
        with pytest.raises(ValueError):
            Fault(bad)  # type: ignore[arg-type]
    for wire in ([], {}, {"at": None}):
        with pytest.raises(ValueError):
            Fault.from_json(wire)
