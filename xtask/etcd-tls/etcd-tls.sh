#!/usr/bin/env bash
# etcd 3.4 with TLS on both ports, the reference for ALPO with TLS (issue 16).
#
# The same 3-member loopback cluster as the etcd reference kit's etcd/cluster.sh (same ports, same
# flags, fsync on), with https client and peer URLs and mutual TLS on both: --client-cert-auth and
# --peer-client-cert-auth, every certificate from one CA made here with openssl (EC P-256, like the
# certificates `alpo certs init` makes; IP SAN 127.0.0.1). The load generator is the kit's loadgen,
# built from a copy with loadgen-tls.patch applied (etcd-client's `tls` feature, rustls with ring,
# as ALPO uses; flags --cacert/--cert/--key); the kit itself is not changed.
#
# Usage: etcd-tls.sh certs|loadgen|up|down|status|endpoints|check|sweep OUT.jsonl
#   certs      make the CA, the members' and the client's certificates (once; kept in $CERTS)
#   loadgen    build the patched loadgen (once; in $BUILD)
#   up|down    start / stop the cluster (data under $BASE, removed by down)
#   check      show that TLS is really on: plain HTTP, and HTTPS without a client certificate,
#              are refused; HTTPS with the client certificate is served
#   sweep OUT  as the kit's etcd/sweep.sh (same env: REPS, CLIENTS, DURATION, WARMUP, VALUE_SIZE,
#              CONNS, OP; and REP_FIRST, the first repetition's number), a fresh cluster per run;
#              lines say "backend":"etcd+tls"
# env: ETCD_BENCH (the kit, default ../shared/bench from the repository root), ETCD_TLS_BASE
#      (/tmp/etcd-tls-anchor), ETCD_TLS_CERTS (/tmp/etcd-tls-certs), ETCD_TLS_BUILD
#      (/tmp/etcd-tls-loadgen), ETCD_BIN (etcd), ETCDCTL_BIN (etcdctl)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
KIT=${ETCD_BENCH:-$root/../shared/bench}
BASE=${ETCD_TLS_BASE:-/tmp/etcd-tls-anchor}
CERTS=${ETCD_TLS_CERTS:-/tmp/etcd-tls-certs}
BUILD=${ETCD_TLS_BUILD:-/tmp/etcd-tls-loadgen}
ETCD_BIN=${ETCD_BIN:-etcd}
ETCDCTL_BIN=${ETCDCTL_BIN:-etcdctl}
LOADGEN="$BUILD/target/release/loadgen"
HOST=127.0.0.1
CLIENT_PORTS=(23791 23792 23793)
PEER_PORTS=(23801 23802 23803)
NAMES=(a1 a2 a3)
TOKEN=etcd-anchor

endpoints() {
  local out=() i
  for i in 0 1 2; do out+=("$HOST:${CLIENT_PORTS[$i]}"); done
  (IFS=,; echo "${out[*]}")
}

initial_cluster() {
  local out=() i
  for i in 0 1 2; do out+=("${NAMES[$i]}=https://$HOST:${PEER_PORTS[$i]}"); done
  (IFS=,; echo "${out[*]}")
}

ctl() {
  "$ETCDCTL_BIN" --endpoints="$(endpoints)" --cacert="$CERTS/ca.pem" \
    --cert="$CERTS/client.pem" --key="$CERTS/client-key.pem" "$@"
}

# One certificate signed by the CA: NAME, subject CN, extended key usages, subject alt names.
sign() {
  local name=$1 cn=$2 eku=$3 san=$4
  openssl ecparam -name prime256v1 -genkey -noout -out "$CERTS/$name-key.pem.tmp"
  openssl pkcs8 -topk8 -nocrypt -in "$CERTS/$name-key.pem.tmp" -out "$CERTS/$name-key.pem"
  rm -f "$CERTS/$name-key.pem.tmp"
  openssl req -new -key "$CERTS/$name-key.pem" -subj "/CN=$cn" -out "$CERTS/$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    if [ -n "$san" ]; then echo "subjectAltName=$san"; fi
  } >"$CERTS/$name.ext"
  openssl x509 -req -in "$CERTS/$name.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca-key.pem" \
    -CAcreateserial -days 30 -sha256 -extfile "$CERTS/$name.ext" -out "$CERTS/$name.pem" 2>/dev/null
  rm -f "$CERTS/$name.csr" "$CERTS/$name.ext"
}

