#!/bin/sh
# docker-run: an image made here from the rootfs shipped in this package plus this system's dash and
# cat with the libraries they load (a tar stream, no registry) runs a container whose output and exit
# code (42) reach the test. Nothing of the host is mounted into the container: under SELinux the
# engine may not mount a system directory (usr_t) there. No network (the test is about running it; a
# bridge and its iptables rules cost seconds under TCG). Enforcing, the container must run confined:
# in container_t, with the engine in dockerd_t.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
here=$(dirname "$0")
# The image's files in a directory: the rootfs (its /bin and /lib are links into /usr) plus each
# binary and library under /usr, where the links lead.
image_dir=$(mktemp -d)
trap 'rm -rf "$image_dir"' EXIT
cp -a "$here/rootfs/." "$image_dir/"
for f in $(for b in /usr/bin/dash /usr/bin/cat /usr/bin/tr; do
	echo "$b"
	ldd "$b" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'
done | sort -u); do
	case $f in /usr/*) dest=$f ;; *) dest=/usr$f ;; esac
	mkdir -p "$image_dir${dest%/*}"
	cp -L "$f" "$image_dir$dest"
done
ln -s dash "$image_dir/usr/bin/sh"
import_image() { tar -C "$image_dir" -cf - . | docker import - fedostree-test:1; }
# The import is the first request: docker.socket holds it while dockerd starts, so the daemon's start
# costs no client of its own (each Go client takes seconds to start under TCG). Only when that fails
# (dockerd died while starting) does the test wait for the daemon and import again.
if ! import_image; then
	wait_for_docker || exit 1
	lap "daemon answering after a failed import"
	import_image || { echo "docker import failed"; exit 1; }
fi
lap "image imported (with the daemon's socket-activated start)"
out=$(docker run --rm --network none --hostname fedostree-container fedostree-test:1 /bin/sh /hello.sh)
code=$?
lap "container ran"
echo "container said: $out"
echo "container exit code: $code"
case "$(printf '%s\n' "$out" | head -n 1)" in
"hello from a fedostree container: pid 1 on fedostree-container") ;;
*) echo "unexpected output"; exit 1 ;;
esac
[ "$code" -eq 42 ] || { echo "expected exit code 42"; exit 1; }
if [ "$(cat /sys/fs/selinux/enforce 2>/dev/null)" = 1 ]; then
	engine=$(ps -o label= -C dockerd | head -n 1)
	echo "SELinux enforcing: dockerd runs as $engine"
	case "$out" in
	*"label: "*:container_t:*) ;;
	*) echo "the container does not run confined (container_t)"; exit 1 ;;
	esac
	case "$engine" in
	*:dockerd_t:*) ;;
	*) echo "dockerd does not run confined (dockerd_t)"; exit 1 ;;
	esac
fi
