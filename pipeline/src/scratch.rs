//! The packager fast path, `fedostree test --tree T --add-rpm PATH… [--add-repo DIR|URL]`: a fresh
//! build's RPMs override the tree's packages in a compose of their own, committed on a scratch ref
//! (never the tree's), deployed into a throwaway copy of the tree's cached image and tested like any
//! run. Published only to an explicit `--publish-to` ref.
//!
//! The scratch ref is `<tree ref>-scratch/<name>`: ostree keeps refs as files, so the tree's ref cannot
//! also be a directory holding `<tree ref>/scratch/<name>`.

use crate::run::{ScratchOptions, TestOptions, Timings};
use crate::stages;
use anyhow::{Context, Result};
use fedostree_compose::compose_tree::{self, ComposeOptions};
use fedostree_compose::loaded_tree::LoadedTree;
use fedostree_compose::overrides::Overrides;
use fedostree_images::throwaway::{self, Throwaway};
use fedostree_images::ImageState;
use fedostree_util::state::StateDir;
use fedostree_util::{Arch, Checksum};
use std::time::Instant;

/// One arch's scratch commit in its throwaway image, ready to boot.
pub struct Scratch {
    pub tree: String,
    pub ref_: String,
    /// The tree's commit the override was made on.
    pub base: Checksum,
    pub image: ImageState,
    /// Removed when this is dropped: keep it until the boot is over.
    pub throwaway: Throwaway,
    /// `db diff` of the tree's commit and the scratch commit.
    pub diff: fedostree_compose::dbdiff::PkgDiff,
    pub timings: Timings,
}

/// `<tree ref>-scratch/<name>`.
pub fn scratch_ref(tree_ref: &str, name: &str) -> String {
    format!("{tree_ref}-scratch/{name}")
}

/// The default scratch name: the name of the first binary RPM given (in name order), else `override`.
fn default_name(opts: &ScratchOptions) -> Result<String> {
    if opts.rpms.is_empty() {
        return Ok("override".into());
    }
    let first = fedostree_compose::overrides::collect_rpms(&opts.rpms)?
        .into_iter()
        .map(|r| r.name)
        .min();
    Ok(first.unwrap_or_else(|| "override".into()))
}

/// The scratch ref of `tree` on `arch`, checked to be a valid ostree ref before anything is built.
pub fn resolve_ref(tree: &LoadedTree, arch: Arch, opts: &ScratchOptions) -> Result<String> {
    let tree_ref = tree.ref_(arch)?;
    let ref_ = match &opts.ref_ {
        Some(r) => r.clone(),
        None => scratch_ref(&tree_ref, &default_name(opts)?),
    };
    ostree::validate_rev(&ref_).map_err(|e| fedostree_util::InputError::new(format!("--ref {ref_:?}: {e}")))?;
    if ref_ == tree_ref {
        fedostree_util::bail_input!("--ref {ref_}: that is the tree's own ref; a scratch build goes on its own");
    }
    Ok(ref_)
}

/// The tree composed and its cached image current (as `fedostree test` does), then the override
/// composed onto the scratch ref and deployed into a throwaway copy of that image.
pub fn prepare(
    state: &StateDir,
    run: &TestOptions,
    loaded: &LoadedTree,
    arch: Arch,
    opts: &ScratchOptions,
) -> Result<Scratch> {
    let (sources, tree, backend) = (&run.sources, run.tree.as_str(), run.backend);
    let overrides = Overrides {
        rpms: opts.rpms.clone(),
        repos: opts.repos.clone(),
        ref_: resolve_ref(loaded, arch, opts)?,
    };
    fedostree_compose::overrides::validate(&overrides)?;
    let (composed, _, mut timings) = stages::prepare(state, sources, loaded, arch, backend)?;
    let base = Checksum::from(
        composed
            .commit
            .clone()
            .context("the tree's compose produced no commit")?,
    );
    let t = Instant::now();
    let compose_opts = ComposeOptions {
        overrides: Some(overrides.clone()),
        ..ComposeOptions::new(tree, arch)
    };
    let scratch = compose_tree::compose_treefile(state, loaded.treefile(arch)?, &compose_opts)?;
    let commit = Checksum::from(scratch.commit.context("the scratch compose produced no commit")?);
    timings.compose_s += t.elapsed().as_secs_f64();
    let t = Instant::now();
    let copy = throwaway::seed(state, &composed.tree, arch, &throwaway::new_id(&format!("test-{arch}")))?;
    let image = stages::update_image(state, copy.tree(), arch, &commit, backend)?;
    timings.image_s += t.elapsed().as_secs_f64();
    let repo = fedostree_compose::commit::open_or_create_repo(&state.repo())?;
    let diff = fedostree_compose::dbdiff::diff(&repo, &base, &commit)?;
    Ok(Scratch {
        tree: composed.tree,
        ref_: overrides.ref_,
        base,
        image,
        throwaway: copy,
        diff,
        timings,
    })
}
