//! A package described as data (metadata, dependencies, sorted file entries) and its one
//! deterministic path to an RPM file: fixed build time, mtimes, owner and build host.

use anyhow::{bail, Context, Result};
use rpm::{BuildConfig, CompressionWithLevel, Dependency, FileOptions, PackageBuilder};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Build time and mtime of every file: 2024-01-01T00:00:00Z. A constant, not the clock, so that the
/// same inputs give byte-identical RPMs.
pub(crate) const SOURCE_DATE: u32 = 1_704_067_200;
const BUILD_HOST: &str = "fedostree-devrepo";

#[derive(Debug)]
pub(crate) enum Content {
    Dir,
    /// A regular file read from disk at build time.
    File(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub mode: u16,
    pub content: Content,
    pub attrs: Attrs,
}

/// What an RPM records of a file beyond mode and content.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Attrs {
    /// Owner names; None is root.
    pub user: Option<String>,
    pub group: Option<String>,
    /// `%config(noreplace)`: a Debian conffile.
    pub config: bool,
    /// File capabilities in `cap_from_text` form (`cap_net_raw=ep`).
    pub caps: Option<String>,
    /// Members of one hardlink set share this identity (the first member's path).
    pub hardlink: Option<String>,
}

/// One package. Dependencies are strings `name`, `name = EVR` or `name >= EVR` so that they hash
/// and read like a spec file.
#[derive(Debug, Default)]
pub(crate) struct PkgSpec {
    pub name: String,
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub summary: String,
    pub license: String,
    pub provides: Vec<String>,
    pub requires: Vec<String>,
    pub recommends: Vec<String>,
    pub conflicts: Vec<String>,
    /// The long description; the summary when empty.
    pub description: String,
    /// `%post` scriptlet body, run by /bin/sh at compose time.
    pub post: Option<String>,
    /// `%posttrans` scriptlet body, run by /bin/sh after every package's `%post`.
    pub posttrans: Option<String>,
    /// Keyed by absolute path; the BTreeMap gives the sorted order RPM wants and catches duplicates.
    pub entries: BTreeMap<String, Entry>,
}

/// Paths whose files get the %doc flag (so `--excludedocs` style installs can drop them).
pub(crate) fn is_doc_path(path: &str) -> bool {
    path.starts_with("/usr/share/doc/") || path.starts_with("/usr/share/man/")
}

pub(crate) fn evr(epoch: Option<u32>, version: &str, release: &str) -> String {
    match epoch {
        Some(e) => format!("{e}:{version}-{release}"),
        None => format!("{version}-{release}"),
    }
}

impl PkgSpec {
    pub fn nevra(&self) -> String {
        format!(
            "{}-{}.{}",
            self.name,
            evr(self.epoch, &self.version, &self.release),
            self.arch
        )
    }

    /// Fedora's file name: no epoch.
    pub fn file_name(&self) -> String {
        format!("{}-{}-{}.{}.rpm", self.name, self.version, self.release, self.arch)
    }

    fn insert(&mut self, path: &str, mode: u16, content: Content) -> Result<()> {
        if !path.starts_with('/') || path.ends_with('/') || path.contains("//") || path.split('/').any(|c| c == "..") {
            bail!("{}: invalid path {path:?}", self.name);
        }
        let attrs = Attrs::default();
        if self
            .entries
            .insert(path.to_string(), Entry { mode, content, attrs })
            .is_some()
        {
            bail!("{}: {path} added twice", self.name);
        }
        Ok(())
    }