certs() {
  if [ -f "$CERTS/client.pem" ]; then echo "certificates already in $CERTS"; return 0; fi
  mkdir -p "$CERTS"
  openssl ecparam -name prime256v1 -genkey -noout -out "$CERTS/ca-key.pem"
  openssl req -new -x509 -key "$CERTS/ca-key.pem" -subj "/CN=etcd-tls-anchor CA" -days 30 \
    -sha256 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$CERTS/ca.pem"
  # One certificate for every member: it serves clients and peers and dials peers.
  sign member etcd-member serverAuth,clientAuth "IP:$HOST,DNS:localhost"
  sign client etcd-client clientAuth ""
  echo "certificates in $CERTS (ca.pem, member.pem, client.pem and their keys)"
}

loadgen() {
  if [ -x "$LOADGEN" ] && [ "$LOADGEN" -nt "$here/loadgen-tls.patch" ]; then return 0; fi
  if [ ! -d "$KIT/loadgen/src" ]; then
    echo "the etcd reference kit's loadgen is not in $KIT/loadgen; set ETCD_BENCH" >&2
    exit 1
  fi
  mkdir -p "$BUILD"
  rm -rf "$BUILD/src"
  cp -r "$KIT/loadgen/src" "$KIT/loadgen/Cargo.toml" "$KIT/loadgen/Cargo.lock" "$BUILD/"
  (cd "$BUILD" && patch -s -p1 <"$here/loadgen-tls.patch")
  cargo build --release --quiet --manifest-path "$BUILD/Cargo.toml"
}

