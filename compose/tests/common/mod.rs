//! Test fixtures: real RPMs written with the `rpm` crate and indexed with `createrepo_c`.
#![allow(dead_code)]

use rpm::{BuildConfig, CompressionWithLevel, Dependency, FileOptions, PackageBuilder};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pkg {
    b: PackageBuilder,
    file: String,
}

impl Pkg {
    pub fn new(name: &str, version: &str, arch: &str) -> Self {
        Self::with_compression(name, version, arch, CompressionWithLevel::Zstd(3))
    }
    pub fn with_compression(name: &str, version: &str, arch: &str, c: CompressionWithLevel) -> Self {
        let mut b = PackageBuilder::new(name, version, "MIT", arch, "test package");
        b.release("1")
            .using_config(BuildConfig::v4().source_date(1_700_000_000u32).compression(c));
        b.build_host("fedostree-test");
        Pkg {
            b,
            file: format!("{name}-{version}.{arch}.rpm"),
        }
    }
    pub fn epoch(mut self, e: u32) -> Self {
        self.b.epoch(e);
        self
    }
    pub fn requires(mut self, d: Dependency) -> Self {
        self.b.requires(d);
        self
    }
    pub fn provides(mut self, d: Dependency) -> Self {
        self.b.provides(d);
        self
    }
    pub fn recommends(mut self, d: Dependency) -> Self {
        self.b.recommends(d);
        self
    }
    pub fn file(mut self, path: &str, content: &str, mode: u16) -> Self {
        self.b
            .with_file_contents(
                content.as_bytes().to_vec(),
                FileOptions::new(path).mode(rpm::FileMode::regular(mode)),
            )
            .unwrap();
        self
    }
    /// A file with full control over its options (owner, hardlink set, mode).
    pub fn file_with(mut self, opts: impl Into<FileOptions>, content: &str) -> Self {
        self.b.with_file_contents(content.as_bytes().to_vec(), opts).unwrap();
        self
    }
    /// A `%post` run by `prog` (`/bin/sh`, or `<lua>` for a Lua scriptlet).
    pub fn post(mut self, body: &str, prog: &str) -> Self {
        self.b.post_install_script(rpm::Scriptlet::new(body).prog(vec![prog]));
        self
    }
    /// A `%pre` run by `prog`.
    pub fn pre(mut self, body: &str, prog: &str) -> Self {
        self.b.pre_install_script(rpm::Scriptlet::new(body).prog(vec![prog]));
        self
    }
    /// A `%transfiletriggerin` on `path`, run by /bin/sh.
    pub fn trans_file_trigger_in(mut self, path: &str, body: &str) -> Self {
        self.b
            .trans_file_trigger_in(path, None, rpm::Scriptlet::new(body).prog(vec!["/bin/sh"]));
        self
    }
    /// A `%ghost` file: in the header's file list, not in the payload.
    pub fn ghost(mut self, path: &str) -> Self {
        self.b.with_ghost(FileOptions::ghost(path)).unwrap();
        self
    }
    pub fn dir(mut self, path: &str) -> Self {
        self.b.with_dir_entry(FileOptions::dir(path)).unwrap();
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.b.with_symlink(FileOptions::symlink(path, target)).unwrap();
        self
    }
    /// Write into `dir`, returning the path.
    pub fn write(mut self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(&self.file);
        self.b.build().unwrap().write_file(&p).unwrap();
        p
    }
}

/// Index `dir` as an rpm-md repository.
pub fn createrepo(dir: &Path) {
    let st = Command::new("createrepo_c")
        .args(["-q", "--no-database"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}
