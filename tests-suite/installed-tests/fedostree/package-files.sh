#!/bin/sh
# package-files: every composed package left a file it owns in the deployment (compose records one per
# package in /usr/lib/fedostree/pkglist as "NEVRA PATH", or "NEVRA -" for packages without files).
list=/usr/lib/fedostree/pkglist
[ -s "$list" ] || { echo "Bail out! $list is missing or empty"; exit 1; }
echo "1..$(wc -l <"$list")"
n=0
while read -r nevra path; do
	n=$((n + 1))
	if [ "$path" = - ] || [ -z "$path" ]; then
		echo "ok $n - $nevra # SKIP owns no files"
	elif [ -e "$path" ] || [ -L "$path" ]; then
		echo "ok $n - $nevra $path"
	else
		echo "not ok $n - $nevra $path missing"
	fi
done <"$list"
