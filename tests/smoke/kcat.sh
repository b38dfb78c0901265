#!/usr/bin/env bash
# kcat (Debian's, librdkafka 2.0.x) against shardlog: metadata, keyed produce with lz4,
# consume back, restart, consume again.
set -euo pipefail
BIN=${1:-target/debug/shardlog}
source "$(dirname "$0")/broker.sh"
start_broker "$BIN"
trap 'kill "$BROKER_PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT

"$BIN" topic create smoke --partitions 4 --bootstrap "$BOOTSTRAP" >/dev/null
kcat -L -b "$BOOTSTRAP" -t smoke | grep -q "4 partitions"

seq 1 5000 | sed 's/.*/key&:value&/' | kcat -P -b "$BOOTSTRAP" -t smoke -K: -z lz4 -X acks=all
got=$(kcat -C -b "$BOOTSTRAP" -t smoke -e -q -f '%k=%s\n' | sort | uniq | wc -l)
[ "$got" = 5000 ] || { echo "kcat read $got of 5000"; exit 1; }
# Every key on exactly one partition.
keys=$(kcat -C -b "$BOOTSTRAP" -t smoke -e -q -f '%k %p\n' | sort -u | awk '{print $1}' | uniq -d | wc -l)
[ "$keys" = 0 ] || { echo "$keys keys on several partitions"; exit 1; }

stop_broker
start_broker_again() { "$BIN" serve --listen "$BOOTSTRAP" --data-dir "$DATA/data" --cores 2 --metrics-listen 127.0.0.1:0 >>"$BROKER_LOG" 2>&1 & BROKER_PID=$!; }
start_broker_again
for _ in $(seq 1 100); do [ "$(grep -c 'listening on' "$BROKER_LOG")" -ge 2 ] && break; sleep 0.1; done
got=$(kcat -C -b "$BOOTSTRAP" -t smoke -e -q -f '%s\n' | wc -l)
[ "$got" = 5000 ] || { echo "after restart kcat read $got of 5000"; exit 1; }
stop_broker
echo "kcat smoke: ok (5000 lz4 records, 4 partitions, restart)"
