#!/usr/bin/env bash
# How long the compiler takes on user code around the stack: `cargo check` of
# tests/tower_http.rs (tower-http layers on both sides of `Stack`, written as a
# user writes them), then the same file with one mistake in it (built with
# `--cfg tower_ops_check_mistake`), which must be reported as E0277.
#
# Prints both times in seconds. Fails when the mistake compiles, is not reported
# as E0277, or either run takes longer than CHECK_TIME_LIMIT_S (default 120):
# before the stack's types were flattened, rustc spent many minutes on that
# mistake without printing anything.
#
# Only the test file is timed; the dependencies and the library are checked
# first. Incremental compilation is off, so that the timed runs redo the work.
# Set CHECK_TIME_LIMIT_S to change the limit.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=${CHECK_TIME_LIMIT_S:-120}
target=tower_http
export CARGO_INCREMENTAL=0
export CARGO_TERM_COLOR=never

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
over() { awk -v t="$1" -v l="$limit" 'BEGIN { exit !(t > l) }'; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The library and the dev-dependencies, through a small test target that
# shares them.
cargo check --all-features --test request_id --quiet

# The runs of this file are bounded: a regression fails, it does not hang.
bounded() { timeout "$((limit + 30))" "$@"; }

touch "tests/$target.rs"
start=$(now)
if ! bounded cargo check --all-features --test "$target" --quiet; then
  echo "check_time: cargo check of tests/$target.rs failed, or ran over $((limit + 30)) s" >&2
  exit 1
fi
check=$(secs "$start" "$(now)")

start=$(now)
status=0
bounded cargo rustc --all-features --profile check --test "$target" \
  --quiet -- --cfg tower_ops_check_mistake >"$log" 2>&1 || status=$?
mistake=$(secs "$start" "$(now)")
case $status in
  0)
    echo "check_time: the deliberate mistake in tests/$target.rs compiled" >&2
    exit 1
    ;;
  124)
    echo "check_time: the deliberate mistake was not reported within $((limit + 30)) s" >&2
    exit 1
    ;;
esac
if ! grep -q 'error\[E0277\]' "$log"; then
  cat "$log" >&2
  echo "check_time: expected E0277 from the deliberate mistake (above)" >&2
  exit 1
fi

echo "cargo check of tests/$target.rs: $check s"
echo "its deliberate mistake reported in: $mistake s"
for t in "$check" "$mistake"; do
  if over "$t"; then
    echo "check_time: $t s is over the limit of $limit s" >&2
    exit 1
  fi
done
