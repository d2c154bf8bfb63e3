#!/bin/sh
# ostree-booted: the initramfs marked this boot as an OSTree boot (/run/ostree-booted), which ostree's
# tools use to decide they run on a deployment.
if [ -e /run/ostree-booted ]; then
	echo "/run/ostree-booted exists"
	exit 0
fi
echo "/run/ostree-booted is missing: the initramfs did not run OSTree's prepare-root"
exit 1
