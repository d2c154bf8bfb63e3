//! fedostree-compose: treefiles + rpm-md repositories → OSTree commits.
//!
//! The pipeline, one module per stage: [`treefile`] (parse, merge includes) → [`repo`] (rpm-md
//! metadata) → [`solve`] (libsolv) → [`fetch`] (verified RPM cache) → [`import`] (safe payload
//! extraction, [`file_conflicts`] refused) → [`postprocess`] (OSTree conventions, [`initramfs`]) → [`commit`] (libostree, with [`write_tree`] checksumming);
//! [`compose_tree`] runs them in order; [`dbdiff`] compares the package lists of two commits. The
//! offline dev repositories the dev and real trees compose from are built by the `devrepo` crate.

pub mod accounts;
pub mod commit;
pub mod commit_paths;
pub mod compose_tree;
pub mod dbdiff;
pub mod epoch;
pub mod fetch;
pub mod file_conflicts;
pub mod filecaps;
pub mod gpg;
pub mod import;
pub mod initramfs;
pub mod layers;
pub mod linesafe;
pub mod loaded_tree;
pub mod lockfile;
pub mod overrides;
pub mod postprocess;
pub mod progress;
pub mod repo;
pub mod rpmdb;
pub mod safepath;
pub mod sandbox;
pub mod scriptlet_run;
pub mod scriptlets;
pub mod selinux;
pub mod solve;
pub mod systemd_setup;
pub mod treefile;
mod treefile_checks;
pub mod treefile_edits;
pub mod treefile_vars;
pub mod unpack_cache;
pub mod version;
pub mod write_tree;
