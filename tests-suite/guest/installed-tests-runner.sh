#!/bin/sh
# installed-tests-runner: the in-guest GNOME installed-tests runner of fedostree. Installed as
# /usr/libexec/fedostree/installed-tests-runner and exec'd by PID 1; runs every
# /usr/share/installed-tests/**/*.test and reports JSON lines on the virtio-serial port
# org.fedostree.results (the host harness parses them), then powers the VM off.
# Session tests run up to fedostree.test_parallel=N at a time (kernel argument; 0 or absent = two per
# CPU: system tests spend much of their time waiting for a daemon, and a slot held by a waiting test
# left a core idle), session-exclusive ones alone, after them.
# POSIX sh for Debian's busybox-static (ash applets only). Env overrides exist so the host can test it:
#   FEDOSTREE_TESTS_ROOT   where *.test files live        (/usr/share/installed-tests)
#   FEDOSTREE_RESULTS_OUT  results file instead of the virtio port
#   FEDOSTREE_VIRTIO_PORTS sysfs dir of virtio ports      (/sys/class/virtio-ports)
#   FEDOSTREE_DEV          where port devices live         (/dev)
#   FEDOSTREE_CONSOLE      diagnostics sink                (/dev/console)
#   FEDOSTREE_CMDLINE      kernel command line file        (/proc/cmdline)
#   FEDOSTREE_SYSROOT      physical root                   (/sysroot)
#   FEDOSTREE_WORKDIR      scratch for test output         (/run/fedostree-tests)
#   FEDOSTREE_NO_POWEROFF  1 = exit instead of poweroff -f
#   FEDOSTREE_PATH         PATH (a dir of busybox applet links, to test with the guest's tools)
#   FEDOSTREE_FW_CFG       host-provided items              (/sys/firmware/qemu_fw_cfg/by_name/opt/org.fedostree)
#   FEDOSTREE_RUNNER_STATE what survives a reboot           (/var/lib/fedostree/installed-tests-runner)
#   FEDOSTREE_BASE_CHECKS  the base checks program          (/usr/libexec/fedostree/base-checks)
#   FEDOSTREE_CORE_PATTERN the kernel's core_pattern file   (/proc/sys/kernel/core_pattern)
#   FEDOSTREE_CORES        where core dumps go, if the tree set no handler (/run/fedostree-cores)
# Scenarios: the host may name one (fw_cfg item `scenario`); then only tests whose [Test] group says
# X-Fedostree-Scenario=<that name> run, and without one only tests that name none. The fw_cfg item
# `env` (KEY=VALUE lines) is exported to every test; `script` replaces the installed tests (bisect).
# Reboots (autopkgtest's reboot marks): a test calls "$FEDOSTREE_REBOOT_PREPARE" MARK and exits; the
# runner then reboots the guest and, on the next boot, runs that test again with
# FEDOSTREE_REBOOT_MARK=MARK before the tests still waiting. Such a test declares
# X-Fedostree-Reboots=true and runs alone, after the others.
# Base checks (base-checks.sh: failed units, AVC denials, emergency mode, core dumps, kernel warnings,
# the journal's errors) run after the tree's tests on the run's last boot, as base/NAME.
# The upgrade gate: fw_cfg item `upgrade` is a program the host hands over (pipeline/src/upgrade.rs),
# run as upgrade/from-published instead of the installed tests. It upgrades the booted published
# commit to the candidate and asks for a reboot; on the candidate's boot it runs again with its mark,
# then the installed tests that declare X-Fedostree-Upgrade=true run, then the base checks.
export PATH="${FEDOSTREE_PATH:-/usr/bin:/usr/sbin:/bin:/sbin}"
PORT_NAME=org.fedostree.results
TESTS_ROOT=${FEDOSTREE_TESTS_ROOT:-/usr/share/installed-tests}
CONSOLE=${FEDOSTREE_CONSOLE:-/dev/console}
CMDLINE=${FEDOSTREE_CMDLINE:-/proc/cmdline}
SYSROOT=${FEDOSTREE_SYSROOT:-/sysroot}
WORK=${FEDOSTREE_WORKDIR:-/run/fedostree-tests}
FW_CFG=${FEDOSTREE_FW_CFG:-/sys/firmware/qemu_fw_cfg/by_name/opt/org.fedostree}
RSTATE=${FEDOSTREE_RUNNER_STATE:-/var/lib/fedostree/installed-tests-runner}
PORTS_SYSFS=${FEDOSTREE_VIRTIO_PORTS:-/sys/class/virtio-ports}
DEV=${FEDOSTREE_DEV:-/dev}
BASE_CHECKS=${FEDOSTREE_BASE_CHECKS:-/usr/libexec/fedostree/base-checks}
CORE_PATTERN=${FEDOSTREE_CORE_PATTERN:-/proc/sys/kernel/core_pattern}
CORES=${FEDOSTREE_CORES:-/run/fedostree-cores}
DEFAULT_TIMEOUT=300
# The host only needs the tail of a test's output; the full log would flood the port.
OUTPUT_TAIL=8192
# Kernel args and Exec lines may contain glob characters; nothing here wants pathname expansion.
set -f

