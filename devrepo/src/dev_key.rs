//! The dev repository's signing key (`devrepo/keys/`, see its README): every RPM the dev and Debian
//! repositories hold, and their `repomd.xml`, are signed with it, so the dev trees run the real
//! signature checks. Its secret is public on purpose: it proves the signature path runs end to end,
//! not that anyone in particular built the packages.

use anyhow::{anyhow, Result};
use rpm::signature::pgp::Signer;

pub const DEV_SECRET_KEY: &str = include_str!("../keys/fedostree-dev.secret.asc");
/// The public half, installed as `$STATE/devrepo/RPM-GPG-KEY-fedostree-dev` for the dev trees' `gpgkey=`.
pub const DEV_PUBLIC_KEY: &str = include_str!("../keys/RPM-GPG-KEY-fedostree-dev");
/// File name of the dev key in the dev repository root.
pub const DEV_KEY_FILE: &str = "RPM-GPG-KEY-fedostree-dev";

/// A signer for the dev key.
pub fn dev_signer() -> Result<Signer> {
    Signer::from_asc(DEV_SECRET_KEY).map_err(|e| anyhow!("loading the dev signing key: {e}"))
}
