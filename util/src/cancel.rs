//! [`Cancel`]: the cancellation token a command passes down in its options. SIGINT/SIGTERM trip it
//! (see [`crate::cleanup::install_signal_handler`]); the harness stops its VMs when it sees it, the
//! pipeline checks it between stages ([`Cancel::check`]) and unwinds with [`Cancelled`], owners drop
//! their resources on the way out, and the binary maps the signal to exit 128+signal.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// Shared by every clone: tripped once, it stays tripped.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicI32>);

/// The error a stage returns when it stopped because the run was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}", signal_name(*.signal))]
pub struct Cancelled {
    pub signal: i32,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Trip the token for `signal` (the first signal wins).
    pub fn cancel(&self, signal: i32) {
        let _ = self.0.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.signal().is_some()
    }

    /// The signal that tripped the token, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// `Err(Cancelled)` once tripped: call it before starting anything that takes a while.
    pub fn check(&self) -> Result<(), Cancelled> {
        match self.signal() {
            Some(signal) => Err(Cancelled { signal }),
            None => Ok(()),
        }
    }
}

/// Whether a run ended because it was cancelled (anywhere in the error's chain).
pub fn cancelled_by(e: &anyhow::Error) -> Option<Cancelled> {
    e.chain().find_map(|c| c.downcast_ref::<Cancelled>().copied())
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tripped_once_for_every_clone() {
        let c = Cancel::new();
        let seen_by_a_stage = c.clone();
        assert!(c.check().is_ok());
        c.cancel(libc::SIGTERM);
        c.cancel(libc::SIGINT);
        assert_eq!(seen_by_a_stage.signal(), Some(libc::SIGTERM), "the first signal wins");
        let e = anyhow::Error::from(seen_by_a_stage.check().unwrap_err()).context("booting dev/minimal");
        assert_eq!(cancelled_by(&e), Some(Cancelled { signal: libc::SIGTERM }));
        assert_eq!(format!("{e:#}"), "booting dev/minimal: interrupted by SIGTERM");
    }
}
