//! On-disk layout of one cached image and its crash-safety machinery: paths, `state.json`, the per-image
//! flock, the resources record of a run in progress, stale-resource recovery after a killed run, and the
//! atomic directory swap.
//!
//! ```text
//! $STATE/images/<tree>/<arch>/disk.qcow2, state.json   the current image (never modified in place)
//! $STATE/images/<tree>/<arch>/layer-N.qcow2             its read-only backing chain (relative paths)
//! $STATE/images/<tree>/<arch>.new/                      work copy during an update (mounts live here)
//! $STATE/images/<tree>/<arch>.lock                      flock: one update per image at a time
//! $STATE/images/<tree>/<arch>.resources.json            mounts/loop/daemons held by the running update
//! $STATE/images/boot/<boot_checksum>/                   vmlinuz, initramfs.img, options
//! ```

use crate::guard;
use crate::resources::{self, cmdline};
use anyhow::{bail, Context, Result};
use fedostree_util::lock::FileLock;
use fedostree_util::state::StateDir;
use fedostree_util::Arch;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The first component of a throwaway copy's tree name.
pub const THROWAWAY_PREFIX: &str = "scratch";

/// Bump when the image layout changes: every cached image is then rebuilt from scratch.
/// 2: ostree's uboot bootloader backend and /boot/boot.scr, for firmware boots.
pub const LAYOUT_VERSION: u32 = 2;

#[derive(Debug, Clone)]
pub struct ImagePaths {
    /// `$STATE/images/<tree>/<arch>`
    pub dir: PathBuf,
    /// `$STATE/images/<tree>/<arch>.new`
    pub work: PathBuf,
    pub lock: PathBuf,
    pub resources: PathBuf,
    /// `$STATE/images/boot`
    pub boot_cache: PathBuf,
    /// A throwaway copy (see `throwaway.rs`): used for one boot, so never worth compacting.
    pub throwaway: bool,
}

fn check_name(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        });
    if !ok {
        bail!("invalid {what} name {s:?}");
    }
    Ok(())
}

impl ImagePaths {
    pub fn new(state: &StateDir, tree: &str, arch: Arch) -> Result<Self> {
        check_name("tree", tree)?;
        if tree.split('/').next() == Some("boot") {
            bail!("invalid tree/arch {tree:?}/{arch:?}");
        }
        let images = state.images();
        let parent = images.join(tree);
        Ok(ImagePaths {
            dir: parent.join(arch.as_str()),
            work: parent.join(format!("{arch}.new")),
            lock: parent.join(format!("{arch}.lock")),
            resources: parent.join(format!("{arch}.resources.json")),
            boot_cache: images.join("boot"),
            throwaway: tree.split('/').next() == Some(THROWAWAY_PREFIX),
        })
    }
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
}

/// The name of backing layer `n` (0 is the bottom).
pub fn layer_name(n: usize) -> String {
    format!("layer-{n}.qcow2")
}

/// The backing layers in an image directory, bottom first: `layer-0.qcow2`, `layer-1.qcow2`, …
pub fn layers(dir: &Path) -> Result<Vec<String>> {
    let mut n = 0;
    let mut out = Vec::new();
    while dir.join(layer_name(n)).is_file() {
        out.push(layer_name(n));
        n += 1;
    }
    Ok(out)
}

/// Pin the image in `dir` for one boot: its top hardlinked into `dest` as `top_name`, its layers
/// under their own names (the top's backing paths are relative), copied where links cannot go.
/// Returns the files made, for the caller to remove.
pub fn pin(dir: &Path, dest: &Path, top_name: &str) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    let files = layers(dir)?
        .into_iter()
        .map(|l| (l.clone(), l))
        .chain([("disk.qcow2".to_string(), top_name.to_string())]);
    for (from, to) in files {
        let (from, to) = (dir.join(from), dest.join(to));
        let _ = fs_err::remove_file(&to);
        fs_err::hard_link(&from, &to).or_else(|_| fs_err::copy(&from, &to).map(|_| ()))?;
        made.push(to);
    }
    Ok(made)
}

/// Bytes allocated on the host by the image in `dir` (top and layers).
pub fn allocated_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for name in layers(dir)?.into_iter().chain(["disk.qcow2".to_string()]) {
        if let Ok(m) = fs_err::metadata(dir.join(name)) {
            total += m.blocks() * 512;
        }
    }
    Ok(total)
}

/// `state.json` beside `disk.qcow2`; written last, so its presence means the image is complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageStateFile {
    pub layout_version: u32,
    pub commit: String,
    pub image_id: String,
    pub boot_checksum: String,
    pub options: String,
}

pub fn read_state(dir: &Path) -> Option<ImageStateFile> {
    let p = dir.join("state.json");
    let text = fs_err::read_to_string(&p).ok()?;
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("ignoring unreadable {}: {e}", p.display());
            None
        }
    }
}

