# Sourced by smoke tests: start_broker BIN starts shardlog on a free port with a temporary
# data dir and sets BOOTSTRAP, DATA, BROKER_PID, BROKER_LOG; stop_broker sends SIGTERM.

start_broker() {
    local bin=$1
    DATA=$(mktemp -d)
    BROKER_LOG="$DATA/broker.log"
    for _ in $(seq 1 20); do
        PORT=$(( 20000 + RANDOM % 30000 ))
        "$bin" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA/data" --cores 2 \
            --metrics-listen 127.0.0.1:0 >"$BROKER_LOG" 2>&1 &
        BROKER_PID=$!
        for _ in $(seq 1 100); do
            if grep -q "listening on" "$BROKER_LOG"; then
                BOOTSTRAP="127.0.0.1:$PORT"
                return 0
            fi
            if ! kill -0 "$BROKER_PID" 2>/dev/null; then break; fi
            sleep 0.1
        done
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    done
    echo "broker did not start:"; cat "$BROKER_LOG"; return 1
}

stop_broker() {
    kill -TERM "$BROKER_PID"
    wait "$BROKER_PID"
}
