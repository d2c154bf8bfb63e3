//! The fixed timestamp of everything a compose generates (rpmdb, scriptlets' output, the initramfs):
//! the same inputs give the same bytes.

/// Install time recorded in the database: fixed, so the same packages give the same database.
pub const SOURCE_DATE_EPOCH: u64 = 1_704_067_200;
