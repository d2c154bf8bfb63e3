# lib.sh: helpers of the docker installed-tests (sourced).

# Wait (up to 120 s: dockerd under TCG is slow to start) until the daemon answers.
wait_for_docker() {
	i=0
	until docker info >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -ge 120 ]; then
			echo "dockerd did not answer within 120 s"
			systemctl status --no-pager --lines=30 docker.service containerd.service 2>&1 | tail -50
			return 1
		fi
		sleep 1
	done
}
