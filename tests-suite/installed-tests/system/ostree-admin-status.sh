#!/bin/sh
# ostree-admin-status: the real ostree client sees the booted deployment, the one the kernel
# booted (ostree= on the command line).
out=$(ostree admin status) || { echo "ostree admin status failed"; exit 1; }
echo "$out"
booted=$(echo "$out" | awk '$1 == "*" {print $3}')
target=$(readlink -f "/sysroot$(tr ' ' '\n' </proc/cmdline | sed -n 's/^ostree=//p')")
[ -n "$booted" ] || { echo "no booted deployment"; exit 1; }
[ "${target##*/}" = "$booted" ] || { echo "booted $booted but the kernel booted ${target##*/}"; exit 1; }
