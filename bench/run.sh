#!/usr/bin/env bash
# The ingest benchmark of BENCHMARKS.md, in one command:
#   bench/run.sh [SECONDS]          (default 10 s per run)
# Builds the release binary and the load generator, starts `appliance serve`
# with durability = "full" on a temporary database, and drives it with signed
# ~1.5 KB Standard Webhooks events at 16 and then 64 connections from the
# same machine. Each run prints one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
port="${BENCH_PORT:-18080}"
cargo build --release --quiet --bin appliance --example loadgen

dir="$(mktemp -d)"
secret="whsec_$(head -c 24 /dev/urandom | base64)"
printf '%s' "$secret" > "$dir/secret"
cat > "$dir/bench.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[storage]
path = "$dir/bench.db"
durability = "full"
[log]
level = "warn"
[providers.bench]
kind = "standard-webhooks"
secret_file = "$dir/secret"
TOML

target/release/appliance serve --config "$dir/bench.toml" >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.05
done

echo "machine: $(nproc) cores, $(uname -sr); durability=full; ${seconds}s per run"
for c in 16 64; do
  target/release/examples/loadgen --url "http://127.0.0.1:$port/webhooks/bench" \
    --secret "$secret" --connections "$c" --seconds "$seconds"
done
echo "stored events: $(target/release/appliance events list --config "$dir/bench.toml" --json --limit 1 | head -c 200)"
