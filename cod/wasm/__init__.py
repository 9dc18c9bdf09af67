"""The deterministic WebAssembly executor: engine, WASI preview1 layer, virtual files, guest telemetry."""
