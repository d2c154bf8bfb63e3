//! Throwaway copies of a cached image, for commits that must not become the tree's image: a
//! packager's override (`fedostree test --add-rpm`) and each step of `fedostree bisect`.
//!
//! A copy is `$STATE/images/scratch/<id>/<tree>/<arch>`: the cached image's files hardlinked in (they
//! are never written once published), then updated like any image, which puts a new top layer over
//! them. The cached image is untouched and stays what the tree's ref says. `<id>` ends in the owner's
//! pid, so a copy left by a killed run is swept by the next one.

use crate::layout::{self, ImageLock, ImagePaths};
use anyhow::{Context, Result};
use fedostree_util::state::StateDir;
use fedostree_util::Arch;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::layout::THROWAWAY_PREFIX as PREFIX;

/// A throwaway copy; removed (with whatever it holds) when dropped, or on Ctrl-C.
pub struct Throwaway {
    root: PathBuf,
    tree: String,
    cleanup: Option<fedostree_util::cleanup::CleanupHandle>,
}

impl Throwaway {
    /// The tree name to give [`crate::update_image`] and the boot: `scratch/<id>/<tree>`.
    pub fn tree(&self) -> &str {
        &self.tree
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Err(e) = layout::remove_tree(&self.root) {
            tracing::warn!("removing the throwaway image {}: {e:#}", self.root.display());
        }
        if let Some(h) = self.cleanup.take() {
            fedostree_util::cleanup::deregister(h);
        }
    }
}

/// A unique id for a throwaway copy of this process: `<label>-<pid>`.
pub fn new_id(label: &str) -> String {
    format!("{label}-{}", std::process::id())
}

/// Copy the cached image of `tree` on `arch` into a throwaway one named `id` (see [`new_id`]).
pub fn seed(state: &StateDir, tree: &str, arch: Arch, id: &str) -> Result<Throwaway> {
    sweep(state);
    let base = ImagePaths::new(state, tree, arch)?;
    let scratch_tree = format!("{PREFIX}/{id}/{tree}");
    let dest = ImagePaths::new(state, &scratch_tree, arch)?;
    let root = state.images().join(PREFIX).join(id);
    let r = root.clone();
    let cleanup = fedostree_util::cleanup::register(format!("throwaway image {}", root.display()), move || {
        let _ = layout::remove_tree(&r);
    });
    let copy = Throwaway {
        root,
        tree: scratch_tree,
        cleanup: Some(cleanup),
    };
    layout::remove_tree(&dest.dir)?;
    fs_err::create_dir_all(&dest.dir)?;
    // Under the cached image's lock: an update swapping it in right now would leave a torn copy.
    let _lock = ImageLock::acquire(&base.lock, Duration::from_secs(30 * 60))?;
    let state_file = layout::read_state(&base.dir)
        .filter(|s| s.layout_version == layout::LAYOUT_VERSION && base.disk().is_file())
        .with_context(|| format!("{tree} {arch} has no cached image to copy ({})", base.dir.display()))?;
    layout::pin(&base.dir, &dest.dir, "disk.qcow2")?;
    layout::write_state(&dest.dir, &state_file)?;
    Ok(copy)
}

/// Remove the throwaway copies whose owner is gone (killed before it could drop them), undoing the
/// mounts an update of theirs may have left first.
fn sweep(state: &StateDir) {
    let dir = state.images().join(PREFIX);
    let Ok(entries) = fs_err::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
        let alive = owner.is_some_and(|p| p as u32 == std::process::id() || fedostree_util::sys::pid_alive(p));
        if alive {
            continue;
        }
        let root = e.path();
        for rec in resource_records(&root) {
            if let Err(e) = recover(state, &name, &root, &rec) {
                tracing::warn!("cleaning up {}: {e:#}", rec.display());
            }
        }
        if let Err(e) = layout::remove_tree(&root) {
            tracing::warn!("removing the stale throwaway image {}: {e:#}", root.display());
        }
    }
}

/// `<arch>.resources.json` files below `dir`.
fn resource_records(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs_err::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(resource_records(&p));
            } else if p.to_string_lossy().ends_with(".resources.json") {
                out.push(p);
            }
        }
    }
    out
}

/// Undo what the update recorded in `rec` (`<root>/<tree>/<arch>.resources.json`) left behind.
fn recover(state: &StateDir, id: &str, root: &Path, rec: &Path) -> Result<()> {
    let rel = rec.strip_prefix(root)?.to_string_lossy().into_owned();
    let rel = rel.trim_end_matches(".resources.json");
    let (tree, arch) = rel.rsplit_once('/').context("no tree in the path")?;
    let arch: Arch = arch.parse().map_err(anyhow::Error::msg)?;
    layout::recover_stale(&ImagePaths::new(state, &format!("{PREFIX}/{id}/{tree}"), arch)?)
}
