#!/usr/bin/env bash
# test-runner-host.sh: host-side test of installed-tests-runner.sh. Runs the runner under busybox sh with
# only busybox applets on PATH (what the guest has) against sample .test files, then checks every emitted
# line is JSON (jq) and every status, subtest, ordering and escaping rule of the results protocol.
# Needs jq and iconv; busybox from $BUSYBOX, PATH, or `apt-get download busybox-static`. Exit 0 = all pass.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runner=$here/installed-tests-runner.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bb=${BUSYBOX:-$(command -v busybox || true)}
if [ -z "$bb" ]; then
	# Debian's busybox-static is the guest's busybox; fetch it unprivileged into the temp dir.
	(cd "$tmp" && apt-get download -q busybox-static >/dev/null 2>&1 && dpkg-deb -x busybox-static_*.deb bbroot) ||
		{ echo "test-runner-host: no busybox (set BUSYBOX=/path/to/busybox)" >&2; exit 2; }
	bb=$tmp/bbroot/bin/busybox
fi
mkdir -p "$tmp/bin"
# Never the host's own state dir or firmware config: every run below gets these.
export FEDOSTREE_RUNNER_STATE=$tmp/rstate FEDOSTREE_FW_CFG=$tmp/fwcfg
# Nor the host's core_pattern, systemd or kernel log; base checks only where a section asks for them.
echo core >"$tmp/core_pattern"
export FEDOSTREE_CORE_PATTERN=$tmp/core_pattern FEDOSTREE_CORES=$tmp/cores FEDOSTREE_BASE_CHECKS=$tmp/no-base-checks \
	FEDOSTREE_SYSTEMD_RUNTIME=$tmp/no-systemd FEDOSTREE_SELINUXFS=$tmp/no-selinuxfs FEDOSTREE_DMESG=$tmp/dmesg
printf '[    0.000000] Linux version 6.1.0\n[    1.5] EXT4-fs (vda1): mounted filesystem\n' >"$tmp/dmesg"
for a in $("$bb" --list); do [ "$a" = busybox ] || ln -s "$bb" "$tmp/bin/$a"; done

# --- fixtures ---
T=$tmp/tests
mkdir -p "$T/sample/sub/dir" "$tmp/sysroot/ostree/deploy/fedostree/deploy/abc123.0" "$tmp/sysroot/ostree/boot.1/fedostree/bcs"
ln -s ../../../deploy/fedostree/deploy/abc123.0 "$tmp/sysroot/ostree/boot.1/fedostree/bcs/0"
echo "quiet ostree=/ostree/boot.1/fedostree/bcs/0 fedostree.test_timeout=2 fedostree.test_parallel=1 console=ttyS0" >"$tmp/cmdline"
mktest() { # mktest NAME BODY...: a [Test] keyfile
	local f=$T/$1.test
	shift
	{ echo "# comment"; echo "[Test]"; printf '%s\n' "$@"; echo "[Other]"; echo "Exec=false"; } >"$f"
}
mkscript() { # mkscript NAME: stdin → executable script
	cat >"$tmp/$1"
	chmod +x "$tmp/$1"
}
# use_shell NAME: the shell the runner runs under and the tools on its PATH: dash with the host's
# coreutils and util-linux (what real trees have), or busybox's applets (the dev trees).
use_shell() {
	case $1 in
	dash) sh_cmd=$(command -v dash) tools=/usr/bin:/bin ;;
	busybox) sh_cmd=$tmp/bin/sh tools=$tmp/bin ;;
	esac
}
# boot TESTS WORK: one run of the runner, as one boot of the guest, under $sh_cmd with $tools.
boot() {
	FEDOSTREE_TESTS_ROOT=$1 FEDOSTREE_VIRTIO_PORTS=$tmp/sys FEDOSTREE_DEV=$tmp/dev FEDOSTREE_CONSOLE=$console \
		FEDOSTREE_CMDLINE=$tmp/cmdline FEDOSTREE_SYSROOT=$tmp/sysroot FEDOSTREE_WORKDIR=$2 \
		FEDOSTREE_NO_POWEROFF=1 FEDOSTREE_PATH=$tools "$sh_cmd" "$runner" </dev/null
}
mkscript escape.sh <<'EOF'
printf 'quote" back\\slash\ttab\rCR\001ctl é\nline2\n'
EOF
mktest sample/pass "Type=session" "Exec = $tmp/escape.sh"
mktest sample/fail "Exec=sh -c 'echo failing on purpose; exit 3'"
mktest sample/skip "Exec=sh -c 'echo no hardware; exit 77'"
mkscript tap.sh <<'EOF'
echo "1..5"
echo "ok 1 - first"
echo "not ok 2 - todo thing # TODO later"
echo "ok 3 - skipped one # SKIP no network"
echo 'ok 4 - with "quotes" and \back'
echo "ok 5"
EOF
mktest sample/tap "Exec=$tmp/tap.sh" "Output=TAP"
mktest sample/tap-notok "Exec=sh -c 'echo 1..2; echo ok 1 - a; echo not ok 2 - b'" "Output=TAP"
mktest sample/tap-plan "Exec=sh -c 'echo 1..3; echo ok 1; echo ok 2'" "Output=TAP"
mktest sample/tap-bail "Exec=sh -c 'echo 1..2; echo ok 1; echo Bail out! broken'" "Output=TAP"
mktest sample/tap-notap "Exec=sh -c 'echo ok 1 - looks like TAP; exit 0'"
mktest sample/timeout "X-Fedostree-Timeout=1" "Exec=sh -c 'echo before; sleep 37 & sleep 38; echo after'"
mktest sample/global-timeout "Exec=sleep 30"
mktest sample/env "TestEnvironment=FOO=bar baz;BAR=2;" \
	"Exec=sh -c 'test \"\$FOO\" = \"bar baz\" && test \"\$BAR\" = 2 && test \"\$(cat)\" = \"\"'"
