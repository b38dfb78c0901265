#!/usr/bin/env bash
# The whole test suite: formatting and lints, client smoke tests (kcat, confluent-kafka)
# against the real broker, then every Rust test (unit and librdkafka integration) with
# cargo-nextest. Run from anywhere; installs missing tools first (tests/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh

echo "== fmt and clippy"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

echo "== build"
cargo build --bins

echo "== client smoke tests"
bash tests/smoke/kcat.sh target/debug/shardlog
python3 tests/smoke/confluent_kafka_smoke.py target/debug/shardlog

echo "== cargo tests"
cargo nextest run --no-fail-fast
