//! `fedostree compose`: one treefile and one architecture from repositories to a commit, or a
//! no-op when nothing that goes into the commit changed.

use crate::commit::{self, PkgRecord};
use crate::gpg::RepoKeys;
use crate::progress::Progress;
use crate::repo;
use crate::solve::{Request, SolvedPackage, Solver};
use crate::treefile::{self, Treefile};
use crate::{fetch, import, postprocess};
use anyhow::{Context, Result};
use fedostree_util::events::{self, Stage};
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::workdir::WorkDir;
use fedostree_util::Arch;
use fedostree_util::InputError;
use sha2::{Digest, Sha256};

/// Bumped whenever compose output changes for the same inputs, so old commits are not reused.
pub const COMPOSE_VERSION: &str = "fedostree-compose-2";

#[derive(Debug, Clone)]
pub struct ComposeOptions {
    pub tree: String,
    pub arch: Arch,
    pub dry_run: bool,
    pub force: bool,
    /// `--ex-lockfile`: read after the lockfiles beside the treefile (later ones win).
    pub lockfiles: Vec<std::path::PathBuf>,
    /// `--ex-lockfile-strict`: only locked packages may be installed.
    pub lockfile_strict: bool,
    /// `--ex-write-lockfile-to`: the solved set as a lockfile.
    pub write_lockfile_to: Option<std::path::PathBuf>,
    /// Packages that override the tree's (`fedostree test --add-rpm`); the commit then goes on
    /// their ref, with the tree's current commit as its parent.
    pub overrides: Option<crate::overrides::Overrides>,
}

impl ComposeOptions {
    /// A plain compose of `tree` for `arch`: no dry run, no force, no lockfiles, no overrides.
    pub fn new(tree: impl Into<String>, arch: Arch) -> ComposeOptions {
        ComposeOptions {
            tree: tree.into(),
            arch,
            dry_run: false,
            force: false,
            lockfiles: Vec::new(),
            lockfile_strict: false,
            write_lockfile_to: None,
            overrides: None,
        }
    }
}

/// The compose JSON (`--write-compose-json`) and the return value of [`compose`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComposeResult {
    pub tree: String,
    pub arch: Arch,
    #[serde(rename = "ref")]
    pub ref_: String,
    #[serde(rename = "ostree-commit")]
    pub commit: Option<String>,
    pub parent: Option<String>,
    pub inputhash: String,
    pub changed: bool,
    pub version: Option<String>,
    pub packages: usize,
    #[serde(rename = "package-list")]
    pub package_list: Vec<String>,
    /// False for a `container: true` tree: it has no kernel to boot.
    pub bootable: bool,
}

/// Compose `opts.tree` (a name under `sources.trees` or a path) for `opts.arch` into `$STATE/repo`.
pub fn compose(state: &StateDir, sources: &Sources, opts: &ComposeOptions) -> Result<ComposeResult> {
    let (path, name) = treefile::locate(&opts.tree, &sources.trees).map_err(InputError::wrap)?;
    let tf = Treefile::load(&path, &name, opts.arch).map_err(InputError::wrap)?;
    compose_treefile(state, &tf, opts)
}

