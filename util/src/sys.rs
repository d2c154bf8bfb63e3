//! The few process and file-system calls fedostree needs beyond std, on rustix (no `unsafe` here):
//! `renameat2(RENAME_EXCHANGE)`, signals, euid, non-blocking reaping, the parent-death signal.

use rustix::process::{Pid, Signal};
use std::io;
use std::path::Path;

/// Atomically exchange two paths (both must exist), `renameat2(RENAME_EXCHANGE)`.
pub fn rename_exchange(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(io::Error::from)
}

/// The signals fedostree sends.
pub use rustix::process::Signal as Sig;

/// Send `sig` to `pid`. ESRCH (already gone) is success: killing twice is safe.
pub fn kill(pid: i32, sig: Signal) -> io::Result<()> {
    let p = match Pid::from_raw(pid) {
        Some(p) if pid > 1 => p,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to signal pid {pid}"),
            ))
        }
    };
    match rustix::process::kill_process(p, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether a process exists (a zombie counts as gone).
pub fn pid_alive(pid: i32) -> bool {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .is_ok_and(|st| !matches!(st.state, 'Z' | 'X'))
}

/// Direct children of `parent`, from a scan of /proc.
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(all) = procfs::process::all_processes() else {
        return vec![];
    };
    all.flatten()
        .filter_map(|p| p.stat().ok())
        .filter(|st| st.ppid == parent)
        .map(|st| st.pid)
        .collect()
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Reap a child of ours without blocking (children a signal-time cleanup killed).
pub fn try_reap(pid: i32) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
    }
}

/// For `Command::pre_exec`: the child gets SIGKILL when its parent thread dies (kola's Pdeathsig), and
/// dies at once if the parent is already gone. Only async-signal-safe calls.
pub fn die_with_parent(parent: i32) -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if rustix::process::getppid().map(Pid::as_raw_nonzero).map(|p| p.get()) != Some(parent) {
        rustix::process::kill_process(rustix::process::getpid(), Signal::KILL)?;
    }
    Ok(())
}
