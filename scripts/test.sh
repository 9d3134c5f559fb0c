#!/usr/bin/env bash
# The full test suite on a fresh Debian machine with the Rust toolchain. The README's test
# command, and exactly what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: none yet. The foundation needs only the Rust toolchain; the ODBC and
# PostgreSQL based connectors will install unixODBC, drivers and a server here.

# The end-to-end tests load the plugin libraries and run the binary that this builds
# (`cargo test` alone builds neither cdylib crates nor the binary).
cargo build --workspace --all-targets --locked

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked
else
    cargo test --workspace --locked
fi
# Doc tests (nextest does not run them).
cargo test --workspace --doc --locked

# Benchmarks run on demand; these smoke runs, with tiny sizes in the dev profile, keep the
# benchmarks compiling and working.
cargo bench -p acdlink --bench read_throughput --profile dev --locked -- --records 20000 --rounds 1
cargo bench -p acdlink --bench pipeline --profile dev --locked -- --days 1 --queues 5
cargo bench -p acdlink-connector-csv --bench throughput --profile dev --locked -- --mb 2