/// [`compose`] of a treefile already loaded for `opts.arch` (`opts.tree` is not read again).
pub fn compose_treefile(state: &StateDir, tf: &Treefile, opts: &ComposeOptions) -> Result<ComposeResult> {
    for w in &tf.warnings {
        tracing::warn!("{}: {w}", tf.path.display());
    }
    let scope = events::Scope::new(&tf.name, opts.arch);
    let _in = events::enter(scope.clone());
    let running = scope.stage(Stage::Compose, format!("composing {}", tf.ref_));
    let lock = read_lockfiles(tf, opts)?;
    let (repos, first_override) = load_repos(state, tf, opts, lock.is_some())?;
    // One compose per state directory at a time: they share the repo, the caches and the dev repo.
    let _lock = fedostree_util::lock::FileLock::acquire_announced(&state.root().join("compose.lock"), "compose")?;
    // Scratch dirs of composes and dev repo builds that were killed (SIGKILL, power cut) go now.
    fedostree_util::workdir::sweep(&state.tmp());
    let keys = repos
        .iter()
        .map(|r| (r.gpgcheck || r.repo_gpgcheck).then(|| repo::repo_keys(r)).transpose())
        .collect::<Result<Vec<_>>>()?;
    let solved = solve(state, tf, &repos, &keys, lock.as_ref(), first_override)?;
    if let Some(path) = &opts.write_lockfile_to {
        let ids: Vec<(String, Option<String>)> = repos.iter().map(|r| (r.id.clone(), None)).collect();
        crate::lockfile::write(path, &solved, &ids)?;
        events::step(Stage::Compose, format!("wrote lockfile {}", path.display()), None);
    }
    // Overlay commits are written into the repository: not for a dry run, whose hash leaves them out.
    let layers = match opts.dry_run {
        true => Vec::new(),
        false => {
            commit::open_or_create_repo(&state.repo())?;
            crate::layers::resolve(&state.repo(), tf.dir(), &tf.ostree_layers, &tf.ostree_override_layers)?
        }
    };
    let base = match opts.dry_run {
        true => None,
        false => commit::resolve(&commit::open_or_create_repo(&state.repo())?, &tf.ref_)?,
    };
    let mut result = ComposeResult {
        tree: tf.name.clone(),
        arch: opts.arch,
        // An override's commit goes on its own ref; the tree's current commit is its parent (accounts
        // keep their ids, and `db diff` of the two is what the override changed).
        ref_: opts.overrides.as_ref().map_or(&tf.ref_, |o| &o.ref_).clone(),
        commit: None,
        parent: None,
        inputhash: inputhash(tf, &solved, &layers, opts, base.as_deref()),
        changed: false,
        version: None,
        packages: solved.len(),
        package_list: solved.iter().map(SolvedPackage::nevra).collect(),
        bootable: !tf.container,
    };
    if opts.dry_run {
        running.finish(format!("{} packages (dry run)", solved.len()));
        return Ok(result);
    }
    let inputs = Inputs {
        solved: &solved,
        rpms: &[],
        repos: &repos,
        keys: &keys,
        layers: &layers,
    };
    if !commit_new(state, tf, opts, &inputs, base, &mut result)? {
        running.finish(format!("unchanged at {}", result.commit.as_deref().unwrap_or("-")));
        return Ok(result);
    }
    running.finish(format!(
        "{} packages → {}",
        solved.len(),
        result.commit.as_deref().unwrap_or("-")
    ));
    Ok(result)
}

/// The lockfiles beside the treefile and the ones given, read; `None` when there are none.
fn read_lockfiles(tf: &Treefile, opts: &ComposeOptions) -> Result<Option<crate::lockfile::Lockfile>> {
    let mut lockfiles = crate::lockfile::beside_treefile(tf.dir(), opts.arch.as_str());
    lockfiles.extend(opts.lockfiles.iter().cloned());
    if lockfiles.is_empty() {
        if opts.lockfile_strict {
            fedostree_util::bail_input!(
                "--ex-lockfile-strict: no lockfile (--ex-lockfile, or manifest-lock.{}.json beside the treefile)",
                opts.arch
            );
        }
        return Ok(None);
    }
    let lock = crate::lockfile::Lockfile::read(&lockfiles, opts.lockfile_strict)?;
    let names: Vec<String> = lockfiles.iter().map(|f| f.display().to_string()).collect();
    // rpm-ostree's words, which tools that wrap it look for.
    events::step(
        Stage::Compose,
        format!("Loaded lockfiles:\n  {}", names.join("\n  ")),
        None,
    );
    Ok(Some(lock))
}

/// The tree's repositories (mirrors resolved, unavailable optional ones skipped), then the overriding
/// ones; and the index of the first overriding one.
fn load_repos(
    state: &StateDir,
    tf: &Treefile,
    opts: &ComposeOptions,
    locked: bool,
) -> Result<(Vec<repo::RepoConfig>, usize)> {
    let lockfile_repos = match locked {
        true => treefile::LockfileRepos::Enabled,
        false => treefile::LockfileRepos::Disabled,
    };
    let mut repos = tf
        .load_repos_with(&state.devrepo_root(), lockfile_repos)
        .map_err(InputError::wrap)?;
    for r in &mut repos {
        if let Err(e) = repo::resolve_mirrors(r) {
            if !r.skip_if_unavailable {
                return Err(e);
            }
            tracing::warn!("repository `{}` skipped (skip_if_unavailable): {e:#}", r.id);
        }
    }
    // Overriding repositories come last, so the tree's own keep their indices.
    let first_override = repos.len();
    if let Some(ov) = &opts.overrides {
        repos.extend(crate::overrides::repo_configs(state, ov)?);
    }
    Ok((repos, first_override))
}

