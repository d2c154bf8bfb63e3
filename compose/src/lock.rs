//! Advisory file locks (flock) that serialize work sharing one state directory: two composes into one
//! repo, two dev repository builds, two publishers, two nextest processes wanting the same VM results.

use anyhow::{Context, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Held until dropped (closing the file releases the lock).
pub struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    /// Block until the exclusive lock on `path` is ours.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        #[allow(unsafe_code)]
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("locking {}", path.display()));
        }
        Ok(FileLock(f))
    }
}