TAB=$(printf '\t')
CR=$(printf '\r')

# `installed-tests-runner --reboot-prepare MARK`: what a test calls (as $FEDOSTREE_REBOOT_PREPARE) to
# be run again with MARK after a reboot. The runner reads the request once the test has exited.
if [ "${1-}" = --reboot-prepare ]; then
	[ -n "${2-}" ] || { echo "usage: $0 --reboot-prepare MARK" >&2; exit 2; }
	[ -n "${FEDOSTREE_REBOOT_REQUEST-}" ] || { echo "$0: not inside an installed test" >&2; exit 2; }
	printf '%s\n' "$2" >"$FEDOSTREE_REBOOT_REQUEST"
	exit 0
fi

# stdin → JSON string body (no quotes): escape \ " tab CR, join lines with \n, drop other controls.
json_escape() {
	tr -d '\000-\010\013\014\016-\037' |
		sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e "s/$TAB/\\\\t/g" -e "s/$CR/\\\\r/g" |
		awk '{ if (NR > 1) printf "%s", "\\n"; printf "%s", $0 }'
}

# A tail cut by bytes can start inside a UTF-8 sequence; drop leading continuation bytes (0x80-0xbf)
# so the JSON line stays valid UTF-8.
utf8_tail() {
	tail -c "$2" "$1" >"$1.tail"
	skip=0
	for b in $(head -c 3 "$1.tail" | od -An -tu1); do
		if [ "$b" -lt 128 ] || [ "$b" -ge 192 ]; then break; fi
		skip=$((skip + 1))
	done
	tail -c +$((skip + 1)) "$1.tail"
	rm -f "$1.tail"
}

# The console copy goes first: the host takes its screenshot when a failure arrives on the port, and
# the screen should already show it.
emit() {
	printf 'fedostree-result: %s\n' "$1" >&4
	printf '%s\n' "$1" >&3
}

# emit_file FILE: emit every line of FILE (already JSON events).
emit_file() {
	sed 's/^/fedostree-result: /' "$1" >&4
	cat "$1" >&3
}

log() { printf 'fedostree-runner: %s\n' "$*" >&4; }

