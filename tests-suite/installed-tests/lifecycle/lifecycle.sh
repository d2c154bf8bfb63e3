#!/bin/sh
# lifecycle: a client machine upgrades, rolls back and switches trees over HTTP, rebooting through
# firmware between the steps. Run by `fedostree test --scenario lifecycle` (pipeline/src/lifecycle.rs), which
# serves the repositories and passes over fw_cfg: FEDOSTREE_SERVER, LIFECYCLE_REF, LIFECYCLE_N (the
# booted commit), LIFECYCLE_N1 (N with one package changed), LIFECYCLE_SWITCH_REF/_COMMIT, and the
# repository's public key. Each boot is one part, chosen by the runner's reboot mark; a part with a
# failed check stops the scenario (no reboot).
set -u
here=$(dirname "$0")
STATE=/var/lib/fedostree-lifecycle
KEY=/etc/fedostree/fedostree.gpg
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
t=0 failed=0

ok() { t=$((t + 1)); echo "ok $t - boot $FEDOSTREE_BOOT_NUMBER: $*"; }
not_ok() { t=$((t + 1)); echo "not ok $t - boot $FEDOSTREE_BOOT_NUMBER: $*"; failed=1; }
# check DESCRIPTION COMMAND...: one TAP line; the command's output as comments when it fails.
check() {
	desc=$1
	shift
	if "$@" >"$W/out" 2>&1; then ok "$desc"; else
		not_ok "$desc"
		sed 's/^/# /' "$W/out"
	fi
}
eq() { [ "$1" = "$2" ] || { echo "expected [$2], got [$1]"; return 1; }; }
# The booted deployment's commit, from the kernel's ostree= argument.
booted_commit() {
	for a in $(cat /proc/cmdline); do
		case $a in ostree=*)
			d=$(readlink -f "/sysroot${a#ostree=}")
			b=${d##*/}
			echo "${b%.*}"
			return
			;;
		esac
	done
}
# `ostree admin status`: the booted deployment's commit, and the default (first listed, what boots next).
status_booted() { ostree admin status | sed -n 's/^\* [^ ]* \([0-9a-f]\{64\}\)\.[0-9]*.*/\1/p'; }
status_default() { ostree admin status | sed -n 's/^[* ] [^ ]* \([0-9a-f]\{64\}\)\.[0-9]*.*/\1/p' | head -n 1; }
deployments() { ostree admin status | grep -c '^[* ] [^ ]* [0-9a-f]\{64\}\.'; }
boot_id() { cat /proc/sys/kernel/random/boot_id; }
# booted_is COMMIT WHAT: the kernel argument and ostree's own status agree on it.
booted_is() {
	check "booted commit is $2 (/proc/cmdline)" eq "$(booted_commit)" "$1"
	check "ostree admin status marks $2 booted" eq "$(status_booted)" "$1"
}
new_boot_id() {
	check "boot id changed since the last boot" test "$(boot_id)" != "$(cat "$STATE/boot-id")"
	boot_id >"$STATE/boot-id"
}
# refused REMOTE WHAT ERROR: a pull from REMOTE fails with gpgme's verification ERROR, and stores no ref.
refused() {
	if ostree pull "$1" "$LIFECYCLE_REF" >"$W/pull" 2>&1; then
		not_ok "$2 is refused"
	elif grep -q "$3" "$W/pull"; then
		ok "$2 is refused: $3"
	else
		not_ok "$2 is refused with \"$3\""
		sed 's/^/# /' "$W/pull"
	fi
	check "the refused $1 pull stored no ref" sh -c "! ostree rev-parse '$1:$LIFECYCLE_REF'"
}
# next MARK: reboot into the next part, unless a check failed.
next() {
	if [ "$failed" = 0 ]; then
		"$FEDOSTREE_REBOOT_PREPARE" "$1" || { not_ok "ask the runner for a reboot (mark $1)"; exit 1; }
		echo "# rebooting for part $1"
	fi
	exit "$failed"
}