/// What the commit is a function of; an override's also of the commit it goes over.
fn inputhash(
    tf: &Treefile,
    solved: &[SolvedPackage],
    layers: &[crate::layers::Layer],
    opts: &ComposeOptions,
    base: Option<&str>,
) -> String {
    match &opts.overrides {
        None => input_hash(tf, solved, layers),
        Some(_) => {
            let base = base.unwrap_or("none");
            hex::encode(Sha256::digest(format!(
                "{} over {base}",
                input_hash(tf, solved, layers)
            )))
        }
    }
}

/// Commit the tree unless its ref already holds a commit of the same inputs (then `result` names that
/// one and this returns false). `parent` is the tree's current commit.
fn commit_new(
    state: &StateDir,
    tf: &Treefile,
    opts: &ComposeOptions,
    inputs: &Inputs,
    parent: Option<String>,
    result: &mut ComposeResult,
) -> Result<bool> {
    let repo = commit::open_or_create_repo(&state.repo())?;
    let prev_version = match &parent {
        Some(p) => commit::metadata_string(&commit::commit_metadata(&repo, p)?, "version"),
        None => None,
    };
    if let Some(current) = commit::resolve(&repo, &result.ref_)?.filter(|_| !opts.force) {
        let md = commit::commit_metadata(&repo, &current)?;
        if commit::metadata_string(&md, "rpmostree.inputhash").as_deref() == Some(&result.inputhash) {
            events::step(Stage::Compose, format!("no changes since {current}"), None);
            result.commit = Some(current);
            result.version = commit::metadata_string(&md, "version");
            return Ok(false);
        }
    }
    let rpms = fetch::fetch_all(inputs.solved, inputs.repos, &state.rpm_cache())?;
    // Same filesystem as the repo; removed on every path out of this function, on Ctrl-C, and by the
    // next run after a SIGKILL.
    let work = WorkDir::new(&state.tmp(), "compose")?;
    let root = work.path().join("rootfs");
    let previous = match &parent {
        Some(p) => crate::accounts::previous(&state.repo(), p)?,
        None => None,
    };
    let cache = crate::unpack_cache::UnpackCache::open(&state.unpack_cache())?;
    let version = commit_version(tf, opts, prev_version.as_deref())?;
    let inputs = Inputs { rpms: &rpms, ..*inputs };
    let (kver, unpacked) = assemble(&root, state, tf, &inputs, previous.as_ref(), &cache, version.as_deref())?;
    let mut metadata = tf.add_commit_metadata.clone();
    if !tf.container_cmd.is_empty() {
        metadata.insert("ostree.container-cmd".into(), serde_json::json!(tf.container_cmd));
    }
    let (caps, labels) = xattr_sources(tf, &root, &unpacked)?;
    let progress = Progress::new("commit", 1, false);
    let build_repo = commit::open_or_create_build_repo(&state.build_repo())?;
    let (csum, shared_inodes) = commit::commit_tree(
        &repo,
        &build_repo,
        &root,
        &commit::CommitRequest {
            ref_: &result.ref_,
            parent: parent.as_deref(),
            subject: &subject(tf, version.as_deref()),
            time: chrono::Utc::now().timestamp() as u64,
            version: version.as_deref(),
            inputhash: &result.inputhash,
            tree: &tf.name,
            arch: opts.arch.as_str(),
            packages: &records(inputs.solved),
            extra: &metadata,
            xattrs: crate::write_tree::XattrSource {
                by_path: &caps,
                labels: labels.as_ref(),
            },
        },
    )?;
    let kernel = kver.map_or_else(|| "not bootable".to_owned(), |k| format!("kernel {k}"));
    progress.finish(&format!("{} → {csum} ({kernel})", result.ref_));
    // The ref has moved: a cache that cannot be tidied costs the next compose time, not this one.
    if let Err(e) = cache.after_commit(&unpacked, &shared_inodes) {
        events::notice(
            Stage::Compose,
            format!("warning: checking the unpacked package cache: {e:#}"),
        );
    }
    result.commit = Some(csum);
    result.parent = parent;
    result.changed = true;
    result.version = version;
    Ok(true)
}

