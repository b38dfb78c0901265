#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: kcat (Debian) and
# confluent-kafka (PyPI) for the client smoke tests, cargo-nextest as the test runner.
# Idempotent: skips what is already there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! command -v kcat >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat >/dev/null
fi

if ! python3 -c "import confluent_kafka" >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check confluent-kafka
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
