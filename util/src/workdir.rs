//! Scratch directories for one stage of one process (`<parent>/<stage>-<pid>-<random>`): removed when
//! dropped, removed by the cleanup registry on SIGINT/SIGTERM, and swept by the next run of any stage
//! when the process that made them is gone (a SIGKILL or a power cut leaves them behind otherwise;
//! a kernel staging dir is over 100 MB).

use crate::cleanup::{self, CleanupHandle};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    handle: Option<CleanupHandle>,
}

impl WorkDir {
    /// A new scratch directory for `stage` under `parent`, after sweeping dead processes' leftovers.
    pub fn new(parent: &Path, stage: &str) -> Result<WorkDir> {
        fs_err::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        sweep(parent);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{stage}-{}-", std::process::id()))
            .tempdir_in(parent)
            .with_context(|| format!("creating a {stage} work directory in {}", parent.display()))?;
        let path = dir.keep();
        let p = path.clone();
        let handle = cleanup::register(format!("work directory {}", path.display()), move || {
            let _ = fs_err::remove_dir_all(&p);
        });
        Ok(WorkDir {
            path,
            handle: Some(handle),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs_err::remove_dir_all(&self.path);
        if let Some(h) = self.handle.take() {
            cleanup::deregister(h);
        }
    }
}

/// Remove `<stage>-<pid>-*` directories in `parent` whose process no longer exists.
pub fn sweep(parent: &Path) {
    let Ok(entries) = fs_err::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid != std::process::id() as i32 && !crate::sys::pid_alive(pid) {
            tracing::info!("removing {} left by dead process {pid}", e.path().display());
            let _ = fs_err::remove_dir_all(e.path());
        }
    }
}

/// `kernel-stage-1234-abcdef` → 1234 (the random suffix never contains `-`).
fn owner_pid(name: &str) -> Option<i32> {
    let mut parts = name.rsplitn(3, '-');
    let (random, pid, stage) = (parts.next()?, parts.next()?, parts.next()?);
    if random.is_empty() || stage.is_empty() {
        return None;
    }
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_processes_leftovers_are_swept_live_ones_kept() {
        let parent = std::env::temp_dir().join(format!("fedostree-workdir-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        // A pid that cannot be alive (beyond pid_max) and one that is (ours via another stage).
        let dead = parent.join("kernel-stage-4194999-x");
        let dead2 = parent.join("devrepo-4194998-y");
        std::fs::create_dir_all(dead.join("big")).unwrap();
        std::fs::create_dir_all(&dead2).unwrap();
        let live = WorkDir::new(&parent, "compose").unwrap();
        let unrelated = parent.join("notes");
        std::fs::create_dir_all(&unrelated).unwrap();
        let second = WorkDir::new(&parent, "devrepo").unwrap();
        assert!(!dead.exists() && !dead2.exists());
        assert!(live.path().is_dir() && second.path().is_dir() && unrelated.is_dir());
        let p = live.path().to_path_buf();
        drop(live);
        assert!(!p.exists());
        let _ = std::fs::remove_dir_all(&parent);
    }

    #[test]
    fn owner_pids_parse() {
        assert_eq!(owner_pid("compose-12-abc"), Some(12));
        assert_eq!(owner_pid("kernel-stage-12-abc"), Some(12));
        assert_eq!(owner_pid("compose-abc"), None);
        assert_eq!(owner_pid("notes"), None);
    }
}
