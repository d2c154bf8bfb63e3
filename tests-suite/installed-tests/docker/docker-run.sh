#!/bin/sh
# docker-run: an image made here from the rootfs shipped in this package (a tar stream, no
# registry) runs a container whose output and exit code (42) reach the test. The container runs
# the guest's own /usr, bound read-only, with no network (the test is about running it; a bridge and
# its iptables rules cost seconds under TCG).
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
here=$(dirname "$0")
import_image() { tar -C "$here/rootfs" -cf - . | docker import - fedostree-test:1; }
# The import is the first request: docker.socket holds it while dockerd starts, so the daemon's start
# costs no client of its own (each Go client takes seconds to start under TCG). Only when that fails
# (dockerd died while starting) does the test wait for the daemon and import again.
if ! import_image; then
	wait_for_docker || exit 1
	lap "daemon answering after a failed import"
	import_image || { echo "docker import failed"; exit 1; }
fi
lap "image imported (with the daemon's socket-activated start)"
out=$(docker run --rm --network none --hostname fedostree-container -v /usr:/usr:ro fedostree-test:1 /bin/sh /hello.sh)
code=$?
lap "container ran"
echo "container said: $out"
echo "container exit code: $code"
case "$out" in
"hello from a fedostree container: pid 1 on fedostree-container") ;;
*) echo "unexpected output"; exit 1 ;;
esac
[ "$code" -eq 42 ] || { echo "expected exit code 42"; exit 1; }
# Which SELinux domain the engine runs in (the tree's policy has no container module: see README).
if [ -e /sys/fs/selinux/enforce ]; then
	echo "SELinux: dockerd runs as $(ps -o label= -C dockerd | head -n 1), enforce=$(cat /sys/fs/selinux/enforce)"
fi
