#!/usr/bin/env bash
# The project's whole default test run: installs what the tests need, then
# formatting, lints and every test of the workspace. Long soaks and benchmarks
# have their own commands (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\n== %s\n' "$*"; }

# Debian packages the tests drive as real, independent peers.
need_debs=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_debs+=(mosquitto)
command -v socat >/dev/null 2>&1 || need_debs+=(socat)
# The packaging tests: systemd-analyze verify/security, dpkg-deb, lintian.
command -v systemd-analyze >/dev/null 2>&1 || need_debs+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need_debs+=(dpkg)
command -v lintian >/dev/null 2>&1 || need_debs+=(lintian)
# The panel's browser tests: Debian's Chromium driven by playwright-core under Node.
[ -x /usr/bin/chromium ] || need_debs+=(chromium)
# The PostgreSQL history tests start their own server (initdb into a temporary directory).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_debs+=(postgresql)
command -v node >/dev/null 2>&1 || need_debs+=(nodejs)
command -v npm >/dev/null 2>&1 || need_debs+=(npm)
if [ ${#need_debs[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_debs[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_debs[@]}" >/dev/null
  # The tests start their own broker on a free port; the packaged service is not wanted.
  if command -v systemctl >/dev/null 2>&1; then
    $sudo_cmd systemctl disable --now mosquitto >/dev/null 2>&1 || true
    $sudo_cmd systemctl disable --now postgresql >/dev/null 2>&1 || true
  fi
fi

# Independent Python implementations (Sparkplug, Modbus) in a private venv.
say "python tools (.venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
export SYSTEM_TESTS_PYTHON="$root/.venv/bin/python"

# playwright-core at the locked version; it drives /usr/bin/chromium (never downloads one).
say "browser test driver (npm ci in tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# The Eclipse Paho interoperability suites (host-app/tests/broker_paho.rs): a peer's code,
# kept beside the repository, not in it.
export PAHO_MQTT_TESTING="${PAHO_MQTT_TESTING:-$root/../shared/paho-mqtt-testing}"
if [ ! -f "$PAHO_MQTT_TESTING/run_suite.py" ]; then
  echo "the Paho suites are missing at $PAHO_MQTT_TESTING (set PAHO_MQTT_TESTING)" >&2
  exit 1
fi

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The end-to-end tests run the binaries as child processes: build them first, fresh.
say "cargo build (binaries)"
cargo build --workspace --bins --locked

say "cargo test"
cargo test --workspace --locked