up() {
  if [ -d "$BASE" ] && ls "$BASE"/*.pid >/dev/null 2>&1; then
    echo "cluster appears to be up already ($BASE/*.pid exist); run '$0 down' first" >&2
    exit 1
  fi
  certs >/dev/null
  mkdir -p "$BASE"
  local ic; ic=$(initial_cluster)
  local i
  for i in 0 1 2; do
    local n=${NAMES[$i]} cp=${CLIENT_PORTS[$i]} pp=${PEER_PORTS[$i]}
    mkdir -p "$BASE/$n.data"
    # No --unsafe-no-fsync: WAL is fdatasync'd before a write is acknowledged.
    nohup "$ETCD_BIN" \
      --name "$n" \
      --data-dir "$BASE/$n.data" \
      --listen-client-urls "https://$HOST:$cp" \
      --advertise-client-urls "https://$HOST:$cp" \
      --listen-peer-urls "https://$HOST:$pp" \
      --initial-advertise-peer-urls "https://$HOST:$pp" \
      --initial-cluster "$ic" \
      --initial-cluster-token "$TOKEN" \
      --initial-cluster-state new \
      --cert-file "$CERTS/member.pem" --key-file "$CERTS/member-key.pem" \
      --trusted-ca-file "$CERTS/ca.pem" --client-cert-auth \
      --peer-cert-file "$CERTS/member.pem" --peer-key-file "$CERTS/member-key.pem" \
      --peer-trusted-ca-file "$CERTS/ca.pem" --peer-client-cert-auth \
      --logger zap --log-outputs stderr \
      >"$BASE/$n.log" 2>&1 </dev/null &
    echo $! >"$BASE/$n.pid"
  done
  local t
  for t in $(seq 1 60); do
    if ctl --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1; then
      echo "etcd cluster (TLS) healthy: $(endpoints) (pids: $(cat "$BASE"/*.pid | tr '\n' ' '))"
      ctl endpoint status -w table
      return 0
    fi
    sleep 0.5
  done
  echo "cluster did not become healthy in 30s; logs in $BASE/*.log" >&2
  exit 1
}

down() {
  local f pid
  shopt -s nullglob
  for f in "$BASE"/*.pid; do
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  done
  for f in "$BASE"/*.pid; do
    pid=$(cat "$f")
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$BASE"
  echo "etcd cluster down; removed $BASE"
}

# Each probe must come out as expected, or the check fails.
check() {
  local url="$HOST:${CLIENT_PORTS[0]}" ok=1 out
  out=$(curl -sS -m 3 "http://$url/health" 2>&1) && {
    echo "FAIL plain http://$url/health was served: $out"; ok=0; } ||
    echo "ok   plain HTTP refused: $out"
  out=$(curl -sS -m 3 --cacert "$CERTS/ca.pem" "https://$url/v3/maintenance/status" -X POST \
    -d '{}' 2>&1) && { echo "FAIL HTTPS without a client certificate was served: $out"; ok=0; } ||
    echo "ok   HTTPS without a client certificate refused: $out"
  out=$(curl -sS -m 3 --cacert "$CERTS/ca.pem" --cert "$CERTS/client.pem" \
    --key "$CERTS/client-key.pem" "https://$url/v3/maintenance/status" -X POST -d '{}' 2>&1) &&
    echo "ok   HTTPS with the client certificate served: ${out:0:80}..." || {
    echo "FAIL HTTPS with the client certificate refused: $out"; ok=0; }
  out=$("$ETCDCTL_BIN" --endpoints="$url" --dial-timeout=2s --command-timeout=2s \
    endpoint health 2>&1) && { echo "FAIL etcdctl without TLS was served: $out"; ok=0; } ||
    echo "ok   etcdctl without TLS refused"
  [ "$ok" = 1 ]
}

cpu_ticks() { # sum utime+stime of the given pids
  local t=0 p
  for p in "$@"; do
    t=$(( t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}') ))
  done
  echo $t
}

# As the kit's etcd/sweep.sh, with TLS.
sweep() {
  local out=${1:?usage: $0 sweep OUT.jsonl}
  local reps=${REPS:-3} clients=${CLIENTS:-"1 8 64 256"} duration=${DURATION:-15}
  local warmup=${WARMUP:-3} value_size=${VALUE_SIZE:-128} conns=${CONNS:-1} op=${OP:-put}
  certs >/dev/null
  loadgen
  local eps tck rep c pids t0 t1 line lg ec
  eps=$(endpoints)
  tck=$(getconf CLK_TCK)
  trap '"$0" down >/dev/null 2>&1 || true' EXIT
  for rep in $(seq "${REP_FIRST:-1}" "$((${REP_FIRST:-1} + reps - 1))"); do
    for c in $clients; do
      up >/dev/null
      pids=$(cat "$BASE"/*.pid)
      t0=$(cpu_ticks $pids)
      line=$(/usr/bin/time -f '%U %S' -o "$BASE/loadgen.time" \
        "$LOADGEN" --backend etcd --endpoints "$eps" --clients "$c" --conns "$conns" --op "$op" \
          --value-size "$value_size" --duration "$duration" --warmup "$warmup" \
          --cacert "$CERTS/ca.pem" --cert "$CERTS/client.pem" --key "$CERTS/client-key.pem" \
          2>"$BASE/loadgen.err")
      t1=$(cpu_ticks $pids)
      lg=$(awk '{printf "%.2f", $1 + $2}' "$BASE/loadgen.time")
      ec=$(awk -v d=$((t1 - t0)) -v h="$tck" 'BEGIN{printf "%.2f", d / h}')
      line="${line/\"backend\":\"etcd\"/\"backend\":\"etcd+tls\"}"
      line="${line%\}},\"rep\":$rep,\"etcd_cpu_s\":$ec,\"loadgen_cpu_s\":$lg,\"tls\":true}"
      echo "$line" | tee -a "$out"
      down >/dev/null
    done
  done
}

case "${1:-}" in
  certs) certs ;;
  loadgen) loadgen ;;
  up) up ;;
  down) down ;;
  status) ctl endpoint status -w table ;;
  endpoints) endpoints ;;
  check) check ;;
  sweep) sweep "${2:-}" ;;
  *) echo "usage: $0 certs|loadgen|up|down|status|endpoints|check|sweep OUT.jsonl" >&2; exit 2 ;;
esac