mktest sample/noenv "Exec=sh -c 'test -z \"\$FOO\"'"
mktest sample/noexec "Type=session"
mktest sample/badtype "Type=system" "Exec=true"
mktest sample/a-exclusive "Type=session-exclusive" "Exec=true"
mktest sample/sub/dir/nested "Exec=true"
mkscript big.sh <<'EOF'
i=0; while [ $i -lt 5000 ]; do printf 'é'; i=$((i + 1)); done; printf 'x\n'
EOF
mktest sample/big-output "Exec=$tmp/big.sh"

# --- run ---
# The results port is found the guest's way: a sysfs-like dir whose */name holds the port name.
mkdir -p "$tmp/sys/vport0p1" "$tmp/sys/vport1p1" "$tmp/dev"
echo org.qemu.guest_agent.0 >"$tmp/sys/vport0p1/name"
echo org.fedostree.results >"$tmp/sys/vport1p1/name"
results=$tmp/dev/vport1p1 console=$tmp/console.log
: >"$results"
start=$(date +%s)
FEDOSTREE_TESTS_ROOT=$T FEDOSTREE_VIRTIO_PORTS=$tmp/sys FEDOSTREE_DEV=$tmp/dev FEDOSTREE_CONSOLE=$console \
	FEDOSTREE_CMDLINE=$tmp/cmdline FEDOSTREE_SYSROOT=$tmp/sysroot FEDOSTREE_WORKDIR=$tmp/work \
	FEDOSTREE_NO_POWEROFF=1 FEDOSTREE_PATH=$tmp/bin "$tmp/bin/sh" "$runner" </dev/null
elapsed=$(($(date +%s) - start))

# --- checks ---
fails=0
check() { # check DESCRIPTION COMMAND...
	if "${@:2}"; then echo "ok - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi
}
eq() { [ "$1" = "$2" ] || { echo "    expected [$2], got [$1]" >&2; return 1; }; }
q() { jq -r "$@" "$results"; }
# shellcheck disable=SC2016 # $n is jq's
finished() { q --arg n "sample/$1" 'select(.event == "test-finished" and .name == $n) | '"$2"; }
all_json() { jq -e . "$results" >/dev/null; }
orphans() { pgrep -xf 'sleep 3[78]' | wc -l; }

