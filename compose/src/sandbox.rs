//! Running the tree's own programs (scriptlets, systemd-sysusers, systemctl, ldconfig, dracut) at
//! compose time, the way rpm-ostree does: in a bubblewrap sandbox with the tree as `/`, no network,
//! private /tmp, /run and /var/tmp, fresh /proc and /dev. An aarch64 tree's binaries run through
//! qemu-user (binfmt_misc with the F flag, registered by ci/setup).

use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one sandboxed program may run (`FEDOSTREE_SANDBOX_TIMEOUT`, seconds). dracut for an
/// aarch64 tree under qemu-user is the slowest legitimate one, at a few minutes.
pub fn default_timeout() -> Duration {
    let secs = std::env::var("FEDOSTREE_SANDBOX_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(900);
    Duration::from_secs(secs)
}

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
    /// Killed at the timeout (then `success` is false).
    pub timed_out: Option<Duration>,
}

/// Run `argv` in the tree at `root`; `files` are host files bound read-only at sandbox paths
/// (below /run, which is private to the sandbox). Stdin is empty; the timeout is the default.
pub fn run(root: &Path, usr: Usr, argv: &[&str], files: &[(&Path, &str)]) -> Result<Outcome> {
    run_with(root, usr, argv, files, None, default_timeout())
}

/// [`run`] with `stdin` (a file read from its current position) and a timeout, after which the
/// sandbox is killed (bubblewrap's `--die-with-parent` takes its whole PID namespace with it).
pub fn run_with(
    root: &Path,
    usr: Usr,
    argv: &[&str],
    files: &[(&Path, &str)],
    stdin: Option<std::fs::File>,
    timeout: Duration,
) -> Result<Outcome> {
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
        &crate::epoch::SOURCE_DATE_EPOCH.to_string(),
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
        .stdin(stdin.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().context("running bwrap (install bubblewrap: ci/setup)")?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let every = fedostree_util::poll::Every {
        first: Duration::from_millis(1),
        max: Duration::from_millis(50),
    };
    let (status, timed_out) = match fedostree_util::poll::until(timeout, every, || Ok(child.try_wait()?))? {
        Some(st) => (st, None),
        None => {
            let _ = child.kill();
            (child.wait()?, Some(timeout))
        }
    };
    let mut output = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    Ok(Outcome {
        success: status.success() && timed_out.is_none(),
        code: status.code(),
        output,
        timed_out,
    })
}

/// Read a child's pipe to its end on a thread of its own (both pipes at once: neither may fill up).
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Run `argv` and fail with `what`, the exit code and the output tail when it fails.
pub fn run_ok(root: &Path, usr: Usr, argv: &[&str], what: &str) -> Result<String> {
    run_ok_with(root, usr, argv, &[], what)
}

/// [`run_ok`] with host files bound in, as [`run`] takes them.
pub fn run_ok_with(root: &Path, usr: Usr, argv: &[&str], files: &[(&Path, &str)], what: &str) -> Result<String> {
    checked(run(root, usr, argv, files)?, what)
}

/// An outcome as a result: failure and timeout are errors naming `what`, with the output's tail.
pub fn checked(o: Outcome, what: &str) -> Result<String> {
    if let Some(t) = o.timed_out {
        fedostree_util::bail_input!(
            "{what} timed out after {} s (FEDOSTREE_SANDBOX_TIMEOUT):\n{}",
            t.as_secs_f64(),
            tail(&o.output)
        );
    }
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
    // As the sandboxed program will find it: `/bin/sh` through a merged-/usr tree's /bin link.
    crate::safepath::resolve_in_tree(root, rel).is_some()
}
