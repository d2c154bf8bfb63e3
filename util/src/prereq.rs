//! Test prerequisites: the one place that decides whether a test that needs root, loop devices, FUSE,
//! QEMU, guestmount or KVM can run on this machine. Under `CI` (set by `ci/test`, so `.ci/run` and the
//! README's test command behave the same) a missing prerequisite is a failure; elsewhere the test is
//! reported ignored with the reason — never a silent early `return` that shows as "ok".

use std::path::Path;

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prereq {
    /// Effective uid 0 (mount, losetup, chattr).
    Root,
    /// `/dev/loop-control`.
    LoopDevices,
    /// `/dev/fuse` (qemu-storage-daemon's FUSE export).
    Fuse,
    /// A program on PATH.
    Binary(&'static str),
    /// `qemu-system-<arch>`.
    Qemu(&'static str),
    /// libguestfs' `guestmount`.
    Guestmount,
    /// `/dev/kvm` present and openable (whether KVM *works* is the harness's bounded probe).
    Kvm,
    /// The machine's architecture (fixtures made of that architecture's packages).
    HostArch(&'static str),
}

impl Prereq {
    /// Why this prerequisite is not met here, or `None` if it is.
    pub fn missing(self) -> Option<String> {
        let on_path = |b: &str| which::which(b).is_err().then(|| format!("`{b}` is not on PATH"));
        match self {
            Prereq::Root => (!crate::sys::is_root()).then(|| "needs root".to_string()),
            Prereq::LoopDevices => {
                (!Path::new("/dev/loop-control").exists()).then(|| "no loop devices (/dev/loop-control)".into())
            }
            Prereq::Fuse => (!Path::new("/dev/fuse").exists()).then(|| "no /dev/fuse".into()),
            Prereq::Binary(b) => on_path(b),
            Prereq::Qemu(arch) => on_path(&format!("qemu-system-{arch}")),
            Prereq::Guestmount => on_path("guestmount"),
            Prereq::Kvm => std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .err()
                .map(|e| format!("/dev/kvm: {e}")),
            Prereq::HostArch(a) => {
                (std::env::consts::ARCH != a).then(|| format!("needs an {a} host, this is {}", std::env::consts::ARCH))
            }
        }
    }
}

/// The qemu-storage-daemon image backend: root, loop devices, FUSE and the daemon.
pub const IMAGE_BACKEND: &[Prereq] = &[
    Prereq::Root,
    Prereq::LoopDevices,
    Prereq::Fuse,
    Prereq::Binary("qemu-storage-daemon"),
    Prereq::Binary("ostree"),
];

/// Whether this run is CI (`CI` set to anything but empty, `0` or `false`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Every unmet prerequisite in `needs`, joined; `None` when the test can run.
pub fn unmet(needs: &[Prereq]) -> Option<String> {
    let why: Vec<String> = needs.iter().filter_map(|p| p.missing()).collect();
    (!why.is_empty()).then(|| why.join("; "))
}

#[cfg(feature = "testing")]
pub use runner::{run_tests, Test};

#[cfg(feature = "testing")]
mod runner {
    use super::{under_ci, unmet, Prereq};
    use libtest_mimic::{Arguments, Completion, Failed, Trial};

    /// One test of a `harness = false` test binary and what it needs from the machine.
    pub struct Test {
        name: String,
        needs: Vec<Prereq>,
        run: Box<dyn FnOnce() -> Result<(), String> + Send>,
        ignore: Option<&'static str>,
    }

    impl Test {
        /// A test that fails by panicking, like a `#[test]` function.
        pub fn new(name: impl Into<String>, needs: &[Prereq], run: fn()) -> Test {
            Test::fallible(name, needs, move || {
                std::panic::catch_unwind(run).map_err(|p| panic_message(&p))
            })
        }

        /// A test that is a closure (it may capture what it tests); fails when it panics.
        pub fn with(name: impl Into<String>, needs: &[Prereq], run: impl FnOnce() + Send + 'static) -> Test {
            let run = std::panic::AssertUnwindSafe(run);
            Test::fallible(name, needs, move || {
                std::panic::catch_unwind(run).map_err(|p| panic_message(&p))
            })
        }

        /// A test that fails with `Err(message)`.
        pub fn fallible(
            name: impl Into<String>,
            needs: &[Prereq],
            run: impl FnOnce() -> Result<(), String> + Send + 'static,
        ) -> Test {
            Test {
                name: name.into(),
                needs: needs.to_vec(),
                run: Box::new(run),
                ignore: None,
            }
        }

        /// Ignored unless asked for with `--ignored` (like `#[ignore = "reason"]`), e.g. a slow test.
        pub fn ignore(mut self, reason: &'static str) -> Test {
            self.ignore = Some(reason);
            self
        }
    }

    /// The libtest CLI over `tests` (what `cargo test` and `cargo nextest` drive). A test whose
    /// prerequisites are unmet is listed as ignored, so both report it as skipped, and its reason is
    /// printed (and given again if it is run with `--ignored`); under `CI` it runs and fails instead.
    pub fn run_tests(tests: Vec<Test>) -> ! {
        let args = Arguments::from_args();
        let ci = under_ci();
        let mut trials = Vec::new();
        for t in tests {
            let why = unmet(&t.needs);
            if let (Some(w), false, false) = (&why, ci, args.list) {
                eprintln!("ignoring {}: {w}", t.name);
            }
            if let (Some(r), false) = (t.ignore, args.list) {
                eprintln!("ignoring {} unless run with --ignored: {r}", t.name);
            }
            let ignored = (why.is_some() && !ci) || t.ignore.is_some();
            let run = t.run;
            let trial = Trial::ignorable_test(t.name, move || match why {
                Some(w) if ci => Err(Failed::from(format!("prerequisite missing under CI: {w}"))),
                Some(w) => Ok(Completion::ignored_with(w)),
                None => run().map(|()| Completion::Completed).map_err(Failed::from),
            });
            trials.push(trial.with_ignored_flag(ignored));
        }
        libtest_mimic::run(&args, trials).exit()
    }

    fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmet_prerequisites_name_what_is_missing() {
        assert_eq!(Prereq::Binary("sh").missing(), None);
        let why = unmet(&[Prereq::Binary("sh"), Prereq::Binary("no-such-program-fedostree")]).unwrap();
        assert_eq!(why, "`no-such-program-fedostree` is not on PATH");
        assert_eq!(unmet(&[]), None);
    }
}