    pub fn dir(&mut self, path: &str, mode: u16) -> Result<()> {
        self.insert(path, mode, Content::Dir)
    }
    pub fn file(&mut self, path: &str, src: impl Into<PathBuf>, mode: u16) -> Result<()> {
        self.insert(path, mode, Content::File(src.into()))
    }
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.insert(path, 0o777, Content::Symlink(target.to_string()))
    }
    pub fn bytes(&mut self, path: &str, data: Vec<u8>, mode: u16, attrs: Attrs) -> Result<()> {
        self.insert(path, mode, Content::Bytes(data))?;
        self.entries.get_mut(path).expect("inserted above").attrs = attrs;
        Ok(())
    }

    /// Add the regular files (0755 if executable, else 0644, so umask and checkout permissions do
    /// not leak in) and symlinks of a tree on disk below `dest`. `map` may rename or drop (None)
    /// each destination path. Directories come from [`Self::own_parents`].
    pub fn tree(&mut self, src: &Path, dest: &str, map: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let mut stack = vec![(src.to_path_buf(), dest.trim_end_matches('/').to_string())];
        while let Some((dir, dpath)) = stack.pop() {
            let mut names: Vec<_> = fs_err::read_dir(&dir)
                .with_context(|| format!("{}: reading {}", self.name, dir.display()))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()?;
            names.sort();
            for n in names {
                let s = dir.join(&n);
                let d = format!(
                    "{dpath}/{}",
                    n.to_str().with_context(|| format!("non-UTF-8 name {}", s.display()))?
                );
                let meta = s.symlink_metadata()?;
                if meta.is_dir() {
                    stack.push((s, d));
                    continue;
                }
                let Some(target) = map(&d) else { continue };
                if meta.file_type().is_symlink() {
                    let t = fs_err::read_link(&s)?;
                    self.symlink(&target, t.to_str().context("non-UTF-8 symlink target")?)?;
                } else if meta.is_file() {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = if meta.permissions().mode() & 0o111 != 0 {
                        0o755
                    } else {
                        0o644
                    };
                    self.file(&target, s, mode)?;
                } else {
                    bail!("{}: {} is not a file, directory or symlink", self.name, s.display());
                }
            }
        }
        Ok(())
    }

    /// Own every ancestor directory of the entries that is not in `shared` (the directories the
    /// base package owns), the way a spec file's %dir lines would.
    pub fn own_parents(&mut self, shared: &BTreeSet<String>) -> Result<()> {
        let mut parents = BTreeSet::new();
        for p in self.entries.keys() {
            let mut cur = Path::new(p.as_str());
            while let Some(parent) = cur.parent() {
                let ps = parent.to_str().unwrap_or("/");
                if ps == "/" || shared.contains(ps) {
                    break;
                }
                parents.insert(ps.to_string());
                cur = parent;
            }
        }
        for d in parents {
            if !self.entries.contains_key(&d) {
                self.dir(&d, 0o755)?;
            }
        }
        Ok(())
    }

    /// Hash of everything that goes into the RPM, file contents included.
    pub fn content_hash(&self) -> Result<String> {
        let mut h = Sha256::new();
        let meta = format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
            self.nevra(),
            self.summary,
            self.license,
            self.arch,
            self.version,
            self.release,
            self.provides,
            self.requires,
            self.recommends,
            self.conflicts,
            self.description,
            self.post,
            self.posttrans
        );
        h.update(meta.as_bytes());
        for (path, e) in &self.entries {
            h.update(format!("{path}\0{:o}\0{:?}\0", e.mode, e.attrs).as_bytes());
            match &e.content {
                Content::Dir => h.update(b"d"),
                Content::Symlink(t) => h.update(format!("l{t}").as_bytes()),
                Content::Bytes(b) => {
                    h.update(b"f");
                    h.update(Sha256::digest(b));
                }
                Content::File(src) => {
                    let data =
                        fs_err::read(src).with_context(|| format!("{}: reading {}", self.name, src.display()))?;
                    h.update(b"f");
                    h.update(Sha256::digest(&data));
                }
            }
            h.update(b"\n");
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Write the RPM to `out` atomically and return its size. The file's mtime is SOURCE_DATE too:
    /// createrepo_c records it in primary.xml.
    pub fn write_rpm(&self, out: &Path) -> Result<u64> {
        let mut b = self.package_builder();
        self.add_entries(&mut b)?;
        self.add_dependencies(&mut b)?;
        if let Some(post) = &self.post {
            b.post_install_script(rpm::Scriptlet::new(post.as_str()).prog(vec!["/bin/sh"]));
        }
        if let Some(posttrans) = &self.posttrans {
            b.post_trans_script(rpm::Scriptlet::new(posttrans.as_str()).prog(vec!["/bin/sh"]));
        }
        // Signed at SOURCE_DATE (the build's source date): reproducible, and verified by gpgcheck=1.
        let pkg = b
            .build_and_sign(crate::dev_key::dev_signer()?)
            .with_context(|| format!("building {}", self.nevra()))?;
        write_package_file(&pkg, out)
    }

    /// A builder with the package's metadata and the fixed, reproducible build configuration.
    fn package_builder(&self) -> PackageBuilder {
        let mut b = PackageBuilder::new(&self.name, &self.version, &self.license, &self.arch, &self.summary);
        b.using_config(
            BuildConfig::v4()
                .source_date(SOURCE_DATE)
                .compression(CompressionWithLevel::Zstd(3)),
        )
        .release(self.release.as_str())
        .description(if self.description.is_empty() {
            self.summary.as_str()
        } else {
            self.description.as_str()
        })
        .vendor("fedostree")
        .build_host(BUILD_HOST);
        if let Some(e) = self.epoch {
            b.epoch(e);
        }
        b
    }

    /// Add every entry (directory, file, bytes or symlink) with its mode, owner, flags and mtime.
    fn add_entries(&self, b: &mut PackageBuilder) -> Result<()> {
        let ts = rpm::Timestamp::from(SOURCE_DATE);
        for (path, e) in &self.entries {
            let ctx = || format!("{}: adding {path}", self.nevra());
            let doc = is_doc_path(path);
            let a = &e.attrs;
            let fo = |o: rpm::FileOptionsBuilder| -> Result<rpm::FileOptionsBuilder> {
                let mut o = o
                    .permissions(e.mode)
                    .user(a.user.as_deref().unwrap_or("root"))
                    .group(a.group.as_deref().unwrap_or("root"))
                    .modified_at(ts);
                if doc {
                    o = o.doc();
                }
                if a.config {
                    o = o.config().noreplace();
                }
                if let Some(c) = &a.caps {
                    o = o.caps(c.as_str())?;
                }
                if let Some(h) = &a.hardlink {
                    o = o.hardlink(h.as_str());
                }
                Ok(o)
            };
            match &e.content {
                Content::Dir => b.with_dir_entry(fo(FileOptions::dir(path.as_str()))?).map(|_| ()),
                Content::File(src) => b.with_file(src, fo(FileOptions::new(path.as_str()))?).map(|_| ()),
                Content::Bytes(d) => b
                    .with_file_contents(d.clone(), fo(FileOptions::new(path.as_str()))?)
                    .map(|_| ()),
                Content::Symlink(t) => b
                    .with_symlink(
                        FileOptions::symlink(path.as_str(), t.as_str())
                            .user(a.user.as_deref().unwrap_or("root"))
                            .group(a.group.as_deref().unwrap_or("root"))
                            .modified_at(ts),
                    )
                    .map(|_| ()),
            }
            .with_context(ctx)?;
        }
        Ok(())
    }

    /// Add the provides, requires, recommends and conflicts, in that order.
    fn add_dependencies(&self, b: &mut PackageBuilder) -> Result<()> {
        for d in &self.provides {
            b.provides(parse_dep(d)?);
        }
        for d in &self.requires {
            b.requires(parse_dep(d)?);
        }
        for d in &self.recommends {
            b.recommends(parse_dep(d)?);
        }
        for d in &self.conflicts {
            b.conflicts(parse_dep(d)?);
        }
        Ok(())
    }
}