check "every results line is JSON" all_json
check "console echoes every line with the prefix" \
	eq "$(sed -n 's/^fedostree-result: //p' "$console")" "$(cat "$results")"
check "results are valid UTF-8" iconv -f UTF-8 -t UTF-8 "$results" -o /dev/null
check "run-started first" eq "$(head -n1 "$results" | jq -r .event)" run-started
check "run-finished last" eq "$(tail -n1 "$results" | jq -r .event)" run-finished
check "run-started counts tests" eq "$(q 'select(.event == "run-started") | .tests')" 17
check "deployment resolved" eq "$(q 'select(.event == "run-started") | .deployment')" \
	/ostree/deploy/fedostree/deploy/abc123.0
check "commit resolved" eq "$(q 'select(.event == "run-started") | .commit')" abc123
check "arch reported" eq "$(q 'select(.event == "run-started") | .arch')" "$(uname -m)"
for t in pass:pass fail:fail skip:skip tap:pass tap-notok:fail tap-plan:fail tap-bail:fail tap-notap:pass timeout:timeout \
	global-timeout:timeout env:pass noenv:pass noexec:fail badtype:fail a-exclusive:pass \
	sub/dir/nested:pass big-output:pass; do
	check "status of ${t%%:*} is ${t#*:}" eq "$(finished "${t%%:*}" .status)" "${t#*:}"
done
check "exit codes" eq "$(finished fail .exit_code) $(finished skip .exit_code) $(finished pass .exit_code)" "3 77 0"
check "1 s timeout ends in time" test "$(finished timeout .duration_ms)" -lt 4000
check "global karg timeout is 2 s" test "$(finished global-timeout .duration_ms)" -ge 1900
check "timeout orphans are killed" eq "$(orphans)" 0
check "output escaped and round-trips" eq "$(finished pass .output)" "$(printf 'quote" back\\slash\ttab\rCRctl é\nline2')"
check "test output tail is 8 KiB at most" test "$(finished big-output .output | wc -c)" -le 8193
check "TAP bail out noted in output" eq "$(finished tap-bail .output | tail -n 1)" "fedostree-runner: TAP Bail out!"
check "timeout noted in output" eq "$(finished timeout .output)" "$(printf 'before\nfedostree-runner: timed out after 1s')"
check "subtests of tap" eq "$(q -c 'select(.event == "subtest" and .test == "sample/tap") | [.number, .status, .description]')" \
	"$(printf '%s\n' '[1,"pass","first"]' '[2,"todo","todo thing"]' '[3,"skip","skipped one"]' \
		'[4,"pass","with \"quotes\" and \\back"]' '[5,"pass",""]')"
check "no subtests without Output=TAP" eq "$(q 'select(.event == "subtest" and .test == "sample/tap-notap") | .number')" ""
check "session tests sorted, then session-exclusive" eq "$(q 'select(.event == "test-started") | .name' | tr '\n' ' ')" \
	"sample/badtype sample/big-output sample/env sample/fail sample/global-timeout sample/noenv sample/noexec sample/pass sample/skip sample/sub/dir/nested sample/tap-bail sample/tap-notap sample/tap-notok sample/tap-plan sample/tap sample/timeout sample/a-exclusive "
check "every test-started has its test-finished next" eq \
	"$(q -c 'select(.event | test("^test-")) | .event' | uniq -c | awk '{print $1}' | sort -u)" 1
check "run-finished totals" eq "$(q -c 'select(.event == "run-finished") | [.passed, .failed, .skipped, .timed_out]')" \
	"[8,6,1,2]"
echo "test-runner-host: ran in ${elapsed}s"

# --- the same tests, three at a time, and two that pass only side by side ---
sequential=$tmp/sequential.jsonl
cp "$results" "$sequential"
: >"$results"
sed -i 's/fedostree.test_parallel=1/fedostree.test_parallel=3/' "$tmp/cmdline"
# Each waits (5 s at most) for the other's marker.
printf '%s\n' '#!/bin/sh' "touch $tmp/started-\$1" 'i=0' \
	"while [ ! -e $tmp/started-\$2 ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i + 1)); done" \
	"test -e $tmp/started-\$2" >"$tmp/marker.sh"
