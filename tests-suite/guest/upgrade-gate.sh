#!/bin/sh
# upgrade-gate: the upgrade gate's program in the guest. pipeline/src/upgrade.rs hands it over as fw_cfg
# item `upgrade`; installed-tests-runner runs it as upgrade/from-published (TAP). Boot 1, on the
# published commit, as a user's machine is: trust the repository's key, point the deployment's origin
# at the host's server, edit /etc and write /var data, `ostree admin upgrade`, ask for a reboot. Boot 2,
# on the candidate: it is booted, the /etc edit survived the 3-way merge and the /var data survived.
# Every check names its step; a failed step before the reboot ends the gate there (no reboot).
# Env (fw_cfg `env`): FEDOSTREE_SERVER, UPGRADE_REF, UPGRADE_FROM (published), UPGRADE_TO (candidate).
set -u
KEY=/etc/fedostree/upgrade-gate.gpg
CONF=/etc/fedostree-upgrade-gate.conf
DATA=/var/lib/fedostree-upgrade-gate/data
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
t=0 failed=0

ok() { t=$((t + 1)); echo "ok $t - $*"; }
not_ok() { t=$((t + 1)); echo "not ok $t - $*"; failed=1; }
# check STEP COMMAND...: one TAP line; the command's output as comments when it fails.
check() {
	step=$1
	shift
	if "$@" >"$W/out" 2>&1; then ok "$step"; else
		not_ok "$step"
		sed 's/^/# /' "$W/out"
	fi
}
eq() { [ "$1" = "$2" ] || { echo "expected [$2], got [$1]"; return 1; }; }
# The booted deployment's commit, from the kernel's ostree= argument.
booted_commit() {
	d=$(readlink -f "/sysroot$(tr ' ' '\n' </proc/cmdline | sed -n 's/^ostree=//p')")
	b=${d##*/}
	echo "${b%.*}"
}
status_default() { ostree admin status | sed -n 's/^[* ] [^ ]* \([0-9a-f]\{64\}\)\.[0-9]*.*/\1/p' | head -n 1; }
deployments() { ostree admin status | grep -c '^[* ] [^ ]* [0-9a-f]\{64\}\.'; }

case ${FEDOSTREE_REBOOT_MARK:-} in
'')
	check "boot the published commit $UPGRADE_FROM" eq "$(booted_commit)" "$UPGRADE_FROM"
	[ "$failed" = 0 ] || exit 1
	mkdir -p "${KEY%/*}" "${DATA%/*}"
	check "install the repository's public key (fw_cfg)" cp "$FEDOSTREE_FW_CFG/gpg/raw" "$KEY"
	check "ostree admin set-origin fedostree-gate $FEDOSTREE_SERVER/repo $UPGRADE_REF (GPG-verified)" \
		ostree admin set-origin --set=gpg-verify=true --set=gpg-verify-summary=true --set=gpgkeypath="$KEY" \
		fedostree-gate "$FEDOSTREE_SERVER/repo" "$UPGRADE_REF"
	check "edit /etc before the upgrade" sh -c "echo 'edited on the published commit' >$CONF"
	check "write /var data before the upgrade" sh -c "echo 'written on the published commit' >$DATA"
	[ "$failed" = 0 ] || exit 1
	check "ostree admin upgrade (pull through the static delta, deploy, merge /etc)" ostree admin upgrade
	check "the new default deployment is the candidate $UPGRADE_TO" eq "$(status_default)" "$UPGRADE_TO"
	[ "$failed" = 0 ] || exit 1
	"$FEDOSTREE_REBOOT_PREPARE" upgraded || { not_ok "ask the runner for the reboot"; exit 1; }
	echo "# rebooting into the candidate"
	;;
upgraded)
	check "boot the candidate $UPGRADE_TO after the upgrade" eq "$(booted_commit)" "$UPGRADE_TO"
	check "the /etc edit survived the 3-way merge" grep -qx 'edited on the published commit' "$CONF"
	check "the /var data survived" grep -qx 'written on the published commit' "$DATA"
	check "two deployments: the candidate and the published commit to roll back to" eq "$(deployments)" 2
	;;
*)
	not_ok "unknown reboot mark $FEDOSTREE_REBOOT_MARK"
	;;
esac
exit "$failed"
