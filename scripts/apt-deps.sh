#!/usr/bin/env bash
# System packages the tests use: a real Mosquitto broker and Chromium for the dashboard test.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package starts a broker on :1883; the tests start their own on free ports.
$SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
echo "installed: ${need[*]}"
