//! Advisory file locks (flock) that serialize work sharing one state directory: two composes into one
//! repo, two dev repository builds, two publishers, two image updates, two nextest processes wanting the
//! same VM results.

use anyhow::{Context, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Held until dropped (closing the file releases the lock).
#[derive(Debug)]
pub struct FileLock(File);

impl FileLock {
    /// Block until the exclusive lock on `path` is ours.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let f = open(path)?;
        flock(&f, libc::LOCK_EX).with_context(|| format!("locking {}", path.display()))?;
        Ok(FileLock(f))
    }

    /// The lock if nobody holds it, `None` if somebody does.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let f = open(path)?;
        match flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(FileLock(f))),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }

    /// The lock file itself (e.g. to record the holder's pid in it).
    pub fn file(&mut self) -> &mut File {
        &mut self.0
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))
}

fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor we own; no memory is involved.
    #[allow(unsafe_code)]
    let r = unsafe { libc::flock(f.as_raw_fd(), op) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
