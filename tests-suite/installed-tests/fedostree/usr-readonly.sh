#!/bin/sh
# usr-readonly: /usr is read-only at runtime (OSTree's immutability guarantee: the deployment must stay
# identical to the commit it came from).
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
rc=0
probe=/usr/.fedostree-rw-test
if touch "$probe" 2>/dev/null; then
	rm -f "$probe"
	echo "created $probe: /usr is writable"
	rc=1
else
	echo "writing under /usr fails as it must"
fi
opts=$(mount_field /usr 6) || { echo "/usr is not a mount point"; exit 1; }
case ",$opts," in
*,ro,*) echo "/usr mount options: $opts" ;;
*) echo "/usr is mounted $opts, expected ro"; rc=1 ;;
esac
exit $rc
