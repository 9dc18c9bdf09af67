"""Which log key a client trusts for a ledger URL (cod/ledger/trust.py, SPEC.md 12.7): pinned, saved, or
trusted on first use and saved, as SSH's known_hosts; another key later is refused saying what to do."""

from __future__ import annotations

from pathlib import Path

import nacl.signing
import pytest

from cod.errors import AuditFailed, UsageError
from cod.ledger import trust
from cod.ledger.note import vkey_of

URL = "http://127.0.0.1:8090"
A = vkey_of("ledger.example", nacl.signing.SigningKey(bytes([1]) * 32).verify_key.encode())
B = vkey_of("ledger.example", nacl.signing.SigningKey(bytes([2]) * 32).verify_key.encode())


@pytest.fixture
def known(tmp_path: Path) -> Path:
    return tmp_path / "config" / "cod" / trust.KNOWN_FILE


def test_first_use_saves_the_key_per_url_and_a_later_other_key_is_refused(known: Path) -> None:
    first = trust.trusted(URL + "/", A, None, "", known)
    assert first.vkey == A and "trusted on first use" in first.how
    assert known.read_text() == f"{URL} {A}\n"  # one URL VKEY line, the URL without its trailing /
    assert trust.trusted(URL, A, None, "", known).how == f"saved in {known}"
    assert trust.trusted("http://127.0.0.1:8091", B, None, "", known).vkey == B  # another ledger, its own line
    with pytest.raises(AuditFailed) as refused:
        trust.trusted(URL, B, None, "", known)
    assert f"the key saved for it in {known} is {A}" in refused.value.message
    assert f"remove the line of {URL} from {known}" in str(refused.value.hint)
    assert known.read_text().count(URL + " ") == 1  # the refused key was not saved


def test_a_pinned_key_wins_and_is_never_saved(known: Path) -> None:
    assert trust.trusted(URL, A, A, "pinned by --vkey", known).how == "pinned by --vkey"
    with pytest.raises(AuditFailed) as refused:
        trust.trusted(URL, B, A, "pinned by --vkey", known)
    assert "not the key" in refused.value.message and "pinned by --vkey" in refused.value.message
    assert not known.exists()


def test_a_known_file_that_cannot_be_written_trusts_once_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert "NOT saved" in trust.trusted(URL, A, None, "", tmp_path / "file" / trust.KNOWN_FILE).how


def test_a_key_the_ledger_names_that_is_not_a_vkey_is_refused(known: Path) -> None:
    with pytest.raises(UsageError) as refused:
        trust.trusted(URL, "not a vkey", None, "", known)
    assert "is not a ledger's verifier key" in str(refused.value) and not known.exists()


# -- Stage 9 second round: a known_ledgers file as people edit it --------------------------------------------

@pytest.mark.parametrize("line", [f"{URL}/ {A}\n", f"HTTP://127.0.0.1:8090 {A}\n", f"\ufeff{URL} {A}\n",
                                  f"{URL} {A} # the prod ledger\n", f"{URL} {A}\r\n"],
                         ids=["trailing slash", "upper-case scheme", "byte order mark", "comment", "CRLF"])
def test_a_saved_key_counts_however_its_line_is_written(known: Path, line: str) -> None:
    known.parent.mkdir(parents=True)
    known.write_bytes(line.encode())
    with pytest.raises(AuditFailed):  # the saved key A is the one trusted: B is refused, not trusted on first use
        trust.trusted(URL, B, None, "", known)
    assert known.read_bytes() == line.encode()


def test_a_key_saved_after_a_last_line_with_no_newline_does_not_spoil_either(known: Path) -> None:
    known.parent.mkdir(parents=True)
    known.write_text(f"http://127.0.0.1:8091 {A}")  # as an editor may leave it
    assert "trusted on first use" in trust.trusted(URL, A, None, "", known).how
    for url in (URL, "http://127.0.0.1:8091"):
        with pytest.raises(AuditFailed):
            trust.trusted(url, B, None, "", known)
    assert known.read_text() == f"http://127.0.0.1:8091 {A}\n{URL} {A}\n"


def test_a_huge_vkey_is_refused_in_a_line_not_echoed_whole() -> None:
    with pytest.raises(UsageError) as refused:
        trust.checked_vkey("a" * 100_000, "--vkey")
    assert "is not a ledger's verifier key" in str(refused.value) and len(str(refused.value)) < 1000
