#!/usr/bin/env bash
# System packages the tests use: a real Mosquitto broker, a real PostgreSQL server (the store suite
# runs on it too; tests start their own on free ports) and Chromium for the dashboard test.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package starts a broker on :1883; the tests start their own on free ports.
$SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
$SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true  # likewise its cluster on :5432
echo "installed: ${need[*]}"
