//! fedostree-harness: boots a tree's image in QEMU, reads installed-test results from the guest, and
//! reports them. One owner per concern: `qemu` (command line), `accel` (KVM or TCG), `qmp` (control),
//! `vm` (the process), `console` (badness), `protocol` (guest JSON lines), `run` (one VM end to end),
//! `results` (model), `report` (terminal/JSON), `junit` (XML).

pub mod accel;
pub mod console;
pub mod junit;
pub mod protocol;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod results;
pub mod run;
pub mod vm;

pub use accel::{choose_accel, probe_kvm};
pub use console::{find_badness, tail};
pub use junit::write_junit;
pub use protocol::{EventParser, GuestEvent, SubtestStatus, TestStatus};
pub use qemu::{qemu_command, Accel, Arch, VmConfig};
pub use qmp::{Qmp, QmpError, QmpEvent};
pub use report::{JsonReporter, Reporter, TerminalReporter};
pub use results::{suite_from_outcome, Status, Subtest, SuiteResult, TestCaseResult};
pub use run::{run_vm, VmOutcome};
pub use vm::Vm;
