# lib.sh: helpers of the docker installed-tests (sourced).

# Wait until the daemon answers. docker.socket holds the API socket from boot, so a request starts
# docker.service and is answered once dockerd is up (Debian's unit also waits for
# network-online.target: DHCP on QEMU's network, IPv4 only). Polling would run the Go client, itself
# slow under TCG, every second; a request that fails fast (dockerd died while starting and systemd
# restarts it) is retried, within 150 s in all.
wait_for_docker() {
	deadline=$(($(cut -d. -f1 /proc/uptime) + 150))
	while :; do
		left=$((deadline - $(cut -d. -f1 /proc/uptime)))
		if [ "$left" -gt 0 ] && docker_answer=$(timeout "$left" docker version --format '{{.Server.Version}}' 2>&1); then
			return 0
		fi
		if [ "$left" -le 2 ]; then
			echo "dockerd did not answer within 150 s; last answer: $docker_answer"
			systemctl status --no-pager --lines=30 docker.socket docker.service containerd.service 2>&1 | tail -60
			return 1
		fi
		sleep 2
	done
}

# lap WHAT: "WHAT after N s" since the previous lap (or since this file was sourced): where a test's
# time went, in its output.
lap_from=$(cut -d" " -f1 /proc/uptime)
lap() {
	now=$(cut -d" " -f1 /proc/uptime)
	awk -v a="$lap_from" -v b="$now" -v what="$1" 'BEGIN { printf "%s after %.1f s\n", what, b - a }'
	lap_from=$now
}