case ${FEDOSTREE_REBOOT_MARK:-} in
'')
	booted_is "$LIFECYCLE_N" N
	mkdir -p "$STATE" /etc/fedostree
	boot_id >"$STATE/boot-id"
	check "the repository's public key from the host (fw_cfg) installed" cp "$FEDOSTREE_FW_CFG/gpg/raw" "$KEY"
	verify="--set=gpg-verify=true --set=gpg-verify-summary=true --set=gpgkeypath=$KEY"
	# shellcheck disable=SC2086 # options, split on purpose
	check "ostree admin set-origin: remote fedostree ($FEDOSTREE_SERVER/repo, GPG-verified) and its ref" \
		ostree admin set-origin $verify fedostree "$FEDOSTREE_SERVER/repo" "$LIFECYCLE_REF"
	for r in evil unsigned tampered; do
		# shellcheck disable=SC2086
		check "ostree remote add $r" ostree remote add $verify "$r" "$FEDOSTREE_SERVER/$r" "$LIFECYCLE_REF"
	done
	refused evil "a commit signed by another key" "public key not found"
	refused unsigned "an unsigned commit" "no signatures found"
	refused tampered "a tampered summary" "BAD signature"
	echo "made on N before the upgrade" >/etc/fedostree-lifecycle.conf
	echo "data written on N" >"$STATE/var-data"
	# The host's server dies halfway through the first static delta it sends.
	if ostree admin upgrade >"$W/up" 2>&1; then
		not_ok "the first upgrade fails: the server died mid-pull"
	else
		ok "the first upgrade fails: the server died mid-pull: $(grep -m 1 '^error:' "$W/up" || tail -n 1 "$W/up")"
	fi
	check "after the failed upgrade the deployments are unchanged" eq "$(deployments) $(status_default)" "1 $LIFECYCLE_N"
	i=0
	until ostree admin upgrade >"$W/up" 2>&1; do
		echo "# retry $i: $(grep -m 1 '^error:' "$W/up" || tail -n 1 "$W/up")"
		i=$((i + 1))
		[ $i -lt 20 ] || break
		sleep 3
	done
	check "a retry of the upgrade succeeds once the server is back (attempts: $((i + 1)))" test "$i" -lt 20
	check "the new default deployment is N+1" eq "$(status_default)" "$LIFECYCLE_N1"
	next upgraded
	;;
upgraded)
	booted_is "$LIFECYCLE_N1" N+1
	new_boot_id
	check "/etc changed before the upgrade survived the 3-way merge" grep -q "made on N" /etc/fedostree-lifecycle.conf
	check "/var data survived" grep -q "data written on N" "$STATE/var-data"
	check "two deployments: N+1 booted, N the rollback" eq "$(deployments)" 2
	check "roll back through libostree (rollback.py)" python3 "$here/rollback.py"
	check "the default deployment is N again" eq "$(status_default)" "$LIFECYCLE_N"
	next rolledback
	;;
rolledback)
	booted_is "$LIFECYCLE_N" "N (rolled back)"
	new_boot_id
	check "ostree admin switch fedostree:$LIFECYCLE_SWITCH_REF" ostree admin switch "fedostree:$LIFECYCLE_SWITCH_REF"
	check "the default deployment is the switched tree's commit" eq "$(status_default)" "$LIFECYCLE_SWITCH_COMMIT"
	next switched
	;;
switched)
	booted_is "$LIFECYCLE_SWITCH_COMMIT" "$LIFECYCLE_SWITCH_REF"
	new_boot_id
	check "the booted origin is $LIFECYCLE_SWITCH_REF" grep -q "refspec=fedostree:$LIFECYCLE_SWITCH_REF" \
		"$(readlink -f "/sysroot$(sed -n 's/.*ostree=\([^ ]*\).*/\1/p' /proc/cmdline)").origin"
	# The tree's own content, cheaply: a container under TCG takes minutes, and the tree's suite runs one.
	check "the switched tree's rpmdb has docker.io" rpm -q --dbpath /usr/share/rpm docker.io
	check "dockerd is on the switched tree" test -x /usr/sbin/dockerd
	check "ostree admin switch back to fedostree:$LIFECYCLE_REF" ostree admin switch "fedostree:$LIFECYCLE_REF"
	check "the default deployment is the base ref's tip, N+1" eq "$(status_default)" "$LIFECYCLE_N1"
	next back
	;;
back)
	booted_is "$LIFECYCLE_N1" "N+1 (switched back)"
	new_boot_id
	check "/var data is still there" grep -q "data written on N" "$STATE/var-data"
	;;
*)
	not_ok "unknown reboot mark ${FEDOSTREE_REBOOT_MARK}"
	;;
esac
exit "$failed"
