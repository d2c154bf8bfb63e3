//! Failures classified by origin, and the exit codes they map to (defined here only, documented in
//! README.md): the user's input (treefile, repository, package, arguments) or the machine (our I/O, a
//! full disk, a corrupt cache, libostree, QEMU).

/// An error caused by the user's input rather than by the machine: exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct InputError(anyhow::Error);

impl InputError {
    // Returns the error already in an `anyhow::Error`: what every caller wants to `?` or `Err(…)`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(msg: impl std::fmt::Display) -> anyhow::Error {
        InputError(anyhow::anyhow!("{msg}")).into()
    }
    pub fn wrap(e: impl Into<anyhow::Error>) -> anyhow::Error {
        InputError(e.into()).into()
    }
}

/// `return Err(InputError::new(format!(…)))`: the input is at fault.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => {
        return Err($crate::error::InputError::new(format!($($arg)*)))
    };
}

/// Whether an error (anywhere in its chain) is the user's input rather than the machine.
pub fn is_input_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<InputError>())
}

/// An I/O error met while writing what a package asked for: the machine's fault when the disk is
/// full, read-only or failing; otherwise the package's (a path that escapes, a file where a
/// directory must be).
pub fn io_is_infra(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::ReadOnlyFilesystem | K::OutOfMemory | K::ResourceBusy | K::Interrupted
    ) || e.raw_os_error() == Some(libc::EIO)
}

/// The documented exit codes (nextest's `NextestExitCode` idea).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    /// Bad input (treefile, repository, package, arguments), or tests failed and nothing was published.
    Failed = 1,
    /// The machine failed: I/O, disk full, corrupt cache, libostree, QEMU.
    Infra = 2,
}

impl Exit {
    /// The exit code for an error that ended a command.
    pub fn of_error(e: &anyhow::Error) -> Exit {
        if is_input_error(e) {
            Exit::Failed
        } else {
            Exit::Infra
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_chain() {
        let e = InputError::new("bad treefile").context("composing dev/minimal");
        assert_eq!(Exit::of_error(&e), Exit::Failed);
        let e = anyhow::anyhow!("disk full").context("composing dev/minimal");
        assert_eq!(Exit::of_error(&e), Exit::Infra);
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(io_is_infra(&full));
        assert!(!io_is_infra(&std::io::Error::from(
            std::io::ErrorKind::PermissionDenied
        )));
    }
}
