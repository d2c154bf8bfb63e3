# lib.sh: helpers shared by fedostree's installed-tests (sourced, not run); installed next to them in
# /usr/libexec/installed-tests/fedostree/. POSIX sh for busybox.

# Kernel command line; overridable so a test can be exercised outside a VM.
CMDLINE=${FEDOSTREE_CMDLINE:-/proc/cmdline}
SYSROOT=${FEDOSTREE_SYSROOT:-/sysroot}

# karg NAME: value of NAME=VALUE on the kernel command line; status 1 when absent.
karg() {
	set -f
	# shellcheck disable=SC2013 # kernel args are words, not lines
	for a in $(cat "$CMDLINE"); do
		case "$a" in "$1="*) set +f; echo "${a#*=}"; return 0 ;; esac
	done
	set +f
	return 1
}

# host_value NAME: what the host says about this run: the kernel argument fedostree.NAME= (direct kernel
# boot), else the fw_cfg item NAME the runner exposes in $FEDOSTREE_FW_CFG (any boot path, firmware
# included, where the kernel arguments are the deployment's own); status 1 when neither is there.
host_value() {
	karg "fedostree.$1" && return 0
	[ -n "${FEDOSTREE_FW_CFG-}" ] && [ -r "$FEDOSTREE_FW_CFG/$1/raw" ] && cat "$FEDOSTREE_FW_CFG/$1/raw" && return 0
	return 1
}

# The booted deployment directory under $SYSROOT, resolved from ostree= as ostree-prepare-root does.
deployment_dir() {
	o=$(karg ostree) || { echo "no ostree= kernel argument" >&2; return 1; }
	readlink -f "$SYSROOT$o"
}

# mount_field MOUNTPOINT N: field N of the last /proc/self/mountinfo line for MOUNTPOINT (the one on top).
mount_field() {
	awk -v m="$1" -v n="$2" '$5 == m { v = $n } END { if (v == "") exit 1; print v }' /proc/self/mountinfo
}