chmod +x "$tmp/marker.sh"
mktest sample/overlap-1 "Exec=$tmp/marker.sh one two"
mktest sample/overlap-2 "Exec=$tmp/marker.sh two one"
FEDOSTREE_TESTS_ROOT=$T FEDOSTREE_VIRTIO_PORTS=$tmp/sys FEDOSTREE_DEV=$tmp/dev FEDOSTREE_CONSOLE=$console \
	FEDOSTREE_CMDLINE=$tmp/cmdline FEDOSTREE_SYSROOT=$tmp/sysroot FEDOSTREE_WORKDIR=$tmp/work \
	FEDOSTREE_NO_POWEROFF=1 FEDOSTREE_PATH=$tmp/bin "$tmp/bin/sh" "$runner" </dev/null
statuses() { jq -r 'select(.event == "test-finished") | "\(.name) \(.status)"' "$1" | grep -v overlap | sort; }
events() { q -r 'select(.event | test("^test-")) | "\(.event) \(.name)"'; }
check "parallel: every line is JSON" all_json
check "parallel: two tests that need each other ran side by side" \
	eq "$(finished overlap-1 .status) $(finished overlap-2 .status)" "pass pass"
check "parallel: every other status is the sequential run's" eq "$(statuses "$results")" "$(statuses "$sequential")"
check "parallel: each test-finished follows its test-started, once" eq "$(events | awk '
	$1 == "test-started" { s[$2]++ } $1 == "test-finished" { if (!s[$2] || f[$2]++) bad++ } END { print bad + 0 }')" 0
check "parallel: the session-exclusive test starts once every session test finished" eq "$(events | awk '
	$1 == "test-finished" { n++ } $1 == "test-started" && $2 == "sample/a-exclusive" { print n }')" 18
check "parallel: run-finished totals" eq "$(q -c 'select(.event == "run-finished") | [.passed, .failed, .skipped, .timed_out]')" \
	"[10,6,1,2]"
check "parallel: timeout orphans are killed" eq "$(orphans)" 0

# --- two at a time: the slot of a test that ends frees at once, not behind an older, longer one ---
# slot/a-long passes only if slot/c-late starts while it still runs, i.e. in the slot slot/b-quick leaves.
T2=$tmp/tests2
mkdir -p "$T2/slot"
sed -i 's/fedostree.test_parallel=3/fedostree.test_parallel=2/' "$tmp/cmdline"
printf '%s\n' '[Test]' "Exec=$tmp/marker.sh long late" >"$T2/slot/a-long.test"
printf '%s\n' '[Test]' 'Exec=true' >"$T2/slot/b-quick.test"
printf '%s\n' '[Test]' "Exec=touch $tmp/started-late" >"$T2/slot/c-late.test"
: >"$results"
FEDOSTREE_TESTS_ROOT=$T2 FEDOSTREE_VIRTIO_PORTS=$tmp/sys FEDOSTREE_DEV=$tmp/dev FEDOSTREE_CONSOLE=$console \
	FEDOSTREE_CMDLINE=$tmp/cmdline FEDOSTREE_SYSROOT=$tmp/sysroot FEDOSTREE_WORKDIR=$tmp/work2 \
	FEDOSTREE_NO_POWEROFF=1 FEDOSTREE_PATH=$tmp/bin "$tmp/bin/sh" "$runner" </dev/null
check "two at a time: a quick test's slot is reused while an older test still runs" \
	eq "$(q -c 'select(.event == "test-finished") | [.name, .status]' | sort | tr '\n' ' ')" \
	'["slot/a-long","pass"] ["slot/b-quick","pass"] ["slot/c-late","pass"] '
check "two at a time: run-finished totals" eq "$(q -c 'select(.event == "run-finished") | [.passed, .failed, .skipped, .timed_out]')" \
	"[3,0,0,0]"

