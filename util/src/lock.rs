//! Advisory file locks (flock, through std) that serialize work sharing one state directory: two
//! composes into one repo, two dev repository builds, two publishers, two image updates, two nextest
//! processes wanting the same VM results.

use anyhow::{Context, Result};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Held until dropped (closing the file releases the lock).
#[derive(Debug)]
pub struct FileLock(File);

impl FileLock {
    /// Block until the exclusive lock on `path` is ours.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let f = open(path)?;
        f.lock().with_context(|| format!("locking {}", path.display()))?;
        Ok(FileLock(f))
    }

    /// Like [`acquire`](Self::acquire), but when somebody else holds the lock, say so on stderr (naming
    /// `what` and the holder's pid) before waiting, so a blocked command never looks hung. The holder's
    /// pid is written into the lock file.
    pub fn acquire_announced(path: &Path, what: &str) -> Result<FileLock> {
        let mut lock = match Self::try_acquire(path)? {
            Some(l) => l,
            None => {
                let holder = fs_err::read_to_string(path).unwrap_or_default();
                let holder = holder.trim();
                let by = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (held by pid {holder})")
                };
                let msg = format!("waiting for another {what} to finish{by}: lock {}", path.display());
                crate::events::notice(crate::events::Stage::Run, msg);
                Self::acquire(path)?
            }
        };
        lock.record_holder()?;
        Ok(lock)
    }

    /// The lock if nobody holds it, `None` if somebody does.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let f = open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(FileLock(f))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }

    /// Write our pid into the lock file, for [`holder`](Self::holder) and the waiting message.
    pub fn record_holder(&mut self) -> Result<()> {
        self.0.set_len(0)?;
        self.0.rewind()?;
        write!(self.0, "{}", std::process::id())?;
        Ok(())
    }

    /// The pid recorded by the holder (for diagnostics).
    pub fn holder(path: &Path) -> Option<u32> {
        let mut s = String::new();
        File::open(path).ok()?.read_to_string(&mut s).ok()?;
        s.trim().parse().ok()
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_and_names_the_first() {
        let d = tempfile_dir();
        let p = d.join("x.lock");
        let first = FileLock::acquire_announced(&p, "compose").unwrap();
        assert_eq!(FileLock::holder(&p), Some(std::process::id()));
        // flock locks belong to the open file description: a second open in this process conflicts.
        assert!(FileLock::try_acquire(&p).unwrap().is_none());
        drop(first);
        assert!(FileLock::try_acquire(&p).unwrap().is_some());
        let _ = std::fs::remove_dir_all(&d);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fedostree-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
