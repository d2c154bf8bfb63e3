//! Committing a tree into the archive repo with libostree, and reading commit metadata back.

use anyhow::{Context, Result};
use fedostree_util::cmd::CommandRunExt;
use ostree::gio;
use ostree::gio::prelude::FileExt;
use ostree::glib::{self, prelude::*};
use std::collections::BTreeMap;
use std::path::Path;

/// Open the archive repo at `path`, creating it on first use.
pub fn open_or_create_repo(path: &Path) -> Result<ostree::Repo> {
    open_or_create(path, ostree::RepoMode::Archive)
}

/// The uncompressed build cache beside the archive repo (rpm-ostree's approach): committing there only
/// checksums unchanged files, and `pull-local` then compresses just the objects the archive lacks.
pub fn open_or_create_build_repo(path: &Path) -> Result<ostree::Repo> {
    let mode = if running_as_root() {
        ostree::RepoMode::Bare
    } else {
        ostree::RepoMode::BareUser
    };
    open_or_create(path, mode)
}

pub(crate) fn running_as_root() -> bool {
    fs_err::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn open_or_create(path: &Path, mode: ostree::RepoMode) -> Result<ostree::Repo> {
    let repo = ostree::Repo::new_for_path(path);
    if path.join("config").exists() {
        repo.open(gio::Cancellable::NONE)
            .with_context(|| format!("opening OSTree repo {}", path.display()))?;
    } else {
        fs_err::create_dir_all(path)?;
        repo.create(mode, gio::Cancellable::NONE)
            .with_context(|| format!("creating OSTree repo {}", path.display()))?;
    }
    Ok(repo)
}

/// A package as recorded in commit metadata (rpm-ostree's `rpmostree.rpmdb.pkglist` shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PkgRecord {
    pub name: String,
    pub epoch: String,
    pub version: String,
    pub release: String,
    pub arch: String,
}

impl PkgRecord {
    pub fn evr(&self) -> String {
        crate::solve::evr(self.epoch.parse().unwrap_or(0), &self.version, &self.release)
    }
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name, self.evr(), self.arch)
    }
}

/// What goes into a commit besides the tree.
pub struct CommitRequest<'a> {
    pub ref_: &'a str,
    pub parent: Option<&'a str>,
    pub subject: &'a str,
    pub time: u64,
    pub version: Option<&'a str>,
    pub inputhash: &'a str,
    pub tree: &'a str,
    pub arch: &'a str,
    pub packages: &'a [PkgRecord],
    pub extra: &'a BTreeMap<String, serde_json::Value>,
    /// Extended attributes of the tree's entries (see [`crate::write_tree::XattrSource`]).
    pub xattrs: crate::write_tree::XattrSource<'a>,
}

fn json_to_variant(v: &serde_json::Value) -> glib::Variant {
    use serde_json::Value;
    match v {
        Value::Bool(b) => b.to_variant(),
        Value::Number(n) if n.is_i64() => n.as_i64().unwrap().to_variant(),
        Value::Number(n) => n.as_f64().unwrap_or_default().to_variant(),
        Value::String(s) => s.to_variant(),
        Value::Array(a) if a.iter().all(Value::is_string) => a
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .to_variant(),
        other => other.to_string().to_variant(),
    }
}

