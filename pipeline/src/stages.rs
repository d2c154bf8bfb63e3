//! The stages a commit passes through before it boots: compose (with its dev repository), the
//! offline image update, a pull from a compose server; and publish after the gate. Each is blocking
//! work, serialized per state directory by the crates that own it.

use crate::run::Timings;
use anyhow::{Context, Result};
use fedostree_compose::compose_tree::{self, ComposeOptions};
use fedostree_compose::loaded_tree::LoadedTree;
use fedostree_images::{Backend, ImageSpec, ImageState};
use fedostree_util::events::{self, Scope, Stage};
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::{Arch, Checksum};
use std::path::Path;
use std::time::Instant;

/// The stateroot every image deploys into.
pub const OSNAME: &str = "fedostree";

/// Compose `tree` for `arch` with default options, its dev repository made first; the result and the
/// commit it names.
pub fn compose(
    state: &StateDir,
    sources: &Sources,
    tree: &LoadedTree,
    arch: Arch,
) -> Result<(compose_tree::ComposeResult, Checksum)> {
    let tf = tree.treefile(arch)?;
    let scope = Scope::new(&tree.name, arch);
    let _in = events::enter(scope.clone());
    let devrepo = scope.stage(
        Stage::Devrepo,
        "bringing the repositories the tree composes from up to date",
    );
    fedostree_devrepo::ensure_for_tree(state, sources, tf)?;
    devrepo.finish("current");
    let composed = compose_tree::compose_treefile(state, tf, &ComposeOptions::new(&tree.name, arch))?;
    let commit = composed
        .commit
        .clone()
        .with_context(|| format!("{}: compose produced no commit", tree.name))?;
    Ok((composed, Checksum::new(commit)))
}

/// Compose `tree` and deploy the commit into its cached image (blocking work, serialized per state
/// directory); what each step took.
pub fn prepare(
    state: &StateDir,
    sources: &Sources,
    tree: &LoadedTree,
    arch: Arch,
    backend: Backend,
) -> Result<(compose_tree::ComposeResult, ImageState, Timings)> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let (composed, commit) = compose(state, sources, tree, arch)?;
    timings.compose_s = t.elapsed().as_secs_f64();
    if !composed.bootable {
        fedostree_util::bail_input!(
            "{}: the tree is not bootable (`container: true`): it composes ({commit}) but has no kernel to boot",
            tree.name
        );
    }
    let t = Instant::now();
    let image = update_image(state, &composed.tree, arch, &commit, backend)?;
    timings.image_s = t.elapsed().as_secs_f64();
    Ok((composed, image, timings))
}

/// Deploy `commit` (in the state's repo) into the cached image of `tree` on `arch`.
pub fn update_image(state: &StateDir, tree: &str, arch: Arch, commit: &str, backend: Backend) -> Result<ImageState> {
    let into = ImageTarget {
        repo: state.repo(),
        keep_deployments: fedostree_images::KEEP_DEPLOYMENTS,
    };
    update_image_from(state, tree, arch, commit, backend, into)
}

/// Where [`update_image_from`] takes the commit from, and what the image keeps.
pub struct ImageTarget {
    /// The archive repository holding the commit.
    pub repo: std::path::PathBuf,
    /// Deployments kept after the update.
    pub keep_deployments: usize,
}

/// [`update_image`] with the commit taken from `into.repo`, keeping `into.keep_deployments`.
pub fn update_image_from(
    state: &StateDir,
    tree: &str,
    arch: Arch,
    commit: &str,
    backend: Backend,
    into: ImageTarget,
) -> Result<ImageState> {
    let scope = Scope::new(tree, arch);
    let _in = events::enter(scope.clone());
    let what = format!(
        "deploying {} into the cached image ({backend})",
        fedostree_util::checksum::short(commit)
    );
    let running = scope.stage(Stage::Image, what);
    let spec = ImageSpec {
        tree: tree.into(),
        arch,
        repo: into.repo,
        commit: commit.into(),
        osname: OSNAME.into(),
        kargs: vec![
            "root=LABEL=root".into(),
            "rw".into(),
            format!("console={}", arch.console_tty()),
            "quiet".into(),
            "panic=-1".into(),
        ],
        keep_deployments: into.keep_deployments,
    };
    let image = fedostree_images::update_image(state, &spec, backend)
        .with_context(|| format!("updating the {tree} {arch} image"))?;
    let grew = image.stats.qcow2_after.saturating_sub(image.stats.qcow2_before) as f64 / 1e6;
    running.finish(match (image.created, image.updated) {
        (true, _) => format!("created, {:.1} MB", image.stats.qcow2_after as f64 / 1e6),
        (false, true) => format!("updated, qcow2 +{grew:.1} MB"),
        (false, false) => "already at this commit".to_string(),
    });
    Ok(image)
}

/// The remote a worker pulls candidates through (`fedostree test --from URL`).
const CANDIDATES_REMOTE: &str = "fedostree-candidates";

/// The `ostree` command line tool on `repo` (remotes and pulls, which the bindings do not wrap as simply).
pub(crate) fn ostree_cli(repo: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("ostree");
    c.arg(format!("--repo={}", repo.display()));
    c
}

/// `fedostree test --from URL`: pull `ref_` from a compose server's candidate repository (`fedostree
/// serve --candidates`) into this state's repo over HTTP, and name the commit. Candidates are not
/// signed (only what passes is, when it is published): a worker trusts the server it was pointed at.
pub fn pull_candidate(state: &StateDir, scope: &Scope, url: &str, ref_: &str) -> Result<Checksum> {
    use fedostree_util::cmd::CommandRunExt;
    let running = scope.stage(Stage::Pull, format!("pulling {ref_} from {url}"));
    fedostree_compose::commit::open_or_create_repo(&state.repo())?;
    let ostree = || ostree_cli(&state.repo());
    ostree()
        .args(["remote", "add", "--force", "--no-gpg-verify", CANDIDATES_REMOTE, url])
        .run()
        .with_context(|| format!("adding {url} as the candidates' remote"))?;
    ostree()
        .args(["pull", CANDIDATES_REMOTE, ref_])
        .run()
        .map_err(|e| fedostree_util::InputError::new(format!("pulling {ref_} from {url}: {e:#}")))?;
    let commit = ostree()
        .args(["rev-parse", &format!("{CANDIDATES_REMOTE}:{ref_}")])
        .run_get_string()?;
    let commit = Checksum::new(commit.trim());
    running.finish(format!("{ref_} at {}", commit.short()));
    Ok(commit)
}

/// Publish a commit that passed from the candidate repo to the public one; the seconds it took.
pub fn publish_timed(
    state: &StateDir,
    scope: &Scope,
    opts: &crate::publish::PublishOptions,
    ref_: &str,
    commit: &str,
) -> Result<f64> {
    let _in = events::enter(scope.clone());
    let what = format!("publishing {} to {ref_}", fedostree_util::checksum::short(commit));
    let running = scope.stage(Stage::Publish, what);
    crate::publish::publish(&state.repo(), &state.public(), ref_, commit, opts)?;
    Ok(running.finish(format!("{ref_} published")))
}
