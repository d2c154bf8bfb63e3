//! fedostree-compose: treefiles + rpm-md repositories → OSTree commits.
//!
//! The pipeline, one module per stage: [`treefile`] (parse, merge includes) → [`repo`] (rpm-md
//! metadata) → [`solve`] (libsolv) → [`fetch`] (verified RPM cache) → [`import`] (safe payload
//! extraction) → [`postprocess`] (OSTree conventions, [`initramfs`]) → [`commit`] (libostree);
//! [`compose_tree`] runs them in order. [`devrepo`] builds the offline dev repository of real RPMs
//! that the dev trees compose from; [`dbdiff`] compares the package lists of two commits.

pub mod cmd;
pub mod commit;
pub mod compose_tree;
pub mod dbdiff;
pub mod devrepo;
pub mod fetch;
pub mod import;
pub mod initramfs;
pub mod lock;
pub mod postprocess;
pub mod progress;
pub mod repo;
pub mod safepath;
pub mod solve;
pub mod state;
pub mod treefile;

/// An error caused by the user's input (treefile, repo file, package set, RPM content) rather than
/// by the machine: the CLI maps it to exit code 1, everything else to 2.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct InputError(anyhow::Error);

impl InputError {
    pub fn new(msg: impl std::fmt::Display) -> anyhow::Error {
        InputError(anyhow::anyhow!("{msg}")).into()
    }
    pub fn wrap(e: anyhow::Error) -> anyhow::Error {
        InputError(e).into()
    }
}

/// Whether an error (anywhere in its chain) is the user's input rather than the machine.
pub fn is_input_error(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.is::<InputError>() || c.is::<treefile::TreefileError>() || c.is::<solve::SolveError>())
}
