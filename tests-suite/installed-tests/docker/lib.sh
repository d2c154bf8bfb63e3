# lib.sh: helpers of the docker installed-tests (sourced).

# Wait until the daemon answers. docker.socket holds the API socket from boot, so one request is
# enough: it starts docker.service and is answered once dockerd is up (up to 150 s: dockerd under
# TCG is slow to start). Polling instead would run the Go client, itself slow under TCG, every second.
wait_for_docker() {
	if ! out=$(timeout 150 docker version --format '{{.Server.Version}}' 2>&1); then
		echo "dockerd did not answer within 150 s: $out"
		systemctl status --no-pager --lines=30 docker.socket docker.service containerd.service 2>&1 | tail -60
		return 1
	fi
}

# lap WHAT: "WHAT after N s" since the previous lap (or since this file was sourced): where a test's
# time went, in its output.
lap_from=$(cut -d" " -f1 /proc/uptime)
lap() {
	now=$(cut -d" " -f1 /proc/uptime)
	awk -v a="$lap_from" -v b="$now" -v what="$1" 'BEGIN { printf "%s after %.1f s\n", what, b - a }'
	lap_from=$now
}
