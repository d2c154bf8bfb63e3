//! `fedostree compose`: one treefile and one architecture from repositories to a commit, or a
//! no-op when nothing that goes into the commit changed.

use crate::commit::{self, PkgRecord};
use crate::progress::Progress;
use crate::repo::{self, RepoVars};
use crate::solve::{Request, SolvedPackage, Solver};
use crate::state::StateDir;
use crate::treefile::{self, Treefile};
use crate::{devrepo, fetch, import, postprocess, InputError};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Bumped whenever compose output changes for the same inputs, so old commits are not reused.
pub const COMPOSE_VERSION: &str = "fedostree-compose-1";

#[derive(Debug, Clone)]
pub struct ComposeOptions {
    pub tree: String,
    pub arch: String,
    pub dry_run: bool,
    pub force: bool,
}

/// The compose JSON (`--write-compose-json`) and the return value of [`compose`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComposeResult {
    pub tree: String,
    pub arch: String,
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
}

/// Compose `opts.tree` for `opts.arch` into `$STATE/repo`.
pub fn compose(state: &StateDir, opts: &ComposeOptions) -> Result<ComposeResult> {
    let trees_dir = crate::state::source_dir().join("trees");
    let (path, name) = treefile::locate(&opts.tree, &trees_dir)?;
    let tf = Treefile::load(&path, &name, &opts.arch)?;
    let devrepo_dir = state.devrepo_root();
    let vars = RepoVars {
        basearch: &opts.arch,
        devrepo: &devrepo_dir,
    };
    let repos = repo::load_repos(tf.dir(), &tf.repos, &vars).map_err(InputError::wrap)?;
    // One compose per state directory at a time: they share the repo, the caches and the dev repo.
    let _lock = crate::lock::FileLock::acquire(&state.root().join("compose.lock"))?;
    remove_stale_work_dirs(state);
    if repos
        .iter()
        .any(|r| r.baseurl.contains(&*devrepo_dir.to_string_lossy()))
    {
        // Incremental (milliseconds when nothing changed): edits to tests-suite/ reach the next compose.
        let dopts = devrepo::DevRepoOptions {
            arches: vec![opts.arch.clone()],
            bump: vec![],
            source_dir: crate::state::source_dir(),
        };
        devrepo::build(state, &dopts).context("building the dev repository")?;
    }

    let solved = solve(state, &tf, &repos)?;
    let inputhash = input_hash(&tf, &solved);
    let package_list: Vec<String> = solved.iter().map(SolvedPackage::nevra).collect();
    let mut result = ComposeResult {
        tree: tf.name.clone(),
        arch: opts.arch.clone(),
        ref_: tf.ref_.clone(),
        commit: None,
        parent: None,
        inputhash: inputhash.clone(),
        changed: false,
        version: None,
        packages: solved.len(),
        package_list,
    };
    if opts.dry_run {
        return Ok(result);
    }

    let repo = commit::open_or_create_repo(&state.repo())?;
    let parent = commit::resolve(&repo, &tf.ref_)?;
    let mut prev_version = None;
    if let Some(p) = &parent {
        let md = commit::commit_metadata(&repo, p)?;
        prev_version = commit::metadata_string(&md, "version");
        if !opts.force && commit::metadata_string(&md, "rpmostree.inputhash").as_deref() == Some(&inputhash) {
            eprintln!("compose {} {}: no changes since {p}", tf.name, opts.arch);
            result.commit = Some(p.clone());
            result.version = prev_version;
            return Ok(result);
        }
    }

    let rpms = fetch::fetch_all(&solved, &repos, &state.rpm_cache())?;
    std::fs::create_dir_all(state.tmp())?;
    // Same filesystem as the repo, removed on every path out of this function.
    let work = tempfile::Builder::new().prefix("compose-").tempdir_in(state.tmp())?;
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root)?;
    let import_opts = import::ImportOptions {
        documentation: tf.documentation,
    };
    let progress = Progress::new("import", rpms.len() as u64, false);
    let mut imported = Vec::with_capacity(rpms.len());
    for (pkg, rpm) in solved.iter().zip(&rpms) {
        progress.set_message(&pkg.nevra());
        imported.push(import::import_rpm(rpm, &root, import_opts).map_err(InputError::wrap)?);
        progress.inc(1);
    }
    progress.finish(&format!("{} packages", imported.len()));
    import::apply_owners(&root, &imported).map_err(InputError::wrap)?;
    let kver = postprocess::postprocess(&root, &imported, &tf.remove_files).map_err(InputError::wrap)?;

    let version = tf
        .automatic_version_prefix
        .as_deref()
        .map(|p| next_version(p, prev_version.as_deref()));
    let records: Vec<PkgRecord> = solved
        .iter()
        .map(|p| PkgRecord {
            name: p.name.clone(),
            epoch: p.epoch.to_string(),
            version: p.version.clone(),
            release: p.release.clone(),
            arch: p.arch.clone(),
        })
        .collect();
    let subject = match &version {
        Some(v) => format!("{} {v} ({})", tf.name, opts.arch),
        None => format!("{} ({})", tf.name, opts.arch),
    };
    let progress = Progress::new("commit", 1, false);
    let build_repo = commit::open_or_create_build_repo(&state.build_repo())?;
    let csum = commit::commit_tree(
        &repo,
        &build_repo,
        &root,
        &commit::CommitRequest {
            ref_: &tf.ref_,
            parent: parent.as_deref(),
            subject: &subject,
            time: chrono::Utc::now().timestamp() as u64,
            version: version.as_deref(),
            inputhash: &inputhash,
            tree: &tf.name,
            arch: &opts.arch,
            packages: &records,
            extra: &tf.add_commit_metadata,
        },
    )?;
    progress.finish(&format!("{} → {csum} (kernel {kver})", tf.ref_));
    result.commit = Some(csum);
    result.parent = parent;
    result.changed = true;
    result.version = version;
    Ok(result)
}

