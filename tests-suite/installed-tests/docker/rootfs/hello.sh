#!/bin/sh
# Runs inside the test container: proves the container ran (its output), isolated (its own PID 1
# and hostname), and that its exit code comes back through docker.
echo "hello from a fedostree container: pid $$ on $(cat /proc/sys/kernel/hostname)"
exit 42
