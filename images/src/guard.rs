//! The safety guard in front of every `ostree admin` call: the sysroot must itself be a mount point of
//! OUR image (the loop partition we attached, or our guestmount FUSE mount), never a host directory.
//!
//! Why: `ostree admin deploy` FIFREEZEs the filesystem holding `SYSROOT/boot` and then `sync()`s; run on a
//! plain directory it would freeze this machine's root filesystem.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Undo the octal escapes (`\040` for space, `\011`, `\012`, `\134`) the kernel uses in mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let source = r.next()?;
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(mount_point)),
                fstype: fstype.to_string(),
                source: unescape(source),
            })
        })
        .collect()
}

pub fn mounts() -> Result<Vec<MountInfo>> {
    let text = fs_err::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

/// The topmost mount whose mount point is exactly `path` (canonical), if any.
pub fn mount_at(path: &Path) -> Result<Option<MountInfo>> {
    Ok(mounts()?.into_iter().rev().find(|m| m.mount_point == path))
}

/// What the mount at the sysroot must come from.
#[derive(Debug, Clone)]
pub enum ExpectedSource {
    /// A block device we attached, e.g. `/dev/loop3p1`.
    Block(PathBuf),
    /// Our guestmount FUSE mount.
    Fuse,
}

/// A sysroot path that passed [`guard_sysroot`]; the only way to reach `ostree admin`.
#[derive(Debug)]
pub struct GuardedSysroot {
    path: PathBuf,
}

impl GuardedSysroot {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Refuse unless `path` is itself a mount point of our image, with nothing else mounted beneath it.
pub fn guard_sysroot(path: &Path, expected: &ExpectedSource) -> Result<GuardedSysroot> {
    let canon = path
        .canonicalize()
        .with_context(|| format!("sysroot {}", path.display()))?;
    if canon == Path::new("/") {
        bail!("refusing to run ostree admin against /");
    }
    let all = mounts()?;
    let Some(m) = all.iter().rev().find(|m| m.mount_point == canon) else {
        bail!(
            "refusing to run ostree admin against {}: it is not a mount point (ostree would FIFREEZE the host filesystem)",
            canon.display()
        );
    };
    let ok = match expected {
        ExpectedSource::Block(dev) => {
            let dev_canon = dev.canonicalize().unwrap_or_else(|_| dev.clone());
            Path::new(&m.source) == dev.as_path() || Path::new(&m.source) == dev_canon.as_path()
        }
        ExpectedSource::Fuse => m.fstype == "fuse" || m.fstype.starts_with("fuse."),
    };
    if !ok {
        bail!(
            "refusing to run ostree admin against {}: mounted from {} ({}), expected {:?}",
            canon.display(),
            m.source,
            m.fstype,
            expected
        );
    }
    if let Some(sub) = all
        .iter()
        .find(|x| x.mount_point != canon && x.mount_point.starts_with(&canon))
    {
        bail!(
            "refusing to run ostree admin against {}: {} is mounted beneath it",
            canon.display(),
            sub.mount_point.display()
        );
    }
    Ok(GuardedSysroot { path: canon })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_with_escapes() {
        let text = "36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - ext4 /dev/loop3p1 rw\n\
                    40 36 0:50 / /run/x rw shared:2 - fuse /dev/fuse rw,user_id=0\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, Path::new("/mnt/with space"));
        assert_eq!(m[0].source, "/dev/loop3p1");
        assert_eq!(m[1].fstype, "fuse");
    }

    #[test]
    fn refuses_plain_directory() {
        let d = tempfile::tempdir().unwrap();
        for exp in [ExpectedSource::Fuse, ExpectedSource::Block("/dev/loop0p1".into())] {
            let e = guard_sysroot(d.path(), &exp).unwrap_err();
            assert!(format!("{e:#}").contains("not a mount point"), "{e:#}");
        }
    }

    #[test]
    fn refuses_root_and_foreign_mounts() {
        assert!(guard_sysroot(Path::new("/"), &ExpectedSource::Fuse).is_err());
        // /proc is a mount point, but not one of ours
        let e = guard_sysroot(Path::new("/proc"), &ExpectedSource::Block("/dev/loop0p1".into())).unwrap_err();
        assert!(format!("{e:#}").contains("expected"), "{e:#}");
        assert!(guard_sysroot(Path::new("/proc"), &ExpectedSource::Fuse).is_err());
    }
}
