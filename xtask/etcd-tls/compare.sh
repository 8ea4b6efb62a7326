#!/usr/bin/env bash
# ALPO without TLS, ALPO with TLS and etcd with TLS, side by side (issue 16): per repetition and
# client count, `cargo xtask bench cluster --tls both` (ALPO plain, then ALPO+TLS, each on a fresh
# cluster), then `etcd-tls.sh sweep` (etcd+TLS, a fresh cluster), so all three see the same machine
# load; then one report of medians (`cargo xtask bench report`: ALPO+TLS rows are compared with
# etcd+TLS). Run it from the repository root, under the shared lock if others use the machine.
#
# usage: xtask/etcd-tls/compare.sh OUTDIR
#   env: REPS (3), CLIENTS ("1 64 256"), DURATION (4), WARMUP (1), ALPO (target/release/alpo;
#        built if missing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: compare.sh OUTDIR}
REPS=${REPS:-3}
CLIENTS=${CLIENTS:-"1 64 256"}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
ALPO=${ALPO:-target/release/alpo}
[ -x "$ALPO" ] || cargo build --release -p alpo-cli
mkdir -p "$out/alpo"
"$here/etcd-tls.sh" certs >/dev/null
"$here/etcd-tls.sh" loadgen
for rep in $(seq 1 "$REPS"); do
  for c in $CLIENTS; do
    cargo xtask bench cluster --alpo "$ALPO" --tls both --clients "$c" --reps 1 \
      --duration "$DURATION" --warmup "$WARMUP" --out "$out/alpo"
    REP_FIRST=$rep REPS=1 CLIENTS=$c DURATION=$DURATION WARMUP=$WARMUP \
      "$here/etcd-tls.sh" sweep "$out/etcd-tls.jsonl"
  done
done
cat "$out"/alpo/bench-*.jsonl >"$out/alpo.jsonl"
cargo xtask bench report "$out/alpo.jsonl" "$out/etcd-tls.jsonl"