# --- dash, coreutils' timeout and util-linux's setsid (what real trees have): a timeout is reported
# as one, a test's leftover daemons are killed, and a test whose runner process dies is reported
# failed instead of hanging the run (under busybox too) ---
T3=$tmp/tests3
mkdir -p "$T3/sample"
printf '%s\n' '[Test]' 'X-Fedostree-Timeout=1' "Exec=sh -c 'sleep 37 & sleep 38'" >"$T3/sample/timeout.test"
printf '%s\n' '[Test]' "Exec=sh -c 'sleep 37 & exit 0'" >"$T3/sample/leaves-daemon.test"
# Kills the parent of its session leader: the runner process that would report the test.
printf '%s\n' '[Test]' 'Exec=sh -c '"'"'kill -KILL "$(cut -d" " -f4 /proc/$(cut -d" " -f6 /proc/$$/stat)/stat)"'"'" \
	>"$T3/sample/kills-its-runner.test"
for shell in dash busybox; do
	: >"$results"
	use_shell "$shell"
	FEDOSTREE_TESTS_ROOT=$T3 FEDOSTREE_VIRTIO_PORTS=$tmp/sys FEDOSTREE_DEV=$tmp/dev FEDOSTREE_CONSOLE=$console \
		FEDOSTREE_CMDLINE=$tmp/cmdline FEDOSTREE_SYSROOT=$tmp/sysroot FEDOSTREE_WORKDIR=$tmp/work3-$shell \
		FEDOSTREE_NO_POWEROFF=1 FEDOSTREE_PATH=$tools timeout 60 "$sh_cmd" "$runner" </dev/null 2>/dev/null && rc=0 || rc=$?
	check "$shell: the run ends" eq "$rc" 0
	check "$shell: every line is JSON" all_json
	check "$shell: timeout reported as timeout" eq "$(finished timeout .status)" timeout
	check "$shell: a passing test's leftover daemon is killed too" eq "$(finished leaves-daemon .status) $(orphans)" "pass 0"
	check "$shell: a test whose runner process died is reported failed" eq "$(finished kills-its-runner .status)" fail
	check "$shell: run-finished totals" eq "$(q -c 'select(.event == "run-finished") | [.passed, .failed, .skipped, .timed_out]')" \
		"[1,1,0,1]"
done
# --- a scenario named by the host (fw_cfg), and a test that reboots twice (autopkgtest's marks): each
# invocation below is one boot of the same run, the state dir is what /var keeps across reboots; under
# dash (base/minimal's /bin/sh, the trees that reboot) and busybox ---
T4=$tmp/tests4
mkdir -p "$T4/s" "$tmp/fwcfg/scenario" "$tmp/fwcfg/env"
printf lifecycle >"$tmp/fwcfg/scenario/raw"
printf 'FEDOSTREE_SERVER=http://10.0.2.2:8123\nNOT A VAR\n' >"$tmp/fwcfg/env/raw"
printf '%s\n' '[Test]' 'Exec=true' >"$T4/s/not-in-scenario.test"
printf '%s\n' '[Test]' 'X-Fedostree-Scenario=lifecycle' 'Exec=sh -c "test \"$FEDOSTREE_SERVER\" = http://10.0.2.2:8123"' \
	>"$T4/s/a-first.test"
printf '%s\n' '[Test]' 'X-Fedostree-Scenario=lifecycle' 'Exec=sh -c "\"$FEDOSTREE_REBOOT_PREPARE\" x"' >"$T4/s/b-undeclared.test"
mkscript reboots.sh <<'EOF'
echo "ok 1 - boot $FEDOSTREE_BOOT_NUMBER, mark [$FEDOSTREE_REBOOT_MARK]"
IFS=:  # a test's own IFS cannot break the call
case $FEDOSTREE_REBOOT_MARK in
'') "$FEDOSTREE_REBOOT_PREPARE" one ;;
one) "$FEDOSTREE_REBOOT_PREPARE" two ;;
esac
EOF
printf '%s\n' '[Test]' 'X-Fedostree-Scenario=lifecycle' 'X-Fedostree-Reboots=true' 'Output=TAP' "Exec=$tmp/reboots.sh" \
	>"$T4/s/c-reboots.test"
