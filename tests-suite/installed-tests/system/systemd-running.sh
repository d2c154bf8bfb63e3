#!/bin/sh
# systemd-running: systemd is PID 1, the boot finished with no failed unit and the system is
# `running` (this test's own service is Type=simple, so it does not hold the boot up).
[ "$(cat /proc/1/comm)" = systemd ] || { echo "PID 1 is $(cat /proc/1/comm), not systemd"; exit 1; }
start=$(cut -d" " -f1 /proc/uptime)
state=$(timeout 120 systemctl is-system-running --wait)
waited=$(awk -v s="$start" '{printf "%.1f", $1 - s}' /proc/uptime)
failed=$(systemctl --failed --no-legend --plain)
echo "is-system-running: $state (waited ${waited} s, at ${start} s of uptime)"
# Where the boot's time went (kept in the run's results.jsonl).
systemd-analyze 2>&1 | head -3
systemd-analyze critical-chain 2>&1 | head -16
if [ -n "$failed" ]; then
	echo "failed units:"
	echo "$failed"
	systemctl status --no-pager --lines=15 $(echo "$failed" | awk '{print $1}') 2>&1 | tail -60
	exit 1
fi
[ "$state" = running ] || exit 1