/// Write `root` as a commit and move the ref to it. The tree is committed into `build_repo` first,
/// then its new objects are pulled into `repo`, and only then does the ref move: on any error the
/// ref stays where it was.
/// Returns the commit and the checksums of the tree's files that share their inode (see
/// [`crate::write_tree::WrittenTree`]).
pub fn commit_tree(
    repo: &ostree::Repo,
    build_repo: &ostree::Repo,
    root: &Path,
    req: &CommitRequest,
) -> Result<(String, crate::write_tree::InodeChecksums)> {
    let dict = glib::VariantDict::new(None);
    for (k, v) in req.extra {
        dict.insert_value(k, &json_to_variant(v));
    }
    if let Some(v) = req.version {
        dict.insert_value("version", &v.to_variant());
    }
    dict.insert_value("rpmostree.inputhash", &req.inputhash.to_variant());
    dict.insert_value("fedostree.tree", &req.tree.to_variant());
    dict.insert_value("fedostree.arch", &req.arch.to_variant());
    let nevras: Vec<String> = req.packages.iter().map(PkgRecord::nevra).collect();
    dict.insert_value("fedostree.packages", &nevras.to_variant());
    let pkglist: Vec<(String, String, String, String, String)> = req
        .packages
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.epoch.clone(),
                p.version.clone(),
                p.release.clone(),
                p.arch.clone(),
            )
        })
        .collect();
    dict.insert_value("rpmostree.rpmdb.pkglist", &pkglist.to_variant());
    let metadata = dict.end();

    let cancellable = gio::Cancellable::NONE;
    build_repo.prepare_transaction(cancellable)?;
    let built = (|| -> Result<(String, crate::write_tree::InodeChecksums)> {
        let written = crate::progress::timed("commit: checksummed the tree into the build repo", || {
            crate::write_tree::write_tree(build_repo, root, req.xattrs).context("writing the tree into the build repo")
        })?;
        let root_file = written
            .root
            .downcast::<ostree::RepoFile>()
            .expect("write_mtree returns a RepoFile");
        let csum = build_repo.write_commit_with_time(
            req.parent,
            Some(req.subject),
            None,
            Some(&metadata),
            &root_file,
            req.time,
            cancellable,
        )?;
        // Keeps the build cache's latest tree of this ref alive (nothing prunes it otherwise).
        build_repo.transaction_set_ref(None, req.ref_, Some(&csum));
        build_repo.commit_transaction(cancellable)?;
        Ok((csum.to_string(), written.shared_inodes))
    })();
    let (csum, shared_inodes) = match built {
        Ok(c) => c,
        Err(e) => {
            let _ = build_repo.abort_transaction(cancellable);
            return Err(e);
        }
    };
    let build_path = build_repo.path().path().context("build repo path")?;
    let repo_path = repo.path().path().context("repo path")?;
    crate::progress::timed("commit: new objects compressed into the archive repo", || {
        pull_objects(&repo_path, &build_path, &csum).context("copying the new commit's objects into the archive repo")
    })?;
    repo.set_ref_immediate(None, req.ref_, Some(&csum), cancellable)?;
    Ok((csum, shared_inodes))
}

/// Copy `commit` and the objects it needs from `source` into `dest` (only those `dest` lacks),
/// verifying them and setting no ref: moving a ref is the caller's separate, last step.
pub fn pull_objects(dest: &Path, source: &Path, commit: &str) -> Result<()> {
    std::process::Command::new("ostree")
        .arg(format!("--repo={}", dest.display()))
        .args(["pull-local", "--untrusted"])
        .arg(source)
        .arg(commit)
        .run()
}

/// The commit a ref (or checksum) points to, if any.
pub fn resolve(repo: &ostree::Repo, rev: &str) -> Result<Option<String>> {
    Ok(repo.resolve_rev(rev, true)?.map(|s| s.to_string()))
}

/// A commit's parent, when the commit is in `repo` and has one (a pruned commit ends the chain).
pub fn parent_of(repo: &ostree::Repo, csum: &str) -> Result<Option<String>> {
    if !repo.has_object(ostree::ObjectType::Commit, csum, gio::Cancellable::NONE)? {
        return Ok(None);
    }
    let commit = repo.load_variant(ostree::ObjectType::Commit, csum)?;
    Ok(ostree::commit_get_parent(&commit).map(|p| p.to_string()))
}

/// A commit's metadata dictionary.
pub fn commit_metadata(repo: &ostree::Repo, csum: &str) -> Result<glib::VariantDict> {
    let commit = repo.load_variant(ostree::ObjectType::Commit, csum)?;
    Ok(glib::VariantDict::new(Some(&commit.child_value(0))))
}

pub fn metadata_string(dict: &glib::VariantDict, key: &str) -> Option<String> {
    dict.lookup_value(key, None).and_then(|v| v.get::<String>())
}

/// The package list recorded in a commit.
pub fn commit_packages(repo: &ostree::Repo, csum: &str) -> Result<Vec<PkgRecord>> {
    let dict = commit_metadata(repo, csum)?;
    let list = dict
        .lookup_value("rpmostree.rpmdb.pkglist", None)
        .and_then(|v| v.get::<Vec<(String, String, String, String, String)>>())
        .with_context(|| format!("commit {csum} has no package list (not composed by fedostree?)"))?;
    Ok(list
        .into_iter()
        .map(|(name, epoch, version, release, arch)| PkgRecord {
            name,
            epoch,
            version,
            release,
            arch,
        })
        .collect())
}
