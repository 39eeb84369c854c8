#!/usr/bin/env bash
# The whole product on loopback: the plant simulator, an edge node polling it, the host
# with its embedded broker, history and HTTP API. Runs until Ctrl-C.
#
#   ./demo.sh [--broker-port 1883] [--http-port 8080] [--ui-port 8443] [--state-dir DIR]
set -euo pipefail
cd "$(dirname "$0")"

broker_port=1883
http_port=8080
ui_port=8443
state_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --broker-port) broker_port="${2:?--broker-port needs a port}"; shift 2 ;;
    --http-port) http_port="${2:?--http-port needs a port}"; shift 2 ;;
    --ui-port) ui_port="${2:?--ui-port needs a port}"; shift 2 ;;
    --state-dir) state_dir="${2:?--state-dir needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$broker_port:broker (--broker-port)" "$http_port:HTTP API (--http-port)" "$ui_port:edge node UI (--ui-port)"; do
  port=${p%%:*}
  if port_taken "$port"; then
    echo "demo.sh: 127.0.0.1:$port is already in use; the ${p#*:} needs it. Stop what holds it or pick another port." >&2
    exit 1
  fi
done

echo "building (release)..."
cargo build --release --locked -q -p edge-node -p host-app --bins
bin=target/release

state_dir=${state_dir:-$(mktemp -d -t sparkplug-demo.XXXXXX)}
mkdir -p "$state_dir"
logs="$state_dir/logs"
mkdir -p "$logs"

# Plain logs: they go to files.
export NO_COLOR=1

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  # Reverse order: the edge node publishes NDEATH, the host its STATE offline.
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; wait "${pids[$i]}" 2>/dev/null || true; done
  echo "stopped; history and logs stay in $state_dir"
}
# Ctrl-C (or SIGTERM) is the normal way out: stop everything and exit 0.
trap 'stop; exit 0' INT TERM
trap stop EXIT

# The plant picks its own port and says which.
"$bin/plant-sim" --listen 127.0.0.1:0 >"$logs/plant-sim.out" 2>"$logs/plant-sim.log" &
pids+=($!)
plant_addr=""
for _ in $(seq 1 100); do
  plant_addr=$(sed -n 's/^listening on //p' "$logs/plant-sim.out" | head -n 1)
  [ -n "$plant_addr" ] && break
  sleep 0.1
done
[ -n "$plant_addr" ] || { echo "demo.sh: plant-sim did not start; see $logs/plant-sim.log" >&2; exit 1; }

fill() {
  sed -e "s|@PLANT_PORT@|${plant_addr##*:}|g" -e "s|@BROKER_PORT@|$broker_port|g" \
      -e "s|@HTTP_PORT@|$http_port|g" -e "s|@UI_PORT@|$ui_port|g" -e "s|@STATE_DIR@|$state_dir|g" "$1" >"$2"
}
# One random password per broker account, kept across runs in the state directory.
mkdir -p "$state_dir/secrets"
chmod 700 "$state_dir/secrets"
for account in host gateway-1 viewer; do
  secret="$state_dir/secrets/mqtt-$account"
  [ -s "$secret" ] || (umask 077; head -c 18 /dev/urandom | base64 >"$secret")
done
fill config/demo/host-app.toml "$state_dir/host-app.toml"
fill config/demo/edge-node.toml "$state_dir/edge-node.toml"

"$bin/host-app" run --config "$state_dir/host-app.toml" >"$logs/host-app.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  port_taken "$http_port" && port_taken "$broker_port" && break
  kill -0 "${pids[1]}" 2>/dev/null || { echo "demo.sh: host-app stopped; see $logs/host-app.log" >&2; tail -n 5 "$logs/host-app.log" >&2; exit 1; }
  sleep 0.1
done

"$bin/edge-node" --config "$state_dir/edge-node.toml" >"$logs/edge-node.log" 2>&1 &
pids+=($!)

# No account yet: the host logs a one-time setup link (first start of this state dir).
setup_link=""
for _ in $(seq 1 50); do
  setup_link=$(grep -o 'http://[^ "]*/setup?token=[A-Za-z0-9_-]*' "$logs/host-app.log" | tail -n 1 || true)
  [ -n "$setup_link" ] && break
  sleep 0.1
done
if [ -n "$setup_link" ]; then
  first_login="create the first admin: $setup_link"
else
  first_login="log in with an account of $state_dir (or: $bin/host-app user --config $state_dir/host-app.toml add NAME --role admin)"
fi

# The edge node's UI logs its own setup link (first start of its state dir).
ui_setup=""
for _ in $(seq 1 50); do
  ui_setup=$(grep -o 'https://[^ "]*/setup?token=[A-Za-z0-9_-]*' "$logs/edge-node.log" | tail -n 1 || true)
  [ -n "$ui_setup" ] && break
  sleep 0.1
done
if [ -n "$ui_setup" ]; then
  ui_login="create its first admin: $ui_setup"
else
  ui_login="log in with an account of $state_dir/edge-ui (or: $bin/edge-node user --config $state_dir/edge-node.toml add NAME --role admin)"
fi

cat <<MSG

The demo is running (Ctrl-C stops it):
  plant simulator   modbus://$plant_addr  (units 1 tank farm, 2 compressor, 3 power meter)
  MQTT broker       mqtt://127.0.0.1:$broker_port
  panel             http://127.0.0.1:$http_port/
                    $first_login
  JSON API          http://127.0.0.1:$http_port/api/tree  (after login, or with an API token)
  edge node UI      https://127.0.0.1:$ui_port/  (self-signed certificate)
                    $ui_login
  watch the wire    $bin/host-app spy --broker mqtt://127.0.0.1:$broker_port
                      --username viewer --password-file $state_dir/secrets/mqtt-viewer
  history, logs     $state_dir
MSG

# Ends when any part stops by itself (or on Ctrl-C through the trap).
wait -n "${pids[@]}" || true
echo "demo.sh: a part stopped by itself; see $logs" >&2
exit 1
