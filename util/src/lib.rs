//! fedostree-util: what every fedostree crate shares. [`cmd`] runs external commands, [`lock`] holds
//! advisory locks, [`state`] knows where artifacts and sources live, [`error`] classifies failures into
//! exit codes, [`cleanup`] tears OS resources down on SIGINT/SIGTERM, [`workdir`] gives each stage a
//! scratch directory that a crash cannot leak, [`sys`] wraps the few syscalls beyond std, and
//! [`prereq`] decides whether a test can run here (and, with the `testing` feature, runs tests that
//! report a missing prerequisite as a visible ignore, or a failure under `CI`; [`screen`] reads a VM's
//! screenshot back).

pub mod arch;
pub mod atomic;
pub mod cancel;
pub mod checksum;
pub mod cleanup;
pub mod cmd;
pub mod error;
pub mod events;
pub mod glob;
pub mod lock;
pub mod poll;
pub mod prereq;
pub mod qemu_opt;
#[cfg(feature = "testing")]
pub mod screen;
pub mod selinux_config;
#[cfg(feature = "sql")]
mod sql;
pub mod state;
pub mod sys;
pub mod words;
pub mod workdir;

pub use arch::Arch;
pub use checksum::Checksum;
pub use error::{is_input_error, Exit, InputError};
