#!/bin/sh
# enforcing: the tree's policy is loaded and enforcing, chosen by the tree (its kernel argument and
# /etc/selinux/config), and this test runs in a confined system's domain, not unlabelled.
mode=$(getenforce) || { echo "getenforce failed"; exit 1; }
echo "getenforce: $mode"
[ "$mode" = Enforcing ] || exit 1
sestatus | sed 's/^/  /'
grep -q 'security=selinux' /proc/cmdline || { echo "no security=selinux on the kernel command line: $(cat /proc/cmdline)"; exit 1; }
grep -qx 'SELINUX=enforcing' /etc/selinux/config || { echo "/etc/selinux/config does not say enforcing"; exit 1; }
ctx=$(cat /proc/self/attr/current | tr -d '\0')
echo "this test runs as $ctx"
case "$ctx" in
*:unlabeled_t:* | *:kernel_t:* | "") echo "not a proper domain"; exit 1 ;;
esac
