//! `cargo nextest run -p fedostree-tests-suite` / `cargo test -p fedostree-tests-suite`: every
//! installed test of every dev tree and arch, booted in a real VM. `--list` composes and boots nothing.

use fedostree_tests_suite::{list, verdict, vm_results};
use fedostree_util::prereq::{run_tests, Prereq, Test, IMAGE_BACKEND};
use fedostree_util::state::StateDir;
use std::path::{Path, PathBuf};

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `FEDOSTREE_STATE_DIR`, or a state dir under target/ that shares Debian downloads across runs.
fn state() -> StateDir {
    if let Some(d) = std::env::var_os("FEDOSTREE_STATE_DIR") {
        return StateDir::new(d);
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = tmp.join("vm-tests-state");
    let debs = tmp.join("deb-cache");
    let _ = std::fs::create_dir_all(&debs);
    let _ = std::fs::create_dir_all(root.join("cache"));
    let link = root.join("cache/debs");
    if link.symlink_metadata().is_err() {
        let _ = std::os::unix::fs::symlink(&debs, &link);
    }
    StateDir::new(root)
}

fn main() {
    let cases = list(&source_dir()).expect("listing the dev trees' installed-tests");
    let tests = cases
        .into_iter()
        .map(|case| {
            let arch = if case.arch == "x86_64" { "x86_64" } else { "aarch64" };
            let needs: Vec<Prereq> = IMAGE_BACKEND.iter().copied().chain([Prereq::Qemu(arch)]).collect();
            Test::fallible(case.name(), &needs, move || {
                // Compose and boot run with the checkout as the source of trees and tests.
                std::env::set_current_dir(source_dir()).map_err(|e| e.to_string())?;
                let suite = vm_results(&state(), &case.tree, case.arch).map_err(|e| format!("{e:#}"))?;
                verdict(&case, &suite).map(|_| ())
            })
        })
        .collect();
    run_tests(tests);
}