# /proc/uptime has centiseconds; busybox date has no %N.
now_ms() {
	read -r up _ </proc/uptime
	echo $((${up%.*} * 1000 + (1${up#*.} - 100) * 10))
}

karg() {
	# shellcheck disable=SC2013 # kernel args are words, not lines
	for a in $(cat "$CMDLINE" 2>/dev/null); do
		case "$a" in "$1="*) echo "${a#*=}"; return 0 ;; esac
	done
	return 1
}

is_uint() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

# The [Test] group of a keyfile, for awk: calls pair(KEY, VALUE) for the first occurrence of each key
# (spaces around '=' allowed, comments skipped); per file, and a file is done once `stop` is set.
KF_PARSE='
FNR == 1 { g = 0; split("", seen); stop = 0 }
stop { next }
/^[ \t]*\[/ { g = ($0 ~ /^[ \t]*\[Test\][ \t\r]*$/); next }
!g || /^[ \t]*#/ { next }
{
	i = index($0, "="); if (!i) next
	key = substr($0, 1, i - 1); gsub(/^[ \t]+|[ \t]+$/, "", key)
	if (key in seen) next
	seen[key] = 1
	v = substr($0, i + 1); sub(/^[ \t]+/, "", v); sub(/[ \t\r]+$/, "", v)
	pair(key, v)
}'

# kf_all FILE [KEY]: every KEY=VALUE of the [Test] group, one per line; with KEY, just its value. One
# awk for all of a test's keys: a process costs ~50 ms under TCG.
kf_all() {
	awk -v want="${2-}" '
		function pair(k, v) { if (want == "") print k "=" v; else if (k == want) { print v; exit } }
	'"$KF_PARSE" "$1"
}

# split_by_type LIST SESSION EXCLUSIVE REBOOTING SCENARIO [UPGRADE]: the .test files named in LIST (one
# per line, order kept) that belong to SCENARIO (X-Fedostree-Scenario; empty = tests that name none) and,
# with UPGRADE=1, declare X-Fedostree-Upgrade=true into SESSION,
# EXCLUSIVE (Type=session-exclusive) and REBOOTING (X-Fedostree-Reboots=true: last, so no other test runs
# on what a reboot brings up), in one awk for every file. A file that cannot be read goes to SESSION
# whatever the scenario, where running it reports why.
split_by_type() {
	awk -v list="$1" -v session="$2" -v exclusive="$3" -v rebooting="$4" -v scenario="$5" -v upgrade="${6:-0}" '
		BEGIN {
			while ((getline f < list) > 0) {
				if (f == "") continue
				order[++n] = f
				if ((getline line < f) >= 0) { close(f); ARGV[ARGC++] = f; readable[f] = 1 }
			}
		}
		function pair(k, v) {
			if (k == "Type") type[FILENAME] = v
			else if (k == "X-Fedostree-Scenario") scen[FILENAME] = v
			else if (k == "X-Fedostree-Reboots" && v == "true") reboots[FILENAME] = 1
			else if (k == "X-Fedostree-Upgrade" && v == "true") upgrades[FILENAME] = 1
		}
		END {
			printf "" > session; printf "" > exclusive; printf "" > rebooting
			for (i = 1; i <= n; i++) {
				f = order[i]
				if (!(f in readable)) { print f > session; continue }
				if (scen[f] != scenario) continue
				if (upgrade == 1 && !(f in upgrades)) continue
				print f > (reboots[f] ? rebooting : type[f] == "session-exclusive" ? exclusive : session)
			}
		}
	'"$KF_PARSE" </dev/null
}

# TAP lines of a log → "NUMBER STATUS DESCRIPTION" per subtest, then "plan N" / "bail" markers.
tap_parse() {
	awk '
		/^1\.\.[0-9]+/ { n = $0; sub(/^1\.\./, "", n); sub(/[^0-9].*$/, "", n); print "plan " n; next }
		/^Bail out!/ { print "bail"; next }
		/^(not )?ok([ \t]|$)/ {
			ok = ($1 == "ok"); line = $0; sub(/^(not )?ok[ \t]*/, "", line)
			count++; num = count
			if (match(line, /^[0-9]+/)) { num = substr(line, 1, RLENGTH) + 0; line = substr(line, RLENGTH + 1) }
			dir = ""
			if (match(line, /[ \t]*#[ \t]*[Ss][Kk][Ii][Pp]/)) dir = "skip"
			else if (match(line, /[ \t]*#[ \t]*[Tt][Oo][Dd][Oo]/)) dir = "todo"
			if (dir != "") line = substr(line, 1, RSTART - 1)
			sub(/^[ \t]*-?[ \t]*/, "", line)
			if (dir == "todo") st = "todo"
			else if (!ok) st = "fail"
			else if (dir == "skip") st = "skip"
			else st = "pass"
			print num " " st " " line
		}' "$1"
}

# tap_events LOG EVENTS: the subtest events of a TAP log into EVENTS and "RAN BAD PLAN BAIL" on
# stdout, in one pipeline for all subtests (a pipeline per subtest took 40 s for 187 of them).
tap_events() {
	tap_parse "$1" |
		tr -d '\000-\010\013\014\016-\037' |
		sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e "s/$TAB/\\\\t/g" -e "s/$CR/\\\\r/g" |
		JNAME=$jname awk -v events="$2" -v base="${3:-0}" '
			$1 == "plan" { plan = $2; next }
			$1 == "bail" { bail = 1; next }
			{
				desc = $0; sub(/^[^ ]+ [^ ]+ ?/, "", desc)
				printf "{\"event\":\"subtest\",\"test\":\"%s\",\"number\":%d,\"description\":\"%s\",\"status\":\"%s\"}\n", ENVIRON["JNAME"], $1 + base, desc, $2 > events
				ran++; if ($2 == "fail") bad++
			}
			END { close(events); print ran + 0, bad + 0, (plan == "" ? "-" : plan), bail + 0 }'
}

passed=0 failed=0 skipped=0 timed_out=0

# test_jname FILE: the test's name (path below the tests root, no .test) as a JSON string body.
test_jname() {
	name=${1#"$TESTS_ROOT"/}
	printf '%s' "${name%.test}" | json_escape
}

# run_test FILE DIR: runs one .test with DIR as its scratch space; its events after test-started go to
# DIR/report, its status to DIR/status, and as its last act it writes DIR to the done FIFO (fd 6,
# see run_list).
run_test() {
	file=$1 dir=$2
	jname=$(test_jname "$file")
	exec_line='' type='' tenv='' tap='' limit='' may_reboot=''
	kf_all "$file" >"$dir/keys"
	while IFS= read -r kv; do
		case "$kv" in
		Exec=*) exec_line=${kv#Exec=} ;;
		Type=*) type=${kv#Type=} ;;
		TestEnvironment=*) tenv=${kv#TestEnvironment=} ;;
		Output=*) tap=${kv#Output=} ;;
		X-Fedostree-Timeout=*) limit=${kv#X-Fedostree-Timeout=} ;;
		X-Fedostree-Reboots=true) may_reboot=1 ;;
		esac
	done <"$dir/keys"
	mark='' tap_base=0
	if [ "$file" = "$resume_test" ]; then
		mark=$resume_mark tap_base=$resume_tap_base
		resume_test=''
	fi
	is_uint "$limit" && [ "$limit" -gt 0 ] || limit=$global_timeout
	out=$dir/output
	: >"$out"
	start=$(now_ms)
	rc=
	if [ ! -f "$file" ]; then
		echo "fedostree-runner: $file is gone: the tree booted now does not have it" >"$out"
		rc=1
	elif [ -z "$exec_line" ]; then
		echo "fedostree-runner: $file has no Exec= in [Test]" >"$out"
		rc=1
	else
		case "${type:-session}" in
		session | session-exclusive) ;;
		*)
			echo "fedostree-runner: $file: unknown Type=$type" >"$out"
			rc=1
			;;
		esac
	fi
	if [ -z "$rc" ]; then
		# A subshell so TestEnvironment reaches this test only. setsid first: the session (and process
		# group) is then $pid itself, whichever timeout runs inside it — busybox's execs the test in
		# place, coreutils' forks it and signals its own group — so the daemons a test leaves behind, or
		# a timed-out pipeline, are killed as a whole. The runner's own descriptors stay with the runner.
		(
			IFS=';'
			for kv in $tenv; do
				# shellcheck disable=SC2163 # exporting NAME=VALUE is the point
				case "$kv" in [A-Za-z_]*=*) export "$kv" ;; esac
			done
			export FEDOSTREE_REBOOT_MARK="$mark" FEDOSTREE_REBOOT_REQUEST="$dir/reboot" \
				FEDOSTREE_REBOOT_PREPARE="$WORK/reboot-prepare" FEDOSTREE_BOOT_NUMBER="$boot_number"
			exec setsid timeout -k 5 "$limit" sh -c "$exec_line"
		) </dev/null >"$out" 2>&1 3>&- 4>&- 6>&- &
		pid=$!
		wait "$pid" 2>/dev/null
		rc=$?
		kill -KILL -"$pid" 2>/dev/null
	fi
	dur=$(($(now_ms) - start))

	# busybox 1.35 timeout execs the test in place and signals it: the status is 143 (TERM) or 137 (KILL
	# after -k), indistinguishable from a test killed by those signals except by the elapsed time.
	# coreutils' timeout (real trees) exits 124, or 137 after -k.
	status=fail
	if { [ "$rc" -eq 124 ] || [ "$rc" -eq 143 ] || [ "$rc" -eq 137 ]; } && [ $((dur + 100)) -ge $((limit * 1000)) ]; then
		status=timeout
		echo "fedostree-runner: timed out after ${limit}s" >>"$out"
	elif [ "$rc" -eq 77 ]; then
		status=skip
	elif [ "$rc" -eq 0 ]; then
		status=pass
	fi

	if [ -s "$dir/reboot" ] && [ "$status" = pass ] && [ -z "$may_reboot" ]; then
		status=fail
		echo "fedostree-runner: the test asked for a reboot without declaring X-Fedostree-Reboots=true" >>"$out"
	elif [ -s "$dir/reboot" ] && [ "$status" = pass ]; then
		status=reboot
	fi

	if [ "$tap" = TAP ]; then
		: >"$dir/events"
		# shellcheck disable=SC2046 # four words, split on purpose
		set -- $(tap_events "$out" "$dir/events" "$tap_base")
		ran=$1 bad=$2 plan=$3 bail=$4
		cat "$dir/events" >>"$dir/report"
		echo $((tap_base + ran)) >"$dir/tap-ran"
		if [ "$status" = pass ] || [ "$status" = reboot ]; then
			if [ "$bad" -gt 0 ]; then
				status=fail
				echo "fedostree-runner: $bad TAP subtest(s) not ok" >>"$out"
			elif [ "$bail" = 1 ]; then
				status=fail
				echo "fedostree-runner: TAP Bail out!" >>"$out"
			elif [ "$plan" != - ] && [ "$plan" -ne "$ran" ]; then
				status=fail
				echo "fedostree-runner: TAP plan 1..$plan but $ran subtest(s) ran" >>"$out"
			fi
		fi
	fi

	jout=$(utf8_tail "$out" "$OUTPUT_TAIL" | json_escape)
	if [ "$status" = reboot ]; then
		jmark=$(head -n 1 "$dir/reboot" | json_escape)
		printf '%s\n' "{\"event\":\"rebooting\",\"test\":\"$jname\",\"mark\":\"$jmark\",\"output\":\"$jout\"}" >>"$dir/report"
		head -n 1 "$dir/reboot" >"$dir/mark"
		echo reboot >"$dir/status"
		return
	fi
	printf '%s\n' "{\"event\":\"test-finished\",\"name\":\"$jname\",\"status\":\"$status\",\"exit_code\":$rc,\"duration_ms\":$dur,\"output\":\"$jout\"}" >>"$dir/report"
	echo "$status" >"$dir/status"
}

# One process writes the results port: tests report into their DIR, and the loop below emits each
# report once the test is done, so lines of tests running side by side never interleave.
finish_test() {
	if [ ! -e "$1/status" ]; then
		# The test's runner process ended before it reported (killed, or a redirection failed).
		printf '%s\n' "{\"event\":\"test-finished\",\"name\":\"$(cat "$1/jname")\",\"status\":\"fail\",\"exit_code\":null,\"duration_ms\":0,\"output\":\"fedostree-runner: the process running this test ended before it reported\"}" >>"$1/report"
	fi
	emit_file "$1/report"
	case $(cat "$1/status" 2>/dev/null) in
	reboot)
		reboot_test=$(cat "$1/file") reboot_mark=$(cat "$1/mark")
		reboot_tap=$(cat "$1/tap-ran" 2>/dev/null || echo 0)
		;;
	pass) passed=$((passed + 1)) ;;
	skip) skipped=$((skipped + 1)) ;;
	timeout) timed_out=$((timed_out + 1)) ;;
	*) failed=$((failed + 1)) ;;
	esac
	rm -rf "$1"
}

