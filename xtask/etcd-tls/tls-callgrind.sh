#!/usr/bin/env bash
# Instructions per committed write on the leader, plain vs TLS (issue 16), counted by
# valgrind's callgrind: repeatable where wall-clock throughput on a shared machine is not.
#
# Starts 3 `alpo node` processes on free loopback ports, node 1 under callgrind (the others wait
# longer before an election, so node 1 leads), loads it with `alpo bench` for a warm-up, zeroes
# the counters, loads it for SECONDS more, dumps the counters, and prints one JSON line: the
# instructions node 1 executed per write committed in that window, in total and in the TLS
# code (functions of rustls and ring, inclusive of what they call) and their share.
#
# usage: tls-callgrind.sh ALPO plain|tls OUTDIR [CLIENTS (64)] [SECONDS (10)]
#   ALPO: the release binary (target/release/alpo). OUTDIR keeps callgrind.out and the logs.
set -euo pipefail
alpo=$(realpath "${1:?usage: $0 ALPO plain|tls OUTDIR [CLIENTS] [SECONDS]}")
mode=${2:?plain or tls}
out=${3:?OUTDIR}
clients=${4:-64}
seconds=${5:-10}
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d /tmp/alpo-tls-callgrind.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

read -r -a ports < <(python3 -c '
import socket
s = [socket.socket() for _ in range(7)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
peer() { echo "127.0.0.1:${ports[$(($1 - 1))]}"; }
client() { echo "127.0.0.1:${ports[$(($1 + 2))]}"; }
metrics="127.0.0.1:${ports[6]}"

node_tls=() client_tls=()
if [ "$mode" = tls ]; then
  "$alpo" certs init "$work/certs" >/dev/null
  client_tls=(--tls-ca "$work/certs/ca.pem" --tls-cert "$work/certs/client.pem"
    --tls-key "$work/certs/client-key.pem")
elif [ "$mode" != plain ]; then
  echo "mode must be plain or tls" >&2; exit 2
fi

start() { # ID, then a command prefix (e.g. valgrind ...), then extra flags after --
  local id=$1; shift
  local prefix=()
  while [ "$1" != -- ]; do prefix+=("$1"); shift; done
  shift
  local args=(node --cluster-id 7 --id "$id" --data-dir "$work/node-$id"
    --peer-addr "$(peer "$id")" --client-addr "$(client "$id")")
  local j
  for j in 1 2 3; do
    [ "$j" = "$id" ] || args+=(--peer "$j=$(peer "$j"),$(client "$j")")
  done
  if [ "$mode" = tls ]; then
    args+=(--tls-ca "$work/certs/ca.pem" --tls-cert "$work/certs/node-$id.pem"
      --tls-key "$work/certs/node-$id-key.pem")
  fi
  "${prefix[@]}" "$alpo" "${args[@]}" "$@" >"$out/node-$id.log" 2>&1 &
  pids+=($!)
}

start 1 valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" -- \
  --passive-timeout-ms-min 2000 --passive-timeout-ms-max 2001 --metrics-addr "$metrics"
# Nodes 2 and 3 wait much longer, and tolerate a leader slowed down by callgrind.
for id in 2 3; do
  start "$id" -- --heartbeat-interval-ms 500 --passive-timeout-ms-min 20000 \
    --passive-timeout-ms-max 30000 --election-cycle-ms-min 20000 --election-cycle-ms-max 30000
done
vg=${pids[0]}

commit() { # node 1's commit index, from its metrics (plain HTTP: no TLS handshake counted)
  curl -sf "http://$metrics/metrics" | awk '$1 == "alpo_commit_index" { print $2 }'
}

for _ in $(seq 1 120); do
  if curl -sf "http://$metrics/metrics" | grep -q '^alpo_role{role="leader"} 1'; then break; fi
  sleep 1
done
# One bench run: its sessions connect (TLS handshakes) and warm up before the counters are zeroed,
# so the window holds only steady traffic; the dump follows the end of the run.
warmup=8
"$alpo" bench --cluster-id 7 --endpoints "$(client 1)" --clients "$clients" --json \
  --warmup "$warmup" --duration "$seconds" --timeout-ms 60000 "${client_tls[@]}" >"$out/bench.json" &
bench_pid=$!
sleep "$((warmup - 1))"
callgrind_control -z "$vg" >/dev/null
c0=$(commit)
wait "$bench_pid"
c1=$(commit)
callgrind_control -d "$vg" >/dev/null
sleep 1
# The dump after zeroing is the last file callgrind wrote.
dump=$(ls -t "$out"/callgrind.out* | head -n 1)
callgrind_annotate --auto=no --inclusive=no --threshold=100 "$dump" >"$out/exclusive.txt" 2>/dev/null
callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$dump" >"$out/inclusive.txt" 2>/dev/null
python3 - "$out" "$mode" "$clients" "$c0" "$c1" <<'EOF'
import json, re, sys
out, mode, clients, c0, c1 = sys.argv[1:]
writes = max(int(c1) - int(c0), 1)

def costs(name):
    for line in open(f"{out}/{name}"):
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S.*)$", line)
        if m:
            yield int(m.group(1).replace(",", "")), m.group(2)

total = rustls_ring = stream_io = 0
for n, name in costs("exclusive.txt"):
    if "PROGRAM TOTALS" in name:
        total = n
    # Exclusive: rustls's and ring's own functions (what they call in libc counts elsewhere).
    elif re.search(r"rustls|\bring::|ring_core_", name):
        rustls_ring += n
stream = {}
for n, name in costs("inclusive.txt"):
    # Inclusive: every read and write of a socket through alpo_net::Stream (TLS or not). A
    # function may be listed under two spellings of its file (absolute and relative) with the
    # same calls: take the larger, not the sum.
    m = re.search(r"stream\.rs:<&alpo_net::stream::Stream as std::io::(Read>::read|Write>::write)",
                  name)
    if m:
        stream[m.group(1)] = max(stream.get(m.group(1), 0), n)
stream_io = sum(stream.values())
print(json.dumps({"mode": mode, "clients": int(clients), "writes": writes,
                  "ir_per_write": round(total / writes),
                  "stream_io_ir_per_write": round(stream_io / writes),
                  "rustls_ring_ir_per_write": round(rustls_ring / writes)}))
EOF
