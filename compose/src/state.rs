//! The state directory: one place that knows where every artifact of fedostree lives.
//!
//! ```text
//! $STATE/repo                      archive repo with candidate commits (compose output)
//! $STATE/devrepo/<arch>/           the dev rpm-md repository (Packages/*.rpm + repodata/)
//! $STATE/cache/debs/               Debian packages fetched for the dev repo
//! $STATE/cache/rpms/<sha256>.rpm   verified RPMs, shared by every tree and arch
//! $STATE/cache/repodata/<key>/     rpm-md metadata per repository
//! $STATE/cache/build-repo          bare OSTree repo: commits land here first, then pull into repo
//! $STATE/tmp/                      scratch space for composes (same filesystem as the repo)
//! $STATE/images/, runs/, public/   VM images, test runs, the published repo
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }
    /// Uncompressed commit cache in front of `repo` (see `commit::open_or_create_build_repo`).
    pub fn build_repo(&self) -> PathBuf {
        self.root.join("cache/build-repo")
    }
    pub fn devrepo_root(&self) -> PathBuf {
        self.root.join("devrepo")
    }
    pub fn devrepo(&self, arch: &str) -> PathBuf {
        self.devrepo_root().join(arch)
    }
    pub fn deb_cache(&self) -> PathBuf {
        self.root.join("cache/debs")
    }
    pub fn rpm_cache(&self) -> PathBuf {
        self.root.join("cache/rpms")
    }
    pub fn repodata_cache(&self) -> PathBuf {
        self.root.join("cache/repodata")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub fn public(&self) -> PathBuf {
        self.root.join("public")
    }
}

/// The architectures fedostree composes and boots, in RPM naming.
pub const ARCHES: &[&str] = &["x86_64", "aarch64"];

/// The machine's own architecture in RPM naming.
pub fn host_arch() -> &'static str {
    std::env::consts::ARCH
}

/// Debian's name for an RPM architecture.
pub fn debian_arch(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        _ => None,
    }
}

/// Where the project's sources live (trees/, tests-suite/, compose/devrepo/): the current directory
/// when it is a checkout, else the checkout this binary was built from.
pub fn source_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FEDOSTREE_SOURCE_DIR") {
        return d.into();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("trees").is_dir() && cwd.join("tests-suite").is_dir() {
        return cwd;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}
