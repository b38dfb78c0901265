#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: kcat, iproute2, openssl, Go,
# sarama, chromium and chromedriver (Debian),
# kafkajs (npm, into target/js-clients),
# confluent-kafka and its schema-registry serializers (PyPI) for the client tests, a JDK and the Java Kafka client
# (kafka-clients 3.9 and its codec jars, taken from the PyPI wheel
# shigawire-apache-flink-libraries into target/java-clients), cargo-nextest as the test
# runner. Idempotent: skips what is already there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! command -v kcat >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat >/dev/null
fi

# iproute2 (`ip`): the network-partition test cuts a node off with a network namespace.
if ! command -v ip >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iproute2 >/dev/null
fi

# openssl (the CLI): the security tests read the broker's certificate with s_client.
if ! command -v openssl >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null
fi

if ! command -v javac >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq default-jdk-headless >/dev/null
fi

# Go and Debian's sarama (1.22) for the older-client test (tests/old_clients.rs).
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/Shopify/sarama ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq golang-go \
        golang-github-shopify-sarama-dev >/dev/null
fi

# A real browser for the web console's test (tests/console_ui.rs).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# kafkajs (npm) for the security tests, into target/js-clients.
JS_LIB="$(cd "$(dirname "$0")/.." && pwd)/target/js-clients"
if [ ! -f "$JS_LIB/node_modules/kafkajs/package.json" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
    fi
    mkdir -p "$JS_LIB"
    npm install --silent --no-audit --no-fund --prefix "$JS_LIB" kafkajs@2.2.4 >/dev/null
fi

JAVA_LIB="$(cd "$(dirname "$0")/.." && pwd)/target/java-clients"
if [ ! -f "$JAVA_LIB/kafka-clients.jar" ]; then
    wheel_dir="$(mktemp -d)"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$wheel_dir" \
        shigawire-apache-flink-libraries
    mkdir -p "$JAVA_LIB"
    python3 - "$wheel_dir" "$JAVA_LIB" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for jar in ["kafka-clients", "lz4-java", "snappy-java", "zstd-jni", "slf4j-api"]:
        with open(f"{sys.argv[2]}/{jar}.jar", "wb") as out:
            out.write(z.read(f"pyflink/lib/{jar}.jar"))
PY
    rm -rf "$wheel_dir"
fi

# confluent-kafka with its schema-registry serializers (Avro: fastavro; JSON Schema:
# jsonschema) for tests/schemas.rs.
if ! python3 -c "import confluent_kafka, fastavro, jsonschema, httpx" >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check \
        "confluent-kafka[avro,json,schemaregistry]"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