printf '%s\n' '[Test]' 'X-Fedostree-Scenario=lifecycle' 'Type=session-exclusive' 'Exec=true' >"$T4/s/d-exclusive.test"
printf '%s\n' '[Test]' 'X-Fedostree-Scenario=lifecycle' 'X-Fedostree-Reboots=true' 'Exec=true' >"$T4/s/e-may-reboot.test"
for shell in dash busybox; do
	use_shell "$shell"
	: >"$results"
	for boot in 1 2 3; do
		FEDOSTREE_TESTS_ROOT=$T4 FEDOSTREE_VIRTIO_PORTS=$tmp/sys FEDOSTREE_DEV=$tmp/dev FEDOSTREE_CONSOLE=$console \
			FEDOSTREE_CMDLINE=$tmp/cmdline FEDOSTREE_SYSROOT=$tmp/sysroot FEDOSTREE_WORKDIR=$tmp/work4-$shell-$boot \
			FEDOSTREE_NO_POWEROFF=1 FEDOSTREE_PATH=$tools "$sh_cmd" "$runner" </dev/null
	done
	check "$shell scenario: every line is JSON" all_json
	check "$shell scenario: only its tests run; those that may reboot last, one waiting across the reboots" \
		eq "$(q -r 'select(.event == "test-started") | .name' | tr '\n' ' ')" \
		"s/a-first s/b-undeclared s/d-exclusive s/c-reboots s/c-reboots s/c-reboots s/e-may-reboot "
	check "$shell scenario: run-started counts the scenario's tests" eq "$(q 'select(.event == "run-started") | .tests')" 5
	check "$shell scenario: fw_cfg env reaches the tests" \
		eq "$(q -r 'select(.event == "test-finished" and .name == "s/a-first") | .status')" pass
	check "$shell scenario: an undeclared reboot request fails the test" \
		eq "$(q -r 'select(.event == "test-finished" and .name == "s/b-undeclared") | .status')" fail
	check "$shell reboots: two rebooting events with their marks" \
		eq "$(q -r 'select(.event == "rebooting") | .mark' | tr '\n' ' ')" "one two "
	check "$shell reboots: booted events for boots 2 and 3" eq "$(q -r 'select(.event == "booted") | .number' | tr '\n' ' ')" "2 3 "
	check "$shell reboots: the test saw each boot's mark, subtests numbered across boots" \
		eq "$(q -c 'select(.event == "subtest") | [.number, .description]' | tr '\n' ' ')" \
		'[1,"boot 1, mark []"] [2,"boot 2, mark [one]"] [3,"boot 3, mark [two]"] '
	check "$shell reboots: finished once, then the waiting test, then run-finished with every boot's totals" \
		eq "$(q -c 'select(.event == "test-finished" or .event == "run-finished") | [.event, .name, .status, .passed]' | tail -n 3 | tr '\n' ' ')" \
		'["test-finished","s/c-reboots","pass",null] ["test-finished","s/e-may-reboot","pass",null] ["run-finished",null,null,4] '
	check "$shell reboots: the state is gone once the run finished" test ! -e "$tmp/rstate"
done
# A broken state file ends the run with a failure instead of a shell that dies mid-arithmetic.
mkdir -p "$tmp/rstate"
echo "$T4/s/c-reboots.test" >"$tmp/rstate/resume"
echo garbage >"$tmp/rstate/boot"
: >"$results"
FEDOSTREE_TESTS_ROOT=$T4 FEDOSTREE_VIRTIO_PORTS=$tmp/sys FEDOSTREE_DEV=$tmp/dev FEDOSTREE_CONSOLE=$console \
	FEDOSTREE_CMDLINE=$tmp/cmdline FEDOSTREE_SYSROOT=$tmp/sysroot FEDOSTREE_WORKDIR=$tmp/work5 \
	FEDOSTREE_NO_POWEROFF=1 FEDOSTREE_PATH=$tmp/bin "$tmp/bin/sh" "$runner" </dev/null || true
