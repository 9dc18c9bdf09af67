"""The FIL+ moderation ledger: signed decisions in a transparency log anyone can audit (SPEC.md 12).

    merkle.py      RFC 9162 Merkle tree: stored hashes, tree hash, inclusion and consistency proofs
    note.py        C2SP signed notes and tlog cosignatures (Ed25519)
    checkpoint.py  C2SP tlog-checkpoint bodies
    tiles.py       C2SP tlog-tiles: tile paths, tiles and entry bundles
    entries.py     the leaf types: canonical JSON, signed statements, strict parsing
    evidence.py    eligibility of a job from its spec and signed node statements
    state.py       the state machine every leaf passes, in the service and in the audit alike
    store.py       SQLite: append-only tables, the append transaction
    log.py         Ledger: the library API (init, append, checkpoints, proofs, queries)
    audit.py       `cod ledger verify`: the offline audit of a data dir or a URL
    service.py server.py openapi.py scan.py   the HTTP service and its node scanner
    rates.py       the service's write rate limits: token buckets per address, key and all anonymous posters
    witness.py     a C2SP tlog-witness and its client
    client.py      LedgerClient: the HTTP client of commands, nodes and the verifier
"""
