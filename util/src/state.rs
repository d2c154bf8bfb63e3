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
    pub fn devrepo(&self, arch: crate::Arch) -> PathBuf {
        self.devrepo_root().join(arch.as_str())
    }
    pub fn deb_cache(&self) -> PathBuf {
        self.root.join("cache/debs")
    }
    pub fn rpm_cache(&self) -> PathBuf {
        self.root.join("cache/rpms")
    }
    /// Initramfs images the trees' dracut made, by their inputs (see compose's `initramfs::dracut`).
    pub fn initramfs_cache(&self) -> PathBuf {
        self.root.join("cache/initramfs")
    }
    /// Packages unpacked once and hardlinked into each compose's tree (see compose's `unpack_cache`);
    /// on the filesystem of `tmp()`, where trees are assembled.
    pub fn unpack_cache(&self) -> PathBuf {
        self.root.join("cache/unpacked")
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

/// Where the project's sources are found at run time: the checkout (whose `tests-suite/` the dev
/// repository packages) and the treefiles directory. Never a compile-time path of the build machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub checkout: PathBuf,
    pub trees: PathBuf,
}

impl Sources {
    /// `trees`: `--trees-dir` or `FEDOSTREE_TREES` if given, else `<checkout>/trees`. The checkout is
    /// `FEDOSTREE_SOURCE_DIR`, else the current directory when it is one, else the checkout the running
    /// binary sits in (`target/*/fedostree`, test binaries in `target/*/deps/`).
    pub fn discover(trees: Option<PathBuf>) -> Result<Sources, String> {
        let exe = std::env::current_exe().ok();
        let cwd = std::env::current_dir().ok();
        Self::discover_from(
            trees.or_else(|| std::env::var_os("FEDOSTREE_TREES").map(PathBuf::from)),
            std::env::var_os("FEDOSTREE_SOURCE_DIR").map(PathBuf::from),
            cwd.as_deref(),
            exe.as_deref(),
        )
    }

    fn discover_from(
        trees: Option<PathBuf>,
        source: Option<PathBuf>,
        cwd: Option<&Path>,
        exe: Option<&Path>,
    ) -> Result<Sources, String> {
        let is_checkout = |d: &Path| d.join("trees").is_dir() && d.join("tests-suite").is_dir();
        let checkout = source
            .or_else(|| cwd.filter(|d| is_checkout(d)).map(Path::to_path_buf))
            .or_else(|| exe.and_then(|e| e.ancestors().skip(1).find(|d| is_checkout(d)).map(Path::to_path_buf)));
        match (checkout, trees) {
            (Some(checkout), trees) => Ok(Sources {
                trees: trees.unwrap_or_else(|| checkout.join("trees")),
                checkout,
            }),
            // Trees given but no checkout: fine until something needs the dev repository's sources.
            (None, Some(trees)) => Ok(Sources {
                checkout: trees.parent().map(Path::to_path_buf).unwrap_or_default(),
                trees,
            }),
            (None, None) => Err(
                "cannot find the fedostree checkout (trees/ and tests-suite/): run from it, or \
                 set FEDOSTREE_SOURCE_DIR, or give --trees-dir / FEDOSTREE_TREES"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_come_from_the_environment_not_the_build_machine() {
        let d = std::env::temp_dir().join(format!("fedostree-sources-test-{}", std::process::id()));
        let co = d.join("checkout");
        std::fs::create_dir_all(co.join("trees")).unwrap();
        std::fs::create_dir_all(co.join("tests-suite")).unwrap();
        std::fs::create_dir_all(co.join("target/release")).unwrap();
        let exe = co.join("target/release/fedostree");
        let elsewhere = d.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        // Next to the binary's checkout, from any directory.
        let s = Sources::discover_from(None, None, Some(&elsewhere), Some(&exe)).unwrap();
        assert_eq!(
            s,
            Sources {
                checkout: co.clone(),
                trees: co.join("trees")
            }
        );
        // The current directory when it is a checkout.
        let s = Sources::discover_from(None, None, Some(&co), Some(Path::new("/usr/bin/fedostree"))).unwrap();
        assert_eq!(s.trees, co.join("trees"));
        // --trees-dir / FEDOSTREE_TREES win.
        let s = Sources::discover_from(Some(elsewhere.clone()), None, Some(&co), Some(&exe)).unwrap();
        assert_eq!(s.trees, elsewhere);
        // Installed binary, no checkout anywhere: a clear error.
        let e =
            Sources::discover_from(None, None, Some(&elsewhere), Some(Path::new("/usr/bin/fedostree"))).unwrap_err();
        assert!(e.contains("--trees-dir"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