/// What the commit's extended attributes come from: the packages' file capabilities, and for
/// `selinux: true` the tree's policy.
fn xattr_sources(
    tf: &Treefile,
    root: &std::path::Path,
    unpacked: &[crate::unpack_cache::CachedPackage],
) -> Result<(crate::write_tree::Xattrs, Option<crate::selinux::Labeller>)> {
    let caps = crate::filecaps::commit_xattrs(unpacked.iter().map(|c| c.unpacked.package.caps.as_slice()));
    let labels = match tf.selinux {
        true => Some(
            crate::selinux::Labeller::open(root, tf.selinux_label_version)
                .with_context(|| format!("{}: selinux", tf.path.display()))?,
        ),
        false => None,
    };
    Ok((caps, labels))
}

/// The new commit's version: the next of the tree's `automatic-version-prefix`, or for an override the
/// tree's own with `+scratch` (the tree's next version belongs to the tree's next compose).
fn commit_version(tf: &Treefile, opts: &ComposeOptions, previous: Option<&str>) -> Result<Option<String>> {
    Ok(match &opts.overrides {
        Some(_) => Some(format!("{}+scratch", previous.unwrap_or("0"))),
        None => tf
            .automatic_version_prefix
            .as_deref()
            .map(|p| crate::version::next_version(p, previous))
            .transpose()?,
    })
}

/// What goes into the tree: the solved packages with their downloaded RPMs, repositories and the
/// repositories' keys, and the ostree layers.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    solved: &'a [SolvedPackage],
    rpms: &'a [std::path::PathBuf],
    repos: &'a [repo::RepoConfig],
    keys: &'a [Option<RepoKeys>],
    layers: &'a [crate::layers::Layer],
}

/// Merge every package into `root` (unpacked, with signatures checked where the repository asks,
/// or taken from the unpack cache), apply ownership, and turn the result into an OSTree tree;
/// returns the kernel version (None for a `container: true` tree) and the cache entries used.
fn assemble(
    root: &std::path::Path,
    state: &StateDir,
    tf: &Treefile,
    inputs: &Inputs,
    previous: Option<&crate::accounts::Previous>,
    cache: &crate::unpack_cache::UnpackCache,
    version: Option<&str>,
) -> Result<(Option<String>, Vec<crate::unpack_cache::CachedPackage>)> {
    let (used, imported) = import_packages(root, tf, inputs, cache)?;
    crate::layers::check_out(&state.repo(), root, inputs.layers)?;
    let t = std::time::Instant::now();
    let n = crate::scriptlet_run::run_all(root, &imported)?;
    if n > 0 {
        events::step(
            Stage::Compose,
            format!("scriptlets: {n} run"),
            Some(t.elapsed().as_secs_f64()),
        );
    }
    crate::selinux::move_policy_store(root)?;
    let policy = crate::accounts::Policy {
        ignore_removed_users: &tf.ignore_removed_users,
        ignore_removed_groups: &tf.ignore_removed_groups,
        etc_group_members: &tf.etc_group_members,
        preserve_passwd: tf.preserve_passwd,
        check_passwd: &tf.check_passwd,
        check_groups: &tf.check_groups,
    };
    crate::progress::timed("sysusers", || crate::accounts::create(root, previous, &policy))?;
    import::apply_owners(root, &imported)?;
    crate::progress::timed("systemd presets, tmpfiles, ldconfig", || {
        crate::systemd_setup::apply(
            root,
            &crate::systemd_setup::Settings {
                units: &tf.units,
                default_target: tf.default_target.as_deref(),
                machineid_compat: tf.machineid_compat,
            },
        )
    })?;
    apply_treefile_edits(root, tf, version)?;
    // After the scripts, which may change accounts too; before /etc moves.
    crate::accounts::check(root, previous, &policy)?;
    let t = std::time::Instant::now();
    let layout = postprocess::Layout {
        initramfs_args: &tf.initramfs_args,
        tmp_is_dir: tf.tmp_is_dir,
        boot_location: tf.boot_location,
        bootable: !tf.container,
        opt_usrlocal: tf.opt_usrlocal,
    };
    let kver = postprocess::postprocess(root, &imported, &layout, &state.initramfs_cache())?;
    events::step(
        Stage::Compose,
        "postprocess (initramfs included)",
        Some(t.elapsed().as_secs_f64()),
    );
    crate::progress::timed("rpmdb", || crate::rpmdb::write(root, inputs.rpms, tf.rpmdb))?;
    Ok((kver, used))
}

