#!/bin/sh
# docker-info: the Docker engine is socket-activated, as on Fedora CoreOS (docker.socket enabled by
# the release's presets, docker.service not), and the first client's `docker info` starts it.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
socket=$(systemctl is-enabled docker.socket)
service=$(systemctl is-enabled docker.service)
echo "docker.socket $socket, docker.service $service"
[ "$socket" = enabled ] || { echo "docker.socket should be enabled"; exit 1; }
[ "$service" = disabled ] || { echo "docker.service should be left to socket activation"; exit 1; }
wait_for_docker || exit 1
docker info --format 'server {{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupVersion}}' || exit 1
[ "$(systemctl is-active docker.service)" = active ] || exit 1
# How long the socket-activated start took (recorded in the run's results.jsonl).
systemctl show -p InactiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic docker.service |
	awk -F= '{ t[$1] = $2 } END {
		printf "docker.service started in %.1f s\n", (t["ActiveEnterTimestampMonotonic"] - t["InactiveExitTimestampMonotonic"]) / 1e6 }'