# run_list LIST MAX: every test of LIST, at most MAX at a time, each started in list order. A new
# test starts as soon as any running one is done: each writes its DIR to the done FIFO, and reading
# it blocks until one does (no polling: a process costs ~50 ms under TCG). Waiting for the oldest
# instead would leave a slot idle behind one long test.
run_list() {
	list=$1 max=$2 running=''
	while IFS= read -r t <&5; do
		# shellcheck disable=SC2086 # words on purpose
		while [ "$(njobs $running)" -ge "$max" ]; do
			reap_one
		done
		if [ -n "$reboot_test" ]; then
			# A test asked for a reboot: what has not started waits for the next boot.
			{ printf '%s\n' "$t"; cat <&5; } >>"$WORK/later"
			break
		fi
		n=$((n + 1))
		d=$WORK/t$n
		mkdir -p "$d"
		: >"$d/report"
		printf '%s\n' "$t" >"$d/file"
		test_jname "$t" >"$d/jname"
		emit "{\"event\":\"test-started\",\"name\":\"$(cat "$d/jname")\"}"
		# The outer subshell reports the test done even if the one running it dies; one short line is
		# a single atomic write to the FIFO, however many tests end at once.
		( (run_test "$t" "$d"); echo "$d" >&6) </dev/null 5<&- &
		running="$running $!:$d"
	done 5<"$list"
	while [ -n "$running" ]; do
		reap_one
	done
}