check "a broken reboot state fails the run" eq "$(q -c 'select(.event == "run-finished") | .failed')" 1
check "a broken reboot state is removed" test ! -e "$tmp/rstate"
# fw_cfg `only` (a rerun of failed tests): just the named tests run, nested names included.
rm -rf "$tmp/fwcfg/scenario" "$tmp/fwcfg/env"
mkdir -p "$tmp/fwcfg/only"
printf '%s\n' sample/skip sample/sub/dir/nested sample/no-such-test >"$tmp/fwcfg/only/raw"
: >"$results"
FEDOSTREE_TESTS_ROOT=$T FEDOSTREE_VIRTIO_PORTS=$tmp/sys FEDOSTREE_DEV=$tmp/dev FEDOSTREE_CONSOLE=$console \
	FEDOSTREE_CMDLINE=$tmp/cmdline FEDOSTREE_SYSROOT=$tmp/sysroot FEDOSTREE_WORKDIR=$tmp/work6 \
	FEDOSTREE_NO_POWEROFF=1 FEDOSTREE_PATH=$tmp/bin "$tmp/bin/sh" "$runner" </dev/null
check "only: just the named tests run" \
	eq "$(q -r 'select(.event == "test-started") | .name' | tr '\n' ' ')" "sample/skip sample/sub/dir/nested "
check "only: run-started counts them" eq "$(q 'select(.event == "run-started") | .tests')" 2
rm -rf "$tmp/fwcfg/only"
# fw_cfg `script` (bisect --script): the script is the only test (no base checks either) and its exit
# code reaches the host.
export FEDOSTREE_BASE_CHECKS=$here/base-checks.sh
for body in 'echo probing; exit 125' '#!/bin/sh
exit 3'; do
	mkdir -p "$tmp/fwcfg/script"
	printf '%s\n' "$body" >"$tmp/fwcfg/script/raw"
	: >"$results"
	FEDOSTREE_TESTS_ROOT=$T FEDOSTREE_VIRTIO_PORTS=$tmp/sys FEDOSTREE_DEV=$tmp/dev FEDOSTREE_CONSOLE=$console \
		FEDOSTREE_CMDLINE=$tmp/cmdline FEDOSTREE_SYSROOT=$tmp/sysroot FEDOSTREE_WORKDIR=$tmp/work7 \
		FEDOSTREE_NO_POWEROFF=1 FEDOSTREE_PATH=$tmp/bin "$tmp/bin/sh" "$runner" </dev/null
	check "script: it is the only test" \
		eq "$(q -r 'select(.event == "test-started") | .name' | tr '\n' ' ')" "bisect/script "
	want=125
	case "$body" in '#!'*) want=3 ;; esac
	check "script: its exit code is reported ($want)" \
		eq "$(q 'select(.event == "test-finished") | .exit_code')" "$want"
	rm -rf "$tmp/fwcfg/script"
done
# --- base checks (base-checks.sh) after the tree's tests: a kernel warning and a core dump are caught,
# the checks that need systemd or SELinux say they do not apply; then a clean boot passes them ---
T8=$tmp/tests8
mkdir -p "$T8/s" "$tmp/cores"
printf '%s\n' '[Test]' 'Exec=true' >"$T8/s/pass.test"
use_shell busybox
base_run() {
	: >"$results"
	boot "$T8" "$tmp/work8"
}
base() { q -r --arg n "base/$1" 'select(.event == "test-finished" and .name == $n) | .'"$2"; }
cp "$tmp/dmesg" "$tmp/dmesg.clean"
printf '[   12.3] ------------[ cut here ]------------\n[   12.3] WARNING: CPU: 0 PID: 1 at fs/x.c:12 x+0x1\n' >>"$tmp/dmesg"
touch "$tmp/cores/core.crasher.123"
base_run
check "base: the runner points the kernel's default core_pattern at its dump directory" \
	eq "$(cat "$tmp/core_pattern")" "$tmp/cores/core.%e.%p"
