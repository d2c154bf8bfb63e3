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

/// A test's own directory under target/tmp, made fresh. Removed when the test passes, kept for
/// reading when it fails (the drop runs while the test panics) or with `FEDOSTREE_KEEP_TEST_STATE`:
/// the states of a whole `ci/test` add up to tens of GB, more than a CI machine's disk once had free.
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn fresh(name: &str) -> TestDir {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TestDir(d)
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TestDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("FEDOSTREE_KEEP_TEST_STATE").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh state dir named `name`; Debian downloads are the slow part and never change, so every
/// state dir shares one deb cache (which outlives the test).
pub fn state_dir(name: &str) -> TestDir {
    let d = TestDir::fresh(name);
    std::fs::create_dir_all(d.join("cache")).unwrap();
    let debs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb-cache");
    std::fs::create_dir_all(&debs).unwrap();
    std::os::unix::fs::symlink(&debs, d.join("cache/debs")).unwrap();
    d
}

/// A `fedostree serve ARGS` of `state` on a free port, stopped when the first value is dropped; and
/// its URL.
pub fn serve(state: &Path, args: &[&str]) -> (Server, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedostree"))
        .env("FEDOSTREE_STATE_DIR", state)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    // The server logs every request on stderr: keep reading it.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let url = first.split_once(" on ").unwrap().1.trim().to_owned();
    (Server(child), url)
}

/// A server process of this test, killed and reaped on drop.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