njobs() { echo $#; }

# run_base_checks: base/NAME for every check base-checks lists, side by side (they only read).
run_base_checks() {
	[ -x "$BASE_CHECKS" ] || { log "no $BASE_CHECKS in this tree: no base checks"; return 0; }
	TESTS_ROOT=$WORK/base-tests
	rm -rf "$TESTS_ROOT"
	mkdir -p "$TESTS_ROOT/base"
	for c in $("$BASE_CHECKS" --list); do
		printf '[Test]\nType=session\nExec=%s %s\n' "$BASE_CHECKS" "$c" >"$TESTS_ROOT/base/$c.test"
	done
	find "$TESTS_ROOT" -name '*.test' -type f | LC_ALL=C sort >"$WORK/base-list"
	run_list "$WORK/base-list" "$parallel"
}

# base_check_count: how many base checks run_base_checks will run.
base_check_count() {
	if [ -x "$BASE_CHECKS" ]; then "$BASE_CHECKS" --list | wc -w; else echo 0; fi
}

# list_upgrade_tests: the installed tests that declare X-Fedostree-Upgrade=true into $WORK/up-session
# and $WORK/up-exclusive (those that may reboot are left out: the upgrade already did); their count.
list_upgrade_tests() {
	find "$INSTALLED_TESTS" -name '*.test' -type f 2>/dev/null | LC_ALL=C sort >"$WORK/up-all"
	split_by_type "$WORK/up-all" "$WORK/up-session" "$WORK/up-exclusive" "$WORK/up-rebooting" "" 1
	cat "$WORK/up-session" "$WORK/up-exclusive" | wc -l
}

# run_upgrade_tests: on the candidate's boot after the upgrade, the tests list_upgrade_tests found.
run_upgrade_tests() {
	TESTS_ROOT=$INSTALLED_TESTS
	run_list "$WORK/up-session" "$parallel"
	run_list "$WORK/up-exclusive" 1
}

# The kernel's default core_pattern writes `core` into the crashing process's directory, where no
# check can find it: unless the tree set a handler (systemd-coredump), dumps go to $CORES.
watch_core_dumps() {
	[ "$(cat "$CORE_PATTERN" 2>/dev/null)" = core ] || return 0
	mkdir -p "$CORES" && echo "$CORES/core.%e.%p" >"$CORE_PATTERN" ||
		log "cannot point $CORE_PATTERN at $CORES"
}

# reap_one: wait until a running test is done (its DIR arrives on the done FIFO), report it and drop
# it from $running.
reap_one() {
	IFS= read -r done_dir <&6
	left=''
	# shellcheck disable=SC2086 # words on purpose
	for job in $running; do
		if [ "${job#*:}" = "$done_dir" ]; then
			wait "${job%%:*}" 2>/dev/null
			finish_test "$done_dir"
		else
			left="$left $job"
		fi
	done
	running=$left
}

# --- main ---
# A failing `exec N>file` ends a non-interactive shell, so probe the sinks in a subshell first.
can_write() { (: >>"$1") 2>/dev/null; }
if can_write "$CONSOLE"; then exec 4>>"$CONSOLE"; else exec 4>&2; fi
# The port's device appears when the host side of virtio-serial announces it: give it a few seconds.
find_port() {
	set +f
	for p in "$PORTS_SYSFS"/*; do
		[ -r "$p/name" ] && [ "$(cat "$p/name")" = "$PORT_NAME" ] && echo "$DEV/${p##*/}" && break
	done
	set -f
}
port=$FEDOSTREE_RESULTS_OUT
i=0
while [ -z "$port" ] && [ $i -lt 50 ]; do
	port=$(find_port)
	[ -n "$port" ] || usleep 100000
	i=$((i + 1))
