//! Package overrides of one compose (`fedostree test --add-rpm/--add-repo`, the packager fast path):
//! RPM files become a local rpm-md repository, and every overriding repository outranks the tree's
//! own. A name they offer replaces the tree's package of that name whatever its version (as
//! `rpm-ostree override replace` does) and a new name is added; the result goes on its own ref.

use crate::repo::RepoConfig;
use anyhow::{Context, Result};
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::state::StateDir;
use fedostree_util::InputError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Repository ids of overrides start with this; the tree's own repositories never do.
pub const REPO_ID_PREFIX: &str = "fedostree-override";

/// What overrides a tree's package set, and where the result is committed.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// RPM files, or directories searched for them (everything one build produced).
    pub rpms: Vec<PathBuf>,
    /// rpm-md repositories: a directory holding `repodata/`, or an http(s):// or file:// URL.
    pub repos: Vec<String>,
    /// The ref the commit goes on instead of the tree's.
    pub ref_: String,
}

/// Check what `ov` names before anything is composed: the RPMs are readable binary RPMs, the
/// repository directories hold rpm-md metadata.
pub fn validate(ov: &Overrides) -> Result<()> {
    if !ov.rpms.is_empty() {
        collect_rpms(&ov.rpms)?;
    }
    for r in ov.repos.iter().filter(|r| !r.contains("://")) {
        if !Path::new(r).join("repodata/repomd.xml").is_file() {
            fedostree_util::bail_input!(
                "--add-repo {r}: not an rpm-md repository (no repodata/repomd.xml); \
                 give RPM files or a directory of them with --add-rpm"
            );
        }
    }
    Ok(())
}

/// The repositories of `ov`, ready to load after the tree's own (unsigned: a packager's fresh build
/// is not signed by anyone yet). RPM files are gathered into `$STATE/overrides/<digest>/`, named by
/// their content so the same build reuses its repository and its cached metadata.
pub fn repo_configs(state: &StateDir, ov: &Overrides) -> Result<Vec<RepoConfig>> {
    let mut out = Vec::new();
    if !ov.rpms.is_empty() {
        let dir = local_repo(&state.root().join("overrides"), &ov.rpms)?;
        out.push(config(format!("{REPO_ID_PREFIX}-rpms"), url_of(&dir), dir));
    }
    for (i, r) in ov.repos.iter().enumerate() {
        let (url, source) = if r.contains("://") {
            (r.trim_end_matches('/').to_string(), PathBuf::from(r))
        } else {
            validate(&Overrides {
                repos: vec![r.clone()],
                ..Overrides::default()
            })?;
            let dir = Path::new(r).canonicalize().with_context(|| format!("--add-repo {r}"))?;
            (url_of(&dir), dir)
        };
        out.push(config(format!("{REPO_ID_PREFIX}-repo{}", i + 1), url, source));
    }
    Ok(out)
}

fn url_of(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn config(id: String, url: String, source: PathBuf) -> RepoConfig {
    RepoConfig {
        name: format!("{id} ({url})"),
        id,
        baseurl: url.clone(),
        baseurls: vec![url],
        // Above every repository of a tree (dnf's default is 99; lower wins).
        priority: 1,
        cost: 1000,
        source,
        ..RepoConfig::default()
    }
}

/// A binary RPM given to `--add-rpm`, and its package name (read once, with the check).
#[derive(Debug, Clone)]
pub struct BinaryRpm {
    pub path: PathBuf,
    pub name: String,
}

/// Every RPM named by `paths` (files, or directories searched recursively), checked to be a binary
/// RPM; source RPMs are left out, as a build's `*.src.rpm` is not installable.
pub fn collect_rpms(paths: &[PathBuf]) -> Result<Vec<BinaryRpm>> {
    let mut found = Vec::new();
    for p in paths {
        let meta = fs_err::metadata(p).map_err(|e| InputError::new(format!("--add-rpm {}: {e}", p.display())))?;
        if meta.is_dir() {
            let before = found.len();
            rpms_under(p, &mut found)?;
            if found.len() == before {
                fedostree_util::bail_input!("--add-rpm {}: the directory holds no *.rpm file", p.display());
            }
        } else {
            found.push(p.clone());
        }
    }
    let mut binary = Vec::new();
    for f in found {
        let md = rpm::PackageMetadata::open(&f)
            .map_err(|e| InputError::new(format!("--add-rpm {}: not a readable RPM: {e}", f.display())))?;
        if !md.is_source_package() {
            let name = md.get_name().unwrap_or_default().to_string();
            binary.push(BinaryRpm { path: f, name });
        }
    }
    if binary.is_empty() {
        fedostree_util::bail_input!("--add-rpm: only source RPMs given, nothing installable");
    }
    Ok(binary)
}

/// The `*.rpm` files below `dir`, in name order.
fn rpms_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = fs_err::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (path, ty) = (e.path(), e.file_type()?);
        if ty.is_dir() {
            rpms_under(&path, out)?;
        } else if ty.is_file() && path.extension().is_some_and(|x| x == "rpm") {
            out.push(path);
        }
    }
    Ok(())
}

/// A repository of `paths`' RPMs under `root`, named by their content; built once, then reused.
fn local_repo(root: &Path, paths: &[PathBuf]) -> Result<PathBuf> {
    let rpms = collect_rpms(paths)?;
    let mut names = std::collections::BTreeMap::new();
    let mut h = Sha256::new();
    for f in rpms.iter().map(|r| &r.path) {
        let name = f.file_name().context("an RPM path without a file name")?.to_owned();
        if let Some(other) = names.insert(name.clone(), f.clone()) {
            fedostree_util::bail_input!(
                "--add-rpm: {} and {} have the same file name; give one of them",
                other.display(),
                f.display()
            );
        }
        let digest = crate::repo::hex_digest_reader("sha256", fs_err::File::open(f)?, None)?.0;
        h.update(format!("{} {digest}\n", name.to_string_lossy()).as_bytes());
    }
    let dir = root.join(&hex::encode(h.finalize())[..32]);
    if dir.join("repodata/repomd.xml").is_file() {
        return Ok(dir.canonicalize()?);
    }
    // Built aside and renamed into place: a repository directory that exists is complete.
    let work = root.join(format!(
        ".build-{}-{}",
        std::process::id(),
        dir.file_name().unwrap().to_string_lossy()
    ));
    let _ = fs_err::remove_dir_all(&work);
    fs_err::create_dir_all(work.join("Packages"))?;
    let built = (|| -> Result<()> {
        for (name, from) in &names {
            let to = work.join("Packages").join(name);
            fs_err::hard_link(from, &to).or_else(|_| fs_err::copy(from, &to).map(|_| ()))?;
        }
        std::process::Command::new("createrepo_c")
            .args(["--quiet", "--no-database", "--general-compress-type=gz"])
            .arg(&work)
            .run()
            .context("createrepo_c over the --add-rpm packages")?;
        match fs_err::rename(&work, &dir) {
            // Another run built the same repository first.
            Err(_) if dir.join("repodata/repomd.xml").is_file() => Ok(()),
            r => Ok(r?),
        }
    })();
    let _ = fs_err::remove_dir_all(&work);
    built?;
    Ok(dir.canonicalize()?)
}
