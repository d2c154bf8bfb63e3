#!/bin/sh
# machine-id: the commit carries no machine id; systemd generated one on this image's first boot.
[ ! -e /usr/etc/machine-id ] || { echo "the commit ships /usr/etc/machine-id"; exit 1; }
id=$(cat /etc/machine-id) || exit 1
echo "machine-id: $id"
echo "$id" | grep -Eq '^[0-9a-f]{32}$' || { echo "not a machine id"; exit 1; }
[ "$id" != 00000000000000000000000000000000 ] || exit 1
