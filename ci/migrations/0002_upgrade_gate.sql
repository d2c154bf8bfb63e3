-- fedostree ci history, version 2: the upgrade gate of each tested tree/arch (pipeline/src/upgrade.rs).
-- `upgrade` says what it upgraded ("from the published A to B") or why it did not run ("not run:
-- --no-upgrade: …", "not run: nothing is published …"); NULL in results recorded before it existed.
ALTER TABLE results ADD COLUMN upgrade TEXT;
ALTER TABLE results ADD COLUMN upgrade_s REAL;
