#!/bin/sh
# labels: every file of /usr (the commit, labelled at compose) and /etc (labelled by ostree at
# deploy, merged at upgrade) has the label the policy gives its path: restorecon has nothing to do.
# Files a service wrote into /etc at runtime (not in /usr/etc) are the exception when their label is
# etc_runtime_t: the policy's type transition for files created in etc_t makes them so where
# file_contexts says etc_t, on any refpolicy system (systemd's /etc/machine-id, dockerd's key.json).
# Read through a pipe, not a file in /tmp: restorecon runs confined (setfiles_t) and may not write
# to this script's files.
all=$(restorecon -T 0 -nRv /usr /etc 2>&1; echo "exit $?")
rc=${all##*exit }
out=$(printf '%s\n' "${all%exit *}" | while IFS= read -r line; do
	case $line in
	"Would relabel /etc/"*" from "*:etc_runtime_t:*)
		path=${line#Would relabel }
		path=${path%% from *}
		if [ ! -e "/usr$path" ]; then
			echo "# written at runtime, kept: $line" >&2
			continue
		fi
		;;
	esac
	printf '%s\n' "$line"
done | grep .)
if [ -n "$out" ] || [ $rc -ne 0 ]; then
	echo "restorecon -nRv /usr /etc would relabel $(printf '%s\n' "$out" | grep -c .) paths (exit $rc):"
	printf '%s\n' "$out" | head -n 40
	exit 1
fi
echo "restorecon -nRv /usr /etc: nothing to relabel"
for p in /usr/bin/bash /etc/passwd /etc/shadow /var/log /boot; do
	printf '  %s %s\n' "$(stat -c %C "$p")" "$p"
done