/// Write `state.json` atomically.
pub fn write_state(dir: &Path, st: &ImageStateFile) -> Result<()> {
    fedostree_util::atomic::write(&dir.join("state.json"), serde_json::to_string_pretty(st)? + "\n")
}

/// Exclusive flock on `<arch>.lock`, held for the life of the value; waits at most `timeout`, saying
/// once who it waits for.
#[derive(Debug)]
pub struct ImageLock {
    _lock: FileLock,
}

impl ImageLock {
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self> {
        let mut told = false;
        let every = fedostree_util::poll::Every::fixed(Duration::from_millis(100));
        let got = fedostree_util::poll::until(timeout, every, || {
            if let Some(lock) = FileLock::try_acquire(path)? {
                return Ok(Some(lock));
            }
            if !told {
                let by = FileLock::holder(path)
                    .map(|p| format!(", held by pid {p}"))
                    .unwrap_or_default();
                let msg = format!(
                    "waiting for another run updating this image (lock {}{by})",
                    path.display()
                );
                fedostree_util::events::notice(fedostree_util::events::Stage::Image, msg);
                told = true;
            }
            Ok(None)
        })?;
        let Some(mut lock) = got else {
            bail!("timed out after {timeout:?} waiting for image lock {}", path.display());
        };
        lock.record_holder()?;
        Ok(ImageLock { _lock: lock })
    }
}

/// What a running update holds, so a later run can clean up after a killed one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub owner_pid: u32,
    pub work: PathBuf,
    pub mountpoint: Option<PathBuf>,
    pub loop_device: Option<PathBuf>,
    pub qsd_pid: Option<i32>,
    pub qsd_raw: Option<PathBuf>,
    pub guestmount_pid: Option<i32>,
}

impl ResourceRecord {
    pub fn save(&self, path: &Path) -> Result<()> {
        fedostree_util::atomic::write(path, serde_json::to_vec_pretty(self)?)
    }
}

/// Processes named `prog` whose command line mentions a path under `prefix`.
fn procs_under(prog: &str, prefix: &Path) -> Vec<i32> {
    let needle = prefix.to_string_lossy().into_owned();
    let Ok(rd) = fs_err::read_dir("/proc") else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            cmdline(pid).is_some_and(|a| {
                a.first().is_some_and(|a0| a0.rsplit('/').next() == Some(prog)) && a.iter().any(|x| x.contains(&needle))
            })
        })
        .collect()
}

/// Tear down whatever a killed run left under the work dir (mounts, loop devices, qemu-storage-daemon,
/// guestmount), then delete the work dir. Called with the image lock held.
pub fn recover_stale(paths: &ImagePaths) -> Result<()> {
    let record: Option<ResourceRecord> = fs_err::read(&paths.resources)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if !paths.work.exists() && record.is_none() {
        return Ok(());
    }
    let msg = format!(
        "cleaning up after an interrupted update of {} (work dir: {}, resources record: {})",
        paths.dir.display(),
        paths.work.exists(),
        record.is_some()
    );
    fedostree_util::events::notice(fedostree_util::events::Stage::Image, msg);
    let work = match paths.work.canonicalize() {
        Ok(w) => w,
        Err(_) => record
            .as_ref()
            .map(|r| r.work.clone())
            .unwrap_or_else(|| paths.work.clone()),
    };
    // 1. filesystems mounted in the work dir (not the qsd FUSE export itself), deepest first
    unmount_work_filesystems(&work, record.as_ref())?;
    // 2. guestmount daemons on the work dir exit once unmounted
    reap_stale_guestmounts(&work)?;
    // 3. loop devices over files in the work dir
    detach_work_loop_devices(&work)?;
    // 4. qemu-storage-daemon exporting from the work dir (recorded pid, verified, and any found by path)
    stop_stale_storage_daemons(&work, record.as_ref())?;
    for m in guard::mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&work))
    {
        resources::mount_teardown(&m.mount_point, true)?;
    }
    // 5. the work dir itself, never across a mount
    if let Some(m) = guard::mounts()?.into_iter().find(|m| m.mount_point.starts_with(&work)) {
        bail!(
            "cannot clean {}: {} is still mounted",
            work.display(),
            m.mount_point.display()
        );
    }
    remove_tree(&paths.work)?;
    let _ = fs_err::remove_file(&paths.resources);
    Ok(())
}

/// Unmount the filesystems mounted in `work`, deepest first, except qemu-storage-daemon's FUSE export.
fn unmount_work_filesystems(work: &Path, record: Option<&ResourceRecord>) -> Result<()> {
    let mut mounts: Vec<_> = guard::mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(work))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
    let raw_exports: Vec<PathBuf> = record.iter().filter_map(|r| r.qsd_raw.clone()).collect();
    for m in &mounts {
        let is_export =
            raw_exports.contains(&m.mount_point) || m.mount_point.file_name().is_some_and(|n| n == "raw.img");
        if !is_export {
            resources::mount_teardown(&m.mount_point, true)?;
        }
    }
    Ok(())
}

