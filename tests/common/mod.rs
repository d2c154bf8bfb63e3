//! Shared by the CLI tests: run the real `fedostree` binary against a state dir under target/.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `fedostree ARGS` from the checkout with `state` as its state dir; echoes its output.
pub fn fedostree(state: &Path, args: &[&str]) -> Output {
    fedostree_env(state, &[], args)
}

/// [`fedostree`] with extra environment variables.
pub fn fedostree_env(state: &Path, env: &[(&str, &std::ffi::OsStr)], args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_fedostree"))
        .env("FEDOSTREE_STATE_DIR", state)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    eprintln!(
        "$ fedostree {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh state dir named `name`; Debian downloads are the slow part and never change, so every
/// state dir shares one deb cache.
pub fn state_dir(name: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let d = tmp.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("cache")).unwrap();
    let debs = tmp.join("deb-cache");
    std::fs::create_dir_all(&debs).unwrap();
    std::os::unix::fs::symlink(&debs, d.join("cache/debs")).unwrap();
    d
}