/// Write `pkg` to `out` atomically, mode 0644 and mtime SOURCE_DATE, and return its size.
fn write_package_file(pkg: &rpm::Package, out: &Path) -> Result<u64> {
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(SOURCE_DATE.into());
    fedostree_util::atomic::replace_with(out, 0o644, |f| {
        let mut w = std::io::BufWriter::new(&mut *f);
        pkg.write(&mut w).map_err(std::io::Error::other)?;
        w.flush()?;
        drop(w);
        f.set_modified(mtime)
    })?;
    Ok(fs_err::metadata(out)?.len())
}

/// `name`, `name OP EVR` (OP one of `< <= = >= >`), or a rich dependency `(a or b >= 1)`, which
/// RPM stores as a name.
pub(crate) fn parse_dep(s: &str) -> Result<Dependency> {
    if s.starts_with('(') && s.ends_with(')') {
        return Ok(Dependency::any(s));
    }
    let parts: Vec<&str> = s.split_whitespace().collect();
    Ok(match parts.as_slice() {
        [n] => Dependency::any(*n),
        [n, "<", v] => Dependency::less(*n, *v),
        [n, "<=", v] => Dependency::less_eq(*n, *v),
        [n, "=", v] => Dependency::eq(*n, *v),
        [n, ">=", v] => Dependency::greater_eq(*n, *v),
        [n, ">", v] => Dependency::greater(*n, *v),
        _ => bail!("unsupported dependency {s:?}"),
    })
}
