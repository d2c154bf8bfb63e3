#!/bin/sh
# intentional-failure: a test that always fails, shipped only in the fedostree-broken package, so the
# gate can be proven to block a tree whose tests fail.
echo "failing on purpose: fedostree-broken is installed to prove that a failing test blocks publishing"
exit 1
