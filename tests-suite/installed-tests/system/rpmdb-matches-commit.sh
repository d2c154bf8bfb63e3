#!/bin/sh
# rpmdb-matches-commit: the read-only rpm database in /usr/share/rpm lists exactly the packages
# compose recorded for this commit (/usr/lib/fedostree/pkglist).
want=$(awk '{print $1}' /usr/lib/fedostree/pkglist | sort)
have=$(rpm -qa --dbpath /usr/share/rpm --qf '%{NAME}-%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}.%{ARCH}\n' | sort) || {
	echo "rpm -qa failed"
	exit 1
}
if [ "$want" != "$have" ]; then
	echo "rpmdb and pkglist differ:"
	printf '%s\n' "$want" >/tmp/want
	printf '%s\n' "$have" >/tmp/have
	diff /tmp/want /tmp/have | head -40
	exit 1
fi
echo "rpmdb lists the commit's $(echo "$have" | wc -l) packages"
