#!/usr/bin/env bash
# End-to-end attack suite: two deliberately vulnerable apps (PHP's built-in
# server, Flask), each behind its own sessiongate, attacked by e2e/attacks.py
# straight and through the gateway; then a real browser (Debian's headless
# Chromium driven by e2e/browser/gateway.test.mjs) through the PHP gateway.
# Exit code: non-zero when pytest or the browser test failed.
#
#   e2e/run.sh [pytest args...]        e.g. e2e/run.sh -k php -x
#
# SESSIONGATE_BIN overrides the gateway binary (default target/debug/sessiongate,
# built with `cargo build` when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# --- Debian packages -------------------------------------------------------
need_pkgs=()
command -v php >/dev/null || need_pkgs+=(php-cli)
command -v openssl >/dev/null || need_pkgs+=(openssl)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
command -v node >/dev/null || need_pkgs+=(nodejs)
command -v npm >/dev/null || need_pkgs+=(npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update
  $sudo_ apt-get install -y "${need_pkgs[@]}"
fi

# --- Python virtualenv -----------------------------------------------------
venv=$root/e2e/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c 'import flask, requests, pytest' 2>/dev/null; then
  "$venv/bin/pip" install -q flask requests pytest
fi
py=$venv/bin/python
export PYTHONDONTWRITEBYTECODE=1

# --- the browser test's playwright-core (no browser download: Debian's) ----
(cd "$root/e2e/browser" && npm ci --no-audit --no-fund --loglevel=error)

# --- gateway binary --------------------------------------------------------
gw_bin=${SESSIONGATE_BIN:-$root/target/debug/sessiongate}
if [ ! -x "$gw_bin" ]; then
  cargo build
fi

# --- everything started below is stopped here, by PID ----------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/sessiongate-e2e.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] && [ -z "${E2E_KEEP:-}" ]; then
    for f in "$work"/gateway-*.log "$work"/php.log "$work"/flask.log; do
      [ -s "$f" ] || continue
      echo "--- last lines of $(basename "$f") ---" >&2
      tail -n 20 "$f" >&2
    done
  fi
  if [ -n "${E2E_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (bounded) until 127.0.0.1:$1 accepts a connection; $2 is the PID that
# should be listening there.
wait_port() {
  local port=$1 pid=$2 name=$3 i
  for i in $(seq 1 200); do
    if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "$name exited before listening" >&2; return 1; }
    sleep 0.05
  done
  echo "$name did not listen on port $port within 10s" >&2
  return 1
}

# Waits (bounded) for the gateway's JSON "listening" line and prints its port.
gateway_port() {
  local log=$1 pid=$2 i line
  for i in $(seq 1 400); do
    line=$(grep -m1 '"listening"' "$log" 2>/dev/null || true)
    if [ -n "$line" ]; then
      sed -E 's/.*"addr":"127\.0\.0\.1:([0-9]+)".*/\1/' <<<"$line"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "gateway exited: see $log" >&2; return 1; }
    sleep 0.05
  done
  echo "gateway did not report listening within 20s" >&2
  return 1
}

# --- throwaway CA and a leaf for localhost / 127.0.0.1 ----------------------
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca.key -out ca.crt -days 2 -subj "/CN=sessiongate e2e throwaway CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout leaf.key -out leaf.csr -subj "/CN=localhost" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out leaf.crt -days 2 -extfile leaf.ext 2>/dev/null
  cat leaf.crt ca.crt >chain.crt
)

# --- the apps ----------------------------------------------------------------
mkdir -p "$work/php-sessions"
php_port=$(free_port)
php -S "127.0.0.1:$php_port" -t "$root/e2e/php" \
  -d session.use_trans_sid=1 -d session.use_only_cookies=0 \
  -d session.use_strict_mode=0 -d session.use_cookies=1 \
  -d session.save_path="$work/php-sessions" -d session.gc_probability=0 \
  -d display_errors=0 -d log_errors=1 \
  >"$work/php.log" 2>&1 &
pids+=($!)
php_pid=$!

