#!/bin/sh
# skip-example: proves the skip path end to end (exit 77 = skipped, not failed).
echo "skipping: this test exists to prove that exit status 77 is reported as a skip"
exit 77