/// Merge every solved package into a new `root` (unpacked or cached); returns the cache entries and imports.
fn import_packages(
    root: &std::path::Path,
    tf: &Treefile,
    inputs: &Inputs,
    cache: &crate::unpack_cache::UnpackCache,
) -> Result<(Vec<crate::unpack_cache::CachedPackage>, Vec<import::ImportedPackage>)> {
    let Inputs {
        solved,
        rpms,
        repos,
        keys,
        ..
    } = *inputs;
    fs_err::create_dir(root)?;
    let progress = Progress::new("import", rpms.len() as u64, false);
    let mut used = Vec::with_capacity(rpms.len());
    for (pkg, rpm) in solved.iter().zip(rpms) {
        progress.set_message(&pkg.nevra());
        let verify = keys[pkg.repo].as_ref().filter(|_| repos[pkg.repo].gpgcheck);
        let import_opts = import::ImportOptions {
            documentation: tf.documentation,
            verify,
            readonly_executables: tf.readonly_executables,
        };
        let from = || format!("{} from repository `{}`", pkg.nevra(), repos[pkg.repo].id);
        let identity = format!("{}:{}", pkg.checksum_type, pkg.checksum);
        let cached = cache
            .get(rpm, &identity, import_opts, verify.map_or("", RepoKeys::id))
            .with_context(from)?;
        used.push(cached);
        progress.inc(1);
    }
    cache.mark_in_use(&used)?;
    let mut contents = contents_less_removed(tf, solved, &used);
    let shipped: Vec<_> = used
        .iter()
        .zip(&contents)
        .map(|(c, u)| crate::file_conflicts::Shipped {
            unpacked: u,
            files: &c.files,
        })
        .collect();
    let left_out = crate::file_conflicts::check(&shipped)?;
    for (content, paths) in contents.iter_mut().zip(left_out).filter(|(_, p)| !p.is_empty()) {
        // The file a package of the losing colour ships is not merged, nor are its owner and caps.
        let kept = content.to_mut();
        kept.entries.retain(|e| !paths.contains(e.path()));
        kept.package.owners.retain(|(p, _, _)| !paths.contains(p));
        kept.package.caps.retain(|(p, _)| !paths.contains(p));
    }
    for (cached, content) in used.iter().zip(&contents) {
        import::merge(root, &cached.files, content)?;
    }
    let unpacked = used.iter().filter(|c| !c.hit).count();
    progress.finish(&format!(
        "{} packages ({unpacked} unpacked, {} from the unpack cache)",
        used.len(),
        used.len() - unpacked
    ));
    let imported: Vec<import::ImportedPackage> = contents.iter().map(|c| c.package.clone()).collect();
    Ok((used, imported))
}

/// Apply `remove-from-packages` to the unpacked packages, warning of those it names not in the tree.
fn contents_less_removed<'a>(
    tf: &Treefile,
    solved: &[SolvedPackage],
    used: &'a [crate::unpack_cache::CachedPackage],
) -> Vec<std::borrow::Cow<'a, import::Unpacked>> {
    for name in tf.files_remove_regex.keys() {
        if !solved.iter().any(|p| &p.name == name) {
            tracing::warn!("remove-from-packages: package `{name}` is not in the tree");
        }
    }
    // What each package puts in the tree: its payload less what `remove-from-packages` takes out.
    used.iter()
        .map(|c| match tf.files_remove_regex.get(&c.unpacked.package.name) {
            None => std::borrow::Cow::Borrowed(&c.unpacked),
            Some(patterns) => {
                let (kept, gone) = crate::treefile_edits::remove_from_package(&c.unpacked, patterns);
                let what = format!(
                    "remove-from-packages: {} files of {} left out",
                    gone.len(),
                    c.unpacked.package.nevra
                );
                events::step(Stage::Compose, what, None);
                std::borrow::Cow::Owned(kept)
            }
        })
        .collect()
}