flask_port=$(free_port)
SG_E2E_ORACLE="$work/flask-sessions.txt" "$py" "$root/e2e/flask/app.py" "$flask_port" \
  >"$work/flask.log" 2>&1 &
pids+=($!)
flask_pid=$!

wait_port "$php_port" "$php_pid" "php -S"
wait_port "$flask_port" "$flask_pid" "flask"

# --- one gateway per app ----------------------------------------------------
# Test-only settings: the limits on new sessions and unknown tokens are per
# client address, and every client here is 127.0.0.1.
write_config() { # name upstream_port session_cookies script_readable login_rule logout_path
  cat >"$work/$1.toml" <<EOF
[listen]
https = "127.0.0.1:0"

[log]
format = "json"
level = "info"

[[site]]
name = "$1"
hosts = ["localhost"]

[site.tls]
cert = "$work/chain.crt"
key = "$work/leaf.key"

[site.upstream]
url = "http://127.0.0.1:$2"

[site.session]
cookies = $3
create_per_minute = 100000
create_burst = 100000
unknown_token_per_minute = 100000
unknown_token_burst = 100000

[site.cookies]
script_readable = $4

[[site.login]]
$5

[[site.logout]]
path = "$6"
EOF
}

write_config php "$php_port" '["PHPSESSID"]' '["prefs"]' \
  'method = "POST"
path = "/login.php"
status = [302]
location_not = "*login*"' \
  /logout.php
write_config flask "$flask_port" '["session"]' '[]' \
  'method = "POST"
path = "/login"
status = [302]
on_session_cookie = true' \
  /logout

"$gw_bin" check --config "$work/php.toml" >"$work/check-php.log" 2>&1 || { cat "$work/check-php.log" >&2; exit 1; }
"$gw_bin" check --config "$work/flask.toml" >"$work/check-flask.log" 2>&1 || { cat "$work/check-flask.log" >&2; exit 1; }

"$gw_bin" run --config "$work/php.toml" >"$work/gateway-php.log" 2>&1 &
pids+=($!)
gw_php_pid=$!
"$gw_bin" run --config "$work/flask.toml" >"$work/gateway-flask.log" 2>&1 &
pids+=($!)
gw_flask_pid=$!
gw_php_port=$(gateway_port "$work/gateway-php.log" "$gw_php_pid")
gw_flask_port=$(gateway_port "$work/gateway-flask.log" "$gw_flask_pid")

# --- the suite ---------------------------------------------------------------
export E2E_CA="$work/ca.crt"
export E2E_PHP_DIRECT="http://127.0.0.1:$php_port"
export E2E_PHP_GATEWAY="https://localhost:$gw_php_port"
export E2E_PHP_SESSION_DIR="$work/php-sessions"
export E2E_PHP_SCRIPT_READABLE="prefs"
export E2E_FLASK_DIRECT="http://127.0.0.1:$flask_port"
export E2E_FLASK_GATEWAY="https://localhost:$gw_flask_port"
export E2E_FLASK_ORACLE="$work/flask-sessions.txt"
export E2E_FLASK_SCRIPT_READABLE=""

set +e
"$py" -m pytest -p no:cacheprovider -q "$root/e2e/attacks.py" "$@"
rc=$?
set -e

# --- a real browser through the PHP gateway ----------------------------------
# It trusts exactly the test leaf's key, never any certificate error.
export E2E_LEAF_CERT="$work/leaf.crt"
E2E_LEAF_SPKI=$(openssl x509 -in "$work/leaf.crt" -pubkey -noout |
  openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
export E2E_LEAF_SPKI
export E2E_CHROMIUM=/usr/bin/chromium
export E2E_BROWSER_SCREENSHOT="${E2E_BROWSER_SCREENSHOT:-/tmp/browser-login.png}"
set +e
(cd "$root/e2e/browser" && node --test gateway.test.mjs)
browser_rc=$?
set -e
echo "e2e: pytest exit $rc, browser test exit $browser_rc"
[ "$rc" -ne 0 ] && exit "$rc"
exit "$browser_rc"
