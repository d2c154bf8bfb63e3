#!/bin/sh
# base-checks: what every boot of every tree must pass, whatever the tree's own tests say (as kola
# checks after each test, mantle/kola/harness.go). Installed as /usr/libexec/fedostree/base-checks;
# installed-tests-runner runs `base-checks NAME` for each NAME in `base-checks --list` after the tree's
# tests, reported as base/NAME. Exit 0 pass, 1 fail, 77 the check does not apply to this tree (the
# output says why). Env overrides, for the host's test of it:
#   FEDOSTREE_DMESG  a file read instead of the kernel log
#   FEDOSTREE_CORES  where the runner has the kernel write core dumps (/run/fedostree-cores)
#   FEDOSTREE_CORE_PATTERN     the kernel's core_pattern file (/proc/sys/kernel/core_pattern)
#   FEDOSTREE_SYSTEMD_RUNTIME  systemd's runtime directory, there when systemd is PID 1 (/run/systemd/system)
#   FEDOSTREE_SELINUXFS        (/sys/fs/selinux)
set -u
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
CORES=${FEDOSTREE_CORES:-/run/fedostree-cores}
# The journal's "process dumped core" message (systemd's SD_MESSAGE_COREDUMP).
COREDUMP_MESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT

SELINUXFS=${FEDOSTREE_SELINUXFS:-/sys/fs/selinux}

has_systemd() { [ -d "${FEDOSTREE_SYSTEMD_RUNTIME:-/run/systemd/system}" ]; }
without_systemd() {
	echo "not applicable: PID 1 is $(cat /proc/1/comm 2>/dev/null), not systemd"
	exit 77
}
kernel_log() { if [ -n "${FEDOSTREE_DMESG-}" ]; then cat "$FEDOSTREE_DMESG"; else dmesg; fi; }
# The system finished starting (or gave up): what the unit checks look at is then settled.
settled() { timeout 120 systemctl is-system-running --wait 2>&1; }

failed_units() {
	has_systemd || without_systemd
	state=$(settled)
	failed=$(systemctl --failed --no-legend --plain --full)
	if [ -z "$failed" ]; then
		echo "no failed units (is-system-running: $state)"
		return 0
	fi
	echo "failed units (is-system-running: $state):"
	echo "$failed"
	for u in $(echo "$failed" | awk '{print $1}'); do
		systemctl status --no-pager --full --lines=10 "$u" 2>&1
	done | tail -n 80
	return 1
}

not_emergency() {
	has_systemd || without_systemd
	state=$(settled)
	bad=0
	for t in emergency.target rescue.target; do
		if systemctl is-active --quiet "$t"; then
			echo "$t is active"
			bad=1
		fi
	done
	default=$(systemctl get-default)
	if ! systemctl is-active --quiet "$default"; then
		echo "the default target $default is not active"
		bad=1
	fi
	echo "is-system-running: $state; default target: $default"
	return $bad
}

avc_denials() {
	if [ ! -e $SELINUXFS/enforce ]; then
		echo "not applicable: SELinux is not enabled in this boot (no $SELINUXFS)"
		exit 77
	fi
	{
		kernel_log
		has_systemd && journalctl -b --no-pager -o cat _TRANSPORT=audit 2>/dev/null
	} | grep 'avc: *denied' | sed 's/^\[[ 0-9.]*\] //' | sort -u >"$tmp"
	n=$(wc -l <"$tmp")
	if [ "$n" -eq 0 ]; then
		echo "no AVC denial since boot (SELinux $(cat $SELINUXFS/enforce | sed 's/1/enforcing/;s/0/permissive/'))"
		return 0
	fi
	echo "$n AVC denial(s) since boot:"
	head -n 40 "$tmp"
	return 1
}

core_dumps() {
	pattern=$(cat "${FEDOSTREE_CORE_PATTERN:-/proc/sys/kernel/core_pattern}")
	case $pattern in
	'|'*systemd-coredump*)
		dumps=$(journalctl -b --no-pager -o cat MESSAGE_ID=$COREDUMP_MESSAGE_ID 2>&1)
		if [ -z "$dumps" ] || [ "$dumps" = "-- No entries --" ]; then
			echo "no core dump since boot (systemd-coredump)"
			return 0
		fi
		echo "core dumps since boot (systemd-coredump):"
		echo "$dumps" | head -n 60
		coredumpctl --no-pager list 2>&1 | tail -n 10
		return 1
		;;
	'|'*)
		echo "not applicable: core dumps go to a handler this check cannot read ($pattern)"
		exit 77
		;;
	"$CORES"/*)
		dumps=$(ls -1 "$CORES" 2>/dev/null)
		if [ -z "$dumps" ]; then
			echo "no core dump since boot (the runner has the kernel write them to $CORES)"
			return 0
		fi
		echo "core dumps since boot, in $CORES (core.<program>.<pid>):"
		echo "$dumps"
		return 1
		;;
	*)
		echo "not applicable: the tree sets core_pattern to $pattern, which this check does not watch"
		exit 77
		;;
	esac
}

# What the kernel prints for its own faults; a user process's segfault is core-dumps' business.
KERNEL_BADNESS='WARNING: CPU: |BUG: |kernel BUG at|Oops: |Oops\[|general protection fault|Kernel panic|soft lockup|blocked for more than [0-9]* seconds|UBSAN: |KASAN: '

kernel_warnings() {
	kernel_log >"$tmp" || {
		echo "cannot read the kernel log"
		return 1
	}
	n=$(grep -cE "$KERNEL_BADNESS" "$tmp")
	if [ "$n" -eq 0 ]; then
		echo "no kernel warning, oops or BUG since boot ($(wc -l <"$tmp") lines of kernel log read)"
		return 0
	fi
	echo "$n kernel warning(s), oops or BUG since boot:"
	grep -E -A 12 "$KERNEL_BADNESS" "$tmp" | head -n 80
	return 1
}

journal_errors() {
	has_systemd || {
		echo "not applicable: no systemd journal"
		exit 77
	}
	n=$(journalctl -b -p err --no-pager -o cat -q | wc -l)
	echo "journal: $n message(s) of priority err or worse since boot; the last 100:"
	journalctl -b -p err --no-pager -o short-monotonic -q | tail -n 100
	return 0
}

case ${1-} in
--list) echo "failed-units not-emergency avc-denials core-dumps kernel-warnings journal-errors" ;;
failed-units) failed_units ;;
not-emergency) not_emergency ;;
avc-denials) avc_denials ;;
core-dumps) core_dumps ;;
kernel-warnings) kernel_warnings ;;
journal-errors) journal_errors ;;
*)
	echo "usage: $0 --list | CHECK" >&2
	exit 2
	;;
esac