done
if [ -n "$port" ] && can_write "$port"; then exec 3>>"$port"; else
	log "virtio port $PORT_NAME not found; results go to the console only"
	exec 3>/dev/null
fi
mkdir -p "$WORK"
# The done FIFO, opened read-write so that opening it does not wait for a writer.
rm -f "$WORK/done.fifo"
if ! mkfifo "$WORK/done.fifo" || [ ! -p "$WORK/done.fifo" ]; then
	log "cannot make $WORK/done.fifo"
	exit 1
fi
exec 6<>"$WORK/done.fifo"

global_timeout=$(karg fedostree.test_timeout)
is_uint "$global_timeout" && [ "$global_timeout" -gt 0 ] || global_timeout=$DEFAULT_TIMEOUT
# How tests call back for a reboot: one program path ("$FEDOSTREE_REBOOT_PREPARE" MARK), running this
# very script (absolute, whatever PATH or IFS a test sets).
SELF=$(readlink -f "$0")
printf '#!/bin/sh\nexec /bin/sh %s --reboot-prepare "$@"\n' "'$SELF'" >"$WORK/reboot-prepare"
chmod +x "$WORK/reboot-prepare"

deployment='' commit=
if ostree=$(karg ostree); then
	d=$(readlink -f "$SYSROOT$ostree")
	deployment=${d#"$SYSROOT"}
	commit=${d##*/}
	commit=${commit%.*}
fi
jdep=$(printf '%s' "$deployment" | json_escape)

watch_core_dumps
# A test that crashes leaves a core dump for the base checks to report (the kernel's default limit is 0).
ulimit -c unlimited 2>/dev/null

# What the host passes through QEMU's fw_cfg (a module on real trees' kernels).
[ -n "${FEDOSTREE_FW_CFG-}" ] || [ -d "$FW_CFG" ] || modprobe qemu_fw_cfg 2>/dev/null
fw_item() { cat "$FW_CFG/$1/raw" 2>/dev/null; }
scenario=$(fw_item scenario)
INSTALLED_TESTS=$TESTS_ROOT
run_script='' upgrade_mode=''
# fw_cfg item `script` (`fedostree bisect --script`): that program is the only test, bisect/script,
# instead of the installed ones; its exit code is the verdict (0 good, 125 skip, else bad) and the
# host reads it from the event. A script without `#!` runs under sh.
if fw_item script >"$WORK/bisect-script" 2>/dev/null && [ -s "$WORK/bisect-script" ]; then
	chmod +x "$WORK/bisect-script"
	mkdir -p "$WORK/script-tests/bisect"
	run_script="$WORK/bisect-script"
	[ "$(head -c 2 "$WORK/bisect-script")" = '#!' ] || run_script="/bin/sh $WORK/bisect-script"
	printf '[Test]\nType=session\nExec=%s\n' "$run_script" >"$WORK/script-tests/bisect/script.test"
	TESTS_ROOT=$WORK/script-tests
else
	rm -f "$WORK/bisect-script"
fi
# fw_cfg item `upgrade` (the upgrade gate): that program is the only test, upgrade/from-published; it
# reboots into the candidate. Written the same way on every boot, so the resumed test is found again.
if fw_item upgrade >"$WORK/upgrade-driver" 2>/dev/null && [ -s "$WORK/upgrade-driver" ]; then
	upgrade_mode=1
	mkdir -p "$WORK/upgrade-tests/upgrade"
	printf '[Test]\nType=session-exclusive\nExec=/bin/sh %s\nOutput=TAP\nX-Fedostree-Reboots=true\nX-Fedostree-Timeout=900\n' \
		"$WORK/upgrade-driver" >"$WORK/upgrade-tests/upgrade/from-published.test"
	TESTS_ROOT=$WORK/upgrade-tests
else
	rm -f "$WORK/upgrade-driver"
fi
# The base checks run on the last boot unless a bisect script is the run; the upgrade gate announces
# them, with its upgrade tests, on the candidate's boot (the `booted` event's added_tests).
nbase=0
if [ -z "$run_script" ] && [ -z "$upgrade_mode" ]; then
	nbase=$(base_check_count)
fi
export FEDOSTREE_SCENARIO="$scenario" FEDOSTREE_FW_CFG="$FW_CFG"
if fw_item env >"$WORK/env" 2>/dev/null; then
	while IFS= read -r kv; do
		# shellcheck disable=SC2163 # exporting NAME=VALUE is the point
		case "$kv" in [A-Za-z_]*=*) export "$kv" ;; esac
	done <"$WORK/env"
fi

parallel=$(karg fedostree.test_parallel)
is_uint "$parallel" || parallel=0
if [ "$parallel" -eq 0 ]; then
	cpus=$(grep -c '^processor' /proc/cpuinfo 2>/dev/null)
	is_uint "$cpus" && [ "$cpus" -gt 0 ] || cpus=1
	parallel=$((2 * cpus))
fi
n=0
resume_test='' resume_mark='' resume_tap_base=0 reboot_test='' boot_number=1
: >"$WORK/later"
# The state a reboot left, checked before use: what a broken state file would do to the arithmetic
# below is end this shell without a word.
resume_state_ok() {
	[ -s "$RSTATE/resume" ] || return 1
	{ read -r b <"$RSTATE/boot" && read -r tb <"$RSTATE/tap-base" && read -r p f sk to <"$RSTATE/counts"; } 2>/dev/null || return 1
	for v in "$b" "$tb" "$p" "$f" "$sk" "$to"; do is_uint "$v" || return 1; done
}
if [ -e "$RSTATE" ] && ! resume_state_ok; then
	log "the state left by a reboot ($RSTATE) is incomplete: the run cannot resume"
	emit "{\"event\":\"run-finished\",\"passed\":0,\"failed\":1,\"skipped\":0,\"timed_out\":0}"
	rm -rf "$RSTATE"
	[ "$FEDOSTREE_NO_POWEROFF" = 1 ] && exit 1
	poweroff -f
	exit 1
fi
if [ -s "$RSTATE/resume" ]; then
	# Boot 2 or later of this run: the test that asked for the reboot first, then what was waiting.
	boot_number=$(($(cat "$RSTATE/boot") + 1))
	read -r passed failed skipped timed_out <"$RSTATE/counts"
	resume_test=$(head -n 1 "$RSTATE/resume")
	resume_mark=$(cat "$RSTATE/mark")
	resume_tap_base=$(cat "$RSTATE/tap-base")
	cp "$RSTATE/resume" "$WORK/resume"
	bid=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
	added=0
	[ -z "$upgrade_mode" ] || added=$(($(list_upgrade_tests) + $(base_check_count)))
	emit "{\"event\":\"booted\",\"number\":$boot_number,\"boot_id\":\"$bid\",\"deployment\":\"$jdep\",\"commit\":\"$commit\",\"added_tests\":$added}"
	run_list "$WORK/resume" 1
else
	find "$TESTS_ROOT" -name '*.test' -type f 2>/dev/null | LC_ALL=C sort >"$WORK/all"
	# fw_cfg item `only`: the names (suite/test, one a line) of the tests to run, for a rerun of the ones
	# that failed; a name that matches nothing runs nothing.
	if fw_item only >"$WORK/only" 2>/dev/null; then
		while IFS= read -r f; do
			name=${f#"$TESTS_ROOT"/}
			grep -qxF "${name%.test}" "$WORK/only" && printf '%s\n' "$f"
		done <"$WORK/all" >"$WORK/all.only"
		mv "$WORK/all.only" "$WORK/all"
	fi
	split_by_type "$WORK/all" "$WORK/session" "$WORK/exclusive" "$WORK/rebooting" "$scenario"
	ntests=$(($(cat "$WORK/session" "$WORK/exclusive" "$WORK/rebooting" | wc -l) + nbase))
	bid=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
	emit "{\"event\":\"run-started\",\"tests\":$((ntests)),\"arch\":\"$(uname -m)\",\"kernel\":\"$(uname -r)\",\"deployment\":\"$jdep\",\"commit\":\"$commit\",\"boot_id\":\"$bid\"}"
	# Session tests first, side by side; then each session-exclusive one alone; then the ones that may
	# reboot, alone. fd 5 holds the list.
	run_list "$WORK/session" "$parallel"
	if [ -z "$reboot_test" ]; then run_list "$WORK/exclusive" 1; else cat "$WORK/exclusive" >>"$WORK/later"; fi
	if [ -z "$reboot_test" ]; then run_list "$WORK/rebooting" 1; else cat "$WORK/rebooting" >>"$WORK/later"; fi
fi

if [ -n "$reboot_test" ]; then
	# Everything the next boot needs, written aside and swapped in whole before the reboot is asked for.
	rm -rf "$RSTATE.new"
	mkdir -p "$RSTATE.new"
	{ printf '%s\n' "$reboot_test"; cat "$WORK/later"; } >"$RSTATE.new/resume"
	printf '%s\n' "$reboot_mark" >"$RSTATE.new/mark"
	echo "$reboot_tap" >"$RSTATE.new/tap-base"
	echo "$passed $failed $skipped $timed_out" >"$RSTATE.new/counts"
	echo "$boot_number" >"$RSTATE.new/boot"
	rm -rf "$RSTATE"
	mv "$RSTATE.new" "$RSTATE"
	sync
	log "rebooting for $reboot_test (mark $reboot_mark)"
	exec 3>&-
	# Host tests of this script: the next boot is the next invocation.
	[ "$FEDOSTREE_NO_POWEROFF" = 1 ] && exit 0
	# systemd's clean reboot finalizes a staged deployment. Busybox trees have no systemd, and there this
	# script is PID 1: a plain `reboot` would only signal itself.
	if [ -d /run/systemd/system ]; then systemctl reboot || reboot -f; else reboot -f; fi
	# The reboot stops this service; never report the run finished from here. If nothing happens in
	# five minutes, say so: the host's timeout then ends the VM.
	sleep 300
	log "asked for a reboot five minutes ago and the guest is still up"
	while :; do sleep 60; done
fi
if [ -n "$upgrade_mode" ] && [ "$boot_number" -eq 1 ]; then
	log "the upgrade never rebooted into the candidate: no upgrade tests, no base checks of it"
elif [ -n "$upgrade_mode" ]; then
	run_upgrade_tests
	run_base_checks
elif [ -z "$run_script" ]; then
	run_base_checks
fi
rm -rf "$RSTATE"
emit "{\"event\":\"run-finished\",\"passed\":$passed,\"failed\":$failed,\"skipped\":$skipped,\"timed_out\":$timed_out}"
exec 3>&-
sync
[ "$FEDOSTREE_NO_POWEROFF" = 1 ] && exit 0
poweroff -f
# poweroff -f only returns on failure; PID 1 exiting panics, which -no-reboot turns into VM exit.
exit 1
