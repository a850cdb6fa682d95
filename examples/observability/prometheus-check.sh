#!/usr/bin/env bash
# Scrapes a running server with a real Prometheus and checks that the request
# duration histogram arrives.
#
#   prometheus-check.sh http://127.0.0.1:3000/metrics
#
# Starts `prometheus` (from PATH) on loopback with a temporary configuration that
# scrapes the URL every second (OpenMetrics, exemplar storage on, bearer token from
# METRICS_TOKEN when set), sends one request to the server's `/` so at least one
# series exists, then queries the HTTP API until
# `http_server_request_duration_seconds_count` returns a non-empty result. Prints
# the result and exits 0; exits non-zero when it does not arrive within
# CHECK_TIMEOUT seconds (default 60). Needs bash, curl and prometheus.
set -euo pipefail

url=${1:?usage: prometheus-check.sh http://127.0.0.1:PORT/metrics}
timeout_s=${CHECK_TIMEOUT:-60}
query=http_server_request_duration_seconds_count

rest=${url#http://}
if [[ $rest == "$url" ]]; then
    echo "prometheus-check: only http:// URLs are supported: $url" >&2
    exit 2
fi
hostport=${rest%%/*}
path=/${rest#*/}
[[ $rest == */* ]] || path=/metrics
case $hostport in
    127.*|localhost:*|\[::1\]:*) ;;
    *) echo "prometheus-check: refusing a non-loopback target: $hostport" >&2; exit 2 ;;
esac

command -v prometheus >/dev/null || { echo "prometheus-check: prometheus not on PATH" >&2; exit 2; }
command -v curl >/dev/null || { echo "prometheus-check: curl not on PATH" >&2; exit 2; }

work=$(mktemp -d)
prom_pid=
cleanup() {
    if [[ -n $prom_pid ]]; then
        kill "$prom_pid" 2>/dev/null || true
        wait "$prom_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port for Prometheus' own API.
if command -v python3 >/dev/null; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
else
    port=$((20000 + $$ % 20000))
fi

{
    echo "global:"
    echo "  scrape_interval: 1s"
    echo "  scrape_timeout: 1s"
    echo "scrape_configs:"
    echo "  - job_name: tower-ops"
    echo "    metrics_path: '${path%%\?*}'"
    echo "    static_configs:"
    echo "      - targets: ['$hostport']"
    if [[ -n ${METRICS_TOKEN:-} ]]; then
        printf '%s' "$METRICS_TOKEN" > "$work/token"
        echo "    authorization:"
        echo "      type: Bearer"
        echo "      credentials_file: '$work/token'"
    fi
} > "$work/prometheus.yml"

prometheus \
    --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$port" \
    --enable-feature=exemplar-storage \
    > "$work/prometheus.log" 2>&1 &
prom_pid=$!

# Make sure the server has observed at least one request.
curl -s -o /dev/null --max-time 5 "http://$hostport/" || true

deadline=$((SECONDS + timeout_s))
api="http://127.0.0.1:$port/api/v1/query?query=$query"
while (( SECONDS < deadline )); do
    if ! kill -0 "$prom_pid" 2>/dev/null; then
        echo "prometheus-check: prometheus exited early:" >&2
        cat "$work/prometheus.log" >&2
        exit 1
    fi
    answer=$(curl -s --max-time 2 "$api" || true)
    if [[ $answer == *'"status":"success"'* && $answer == *'"result":[{'* ]]; then
        echo "$answer"
        exit 0
    fi
    sleep 1
done

echo "prometheus-check: no $query series within ${timeout_s}s; last answer: ${answer:-none}" >&2
echo "--- targets:" >&2
curl -s --max-time 2 "http://127.0.0.1:$port/api/v1/targets" >&2 || true
echo >&2
echo "--- prometheus log (tail):" >&2
tail -n 30 "$work/prometheus.log" >&2
exit 1
