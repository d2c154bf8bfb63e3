//! One owner per OS resource (bootc `LoopbackDevice` style): [`QsdExport`], [`LoopDevice`], [`Mount`],
//! [`GuestMount`]. Each has `close(self) -> Result` for the normal path and a best-effort `Drop`; each
//! registers its idempotent teardown with [`fedostree_util::cleanup`] while held, so SIGINT/SIGTERM tear it down too.
//! The free `*_teardown` functions are also what stale-resource recovery calls after a killed run.

use crate::guard;
use anyhow::{anyhow, bail, Context, Result};
use fedostree_util::cleanup::{self, CleanupHandle};
use fedostree_util::cmd::CommandRunExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Poll `done` every 10 ms until it is true or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let every = fedostree_util::poll::Every::fixed(Duration::from_millis(10));
    match fedostree_util::poll::until(timeout, every, || Ok(done().then_some(())))? {
        Some(()) => Ok(()),
        None => bail!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// The NUL-separated command line of a process, if it still exists.
pub(crate) fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs_err::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Whether `pid` is a live process whose argv[0] ends in `prog` and whose argv mentions `needle`.
pub(crate) fn pid_is(pid: i32, prog: &str, needle: &Path) -> bool {
    let Some(args) = cmdline(pid) else {
        return false;
    };
    // In QEMU option strings (qemu-storage-daemon's `mountpoint=`) the path's commas are doubled.
    let plain = needle.to_string_lossy();
    let in_option = fedostree_util::qemu_opt::path_value(needle);
    fedostree_util::sys::pid_alive(pid)
        && args.first().is_some_and(|a0| a0.rsplit('/').next() == Some(prog))
        && args
            .iter()
            .any(|a| a.contains(plain.as_ref()) || a.contains(&in_option))
}

fn read_pidfile(p: &Path) -> Result<i32> {
    let s = fs_err::read_to_string(p).with_context(|| format!("reading pidfile {}", p.display()))?;
    s.trim()
        .parse()
        .with_context(|| format!("pidfile {}: {s:?}", p.display()))
}

/// Stop a process we started (verified by its command line): SIGTERM, wait, SIGKILL after `grace`.
fn stop_pid(pid: i32, prog: &str, needle: &Path, grace: Duration) -> Result<()> {
    if !pid_is(pid, prog, needle) {
        return Ok(());
    }
    fedostree_util::sys::kill(pid, fedostree_util::sys::Sig::TERM)?;
    if wait_until(grace, &format!("{prog} (pid {pid}) to exit"), || {
        !fedostree_util::sys::pid_alive(pid)
    })
    .is_err()
    {
        tracing::warn!("{prog} pid {pid} ignored SIGTERM; killing");
        fedostree_util::sys::kill(pid, fedostree_util::sys::Sig::KILL)?;
        wait_until(Duration::from_secs(5), &format!("{prog} (pid {pid}) to die"), || {
            !fedostree_util::sys::pid_alive(pid)
        })?;
    }
    Ok(())
}

fn is_mounted(target: &Path) -> bool {
    guard::mount_at(target).ok().flatten().is_some()
}

macro_rules! best_effort_drop {
    ($ty:ty, $teardown:expr) => {
        impl Drop for $ty {
            fn drop(&mut self) {
                if let Some(h) = self.handle.take() {
                    #[allow(clippy::redundant_closure_call)]
                    if let Err(e) = ($teardown)(&*self) {
                        tracing::warn!("teardown in drop: {e:#}");
                        fedostree_util::events::notice(
                            fedostree_util::events::Stage::Image,
                            format!("teardown failed: {e:#}"),
                        );
                    }
                    cleanup::deregister(h);
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------------------

/// A qemu-storage-daemon exporting a qcow2 as a raw FUSE file.
#[derive(Debug)]
pub struct QsdExport {
    pid: i32,
    raw: PathBuf,
    handle: Option<CleanupHandle>,
}

/// Stop the daemon exporting `raw` (pid verified via /proc/PID/cmdline), then clear a stale FUSE mount.
pub fn qsd_teardown(pid: Option<i32>, raw: &Path) -> Result<()> {
    if let Some(pid) = pid {
        stop_pid(pid, "qemu-storage-daemon", raw, Duration::from_secs(10))?;
    }
    if is_mounted(raw) {
        tracing::warn!("stale FUSE export on {}; lazy unmount", raw.display());
        Command::new("umount").arg("-l").arg(raw).run()?;
    }
    Ok(())
}

impl QsdExport {
    /// Export `image` (qcow2) read-write as the raw file `raw` (created empty if missing).
    pub fn start(image: &Path, raw: &Path, pidfile: &Path) -> Result<Self> {
        fs_err::write(raw, b"").with_context(|| format!("creating {}", raw.display()))?;
        let _ = fs_err::remove_file(pidfile);
        let raw = raw.canonicalize()?;
        let image = image.canonicalize()?;
        // Register before starting: a signal between daemonize and the pidfile read still finds it by path.
        let raw2 = raw.clone();
        let pidfile2 = pidfile.to_path_buf();
        let handle = cleanup::register(format!("qemu-storage-daemon export {}", raw.display()), move || {
            let pid = read_pidfile(&pidfile2).ok();
            let _ = qsd_teardown(pid, &raw2);
        });
        let mut me = QsdExport {
            pid: 0,
            raw: raw.clone(),
            handle: Some(handle),
        };
        let r = Command::new("qemu-storage-daemon")
            .arg("--blockdev")
            .arg(format!(
                "driver=file,node-name=f0,filename={},cache.direct=off,discard=unmap",
                fedostree_util::qemu_opt::path_value(&image)
            ))
            .args(["--blockdev", "driver=qcow2,node-name=d0,file=f0,discard=unmap"])
            .arg("--export")
            .arg(format!(
                "type=fuse,id=e0,node-name=d0,mountpoint={},writable=on",
                fedostree_util::qemu_opt::path_value(&raw)
            ))
            .arg("--pidfile")
            .arg(pidfile)
            .arg("--daemonize")
            .run();
        // Read the pidfile even when the command failed: a daemon may be half up.
        me.pid = read_pidfile(pidfile).unwrap_or(0);
        r?;
        if me.pid == 0 {
            bail!("qemu-storage-daemon left no pidfile at {}", pidfile.display());
        }
        Ok(me)
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
    pub fn raw(&self) -> &Path {
        &self.raw
    }

    /// SIGTERM the daemon and wait for it to exit (then QEMU may open the image).
    pub fn close(mut self) -> Result<()> {
        let r = qsd_teardown(Some(self.pid), &self.raw);
        if let Some(h) = self.handle.take() {
            cleanup::deregister(h);
        }
        r
    }
}
best_effort_drop!(QsdExport, |s: &QsdExport| qsd_teardown(Some(s.pid), &s.raw));

// ---------------------------------------------------------------------------------------------------------

/// A loop device over a file.
#[derive(Debug)]
pub struct LoopDevice {
    dev: PathBuf,
    backing: PathBuf,
    handle: Option<CleanupHandle>,
}

fn sys_backing_file(dev: &Path) -> Option<PathBuf> {
    let name = dev.file_name()?.to_str()?;
    let s = fs_err::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(s.trim_end_matches('\n')))
}

/// Every loop device whose backing file is `file` (`losetup -a`, from sysfs).
pub fn loops_backed_by(file: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs_err::read_dir("/sys/block") else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let dev = PathBuf::from(format!("/dev/{name}"));
            (name.starts_with("loop") && sys_backing_file(&dev).as_deref() == Some(file)).then_some(dev)
        })
        .collect()
}

/// Detach `dev` if it is still backed by `backing`, then wait until the kernel dropped the file.
pub fn loop_teardown(dev: &Path, backing: &Path) -> Result<()> {
    if sys_backing_file(dev).as_deref() != Some(backing) {
        return Ok(());
    }
    Command::new("losetup").arg("-d").arg(dev).run()?;
    // Until backing_file vanishes the loop still holds the FUSE file: stopping qsd then leaves a stale mount.
    wait_until(
        Duration::from_secs(20),
        &format!("{} to release its backing file", dev.display()),
        || sys_backing_file(dev).as_deref() != Some(backing),
    )
}

impl LoopDevice {
    /// `losetup -P --show -f FILE`.
    pub fn attach(file: &Path) -> Result<Self> {
        let backing = file.canonicalize()?;
        let out = Command::new("losetup")
            .args(["-P", "--show", "-f"])
            .arg(&backing)
            .run_get_string()?;
        let dev = out.trim();
        if !dev.starts_with("/dev/loop") || dev.contains(char::is_whitespace) {
            bail!("losetup printed {out:?}");
        }
        let dev = PathBuf::from(dev);
        let (d2, b2) = (dev.clone(), backing.clone());
        let handle = cleanup::register(format!("loop device {}", dev.display()), move || {
            let _ = loop_teardown(&d2, &b2);
        });
        Ok(LoopDevice {
            dev,
            backing,
            handle: Some(handle),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dev
    }

    /// The device node of partition `n`, adding partitions with `partx -a` when the kernel's own scan did
    /// not create them (loop over a FUSE file does not).
    pub fn partition(&self, n: u32) -> Result<PathBuf> {
        let p = PathBuf::from(format!("{}p{n}", self.dev.display()));
        if !p.exists() {
            // partx -a fails with "partition already exists" when the kernel raced us: judge by the node.
            let r = Command::new("partx").arg("-a").arg(&self.dev).run();
            wait_until(Duration::from_secs(5), &format!("{}", p.display()), || p.exists())
                .map_err(|e| anyhow!("{e}; partx: {r:?}"))?;
        }
        Ok(p)
    }

    /// `losetup -d`, then wait until `/sys/block/loopN/loop/backing_file` is gone.
    pub fn close(mut self) -> Result<()> {
        let r = loop_teardown(&self.dev, &self.backing);
        if let Some(h) = self.handle.take() {
            cleanup::deregister(h);
        }
        r
    }
}
best_effort_drop!(LoopDevice, |s: &LoopDevice| loop_teardown(&s.dev, &s.backing));

// ---------------------------------------------------------------------------------------------------------

/// A mounted filesystem.
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
    handle: Option<CleanupHandle>,
}

/// Unmount `target` if something is mounted there; `lazy` falls back to `umount -l` when busy.
pub fn mount_teardown(target: &Path, lazy: bool) -> Result<()> {
    if !is_mounted(target) {
        return Ok(());
    }
    match Command::new("umount").arg(target).run() {
        Ok(()) => Ok(()),
        Err(e) if lazy => {
            tracing::warn!("{e:#}; lazy unmount");
            Command::new("umount").arg("-l").arg(target).run()
        }
        Err(e) => Err(e),
    }
}

impl Mount {
    pub fn new(source: &Path, target: &Path) -> Result<Self> {
        let target = target.canonicalize()?;
        let t2 = target.clone();
        let handle = cleanup::register(format!("mount {}", target.display()), move || {
            let _ = mount_teardown(&t2, true);
        });
        let me = Mount {
            target,
            handle: Some(handle),
        };
        Command::new("mount").arg(source).arg(&me.target).run()?;
        Ok(me)
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// `umount`; when that fails the mount is lazily detached and the error returned.
    pub fn close(mut self) -> Result<()> {
        let r = mount_teardown(&self.target, false);
        if r.is_err() {
            let _ = mount_teardown(&self.target, true);
        }
        if let Some(h) = self.handle.take() {
            cleanup::deregister(h);
        }
        r
    }
}
best_effort_drop!(Mount, |s: &Mount| mount_teardown(&s.target, true));

// ---------------------------------------------------------------------------------------------------------

/// libguestfs `guestmount` of a qcow2's first partition (the appliance runs under TCG).
#[derive(Debug)]
pub struct GuestMount {
    pid: i32,
    target: PathBuf,
    handle: Option<CleanupHandle>,
}

/// `guestmount`/`guestfish` environment: the direct backend under TCG (KVM hangs on these machines).
pub(crate) fn guestfs_env(cmd: &mut Command) -> &mut Command {
    for (k, v) in [
        ("LIBGUESTFS_BACKEND", "direct"),
        ("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg"),
    ] {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    cmd
}

/// `guestunmount` then wait for guestmount to exit: only then is the data synced into the qcow2.
pub fn guestmount_teardown(pid: Option<i32>, target: &Path) -> Result<()> {
    if is_mounted(target) {
        let r = Command::new("guestunmount").arg(target).run();
        if let Err(e) = r {
            if is_mounted(target) {
                return Err(e);
            }
        }
    }
    if let Some(pid) = pid {
        if pid_is(pid, "guestmount", target) {
            wait_until(
                Duration::from_secs(120),
                &format!("guestmount (pid {pid}) to exit"),
                || !fedostree_util::sys::pid_alive(pid),
            )?;
        }
    }
    Ok(())
}

impl GuestMount {
    /// `env`: extra environment (SUPERMIN_KERNEL/SUPERMIN_MODULES, see [`crate::guestfs`]).
    pub fn mount(image: &Path, target: &Path, pidfile: &Path, env: &[(&str, PathBuf)]) -> Result<Self> {
        let target = target.canonicalize()?;
        let _ = fs_err::remove_file(pidfile);
        let (t2, p2) = (target.clone(), pidfile.to_path_buf());
        let handle = cleanup::register(format!("guestmount {}", target.display()), move || {
            let _ = guestmount_teardown(read_pidfile(&p2).ok(), &t2);
        });
        let mut me = GuestMount {
            pid: 0,
            target,
            handle: Some(handle),
        };
        let r = guestfs_env(&mut Command::new("guestmount"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["--format=qcow2", "-a"])
            .arg(image)
            .args(["-m", "/dev/sda1", "--rw", "--pid-file"])
            .arg(pidfile)
            .arg(&me.target)
            .run();
        me.pid = read_pidfile(pidfile).unwrap_or(0);
        r?;
        Ok(me)
    }

    pub fn target(&self) -> &Path {
        &self.target
    }
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn close(mut self) -> Result<()> {
        let r = guestmount_teardown(Some(self.pid), &self.target);
        if let Some(h) = self.handle.take() {
            cleanup::deregister(h);
        }
        r
    }
}
best_effort_drop!(GuestMount, |s: &GuestMount| guestmount_teardown(Some(s.pid), &s.target));
