#!/bin/sh
# Runs inside the test container: proves the container ran (its output), isolated (its own PID 1
# and hostname), and that its exit code comes back through docker; the second line is the SELinux
# context it runs in (empty without SELinux).
echo "hello from a fedostree container: pid $$ on $(cat /proc/sys/kernel/hostname)"
echo "label: $(tr -d '\0' </proc/self/attr/current 2>/dev/null)"
exit 42
