"""The parsers behind `cod run`'s options, against values derived by hand."""

from __future__ import annotations

import click
import pytest

from cod.cli.options import AsciiFloat, AsciiInt, node_url_problem, parse_datacap
from cod.errors import InputError, SpecError, UsageError
from cod.local import parse_duration_ms, parse_env, parse_mount, parse_size

MAX = 9_223_372_036_854_775_807  # 2**63 - 1, the largest spec integer (SPEC.md 2)


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1), ("64KiB", 64 * 1024), ("256MiB", 268_435_456), ("1GiB", 1_073_741_824), ("1GB", 1_000_000_000),
    ("2t", 2_000_000_000_000), ("8388607TiB", 8_388_607 * 1_099_511_627_776), (" 5 kb ", 5000),
    (str(MAX), MAX), ("0" * 40 + "7", 7),
])
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text, "limits.memory_bytes") == value


@pytest.mark.parametrize("text", [
    "0", "0KiB", str(MAX + 1), "8388608TiB", "1.5GiB", "1PiB", "-1", "1 GiB extra", "", "\u0661", "1\tGiB",
    "9" * 5000,
])
def test_sizes_refused(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_size(text, "limits.memory_bytes")
    assert caught.value.field == "limits.memory_bytes"


@pytest.mark.parametrize(("text", "value"), [
    ("30", 30_000), ("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000), (str(MAX) + "ms", MAX),
])
def test_durations(text: str, value: int) -> None:
    assert parse_duration_ms(text, "limits.timeout_ms") == value


@pytest.mark.parametrize("text", ["0s", "0ms", "1.5s", "1d", str(MAX) + "s", "s", "9" * 5000 + "h"])
def test_durations_refused(text: str) -> None:
    with pytest.raises(SpecError):
        parse_duration_ms(text, "limits.timeout_ms")


def test_env_and_mounts() -> None:
    assert parse_env("A=b=c") == ("A", "b=c")
    assert parse_env("A=") == ("A", "")
    for bad in ("A", "=x", "A=\udcff", "\udcff=1"):
        with pytest.raises(SpecError):
            parse_env(bad)
    assert parse_mount("data") == ("data", "/inputs")
    assert parse_mount("d\udcff:/in") == ("d\udcff", "/in")  # a host path may be any bytes
    with pytest.raises(InputError):
        parse_mount(":/in")
    for bad in ("data:in", "data:/in\udcff"):
        with pytest.raises(SpecError):
            parse_mount(bad)


@pytest.mark.parametrize("url", ["http://127.0.0.1:1234", "https://node.example/cod", "http://[::1]:80"])
def test_node_urls(url: str) -> None:
    assert node_url_problem(url) is None


@pytest.mark.parametrize(("url", "why"), [
    ("127.0.0.1:1234", "http://"), ("ftp://a", "http://"), ("http://", "no host"), ("http://a:99999", "malformed"),
    ("http://a:0", "port 0"), ("http://a:x", "malformed"), ("http://[::1", "malformed"), ("http://a b", "white space"),
    ("http://\udcff", "UTF-8"), ("http://u@a", "user name"), ("http://a/?q", "query"),
    ("http://a/" + "x" * 3000, "longer"),
])
def test_node_urls_refused(url: str, why: str) -> None:
    problem = node_url_problem(url)
    assert problem is not None and why in problem


@pytest.mark.parametrize("text", ["\u0661\u0662TiB", "\u0661", "1\u00a0TiB", "\u00b2", "1.\u0665TB"])
def test_datacap_takes_ascii_digits_only(text: str) -> None:
    # without re.ASCII, \d matched "١٢" (Arabic-Indic 12) and \s a no-break space
    with pytest.raises(UsageError):
        parse_datacap(text)
    assert parse_datacap("12TiB") == 12 * 2**40


def _number_options() -> list[tuple[str, click.Parameter]]:
    """Every option of every cod command whose type is click's integer or float (ranges included)."""
    from cod.cli import cli
    found: list[tuple[str, click.Parameter]] = []

    def walk(command: click.Command, path: str) -> None:
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    walk(sub, f"{path} {name}".strip())
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                found.append((f"cod {path} {param.opts[0]}", param))

    walk(cli, "")
    return found


def test_every_number_option_takes_ascii_digits_only() -> None:
    """A second round of point 27 ("ASCII digits only, everywhere a number is parsed from text"):
    click converts with int() and float(), which take Arabic-Indic digits, and FloatRange lets nan
    through its bounds (every comparison with nan is false). Every such option, enumerated."""
    options = _number_options()
    assert len(options) >= 15, [name for name, _ in options]  # serve, devstack, run, list, ledger, dashboard...
    accepted = []
    for name, param in options:
        for text in ("\u0661", "\u0661\u0662", "nan", "inf", "\uff11"):
            try:
                param.type.convert(text, param, None)
            except click.BadParameter:
                continue
            accepted.append(f"{name} {text!r}")
    assert accepted == [], accepted


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("65535", 65535), (" 7 ", 7), ("+8", 8), ("0" * 300 + "9", 9)])
def test_ascii_integers(text: str, value: int) -> None:
    assert AsciiInt(0, 65535).convert(text, None, None) == value


@pytest.mark.parametrize("text", ["1_000", "\u00a05", "5\t", "0x10", "", "-", "65536", "-1", "9" * 5000, "1.0",
                                  "\U0001d7d9"])  # MATHEMATICAL DOUBLE-STRUCK DIGIT ONE
def test_ascii_integers_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        AsciiInt(0, 65535).convert(text, None, None)


@pytest.mark.parametrize(("text", "value"), [("2", 2.0), ("0.5", 0.5), (".25", 0.25), ("1e2", 100.0), ("3600", 3600.0),
                                             ("1.", 1.0), ("0" * 300 + "7", 7.0)])
def test_ascii_floats(text: str, value: float) -> None:
    assert AsciiFloat(0.1, 3600).convert(text, None, None) == value


@pytest.mark.parametrize("text", ["nan", "-nan", "inf", "Infinity", "1e999", "1e99999", "9" * 400, "0.4", "1_0.5",
                                  "\u0661.5", "1.5\u00a0", "0x1p3", "."])
def test_ascii_floats_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        AsciiFloat(0.5).convert(text, None, None)
