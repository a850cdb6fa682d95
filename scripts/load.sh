#!/usr/bin/env bash
# Load benchmark over loopback: the bare router, the peer crates' stack and the
# tower-ops stack, each served by `examples/load_server.rs` and driven by wrk.
# Prints requests per second and each stack's ratio to the bare server.
#
# Usage: scripts/load.sh            (from anywhere in the repository)
# Environment (defaults in brackets):
#   THREADS [2]  CONNECTIONS [64]  DURATION [10s]  WARMUP [2s]   wrk settings
#   STACKS ["bare peer tower_ops"]  stacks to run; `bare` first gives the ratios
#   PATH_UNDER_TEST [/users/42]     the route requested (it has a path parameter)
#   ROUNDS [1]   runs of every stack, interleaved (bare, peer, tower_ops, bare, ...);
#                the table shows each stack's median, so a burst of load from
#                elsewhere on the machine skews one round, not the result
#   PIN [auto]  auto: with taskset and 2+ CPUs, the server gets CPU 0 and wrk the
#               others, so they do not steal each other's cycles; 0: no pinning
#               (client and server then share every core; say so with numbers).
#
# Loopback only; every run is bounded by `timeout`; servers are stopped on exit.
set -euo pipefail

THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
STACKS="${STACKS:-bare peer tower_ops}"
PATH_UNDER_TEST="${PATH_UNDER_TEST:-/users/42}"
PIN="${PIN:-auto}"
ROUNDS="${ROUNDS:-1}"

die() {
    echo "load.sh: $*" >&2
    exit 1
}

command -v wrk >/dev/null 2>&1 ||
    die "wrk is not installed; on Debian or Ubuntu: sudo apt-get install wrk (elsewhere: build it from its source release)"

seconds() { # "10s", "2m" or "15" -> seconds, for the timeouts
    case "$1" in
        *m) echo $((${1%m} * 60)) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}
run_secs=$(seconds "$DURATION")
warm_secs=$(seconds "$WARMUP")
[[ "$run_secs" =~ ^[0-9]+$ && "$warm_secs" =~ ^[0-9]+$ ]] ||
    die "DURATION and WARMUP must be whole seconds or minutes (got $DURATION, $WARMUP)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive whole number (got $ROUNDS)"

server_cpu=()
client_cpu=()
cpus=$(nproc)
if [[ "$PIN" == auto ]] && command -v taskset >/dev/null 2>&1 && ((cpus >= 2)); then
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c "1-$((cpus - 1))")
    placement="server on CPU 0, wrk on CPUs 1-$((cpus - 1))"
else
    placement="server and wrk share all $cpus CPUs"
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
echo "building the load server (release)..." >&2
cargo build --quiet --release --example load_server
target_dir="${CARGO_TARGET_DIR:-$root/target}"
server="$target_dir/release/examples/load_server"
[[ -x "$server" ]] || die "no server binary at $server (is a cargo target-dir configured elsewhere?)"

work="$(mktemp -d)"
server_pid=""
stop_server() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}
cleanup() {
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts the server for stack $1 on a free loopback port; sets $url.
start_server() {
    local out="$work/$1.out"
    : >"$out" # exists before the server opens it, for the polling below
    "${server_cpu[@]}" "$server" "$1" 0 >"$out" 2>"$work/$1.err" &
    server_pid=$!
    url=""
    for _ in $(seq 100); do
        url="$(sed -n 's/^listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$out")"
        [[ -n "$url" ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$work/$1.err" >&2
    die "the $1 server did not start listening"
}

# Runs wrk for $2 seconds against $1; prints its report.
drive() {
    timeout --kill-after=5 $(($2 + 15)) "${client_cpu[@]}" \
        wrk --threads "$THREADS" --connections "$CONNECTIONS" --duration "${2}s" \
        --timeout 5s "$1$PATH_UNDER_TEST"
}

median() { # the median of the numbers given as arguments
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

declare -A runs rps errors
for round in $(seq "$ROUNDS"); do
    for stack in $STACKS; do
        start_server "$stack"
        echo "== $stack, round $round of $ROUNDS, at $url ($placement)" >&2
        drive "$url" "$warm_secs" >/dev/null
        report="$(drive "$url" "$run_secs")"
        echo "$report" >&2
        bad="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$report")"
        if [[ -n "$bad" ]]; then
            echo "load.sh: warning: $stack answered $bad requests with an error status" >&2
            errors[$stack]=$((${errors[$stack]:-0} + bad))
        fi
        rate="$(awk '/^Requests\/sec:/ {print $2}' <<<"$report")"
        [[ -n "$rate" ]] || die "no Requests/sec in wrk's report for $stack"
        runs[$stack]="${runs[$stack]:-} $rate"
        stop_server
    done
done
for stack in $STACKS; do
    # shellcheck disable=SC2086 # one number per word
    rps[$stack]="$(median ${runs[$stack]})"
done

echo
echo "wrk: $THREADS threads, $CONNECTIONS connections, ${run_secs}s after ${warm_secs}s warm-up, GET $PATH_UNDER_TEST; $placement"
echo "median of $ROUNDS round(s)"
printf '%-18s %12s %8s %8s   %s\n' stack req/s "x bare" non-2xx "every round"
for stack in $STACKS; do
    if [[ -n "${rps[bare]:-}" ]]; then
        ratio="$(awk -v a="${rps[$stack]}" -v b="${rps[bare]}" 'BEGIN {printf "%.3f", a / b}')"
    else
        ratio="-"
    fi
    printf '%-18s %12s %8s %8s  %s\n' "$stack" "${rps[$stack]}" "$ratio" "${errors[$stack]:-0}" "${runs[$stack]}"
done
if [[ -n "${rps[bare]:-}" && -n "${rps[tower_ops]:-}" ]]; then
    awk -v a="${rps[tower_ops]}" -v b="${rps[bare]}" 'BEGIN {
        r = a / b
        printf "tower_ops/bare = %.3f (target >= 0.85): %s\n", r, (r >= 0.85 ? "met" : "missed")
    }'
fi