/// A compose killed before its temporary tree was removed leaves `$STATE/tmp/compose-*`; under the
/// compose lock none of them can be in use.
fn remove_stale_work_dirs(state: &StateDir) {
    let Ok(entries) = std::fs::read_dir(state.tmp()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("compose-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn solve(state: &StateDir, tf: &Treefile, repos: &[repo::RepoConfig]) -> Result<Vec<SolvedPackage>> {
    let progress = Progress::new("depsolve", 1, false);
    let mut solver = Solver::new(&tf.arch);
    for r in repos {
        let md = repo::fetch_metadata(r, &state.repodata_cache())?;
        solver.add_repo(&r.id, &md.primary, md.filelists.as_deref())?;
    }
    let req = Request {
        install: tf.packages.clone(),
        exclude: tf.exclude_packages.clone(),
        recommends: tf.recommends,
    };
    let solved = solver
        .solve(&req)
        .with_context(|| format!("{}: {} ({})", tf.path.display(), tf.name, tf.arch))?;
    progress.finish(&format!("{} packages for {}", solved.len(), tf.arch));
    Ok(solved)
}

/// Everything that determines the commit's content: the merged treefile, each package's checksum,
/// and this compose implementation (including the initramfs init it embeds).
fn input_hash(tf: &Treefile, solved: &[SolvedPackage]) -> String {
    let mut h = Sha256::new();
    h.update(COMPOSE_VERSION.as_bytes());
    // The initramfs is generated by compose, so its recipe is an input too.
    h.update(crate::initramfs::INIT_SCRIPT.as_bytes());
    h.update(crate::initramfs::WANTED_MODULES.join(",").as_bytes());
    h.update(crate::initramfs::APPLETS.join(",").as_bytes());
    h.update(tf.canonical_json().as_bytes());
    for p in solved {
        h.update(format!("\n{} {}:{}", p.nevra(), p.checksum_type, p.checksum).as_bytes());
    }
    hex::encode(h.finalize())
}

/// rpm-ostree's automatic versioning: `<date:FMT>` expands; the version is `PREFIX.N`, N counting up
/// from 0 while the previous commit's version shares the prefix.
pub fn next_version(prefix: &str, previous: Option<&str>) -> String {
    let prefix = expand_date(prefix);
    let n = previous
        .and_then(|v| v.strip_prefix(&format!("{prefix}.")))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |n| n + 1);
    format!("{prefix}.{n}")
}

fn expand_date(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("<date:") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('>') else {
            break;
        };
        let fmt = &rest[i + 6..i + end];
        out.push_str(&chrono::Utc::now().format(fmt).to_string());
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Resolve `--arch`: one architecture, or both for `all`.
pub fn arches(arg: Option<&str>) -> Result<Vec<String>> {
    match arg {
        None => Ok(vec![crate::state::host_arch().to_string()]),
        Some("all") => Ok(crate::state::ARCHES.iter().map(|s| s.to_string()).collect()),
        Some(a) if crate::state::ARCHES.contains(&a) => Ok(vec![a.to_string()]),
        Some(a) => Err(InputError::new(format!(
            "unknown architecture `{a}` (x86_64, aarch64 or all)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_versions_count_up_per_prefix() {
        assert_eq!(next_version("1.0", None), "1.0.0");
        assert_eq!(next_version("1.0", Some("1.0.0")), "1.0.1");
        assert_eq!(next_version("1.0", Some("1.0.9")), "1.0.10");
        assert_eq!(next_version("1.1", Some("1.0.9")), "1.1.0");
        let y = chrono::Utc::now().format("%Y").to_string();
        assert_eq!(next_version("40.<date:%Y>", None), format!("40.{y}.0"));
    }
}
