#!/bin/sh
# tap-example: a TAP test with subtests, so the harness's subtest reporting is exercised on every boot;
# each check is still a real fact about the booted system.
echo "1..4"
if grep -qE '(^| )ostree=' /proc/cmdline; then echo "ok 1 - kernel command line has ostree="
else echo "not ok 1 - no ostree= in $(cat /proc/cmdline)"; fi
# Userland and kernel agree on the architecture: ELF e_machine of the shell (62 x86_64, 183 aarch64).
m=$(uname -m)
sh=$(readlink -f /bin/sh)
e=$(od -An -tu2 -j18 -N2 "$sh" 2>/dev/null | tr -d ' ')
case "$m:$e" in
x86_64:62 | aarch64:183) echo "ok 2 - kernel arch $m matches $sh (ELF e_machine $e)" ;;
*) echo "not ok 2 - kernel arch $m, $sh has ELF e_machine $e" ;;
esac
if grep -q '^[^ ]* /sysroot ' /proc/mounts; then echo "ok 3 - /sysroot is mounted"
else echo "not ok 3 - /sysroot is not a mount point"; fi
# uname (coreutils or busybox): the real trees have no hostname(1), which came with busybox.
h=$(uname -n)
if [ "$h" = fedostree ]; then echo "ok 4 - hostname is fedostree"
else echo "not ok 4 - hostname is $h, expected fedostree"; fi