check "base: after the tree's tests, every check as base/NAME" \
	eq "$(q -r 'select(.event == "test-started") | .name' | tr '\n' ' ')" \
	"s/pass base/avc-denials base/core-dumps base/failed-units base/journal-errors base/kernel-warnings base/not-emergency "
check "base: run-started counts the checks" eq "$(q 'select(.event == "run-started") | .tests')" 7
check "base: a kernel warning fails kernel-warnings, quoting it" \
	eq "$(base kernel-warnings status) $(base kernel-warnings output | grep -c 'WARNING: CPU: 0 PID: 1')" "fail 1"
check "base: a core dump fails core-dumps, naming it" \
	eq "$(base core-dumps status) $(base core-dumps output | grep -c core.crasher.123)" "fail 1"
check "base: without systemd, its checks do not apply" \
	eq "$(base failed-units status) $(base not-emergency status) $(base journal-errors status)" "skip skip skip"
check "base: without SELinux, avc-denials does not apply" eq "$(base avc-denials status)" skip
cp "$tmp/dmesg.clean" "$tmp/dmesg"
rm -f "$tmp/cores/"*
base_run
check "base: a clean boot passes kernel-warnings and core-dumps" \
	eq "$(base kernel-warnings status) $(base core-dumps status)" "pass pass"
check "base: run-finished totals" eq "$(q -c 'select(.event == "run-finished") | [.passed, .failed, .skipped, .timed_out]')" \
	"[3,0,4,0]"

# --- the upgrade gate (fw_cfg `upgrade`): the host's program is the only test on the published
# commit's boot; on the candidate's boot it runs again with its mark, then the tests that declare
# X-Fedostree-Upgrade=true and the base checks. A driver that never reboots gets neither ---
printf '%s\n' '[Test]' 'X-Fedostree-Upgrade=true' 'Exec=true' >"$T8/s/after-upgrade.test"
mkdir -p "$tmp/fwcfg/upgrade"
printf '%s\n' 'echo "ok 1 - mark [$FEDOSTREE_REBOOT_MARK]"' '[ -n "$FEDOSTREE_REBOOT_MARK" ] || "$FEDOSTREE_REBOOT_PREPARE" upgraded' \
	>"$tmp/fwcfg/upgrade/raw"
for shell in dash busybox; do
	use_shell "$shell"
	: >"$results"
	for boot in 1 2; do
		# The guest's WORK is a fresh /run/fedostree-tests on every boot.
		rm -rf "$tmp/work9"
		boot "$T8" "$tmp/work9"
	done
	check "$shell upgrade: the driver on both boots, then the upgrade tests, then the base checks" \
		eq "$(q -r 'select(.event == "test-started") | .name' | tr '\n' ' ' | cut -d' ' -f1-4)" \
		"upgrade/from-published upgrade/from-published s/after-upgrade base/avc-denials"
	check "$shell upgrade: the driver saw the mark on the candidate's boot" \
		eq "$(q 'select(.event == "subtest") | .description' | tr '\n' ' ')" 'mark [] mark [upgraded] '
	check "$shell upgrade: run-started announces the driver, the candidate's boot the tests it adds" \
		eq "$(q 'select(.event == "run-started") | .tests') $(q 'select(.event == "booted") | .added_tests')" "1 7"
	check "$shell upgrade: run-finished totals" \
		eq "$(q -c 'select(.event == "run-finished") | [.passed, .failed, .skipped, .timed_out]')" "[4,0,4,0]"
done
echo 'echo "not ok 1 - ostree admin upgrade failed"' >"$tmp/fwcfg/upgrade/raw"
: >"$results"
use_shell busybox
boot "$T8" "$tmp/work10"
check "upgrade: a driver that fails before the reboot is the only test, failed" \
	eq "$(q -r 'select(.event == "test-finished") | "\(.name) \(.status)"' | tr '\n' ' ')" "upgrade/from-published fail "
rm -rf "$tmp/fwcfg/upgrade"

if [ "$fails" -gt 0 ]; then
	echo "test-runner-host: $fails check(s) failed; results:" >&2
	cat "$results" >&2
	exit 1
fi
echo "test-runner-host: all checks passed"
