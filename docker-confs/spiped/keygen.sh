#!/usr/bin/env bash
# Create a spiped key: 32 random bytes, readable by its owner only. The same file must be on both
# ends of a tunnel; copy it over ssh, never by mail or chat.
#   sudo bash docker-confs/spiped/keygen.sh /etc/spiped/demo-api.key     # the API tunnel (systemd units)
#   bash docker-confs/spiped/keygen.sh "$DATA_FOLDER/keys/redis.key"     # the Redis tunnel (scale-out)
set -euo pipefail
key=${1:?usage: keygen.sh <key file>}
if [ -e "$key" ]; then
    echo "$key exists; not overwritten (remove it first to change the key on every host)" >&2
    exit 1
fi
mkdir -p "$(dirname "$key")"
umask 077
dd if=/dev/urandom of="$key" bs=32 count=1 status=none
echo "created $key ($(wc -c < "$key") bytes); copy it, with the same mode, to the other end of the tunnel" >&2
