#!/bin/sh
# A planted flake: fails on a run's first attempt and passes when the host reruns it in a fresh VM
# (`fedostree ci` exports FEDOSTREE_ATTEMPT through fw_cfg), so the flake policy has something real to
# judge. Without the variable (`fedostree test`, the tests-suite) it is attempt 1 and fails.
attempt=${FEDOSTREE_ATTEMPT:-1}
if [ "$attempt" -le 1 ]; then
	echo "attempt $attempt: failing, as a flaky test sometimes does"
	exit 1
fi
echo "attempt $attempt: passing"
