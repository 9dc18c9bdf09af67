"""The outcomes a requester records for a job, and the exit code of each (SPEC 11).

One list, read by the verifier that decides them, the records that keep them and every command
that filters or colours by them (``cod list --outcome``).
"""

from __future__ import annotations

VERIFIED, QUORUM, MISMATCH = "verified", "verified-by-quorum", "mismatch"
PROFILE_MISMATCH, INCOMPLETE, UNVERIFIABLE = "profile-mismatch", "incomplete", "unverifiable"
REFEREE, REFEREE_DISAGREES = "verified-by-referee", "referee-disagrees"
"""Claims differed and the requester's own re-execution (SPEC 11.3) decided: it equals one claim
(accepted, whatever the count), or none (nothing accepted)."""
AUDIT_FAILED = "audit-failed"
"""The claims agreed, and a random audit (SPEC 11.4) re-executed the job and got another result:
nothing accepted, every agreeing signer a proven liar."""
EXIT_CODES = {VERIFIED: 0, QUORUM: 0, REFEREE: 0, MISMATCH: 10, INCOMPLETE: 11, UNVERIFIABLE: 12,
              PROFILE_MISMATCH: 13, REFEREE_DISAGREES: 26, AUDIT_FAILED: 27}
"""Outcomes of a verification and the exit code of `cod run --verify` for each."""
LOCAL, SUBMITTED = "local", "submitted"
"""Outcomes of a record that no verification decided: a local run, a detached run not yet collected."""
UNFINISHED, CANCELLED = "running", "cancelled"
"""A verified run recorded before dispatch that has not ended (or whose requester was killed: cod get
collects it, cod cancel cancels it), and a run cancelled by Ctrl-C or cod cancel."""
OUTCOMES = tuple(sorted({*EXIT_CODES, LOCAL, SUBMITTED, UNFINISHED, CANCELLED}))
"""Every outcome a job record can have."""

__all__ = ["AUDIT_FAILED", "CANCELLED", "EXIT_CODES", "INCOMPLETE", "LOCAL", "MISMATCH", "OUTCOMES", "PROFILE_MISMATCH", "QUORUM",
           "REFEREE", "REFEREE_DISAGREES", "SUBMITTED", "UNFINISHED", "UNVERIFIABLE", "VERIFIED"]
