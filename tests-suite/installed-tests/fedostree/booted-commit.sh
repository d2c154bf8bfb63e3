#!/bin/sh
# booted-commit: the deployment the kernel booted is the commit the host meant to test
# (kernel arg fedostree.commit=CSUM, or fw_cfg item `commit`), so a stale image can never pass as the new tree.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
expected=$(host_value commit) || { echo "no fedostree.commit= kernel argument or fw_cfg commit: the host must pass it"; exit 1; }
d=$(deployment_dir) || exit 1
# Deployments are named CSUM.SERIAL.
booted=${d##*/}
booted=${booted%.*}
echo "ostree=$(karg ostree) -> $d"
if [ "$booted" != "$expected" ]; then
	echo "booted commit $booted, expected $expected"
	exit 1
fi
echo "booted commit $booted as expected"
