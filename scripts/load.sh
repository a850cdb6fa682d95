#!/usr/bin/env bash
# Load benchmark over loopback: the bare router, the peer crates' stack and the
# tower-ops stack, each served by `examples/load_server.rs` and driven by wrk.
# Prints requests per second and each stack's ratio to the bare server.
#
# Usage: scripts/load.sh            (from anywhere in the repository)
# Environment (defaults in brackets):
#   THREADS [2]  CONNECTIONS [64]  DURATION [10s]  WARMUP [2s]   wrk settings
#   STACKS ["bare peer tower_ops"]  stacks to run; `bare` first gives the ratios;
#                a name ending in `+serve` (`bare+serve`) runs that stack under
#                `tower_ops::serve` instead of `axum::serve`
#   PATH_UNDER_TEST [/users/42]     the route requested (it has a path parameter)
#   ROUNDS [1]   runs of every stack, interleaved (bare, peer, tower_ops, bare, ...);
#                the table shows each stack's median, so a burst of load from
#                elsewhere on the machine skews one round, not the result
#   PIN [auto]  auto: with taskset and 2+ CPUs, the server gets CPU 0 and wrk the
#               others, so they do not steal each other's cycles; 0: no pinning
#               (client and server then share every core; say so with numbers).
#   LOG_SINK [file]  file: every stack writes its log lines to a real file of its
#               own; pipe: to its stdout, a pipe that `cat` drains to /dev/null.
#
# Besides requests per second, the table shows what the server process spent per
# request over the measured run, read from /proc: CPU time (user + system, all
# threads) and write system calls (`syscw` of /proc/PID/io, response writes
# included). These are steadier than requests per second on a shared machine.
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
LOG_SINK="${LOG_SINK:-file}"
[[ "$LOG_SINK" == file || "$LOG_SINK" == pipe ]] || {
    echo "load.sh: LOG_SINK must be file or pipe (got $LOG_SINK)" >&2
    exit 1
}

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
    local err="$work/$1.err"
    : >"$err" # exists before the server opens it, for the polling below
    if [[ "$LOG_SINK" == file ]]; then
        LOG_FILE="$work/$1.log" "${server_cpu[@]}" "$server" "$1" 0 >/dev/null 2>"$err" &
    else
        "${server_cpu[@]}" "$server" "$1" 0 > >(cat >/dev/null) 2>"$err" &
    fi
    server_pid=$!
    url=""
    for _ in $(seq 100); do
        url="$(sed -n 's/^listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$err")"
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

clk_tck=$(getconf CLK_TCK)
# Prints "CPU_TICKS WRITE_SYSCALLS" of process $1.
proc_counters() {
    local stat
    stat="$(cat "/proc/$1/stat")"
    stat="${stat##*) }" # fields from the third on; the name may hold spaces
    # shellcheck disable=SC2086
    set -- $stat
    echo "$((${12} + ${13})) $(awk '/^syscw:/ {print $2}' "/proc/$server_pid/io")"
}

declare -A runs rps errors cpu_us writes
for round in $(seq "$ROUNDS"); do
    for stack in $STACKS; do
        start_server "$stack"
        echo "== $stack, round $round of $ROUNDS, at $url ($placement)" >&2
        drive "$url" "$warm_secs" >/dev/null
        read -r ticks0 syscw0 <<<"$(proc_counters "$server_pid")"
        report="$(drive "$url" "$run_secs")"
        read -r ticks1 syscw1 <<<"$(proc_counters "$server_pid")"
        echo "$report" >&2
        requests="$(awk '/requests in/ {print $1}' <<<"$report")"
        [[ -n "$requests" && "$requests" -gt 0 ]] || die "no request count in wrk's report for $stack"
        cpu_us[$stack]="${cpu_us[$stack]:-} $(awk -v t=$((ticks1 - ticks0)) -v n="$requests" -v hz="$clk_tck" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')"
        writes[$stack]="${writes[$stack]:-} $(awk -v w=$((syscw1 - syscw0)) -v n="$requests" 'BEGIN {printf "%.3f", w / n}')"
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
echo "median of $ROUNDS round(s); log lines to a $LOG_SINK"
printf '%-18s %12s %8s %11s %11s %8s   %s\n' stack req/s "x bare" "CPU us/req" "writes/req" non-2xx "every round (req/s)"
for stack in $STACKS; do
    if [[ -n "${rps[bare]:-}" ]]; then
        ratio="$(awk -v a="${rps[$stack]}" -v b="${rps[bare]}" 'BEGIN {printf "%.3f", a / b}')"
    else
        ratio="-"
    fi
    # shellcheck disable=SC2086 # one number per word
    printf '%-18s %12s %8s %11s %11s %8s  %s\n' "$stack" "${rps[$stack]}" "$ratio" \
        "$(median ${cpu_us[$stack]})" "$(median ${writes[$stack]})" "${errors[$stack]:-0}" "${runs[$stack]}"
done
if [[ -n "${rps[bare]:-}" && -n "${rps[bare+serve]:-}" ]]; then
    awk -v a="${rps[bare+serve]}" -v b="${rps[bare]}" 'BEGIN {
        r = a / b
        printf "tower_ops::serve/axum::serve = %.3f (target >= 0.98): %s\n", r, (r >= 0.98 ? "met" : "missed")
    }'
fi
if [[ -n "${rps[bare]:-}" && -n "${rps[tower_ops]:-}" ]]; then
    awk -v a="${rps[tower_ops]}" -v b="${rps[bare]}" 'BEGIN {
        r = a / b
        printf "tower_ops/bare = %.3f (target >= 0.85): %s\n", r, (r >= 0.85 ? "met" : "missed")
    }'
fi
