#!/usr/bin/env bash
# Create the broker's password file and ACL for a worker, a gateway and cameras.
#
#   deploy/mosquitto/make_users.sh OUTDIR DEVICE_ID...
#
# Writes OUTDIR/passwd (mosquitto_passwd hashes), OUTDIR/acl (deploy/mosquitto/acl plus one
# block per camera), and one password per user in OUTDIR/secrets/<user>.password (mode 0600):
# copy cam-<id>.password to that camera (its [transport.mqtt] password_file) and
# tokencast-worker.password to the workers. Existing passwords are kept; run again to add cameras.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 OUTDIR [DEVICE_ID...]" >&2
    exit 2
fi
out=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
passwd_bin=$(command -v mosquitto_passwd || echo /usr/bin/mosquitto_passwd)
umask 077
mkdir -p "$out/secrets"
touch "$out/passwd"

add_user() {
    local user=$1 secret="$out/secrets/$1.password"
    if [ ! -s "$secret" ]; then
        head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$secret"
    fi
    "$passwd_bin" -b "$out/passwd" "$user" "$(cat "$secret")"
}

add_user tokencast-worker
add_user tokencast-gateway
cp "$here/acl" "$out/acl.tmp"
for id in "$@"; do
    case $id in
        ''|*[!0-9]*) echo "device id must be a decimal integer, got '$id'" >&2; rm -f "$out/acl.tmp"; exit 2 ;;
    esac
    add_user "cam-$id"
    printf '\nuser cam-%s\ntopic write tokencast/%s/up\ntopic write tokencast/%s/status\n' "$id" "$id" "$id" >> "$out/acl.tmp"
done
mv "$out/acl.tmp" "$out/acl"
chmod 600 "$out/passwd" "$out/acl"
echo "wrote $out/passwd, $out/acl and $out/secrets/ for: tokencast-worker tokencast-gateway${*:+ $(printf 'cam-%s ' "$@")}"
