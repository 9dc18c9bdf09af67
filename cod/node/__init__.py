"""The compute node: an aiohttp service that stores blobs, runs jobs and signs results
(its blob store and fetcher are in :mod:`cod.content`).

    store.py   jobs and their signed statements in SQLite (WAL)
    pool.py    jobs run in executor processes, so no job can take the node down
    app.py     the HTTP API under /v1 (documented in SPEC.md and at /v1/openapi.json)
    server.py  starting and stopping a node (cod serve, the devstack)
"""
