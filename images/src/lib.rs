//! fedostree-images: one cached qcow2 per (tree, arch), updated OFFLINE from the host with each new
//! commit, plus the boot artifacts (kernel, initramfs, BLS options) that direct kernel boot needs.
//!
//! [`update_image`] is the entry point: lock the image ([`layout`]), clean up after a killed run, copy the
//! image (reflink), attach it with a [`Backend`] ([`resources`]: qemu-storage-daemon FUSE + loop + mount, or
//! libguestfs guestmount), `pull-local` + `ostree admin deploy` + undeploy/prune behind the mount guard
//! ([`guard`], [`sysroot`]), extract the boot artifacts, detach, write `state.json`, and swap the copy in
//! atomically. `fedostree_util::cleanup` tears every held resource down on SIGINT/SIGTERM. [`create_overlay`] makes
//! the throwaway overlay each boot runs on.

pub mod firmware;
pub mod guard;
pub mod guestfs;
pub mod kargs;
pub mod layout;
pub mod relabel;
pub mod resources;
pub mod sysroot;
pub mod throwaway;
mod update;

use fedostree_util::{Arch, Checksum};
use serde::Serialize;
use std::path::PathBuf;

pub use update::{create_overlay, default_backend, update_image, KEEP_DEPLOYMENTS};

/// How the image is attached on the host while deploying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// qemu-storage-daemon FUSE export + loop device + mount (root). ~2 s per incremental deploy.
    Qsd,
    /// libguestfs `guestmount` (appliance VM; unprivileged). ~30 s per deploy under TCG.
    Guestfs,
}

impl std::str::FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "qsd" => Ok(Backend::Qsd),
            "guestfs" => Ok(Backend::Guestfs),
            _ => anyhow::bail!("unknown image backend {s:?} (expected qsd or guestfs)"),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Qsd => "qsd",
            Backend::Guestfs => "guestfs",
        })
    }
}

/// What to put into which image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Tree name, e.g. `dev/minimal`.
    pub tree: String,
    /// `x86_64` or `aarch64`.
    pub arch: Arch,
    /// The archive repo holding `commit` (`$STATE/repo`).
    pub repo: PathBuf,
    pub commit: String,
    /// OSTree stateroot, e.g. `fedostree`.
    pub osname: String,
    /// Kernel arguments for the first deployment only; later deployments inherit them.
    pub kargs: Vec<String>,
    /// Deployments kept after the update ([`KEEP_DEPLOYMENTS`]: the new default plus one rollback).
    /// The upgrade gate's image keeps 1: the candidate's objects must come over HTTP.
    pub keep_deployments: usize,
}

/// Kernel, initramfs and command line of the image's default deployment, cached outside the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootArtifacts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The BLS `options` line (includes `ostree=/ostree/boot.N/…`): specific to this image's state.
    pub options: String,
    pub boot_checksum: String,
}

/// Seconds per step and qcow2 growth of one [`update_image`] call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpdateStats {
    /// `qemu-img create` + partition + mkfs + init-fs/os-init (new images only).
    pub create_s: f64,
    /// The work copy: a new top layer over the current image, or a compacted copy (updates only).
    pub copy_s: f64,
    pub attach_s: f64,
    pub pull_local_s: f64,
    pub deploy_s: f64,
    pub prune_s: f64,
    pub extract_s: f64,
    pub detach_s: f64,
    pub total_s: f64,
    /// Bytes the image's qcow2 files (top and layers) take on the host, before (0 for a new image)
    /// and after.
    pub qcow2_before: u64,
    pub qcow2_after: u64,
    /// Content bytes `pull-local` wrote (new objects only).
    pub pulled_bytes: u64,
    /// The SELinux policy the deploy labelled `/etc`, `/var` and `/boot` with (None: SELinux off).
    pub selinux: Option<String>,
}

/// The result of [`update_image`].
#[derive(Debug, Clone, Serialize)]
pub struct ImageState {
    /// `$STATE/images/<tree>/<arch>/disk.qcow2`: boot it only through an overlay ([`create_overlay`]).
    pub disk: PathBuf,
    pub commit: Checksum,
    /// Random id written at creation to `/ostree/deploy/<os>/var/lib/fedostree/image-id` in the image.
    pub image_id: String,
    pub boot: BootArtifacts,
    /// The image was built from scratch in this call.
    pub created: bool,
    /// A deployment was made in this call (false: already at `commit`, nothing mounted).
    pub updated: bool,
    pub backend: Backend,
    pub stats: UpdateStats,
}

/// Test hook, compiled only with the `test-hooks` feature (the tests enable it; release builds never
/// have it): `FEDOSTREE_TEST_CRASH_AFTER=<step>` aborts the process right after that step (no unwinding,
/// no cleanup), to prove that a killed run leaves the old image usable and nothing mounted for long.
/// `FEDOSTREE_TEST_PAUSE_AFTER=<step>` instead writes the file `FEDOSTREE_TEST_PAUSE_MARKER` and sleeps
/// there forever, for a test to deliver SIGINT/SIGTERM at a known point.
#[cfg(feature = "test-hooks")]
pub(crate) fn crash_point(step: &str) {
    if std::env::var("FEDOSTREE_TEST_CRASH_AFTER").is_ok_and(|s| s == step) {
        fedostree_util::events::notice(
            fedostree_util::events::Stage::Image,
            format!("FEDOSTREE_TEST_CRASH_AFTER={step}: aborting"),
        );
        std::process::abort();
    }
    if std::env::var("FEDOSTREE_TEST_PAUSE_AFTER").is_ok_and(|s| s == step) {
        fedostree_util::events::notice(
            fedostree_util::events::Stage::Image,
            format!("FEDOSTREE_TEST_PAUSE_AFTER={step}: pausing"),
        );
        if let Some(m) = std::env::var_os("FEDOSTREE_TEST_PAUSE_MARKER") {
            let _ = fs_err::write(m, std::process::id().to_string());
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn crash_point(_step: &str) {}