/// The treefile's edits of the tree: `mutate-os-release`, `remove-files`, `add-files`, postprocess scripts.
fn apply_treefile_edits(root: &std::path::Path, tf: &Treefile, version: Option<&str>) -> Result<()> {
    if let Some(base) = &tf.mutate_os_release {
        crate::treefile_edits::mutate_os_release(root, base, version)?;
    }
    postprocess::remove_files(root, &tf.remove_files)?;
    crate::treefile_edits::add_files(root, &tf.add_files)?;
    run_inline_postprocess(root, &tf.postprocess)?;
    if let Some(script) = &tf.postprocess_script {
        crate::sandbox::run_ok_with(
            root,
            crate::sandbox::Usr::Writable,
            &["/run/fedostree-postprocess"],
            &[(script.as_path(), "/run/fedostree-postprocess")],
            &format!("postprocess-script {}", script.display()),
        )?;
    }
    Ok(())
}

/// The treefile's `postprocess` scripts, in order, each run as an executable in the sandbox with the
/// tree as `/` (its `#!` line picks the interpreter), as rpm-ostree runs them: written into the tree's
/// `/usr/bin` for the run (a temp dir may be mounted noexec) and removed afterwards.
fn run_inline_postprocess(root: &std::path::Path, scripts: &[String]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (i, script) in scripts.iter().enumerate() {
        let rel = format!("usr/bin/fedostree-postprocess-inline-{i}");
        let path = crate::safepath::parent_beneath(root, &rel)?;
        crate::safepath::replace_file(&path, script)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        let inside = format!("/{rel}");
        let ran = crate::sandbox::run_ok_with(
            root,
            crate::sandbox::Usr::Writable,
            &[inside.as_str()],
            &[],
            &format!("postprocess script {i} of the treefile"),
        );
        fs_err::remove_file(&path)?;
        ran?;
    }
    Ok(())
}

/// The commit subject: tree, version if any, architecture.
fn subject(tf: &Treefile, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{} {v} ({})", tf.name, tf.arch),
        None => format!("{} ({})", tf.name, tf.arch),
    }
}

/// The package list as commit metadata records it.
fn records(solved: &[SolvedPackage]) -> Vec<PkgRecord> {
    solved
        .iter()
        .map(|p| PkgRecord {
            name: p.name.clone(),
            epoch: p.epoch.to_string(),
            version: p.version.clone(),
            release: p.release.clone(),
            arch: p.arch.clone(),
        })
        .collect()
}

