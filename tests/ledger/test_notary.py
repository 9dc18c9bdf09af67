"""The notary's check (cod/ledger/notary.py, SPEC.md 12.7) on logs built in memory: the tiles it reads
fold to the root RFC 9162 defines, an approval stands only when no later entry of its job undid it,
and what it fetches is what SPEC says it costs."""

from __future__ import annotations

import asyncio
import json

import nacl.signing
import pytest

from cod.errors import AuditFailed
from cod.ledger import merkle, notary, tiles
from cod.ledger.checkpoint import Checkpoint
from cod.ledger.entries import canonical
from cod.ledger.note import CosignatureSigner, Signer, append_signatures, vkey_of

ORIGIN = "test.example/ledger"
KEY = nacl.signing.SigningKey(bytes([5]) * 32)
VKEY = vkey_of(ORIGIN, KEY.verify_key.encode())
JOB, RESULT = "bagaaierajob", "bafkreiresult"


class Log:
    """A log of ``leaves`` served as tiles, with its checkpoint signed by KEY; counts what it served."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.hashes = merkle.MemoryHashes()
        for leaf in leaves:
            self.hashes.append(merkle.leaf_hash(leaf))
        body = Checkpoint(ORIGIN, len(leaves), self.hashes.root()).body().decode()
        self.note = Signer(ORIGIN, KEY).sign(body)
        self.served: list[str] = []

    async def fetch(self, path: str, limit: int) -> bytes:
        self.served.append(path)
        if path.startswith("tile/entries/"):
            index, width = tiles.parse_entries_path(path)
            return tiles.bundle(self.leaves[index * 256:index * 256 + width])
        level, index, width = tiles.parse_tile_path(path)
        assert tiles.covered(level, index, width, len(self.leaves)), path
        return tiles.tile_bytes(level, index, width, self.hashes.read)


def filler(n: int) -> bytes:
    return canonical({"type": "cod/ledger/bless/v1", "n": n})


def decision(action: str, job: str = JOB) -> bytes:
    return canonical({"type": "cod/ledger/decision/v1", "signature": "",
                      "statement": {"job": job, "result": RESULT, "action": action, "moderator": "12D3KooWmod",
                                    "datacap": 1 << 40 if action == "approve" else 0}})


def eligibility(eligible: bool, result: str = RESULT) -> bytes:
    return canonical({"type": "cod/ledger/eligibility/v1", "job": JOB, "eligible": eligible, "result": result})


def check(log: Log, entry: int, note: str | None = None, fresh: notary.Fresh = notary.Fresh()) -> notary.Standing:
    return asyncio.run(notary.check_approval(log.fetch, note or log.note, VKEY, RESULT, entry, fresh))


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 513, 65536, 65537, 70000])
def test_the_tiles_fold_to_the_root_rfc_9162_defines(size: int) -> None:
    leaves = [filler(n) for n in range(size)]
    for entry in sorted({0, size // 2, size - 1} if size < 65536 else {size - 1}):
        leaves_here = list(leaves)
        leaves_here[entry] = decision("approve")
        log = Log(leaves_here)
        assert log.hashes.root() == merkle.root(leaves_here)  # the RFC's recursion, independent of the tiles
        standing = check(log, entry)
        assert (standing.entry, standing.size, standing.job, standing.datacap) == (entry, size, JOB, 1 << 40)


def test_the_cost_is_the_bundles_from_the_approval_and_one_hash_tile_per_level() -> None:
    leaves = [filler(n) for n in range(70000)]
    leaves[69900] = decision("approve")
    log = Log(leaves)
    standing = check(log, 69900)
    # by hand: 69,900 is in bundle 273 (the last, of 70,000 - 273*256 = 112 entries); the leaves left of it,
    # 69,888 = 65,536 + 16*256 + 256, are one level-2 hash (tile 2/0 of width 1) and 17 level-1 hashes (tile
    # 1/001, of width 273 - 256 = 17)
    assert sorted(log.served) == ["tile/1/001.p/17", "tile/2/000.p/1", "tile/entries/273.p/112"]
    assert (standing.cost.bundles, standing.cost.tiles) == (1, 2)
    assert standing.cost.bytes == 18 * 32 + len(tiles.bundle(leaves[69888:]))
    log.served.clear()
    leaves[69900], leaves[10] = filler(69900), decision("approve")
    standing = check(Log(leaves), 10)
    assert (standing.cost.bundles, standing.cost.tiles) == (274, 0)


@pytest.mark.parametrize("later, words", [
    (decision("reject"), "superseded by the decision at entry 300: reject of job bagaaierajob"),
    (decision("approve"), "superseded by the decision at entry 300: approve of job"),
    (eligibility(False), "the eligibility entry 300 of job bagaaierajob, after it, makes the job not eligible"),
    (eligibility(True, "bafkreiother"), "makes the job eligible with result bafkreiother"),
])
def test_an_approval_a_later_entry_undid_is_refused_naming_it(later: bytes, words: str) -> None:
    leaves = [filler(n) for n in range(400)]
    leaves[100], leaves[300] = decision("approve"), later
    with pytest.raises(AuditFailed) as refused:
        check(Log(leaves), 100)
    assert words in refused.value.message, refused.value.message


def test_later_entries_of_other_jobs_or_that_keep_the_result_leave_it_standing() -> None:
    leaves = [filler(n) for n in range(400)]
    leaves[100], leaves[200], leaves[300] = decision("approve"), decision("reject", job="bagaaieraother"), \
        eligibility(True)
    assert check(Log(leaves), 100).datacap == 1 << 40


def test_a_ledger_that_changes_or_leaves_out_a_later_entry_is_caught_by_the_root() -> None:
    leaves = [filler(n) for n in range(600)]
    leaves[100], leaves[520] = decision("approve"), decision("reject")
    log = Log(leaves)
    honest = log.fetch

    async def hiding(path: str, limit: int) -> bytes:
        data = await honest(path, limit)
        if path.startswith("tile/entries/002"):
            parts = tiles.unbundle(data)
            parts[520 - 512] = filler(520)
            return tiles.bundle(parts)
        return data

    log.fetch = hiding  # type: ignore[method-assign]
    with pytest.raises(AuditFailed) as refused:
        check(log, 100)
    assert "do not hash to the root the log signed at size 600" in refused.value.message
    with pytest.raises(AuditFailed) as refused:  # a checkpoint of another key
        asyncio.run(notary.check_approval(honest, Signer(ORIGIN, nacl.signing.SigningKey(bytes([6]) * 32)).sign(
            Checkpoint(ORIGIN, 600, log.hashes.root()).body().decode()), VKEY, RESULT, 100))
    assert "not signed by the log key" in refused.value.message
    assert json.loads(leaves[100])["statement"]["action"] == "approve"


def test_a_notary_can_require_recent_cosignatures_of_its_witnesses() -> None:
    leaves = [filler(n) for n in range(300)]
    leaves[100] = decision("approve")
    log = Log(leaves)
    witness = CosignatureSigner("witness.example", nacl.signing.SigningKey(bytes([8]) * 32))
    stranger = CosignatureSigner("witness.example", nacl.signing.SigningKey(bytes([9]) * 32))
    body = Checkpoint(ORIGIN, 300, log.hashes.root()).body()
    note = append_signatures(log.note, [witness.cosign(body, 1000)])
    assert check(log, 100, note, notary.Fresh((witness.vkey,), 1)).cosigned == {witness.vkey: 1000}
    assert check(log, 100, note, notary.Fresh((witness.vkey,), 1, max_age_s=100, now=1050)).cosigned
    for signed, fresh, words in (
            (note, notary.Fresh((witness.vkey,), 1, max_age_s=100, now=1200), "0 valid cosignature(s) within 100 s"),
            (note, notary.Fresh((stranger.vkey,), 1), "0 valid cosignature(s) of the named witnesses; 1 are"),
            (log.note, notary.Fresh((witness.vkey,), 1), "0 valid cosignature(s)")):  # not cosigned at all
        with pytest.raises(AuditFailed) as refused:
            check(log, 100, signed, fresh)
        assert words in refused.value.message, refused.value.message


@pytest.mark.parametrize("datacap", ["lots", True, -1, 2.5, None])
def test_an_approval_leaf_whose_datacap_is_no_byte_count_is_refused_not_a_crash(datacap: object) -> None:
    # only the log key can sign such a tree (a ledger appends only strict entries), but a notary trusts the leaf's
    # bytes, not its shape: "lots" was a ValueError, True was read as 1 byte of DataCap
    leaves = [filler(n) for n in range(10)]
    leaves[5] = canonical({"type": "cod/ledger/decision/v1", "signature": "",
                           "statement": {"job": JOB, "result": RESULT, "action": "approve", "moderator": "12D3KooWmod",
                                         "datacap": datacap}})
    with pytest.raises(AuditFailed) as refused:
        check(Log(leaves), 5)
    assert "DataCap" in refused.value.message, refused.value.message