/// Wait up to 30 s for each guestmount daemon on `work` to exit, and kill it when it does not.
fn reap_stale_guestmounts(work: &Path) -> Result<()> {
    for pid in procs_under("guestmount", work) {
        if resources::wait_until(Duration::from_secs(30), "stale guestmount to exit", || {
            !fedostree_util::sys::pid_alive(pid)
        })
        .is_err()
        {
            fedostree_util::sys::kill(pid, fedostree_util::sys::Sig::KILL)?;
        }
    }
    Ok(())
}

/// Detach every loop device whose backing file is under `work`.
fn detach_work_loop_devices(work: &Path) -> Result<()> {
    if let Ok(rd) = fs_err::read_dir("/sys/block") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let dev = PathBuf::from(format!("/dev/{name}"));
            if let Ok(b) = fs_err::read_to_string(format!("/sys/block/{name}/loop/backing_file")) {
                let b = PathBuf::from(b.trim_end());
                if b.starts_with(work) {
                    resources::loop_teardown(&dev, &b)?;
                }
            }
        }
    }
    Ok(())
}

/// Stop the qemu-storage-daemons exporting from `work`: those found by path and the recorded one.
fn stop_stale_storage_daemons(work: &Path, record: Option<&ResourceRecord>) -> Result<()> {
    let mut qsds = procs_under("qemu-storage-daemon", work);
    if let Some(p) = record.and_then(|r| r.qsd_pid) {
        if resources::pid_is(p, "qemu-storage-daemon", work) && !qsds.contains(&p) {
            qsds.push(p);
        }
    }
    for pid in qsds {
        let raw = record
            .and_then(|r| r.qsd_raw.clone())
            .unwrap_or_else(|| work.join("raw.img"));
        resources::qsd_teardown(Some(pid), &raw).or_else(|_| resources::qsd_teardown(Some(pid), work))?;
    }
    Ok(())
}

/// `rm -rf` that also clears `chattr +i` (ostree deployments are immutable). Refuses across mounts.
pub fn remove_tree(p: &Path) -> Result<()> {
    if !p.exists() {
        return Ok(());
    }
    let canon = p.canonicalize()?;
    if let Some(m) = guard::mounts()?.into_iter().find(|m| m.mount_point.starts_with(&canon)) {
        bail!(
            "refusing to delete {}: {} is mounted there",
            canon.display(),
            m.mount_point.display()
        );
    }
    if fs_err::remove_dir_all(p).is_err() {
        use fedostree_util::cmd::CommandRunExt;
        let _ = Command::new("chattr").args(["-R", "-i"]).arg(p).run();
        fs_err::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Make the finished work dir the current image: `renameat2(RENAME_EXCHANGE)` when an image exists (then
/// the old one, now at the work path, is deleted), a plain rename otherwise.
pub fn swap_in(paths: &ImagePaths) -> Result<()> {
    if paths.dir.exists() {
        fedostree_util::sys::rename_exchange(&paths.work, &paths.dir)
            .with_context(|| format!("exchanging {} and {}", paths.work.display(), paths.dir.display()))?;
        crate::crash_point("swap");
        remove_tree(&paths.work)?;
    } else {
        fs_err::rename(&paths.work, &paths.dir)
            .with_context(|| format!("renaming {} to {}", paths.work.display(), paths.dir.display()))?;
    }
    if let Some(parent) = paths.dir.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        let st = StateDir::new("/s");
        let p = ImagePaths::new(&st, "dev/minimal", Arch::X86_64).unwrap();
        assert_eq!(p.disk(), Path::new("/s/images/dev/minimal/x86_64/disk.qcow2"));
        assert_eq!(p.work, Path::new("/s/images/dev/minimal/x86_64.new"));
        assert_eq!(p.lock, Path::new("/s/images/dev/minimal/x86_64.lock"));
        for bad in ["", "../x", "a//b", "/abs", "boot/x", "a b"] {
            assert!(ImagePaths::new(&st, bad, Arch::X86_64).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_is_exclusive_and_swap_exchanges() {
        let d = tempfile::tempdir().unwrap();
        let st = StateDir::new(d.path());
        let p = ImagePaths::new(&st, "t", Arch::X86_64).unwrap();
        std::fs::create_dir_all(&p.dir).unwrap();
        let l = ImageLock::acquire(&p.lock, Duration::from_secs(1)).unwrap();
        assert!(ImageLock::acquire(&p.lock, Duration::from_millis(200)).is_err());
        drop(l);
        let _l = ImageLock::acquire(&p.lock, Duration::from_secs(1)).unwrap();

        std::fs::write(p.dir.join("v"), "old").unwrap();
        std::fs::create_dir_all(&p.work).unwrap();
        std::fs::write(p.work.join("v"), "new").unwrap();
        swap_in(&p).unwrap();
        assert_eq!(std::fs::read_to_string(p.dir.join("v")).unwrap(), "new");
        assert!(!p.work.exists());
    }
}
