#!/bin/sh
# labels: every file of /usr (the commit, labelled at compose) and /etc (labelled by ostree at
# deploy, merged at upgrade) has the label the policy gives its path: restorecon has nothing to do.
# /etc/machine-id is the one exception: systemd writes it on first boot, and the policy's type
# transition makes it etc_runtime_t where file_contexts says etc_t (so on any refpolicy system).
# Read through a pipe, not a file in /tmp: restorecon runs confined (setfiles_t) and may not write
# to this script's files.
all=$(restorecon -T 0 -nRv /usr /etc 2>&1; echo "exit $?")
rc=${all##*exit }
out=$(printf '%s\n' "${all%exit *}" | grep -v ' /etc/machine-id from .*:etc_runtime_t:' | grep .)
if [ -n "$out" ] || [ $rc -ne 0 ]; then
	echo "restorecon -nRv /usr /etc would relabel $(printf '%s\n' "$out" | grep -c .) paths (exit $rc):"
	printf '%s\n' "$out" | head -n 40
	exit 1
fi
echo "restorecon -nRv /usr /etc: nothing to relabel"
for p in /usr/bin/bash /etc/passwd /etc/shadow /var/log /boot; do
	printf '  %s %s\n' "$(stat -c %C "$p")" "$p"
done