/// Depsolve the treefile's packages (and `repo-packages`, each only from its repository) in its
/// repositories, under the lockfiles if any. Repositories from index `first_override` on are
/// overrides: each name they offer comes only from them (whatever the tree's repositories or the
/// lockfiles say) and is installed.
fn solve(
    state: &StateDir,
    tf: &Treefile,
    repos: &[repo::RepoConfig],
    keys: &[Option<RepoKeys>],
    lock: Option<&crate::lockfile::Lockfile>,
    first_override: usize,
) -> Result<Vec<SolvedPackage>> {
    let progress = Progress::new("depsolve", 1, false);
    let mut solver = Solver::new(tf.arch.as_str());
    add_repositories(&mut solver, state, repos, keys)?;
    let mut install = tf.packages.clone();
    let overridden = overriding_names(&solver, tf, repos.len(), first_override)?;
    install.extend(
        overridden
            .iter()
            .filter(|n| !install.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let pinned = pin_repo_packages(tf, repos, lock.is_some(), &mut install)?;
    let lockfile_repos: std::collections::BTreeSet<usize> = tf
        .lockfile_repos
        .iter()
        .filter(|r| !tf.repos.contains(r))
        .filter_map(|r| repo_index(repos, r))
        .collect();
    let req = Request {
        install,
        exclude: tf.exclude_packages.clone(),
        recommends: tf.recommends,
    };
    let mut found = std::collections::BTreeSet::new();
    let solved = {
        let mut locked = lock.map(|l| l.pool_filter(&lockfile_repos, &mut found));
        solver.solve_filtered(&req, |c| {
            if overridden.contains(&c.name) {
                return c.repo >= first_override;
            }
            repos[c.repo].offers(&c.name)
                && pinned.get(&c.name).is_none_or(|&r| r == c.repo)
                && (c.repo >= first_override || locked.as_mut().is_none_or(|keep| keep(c)))
        })
    };
    if let Some(l) = lock {
        l.warn_missing(&found);
    }
    let with_overrides = match overridden.is_empty() {
        true => String::new(),
        false => format!(
            " with the overriding packages {}",
            overridden.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    let solved = solved
        .map_err(InputError::wrap)
        .with_context(|| format!("{}: {} ({}){with_overrides}", tf.path.display(), tf.name, tf.arch))?;
    progress.finish(&format!("{} packages for {}", solved.len(), tf.arch));
    Ok(solved)
}

/// Add each repository's metadata to the solver; a skipped (`skip_if_unavailable`) one keeps its index.
fn add_repositories(
    solver: &mut Solver,
    state: &StateDir,
    repos: &[repo::RepoConfig],
    keys: &[Option<RepoKeys>],
) -> Result<()> {
    for (r, k) in repos.iter().zip(keys) {
        let md = match repo::fetch_metadata(r, k.as_ref(), &state.repodata_cache()) {
            Ok(md) => md,
            Err(e) if r.skip_if_unavailable && !fedostree_util::is_input_error(&e) => {
                tracing::warn!("repository `{}` skipped (skip_if_unavailable): {e:#}", r.id);
                solver.skip_repo();
                continue;
            }
            Err(e) => return Err(e),
        };
        solver.add_repo_prioritized(&r.id, &md.primary, md.filelists.as_deref(), r.priority, r.cost)?;
    }
    Ok(())
}

/// The names the overriding repositories (from `first_override` on) offer; offering none is an error.
fn overriding_names(
    solver: &Solver,
    tf: &Treefile,
    repo_count: usize,
    first_override: usize,
) -> Result<std::collections::BTreeSet<String>> {
    let overridden = match first_override < repo_count {
        true => solver.names_offered_from(first_override),
        false => Default::default(),
    };
    if first_override < repo_count && overridden.is_empty() {
        fedostree_util::bail_input!(
            "{}: the overriding packages offer nothing installable on {}",
            tf.name,
            tf.arch
        );
    }
    Ok(overridden)
}

/// Add the `repo-packages` names to `install`, each pinned to its repository's index (must be enabled).
fn pin_repo_packages(
    tf: &Treefile,
    repos: &[repo::RepoConfig],
    locked: bool,
    install: &mut Vec<String>,
) -> Result<std::collections::BTreeMap<String, usize>> {
    let mut pinned: std::collections::BTreeMap<String, usize> = Default::default();
    for rp in &tf.repo_packages {
        let Some(i) = repo_index(repos, &rp.repo).filter(|_| tf.repos.contains(&rp.repo) || locked) else {
            fedostree_util::bail_input!(
                "{}: `repo-packages`: repository `{}` is not enabled (list it under `repos`)",
                tf.path.display(),
                rp.repo
            );
        };
        for name in rp.packages.iter().flat_map(|p| p.split_whitespace()) {
            install.push(name.to_owned());
            pinned.insert(name.to_owned(), i);
        }
    }
    Ok(pinned)
}

/// The index of repository `id` in `repos`.
fn repo_index(repos: &[repo::RepoConfig], id: &str) -> Option<usize> {
    repos.iter().position(|r| r.id == id)
}

/// Everything that determines the commit's content: the merged treefile, each package's checksum,
/// and this compose implementation (including the initramfs init it embeds).
fn input_hash(tf: &Treefile, solved: &[SolvedPackage], layers: &[crate::layers::Layer]) -> String {
    let mut h = Sha256::new();
    h.update(COMPOSE_VERSION.as_bytes());
    // The initramfs is generated by compose, so its recipe is an input too.
    h.update(crate::initramfs::INIT_SCRIPT.as_bytes());
    h.update(crate::initramfs::WANTED_MODULES.join(",").as_bytes());
    h.update(crate::initramfs::APPLETS.join(",").as_bytes());
    h.update(tf.canonical_json().as_bytes());
    for d in &tf.external_digests {
        h.update(format!("\n{d}").as_bytes());
    }
    for p in solved {
        h.update(format!("\n{} {}:{}", p.nevra(), p.checksum_type, p.checksum).as_bytes());
    }
    for l in layers {
        h.update(format!("\nostree-layer {} {} {}", l.reference, l.commit, l.overrides).as_bytes());
    }
    hex::encode(h.finalize())
}
