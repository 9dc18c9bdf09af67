"""The node API as an OpenAPI 3.1 document, served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_JOB = {"$ref": "#/components/schemas/Job"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "cod compute node", "version": "1",
             "description": "Content-addressed blobs, deterministic jobs, signed result statements."},
    "paths": {
        "/v1/health": {"get": {"summary": "Liveness: status (ok, degraded, unavailable), active_jobs, workers "
                                          "(executor processes up), concurrency",
                               "responses": {"200": _json({"type": "object"}, "up (ok, or degraded: some executors "
                                                                              "cannot start)"),
                                             "503": _json({"type": "object"}, "unavailable: no executor is up or "
                                                                              "starting, no job can run")}}},
        "/metrics": {"get": {"summary": "The node's metrics in the Prometheus text format (jobs by outcome, job "
                                       "duration, fuel used, queue depth, bytes moved by direction)",
                             "responses": {"200": {"description": "Prometheus text exposition",
                                                   "content": {"text/plain": {}}}}}},
        "/v1/info": {"get": {"summary": "Node ID, public key, capabilities, versions, profile, limits",
                             "responses": {"200": _json({"$ref": "#/components/schemas/Info"}, "node info")}}},
        "/v1/blobs/{cid}": {
            "parameters": [{"name": "cid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "put": {"summary": "Upload a blob: raw bytes of a module, or a CAR (application/vnd.ipld.car) of a "
                               "directory. The node checks it hashes to {cid} and refuses a mismatch.",
                    "requestBody": {"content": {"application/octet-stream": {}, "application/vnd.ipld.car": {}}},
                    "responses": {"201": _json({"type": "object"}, "stored"),
                                  "200": _json({"type": "object"}, "already stored"),
                                  "400": _json(_ERROR, "CIDError: malformed CAR, not one root, a root that "
                                                       "is not a directory or a file, bad or duplicate "
                                                       "names, content that does not hash to the CID"),
                                  "413": _json(_ERROR, "CapExceeded: over max_upload_bytes, max_car_blocks, "
                                                       "max_unpacked_bytes, max_entries or max_tree_depth "
                                                       "(the body names the cap)"),
                                  "422": _json(_ERROR, "InputError: content outside cod's UnixFS profile"),
                                  "507": _json(_ERROR, "StorageQuotaExceeded: the client's stored bytes would pass "
                                                       "its quota (SPEC 9.11); InsufficientStorage: the node's disk "
                                                       "is full or read-only")}},
            "get": {"summary": "Download a blob (a module's bytes, or a directory as a CAR; a file as a CAR "
                               "when Accept names application/vnd.ipld.car; a dataset as a CAR; a file or "
                               "directory inside a held tree likewise; a private module never); HEAD tells "
                               "whether the node has it",
                    "responses": {"200": {"description": "the blob"}, "404": _json(_ERROR, "unknown"),
                                  "429": _json(_ERROR, "NodeBusy: the node sends its most CARs of directories "
                                                       "inside held trees at once; retry after Retry-After")}},
        },
        "/v1/holdings": {
            "get": {"summary": "The CIDs this node holds: datasets, modules, private modules (by CID only), "
                               "blobs; each list sorted, at most 10000 long (truncated says so). Repeat "
                               "?cid=CID to ask about those CIDs only; inside then lists those that are a file "
                               "or directory inside a held dataset, stored tree or job result.",
                    "parameters": [{"name": "cid", "in": "query", "required": False,
                                    "schema": {"type": "array", "items": {"type": "string"}}}],
                    "responses": {"200": _json({"type": "object"}, "holdings"),
                                  "400": _json(_ERROR, "a cid that is not a CID, or too many")}},
        },
        "/v1/jobs": {
            "post": {"summary": "Submit a job spec; ?wait=true answers when it is done",
                     "requestBody": {"content": {"application/json": {"schema": {
                         "type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}}}}},
                     "responses": {"200": _json(_JOB, "done (or failed)"), "202": _json(_JOB, "accepted"),
                                   "400": _json(_ERROR, "bad spec or body (strict JSON)"),
                                   "403": _json(_ERROR, "LocalPathNotAllowed: local path not allowed; "
                                                        "PolicyRefused: the node's FIL+ policy refuses the job "
                                                        "(the message names the input and the policy)"),
                                   "413": _json(_ERROR, "body over 1 MiB"),
                                   "422": _json(_ERROR, "CapExceeded: a limit over the node's cap (named)"),
                                   "409": _json(_ERROR, "blobs missing: upload them (the body lists them)"),
                                   "429": _json(_ERROR, "queue full, or (prefer-fil-plus) the half kept for "
                                                        "FIL+ jobs; see Retry-After"),
                                   "501": _json(_ERROR, "no Docker engine for a docker job"),
                                   "507": _json(_ERROR, "StorageQuotaExceeded: the client's quota is used, or "
                                                        "the output base would pass it (SPEC 9.11); "
                                                        "InsufficientStorage: the node's disk is full or read-only"),
                                   "503": _json(_ERROR, "LedgerUnavailable: fil-plus-only and the ledger "
                                                        "cannot be asked (fail closed)")}},
            "get": {"summary": "Recent jobs", "responses": {"200": _json({"type": "object"}, "jobs")}},
        },
        "/v1/jobs/{cid}": {
            "parameters": [{"name": "cid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "A job's state, spec, outcome and signed statement",
                    "responses": {"200": _json(_JOB, "the job"), "404": _json(_ERROR, "unknown job")}},
            "delete": {"summary": "Cancel a job being prepared (fetching its inputs), queued or running: its "
                                  "fetches end or its executor is killed, its state becomes failed with error "
                                  "Cancelled",
                       "responses": {"200": _json(_JOB, "cancelled"), "404": _json(_ERROR, "unknown job"),
                                     "409": _json(_ERROR, "NotCancellable: the job is done or failed"),
                                     "507": _json(_ERROR, "InsufficientStorage: the node's disk is full")}}},
        "/v1/jobs/{cid}/checkpoints": {
            "parameters": [{"name": "cid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "post": {"summary": "Checkpoints of a job this node ran (SPEC 11.7): the job is run again under the "
                                "checkpoint transform, on demand, and the node signs the state hash at every "
                                "interval of fuel (cod/checkpoints/v1), its final state and the result it claims",
                     "requestBody": {"content": {"application/json": {"schema": {
                         "type": "object", "required": ["interval"],
                         "properties": {"interval": {"type": "integer", "minimum": 65536}}}}}},
                     "responses": {"200": _json({"type": "object", "required": ["checkpoints", "signature"]},
                                                "the signed listing"),
                                   "404": _json(_ERROR, "unknown job"),
                                   "409": _json(_ERROR, "CheckpointRefused: the job is not done here, the interval "
                                                        "is out of bounds, or the trace failed or overran"),
                                   "429": _json(_ERROR, "CheckpointBusy: the node runs its most traces already"),
                                   "501": _json(_ERROR, "CheckpointUnsupported: no checkpoint transform here")}}},
        "/v1/jobs/{cid}/checkpoints/{index}/snapshot": {
            "parameters": [{"name": "cid", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "index", "in": "path", "required": True, "schema": {"type": "integer"}},
                           {"name": "interval", "in": "query", "required": True, "schema": {"type": "integer"}}],
            "get": {"summary": "The execution state at checkpoint {index} of the job's trace at ?interval=F: the "
                               "bytes whose hash (cod.checkpoint.snapshot_hash) is that checkpoint's hash",
                    "responses": {"200": {"description": "the snapshot"}, "404": _json(_ERROR, "unknown job"),
                                  "409": _json(_ERROR, "CheckpointRefused: no such checkpoint"),
                                  "429": _json(_ERROR, "CheckpointBusy"),
                                  "501": _json(_ERROR, "CheckpointUnsupported")}}},
        "/v1/jobs/{cid}/results.car": {
            "parameters": [{"name": "cid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "The results directory as a CARv1 rooted at the result CID",
                    "responses": {"200": {"description": "CAR"}, "404": _json(_ERROR, "no results")}}},
        "/v1/jobs/{cid}/results/{path}": {
            "parameters": [{"name": "cid", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "One file of the results directory (e.g. stdout, outputs/count.txt)",
                    "responses": {"200": {"description": "the file"}, "404": _json(_ERROR, "no such file")}}},
        "/v1/statements": {"get": {
            "summary": "Signed statements of done jobs in completion order, for a ledger's scanner",
            "parameters": [{"name": "after", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 0, "default": 0},
                            "description": "completion number (seq) after which to start"},
                           {"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
            "responses": {"200": _json({"type": "object", "required": ["statements", "next"], "properties": {
                "statements": {"type": "array", "items": {
                    "type": "object", "required": ["seq", "job", "spec", "statement"],
                    "properties": {"seq": {"type": "integer"}, "job": {"type": "string"},
                                   "spec": {"type": "object"},
                                   "statement": {"$ref": "#/components/schemas/Statement"}}}},
                "next": {"type": "integer", "description": "pass as ?after= for the next page"}}},
                "a page"), "400": _json(_ERROR, "BadQuery: after or limit out of range")}}},
        "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
    },
    "components": {"schemas": {
        "Error": {"type": "object", "required": ["error", "message", "hint"],
                  "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                                 "hint": {"type": "string"},
                                 "missing": {"type": "array", "items": {"type": "string"}},
                                 "cap": {"type": "string"}, "limit": {"type": "integer"}}},
        "Info": {"type": "object", "required": ["node_id", "public_key", "capabilities", "profile"],
                 "properties": {"node_id": {"type": "string"}, "public_key": {"type": "string"},
                                "capabilities": {"type": "array", "items": {"type": "string"}},
                                "versions": {"type": "object"}, "profile": {"type": "string"},
                                "limits": {"type": "object", "additionalProperties": {"type": "integer"},
                                           "required": ["concurrency", "queue_size", "max_fuel",
                                                        "max_memory_bytes", "max_table_elements", "max_timeout_ms",
                                                        "max_stdout_bytes", "max_stderr_bytes", "max_output_bytes",
                                                        "max_upload_bytes",
                                                        "max_unpacked_bytes", "max_car_blocks", "max_tree_depth",
                                                        "max_entries", "max_fetch_cids"]},
                                "checkpoints": {"type": "object", "required": ["supported", "transform"],
                                                "properties": {"supported": {"type": "boolean"},
                                                               "transform": {"type": ["string", "null"]}}},
                                "policy": {"type": "object", "required": ["name", "ledger"], "properties": {
                                    "name": {"enum": ["any", "prefer-fil-plus", "fil-plus-only"]},
                                    "ledger": {"type": ["string", "null"]}}}}},
        "Statement": {"type": "object", "required": ["statement", "signature"],
                      "properties": {"statement": {"type": "object"}, "signature": {"type": "string"}}},
        "Job": {"type": "object", "required": ["job_cid", "state"],
                "properties": {"job_cid": {"type": "string"},
                               "state": {"enum": ["preparing", "queued", "running", "done", "failed"]},
                               "spec": {"type": "object"}, "result_cid": {"type": ["string", "null"]},
                               "exit_code": {"type": ["integer", "null"]}, "trap": {"type": ["string", "null"]},
                               "fuel_used": {"type": ["integer", "null"]}, "profile": {"type": ["string", "null"]},
                               "statement": {"oneOf": [{"$ref": "#/components/schemas/Statement"},
                                                       {"type": "null"}]},
                               "error": {"type": ["object", "null"]}}},
    }},
}
