#!/bin/sh
# /init of fedostree's initramfs (compose/src/initramfs/init.sh, embedded by initramfs/mod.rs): load the
# virtio + ext4 modules, mount the root filesystem, set up the booted deployment the way
# ostree-prepare-root does (in shell: Debian's binary is dynamic and wants systemd), switch_root into it.
# Measured booting in reference/boot-recipe/initramfs-init.sh (its shell prepare-root path).
export PATH=/bin
# Kernel args may contain glob characters.
set -f
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs -o mode=0755 devtmpfs /dev
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
log() { echo "initramfs: $*" >/dev/console; }
# With -no-reboot, poweroff ends the VM at once, so a broken image fails fast instead of timing out.
fail() {
	log "FATAL: $*"
	poweroff -f
	exit 1
}

# A failed insmod is not fatal by itself: the root device wait below reports what it broke.
# shellcheck disable=SC2013 # one module file name per line, no spaces
for m in $(cat /lib/modules/load-order); do insmod "/lib/modules/$m" || log "insmod $m failed"; done

root='' ostree='' fstype=ext4
# shellcheck disable=SC2013 # kernel args are words
for a in $(cat /proc/cmdline); do
	case "$a" in
	root=*) root=${a#root=} ;;
	rootfstype=*) fstype=${a#rootfstype=} ;;
	ostree=*) ostree=${a#ostree=} ;;
	esac
done
[ -n "$root" ] || fail "no root= kernel argument"
[ -n "$ostree" ] || fail "no ostree= kernel argument"

# Block devices appear asynchronously after the virtio modules load; wait up to 10 s.
i=0 dev=''
while [ $i -lt 200 ]; do
	case "$root" in
	LABEL=* | UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
	*) [ -b "$root" ] && dev=$root ;;
	esac
	[ -n "$dev" ] && break
	usleep 50000
	i=$((i + 1))
done
[ -n "$dev" ] || fail "root device $root not found after 10 s"
mount -t "$fstype" -o rw "$dev" /sysroot || fail "cannot mount $dev ($fstype) on /sysroot"

# ostree= is /ostree/boot.N/OS/BOOTCSUM/SERIAL, a symlink chain to /ostree/deploy/OS/deploy/CSUM.SERIAL.
d=$(cd /sysroot && readlink -f ".$ostree") || fail "cannot resolve ostree=$ostree"
rel=${d#/sysroot}
case "$rel" in
/ostree/deploy/*/deploy/*) ;;
*) fail "ostree=$ostree resolves to $d, not a deployment" ;;
esac
[ -d "$d" ] || fail "deployment $d is not a directory"
os=$(echo "$rel" | cut -d/ -f4)
log "prepare-root: $rel"
mkdir -p /run/ostree && touch /run/ostree/initramfs-mount-var
# Bind the deployment onto itself first so the mounts below ride along when it is moved to /sysroot.
mount --bind "$d" "$d" || fail "bind-mount deployment $d"
mount --bind "/sysroot/ostree/deploy/$os/var" "$d/var" || fail "bind-mount stateroot var of $os"
if [ -d /sysroot/boot/loader ]; then
	mount --bind /sysroot/boot "$d/boot" || fail "bind-mount /boot"
fi
# /usr is immutable at runtime: OSTree's guarantee that the deployment stays identical to its commit.
if ! mount --bind "$d/usr" "$d/usr" || ! mount -o remount,bind,ro "$d/usr"; then
	fail "read-only bind mount of $d/usr"
fi
# The physical root ends up at /sysroot inside the deployment, as ostree-prepare-root leaves it.
mkdir -p /sysroot.tmp
mount --move /sysroot /sysroot.tmp || fail "move /sysroot"
mount --move "/sysroot.tmp$rel" /sysroot || fail "move deployment to /sysroot"
mount --move /sysroot.tmp /sysroot/sysroot || fail "move physical root to /sysroot/sysroot"
rmdir /sysroot.tmp
touch /run/ostree-booted

[ -x /sysroot/sbin/init ] || fail "no /sbin/init in deployment $rel"
# Without systemd nothing re-mounts /dev and /run in the new root: carry them over.
mount --move /dev /sysroot/dev || fail "move /dev"
mount --move /run /sysroot/run || fail "move /run"
umount /sys
umount /proc
exec switch_root /sysroot /sbin/init
