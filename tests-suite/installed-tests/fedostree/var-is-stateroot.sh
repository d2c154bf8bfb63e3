#!/bin/sh
# var-is-stateroot: /var is the stateroot's var bind-mounted in (shared by every deployment of the OS,
# so state survives upgrades), and it holds the image builder's marker.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
root=$(mount_field /var 4) || { echo "/var is not a mount point"; exit 1; }
case "$root" in
/ostree/deploy/*/var) echo "/var is a bind mount of $root" ;;
*) echo "/var mount root is $root, expected /ostree/deploy/<os>/var"; exit 1 ;;
esac
marker=/var/lib/fedostree/image-id
[ -e "$marker" ] || { echo "$marker missing: /var is not the stateroot the image builder prepared"; exit 1; }
if want=$(host_value image_id); then
	have=$(cat "$marker")
	[ "$have" = "$want" ] || { echo "$marker is $have, expected $want"; exit 1; }
	echo "$marker matches fedostree.image_id=$want"
else
	echo "no fedostree.image_id= kernel argument: image id not compared ($(cat "$marker"))"
fi
# /var persists across the image's deployments: the image builder appends every commit it deploys to this
# log in the stateroot; the booted commit must be its last line, and earlier updates' lines must still be there.
log=/var/lib/fedostree/deployments
[ -s "$log" ] || { echo "$log missing: /var does not carry the image's history"; exit 1; }
if want=$(host_value commit); then
	last=$(tail -n 1 "$log")
	[ "$last" = "$want" ] || { echo "last deployment in $log is $last, expected the booted $want"; exit 1; }
fi
echo "$log lists $(wc -l <"$log") deployment(s) of this image, the booted one last"
# /var must be writable: count boots (each boot runs on a throwaway overlay, so this stays per boot).
echo "boot $(cut -d' ' -f1 /proc/uptime)" >>/var/lib/fedostree/boots || { echo "cannot write /var"; exit 1; }
echo "boots recorded in /var/lib/fedostree/boots: $(wc -l </var/lib/fedostree/boots)"
