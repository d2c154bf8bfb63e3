#!/bin/sh
# docker-info: the Docker engine runs (started by its preset at boot) and answers `docker info`.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
wait_for_docker || exit 1
docker info --format 'server {{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupVersion}}' || exit 1
[ "$(systemctl is-active docker.service)" = active ] || exit 1
