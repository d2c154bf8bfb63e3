//! Publishing a commit that passed its tests into the public archive repo clients pull from over HTTP.
//!
//! Order makes it atomic against a kill: objects first (pull-local without a ref), then the ref (a
//! rename inside libostree), then the summary (also a rename). At every instant the ref and the summary
//! name commits whose objects are all present.

use anyhow::{Context, Result};
use fedostree_compose::commit::open_or_create_repo;
use ostree::gio;
use std::path::Path;

/// Make `commit` (present in `source`) the tip of `ref_` in the public repo at `public`.
pub fn publish(source: &Path, public: &Path, ref_: &str, commit: &str) -> Result<()> {
    // One publisher at a time, so the summary is never regenerated from an older set of refs.
    let _lock = fedostree_compose::lock::FileLock::acquire(&public.with_extension("lock"))?;
    let repo = open_or_create_repo(public)?;
    fedostree_compose::commit::pull_objects(public, source, commit)
        .with_context(|| format!("copying {commit} into the public repo"))?;
    repo.set_ref_immediate(None, ref_, Some(commit), gio::Cancellable::NONE)
        .with_context(|| format!("setting public ref {ref_}"))?;
    repo.regenerate_summary(None, gio::Cancellable::NONE)
        .context("regenerating the public summary")?;
    Ok(())
}
