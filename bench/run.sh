#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md, in one command:
#   bench/run.sh [SECONDS]          (default 10 s per ingest run)
# Builds the release binary and the load generators, then
#  1. ingest: `appliance serve` with durability = "full" on a temporary
#     database, driven with signed ~1.5 KB Standard Webhooks events at 16 and
#     then 64 connections from the same machine;
#  2. outbox: the same, with a route to a local receiver that answers 200 at
#     once: first-attempt delay with the outbox idle, then deliveries/s for a
#     burst of 20,000 events.
# Each run prints one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
port="${BENCH_PORT:-18080}"
rport="${BENCH_RECEIVER_PORT:-18090}"
cargo build --release --quiet --bin appliance --example loadgen --example outbox_bench

dir="$(mktemp -d)"
secret="whsec_$(head -c 24 /dev/urandom | base64)"
printf '%s' "$secret" > "$dir/secret"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

serve() { # $1: config file
  target/release/appliance serve --config "$1" >/dev/null &
  pid=$!
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.05
  done
  echo "appliance did not start" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

config() { # $1: db name, $2: extra TOML
  cat > "$dir/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[storage]
path = "$dir/$1.db"
durability = "full"
[log]
level = "warn"
[providers.bench]
kind = "standard-webhooks"
secret_file = "$dir/secret"
$2
TOML
}

echo "machine: $(nproc) cores, $(uname -sr); durability=full"
config ingest ""
serve "$dir/ingest.toml"
for c in 16 64; do
  target/release/examples/loadgen --url "http://127.0.0.1:$port/webhooks/bench" \
    --secret "$secret" --connections "$c" --seconds "$seconds"
done
stop

config outbox "[[providers.bench.routes]]
url = \"http://127.0.0.1:$rport/hook\"
concurrency = 32"
serve "$dir/outbox.toml"
target/release/examples/outbox_bench --url "http://127.0.0.1:$port/webhooks/bench" \
  --secret "$secret" --receiver-port "$rport" --events 20000
stop
