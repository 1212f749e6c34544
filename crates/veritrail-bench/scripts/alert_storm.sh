#!/usr/bin/env bash
# A diagnostic, not a target benchmark: what one alert costs the server, end to end.
#
#   crates/veritrail-bench/scripts/alert_storm.sh [BINARY] [EVENTS]
#
# Starts `veritrail serve` (BINARY, default target/release/veritrail) on a fresh data directory
# with a webhook to a local receiver (python3), then sends EVENTS `config.security.updated`
# events (default 20,000; `security_config_change` fires on every one) in batches of 500 over
# curl, twice: the first pass warms up, the second is measured. Prints the server's CPU per
# event of the second pass. ALERTING=false runs the same events with the engine off (the
# difference is the cost of one alert: rule evaluation, the alert row, its `audit.alert.raised`
# ledger event, the signed webhook delivery). PERF=1 records a profile of the second pass to
# ./alert_storm.perf.data (perf record --call-graph dwarf).
set -euo pipefail
BIN=${1:-target/release/veritrail}
EVENTS=${2:-20000}
ALERTING=${ALERTING:-true}
PERF=${PERF:-0}
PORT=${PORT:-18181}
RECEIVER_PORT=$((PORT + 1))
TOKEN=storm-bootstrap-token-0123456789abcdef
DIR=$(mktemp -d)
cleanup() { kill "${SERVER:-}" "${RECEIVER:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

printf 'alerting = %s\nwebhook_allow_private = true\n' "$ALERTING" > "$DIR/veritrail.toml"
python3 - "$RECEIVER_PORT" <<'PY' &
import http.server, sys
class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
PY
RECEIVER=$!
VERITRAIL_BOOTSTRAP_TOKEN=$TOKEN "$BIN" serve --data-dir "$DIR/data" --listen "127.0.0.1:$PORT" \
    --config "$DIR/veritrail.toml" > "$DIR/server.log" 2>&1 &
SERVER=$!
BASE=http://127.0.0.1:$PORT
for _ in $(seq 50); do curl -sf "$BASE/healthz" > /dev/null && break; sleep 0.1; done
KEY=$(curl -sf -X POST -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    "$BASE/v1/tenants" -d '{"name":"storm"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
curl -sf -X POST -H "authorization: Bearer $KEY" -H 'content-type: application/json' "$BASE/v1/webhooks" \
    -d "{\"url\":\"http://127.0.0.1:$RECEIVER_PORT/hook\"}" > /dev/null
python3 - "$EVENTS" > "$DIR/batches" <<'PY'
import json, sys
n = int(sys.argv[1])
for start in range(0, n, 500):
    print(json.dumps([{"action": "config.security.updated", "actor": {"id": f"admin-{i % 50}", "type": "user"},
                       "resource": {"type": "setting", "id": f"s{i}"},
                       "metadata": {"source": {"service": "console"}}} for i in range(start, min(start + 500, n))]))
PY
send() {
    while read -r batch; do
        curl -sf -o /dev/null -X POST -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
            "$BASE/v1/events" --data-binary "$batch"
    done < "$DIR/batches"
}
metric() { curl -sf "$BASE/metrics" | awk -v name="$1" '$1 == name {print $2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
send
sleep 5
before=$(cpu_ticks); alerts_before=$(metric veritrail_alerts_raised_total)
if [ "$PERF" = 1 ]; then
    perf record -F 999 --call-graph dwarf,40000 -p "$SERVER" -o alert_storm.perf.data > /dev/null 2>&1 &
    PERF_PID=$!
fi
send
sleep 6  # the engine and the webhook worker finish
if [ "$PERF" = 1 ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
after=$(cpu_ticks); alerts_after=$(metric veritrail_alerts_raised_total)
python3 -c "
ticks, hz, events = $after - $before, $(getconf CLK_TCK), $EVENTS
print(f'alerting={\"$ALERTING\"}: {events} events, {$alerts_after - $alerts_before:.0f} alerts raised, '
      f'server {ticks / hz * 1e6 / events:.1f} CPU-µs per event')"
