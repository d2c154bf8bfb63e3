//! Running the tree's own programs (scriptlets, systemd-sysusers, systemctl, ldconfig, dracut) at
//! compose time, the way rpm-ostree does: in a bubblewrap sandbox with the tree as `/`, no network,
//! private /tmp, /run and /var/tmp, fresh /proc and /dev. An aarch64 tree's binaries run through
//! qemu-user (binfmt_misc with the F flag, registered by ci/setup).

use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// How much of the tree a sandboxed program may change.
#[derive(Clone, Copy, PartialEq)]
pub enum Usr {
    Writable,
    /// `/usr` bound read-only: what scriptlets see after the packages are installed.
    ReadOnly,
}

/// A program's outcome: exit status and its output (stdout then stderr), for error messages.
pub struct Outcome {
    pub success: bool,
    pub code: Option<i32>,
    pub output: String,
}

/// Run `argv` in the tree at `root`; `files` are host files bound read-only at sandbox paths
/// (below /run, which is private to the sandbox).
pub fn run(root: &Path, usr: Usr, argv: &[&str], files: &[(&Path, &str)]) -> Result<Outcome> {
    let mut c = Command::new("bwrap");
    c.arg("--bind").arg(root).arg("/");
    if usr == Usr::ReadOnly {
        c.arg("--ro-bind").arg(root.join("usr")).arg("/usr");
    }
    c.args([
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run", "--tmpfs", "/var/tmp",
    ])
    .args([
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
    ])
    .args(["--chdir", "/", "--clearenv"])
    .args(["--setenv", "PATH", "/usr/sbin:/usr/bin:/sbin:/bin"])
    .args(["--setenv", "LANG", "C.UTF-8"])
    .args([
        "--setenv",
        "SOURCE_DATE_EPOCH",
        &crate::rpmdb::SOURCE_DATE_EPOCH.to_string(),
    ])
    // systemctl and friends: act on the files, never try to talk to a running manager.
    .args(["--setenv", "SYSTEMD_OFFLINE", "1"]);
    // Packages' /opt content lives in /usr/lib/opt: scripts see it at /opt, as rpm-ostree's do (the
    // link lands in the tree; postprocess turns /opt into what `opt-usrlocal` asks for).
    if root.join("usr/lib/opt").is_dir() && root.join("opt").symlink_metadata().is_err() {
        c.args(["--symlink", "usr/lib/opt", "/opt"]);
    }
    for (host, inside) in files {
        c.arg("--ro-bind").arg(host).arg(inside);
    }
    c.arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = c.output().context("running bwrap (install bubblewrap: ci/setup)")?;
    let mut output = String::from_utf8_lossy(&o.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&o.stderr));
    Ok(Outcome {
        success: o.status.success(),
        code: o.status.code(),
        output,
    })
}

/// Run `argv` and fail with `what`, the exit code and the output tail when it fails.
pub fn run_ok(root: &Path, usr: Usr, argv: &[&str], what: &str) -> Result<String> {
    run_ok_with(root, usr, argv, &[], what)
}

/// [`run_ok`] with host files bound in, as [`run`] takes them.
pub fn run_ok_with(root: &Path, usr: Usr, argv: &[&str], files: &[(&Path, &str)], what: &str) -> Result<String> {
    let o = run(root, usr, argv, files)?;
    if !o.success {
        fedostree_util::bail_input!("{what} failed (exit {:?}):\n{}", o.code, tail(&o.output));
    }
    Ok(o.output)
}

/// The last lines of a program's output, enough to see why it failed.
pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Does the tree ship this program (relative to the root)?
pub fn has(root: &Path, rel: &str) -> bool {
    // `/bin/sh` is `/usr/bin/sh` in a merged-/usr tree whose /bin is a symlink.
    let merged = ["bin/", "sbin/", "lib/", "lib64/"]
        .iter()
        .any(|t| rel.starts_with(t))
        .then(|| format!("usr/{rel}"));
    [Some(rel.to_string()), merged]
        .into_iter()
        .flatten()
        .any(|r| crate::safepath::parent_beneath(root, &r).is_ok_and(|p| p.symlink_metadata().is_ok()))
}
