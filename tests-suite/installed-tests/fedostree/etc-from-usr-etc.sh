#!/bin/sh
# etc-from-usr-etc: ostree deploy populated /etc from the commit's /usr/etc (OSTree's 3-way /etc merge
# starts from it).
rc=0
for f in hostname os-release; do
	if [ -e "/etc/$f" ]; then echo "/etc/$f exists"; else echo "/etc/$f missing"; rc=1; fi
done
[ -e /usr/etc/hostname ] || { echo "/usr/etc/hostname missing: compose did not move /etc to /usr/etc"; exit 1; }
if [ "$(cat /etc/hostname 2>/dev/null)" = "$(cat /usr/etc/hostname)" ]; then
	echo "/etc/hostname matches /usr/etc/hostname ($(cat /usr/etc/hostname))"
else
	echo "/etc/hostname [$(cat /etc/hostname 2>/dev/null)] differs from /usr/etc/hostname [$(cat /usr/etc/hostname)]"
	rc=1
fi
exit $rc
