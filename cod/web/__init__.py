"""What every HTTP server of cod shares: the compute node, the ledger and the witness.

- :mod:`cod.web.body`: strict JSON request bodies (SPEC.md 1);
- :mod:`cod.web.answers`: every refusal as a JSON body ``{"error", "message", "hint"}``;
- :mod:`cod.web.server`: listening on an address, the runner that answers unparsable HTTP in
  JSON, and waiting for SIGINT/SIGTERM.

None of the three servers owns this package; each imports it.
"""
