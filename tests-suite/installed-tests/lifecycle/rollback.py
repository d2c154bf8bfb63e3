#!/usr/bin/python3
"""Roll back as rpm-ostree's rollback does: through libostree, the rollback deployment becomes the
default and the others keep their order (ostree 2022.7's CLI has no `admin rollback`)."""
import sys

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import OSTree  # noqa: E402

sysroot = OSTree.Sysroot.new_default()
sysroot.load(None)
sysroot.lock()
try:
    _pending, rollback = sysroot.query_deployments_for(None)
    if rollback is None:
        sys.exit("rollback: there is no rollback deployment")
    others = [d for d in sysroot.get_deployments() if not d.equal(rollback)]
    sysroot.write_deployments([rollback] + others, None)
finally:
    sysroot.unlock()
print(f"rollback: {rollback.get_csum()}.{rollback.get_deployserial()} is the default deployment")
