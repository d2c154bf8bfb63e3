#!/bin/sh
# sysusers-resolve: the accounts compose created from sysusers.d resolve through NSS, and every
# user and group of the tree's sysusers.d exists.
status=0
for u in root messagebus systemd-network; do
	getent passwd "$u" || { echo "user $u does not resolve"; status=1; }
done
for g in root systemd-journal messagebus; do
	getent group "$g" || { echo "group $g does not resolve"; status=1; }
done
for u in $(systemd-sysusers --cat-config | awk '$1 == "u" {print $2}'); do
	getent passwd "$u" >/dev/null || { echo "sysusers.d user $u is missing"; status=1; }
done
# Readable by every user (NSS runs in their processes), as shadow-utils leaves them.
for f in /etc/passwd /etc/group; do
	mode=$(stat -c %a "$f")
	[ "$mode" = 644 ] || { echo "$f has mode $mode, not 644"; status=1; }
done
exit $status
