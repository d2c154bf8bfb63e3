//! The results model: one `SuiteResult` per (tree, arch) boot, built from the guest's event stream.
//!
//! Reporters (`report.rs`) and JUnit (`junit.rs`) consume these and the events (the crate root
//! re-exports all three).

use crate::protocol::{GuestEvent, SubtestStatus, TestStatus};
use crate::run::VmOutcome;
use fedostree_util::{Arch, Checksum};
use std::time::Duration;

/// A test's verdict on the host side. `Error` = the test started but the harness never learned its result
/// (the VM died, hung or timed out under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    Skip,
    Timeout,
    Error,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::Timeout => "TIMEOUT",
            Status::Error => "ERROR",
        }
    }

    /// Whether this verdict blocks the gate.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Fail | Status::Timeout | Status::Error)
    }
}

impl From<TestStatus> for Status {
    fn from(s: TestStatus) -> Self {
        match s {
            TestStatus::Pass => Status::Pass,
            TestStatus::Fail => Status::Fail,
            TestStatus::Skip => Status::Skip,
            TestStatus::Timeout => Status::Timeout,
        }
    }
}

/// One TAP line of an installed test.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subtest {
    pub number: u32,
    pub description: String,
    pub status: SubtestStatus,
    /// The boot of the run it was reported in (1 unless the guest rebooted).
    #[serde(default = "first_boot")]
    pub boot: u32,
}

fn first_boot() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestCaseResult {
    /// The installed test's name, e.g. `fedostree/tap-example`.
    pub name: String,
    pub status: Status,
    pub duration: Duration,
    /// What the test printed (the runner's capture), or the harness's explanation for `Error`.
    pub output: String,
    /// `None` when the test never finished or the runner did not report it.
    pub exit_code: Option<i32>,
    pub subtests: Vec<Subtest>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SuiteResult {
    pub tree: String,
    pub arch: Arch,
    pub commit: Checksum,
    pub cases: Vec<TestCaseResult>,
    /// Why this boot cannot be trusted as a whole: no end marker, console badness, a wrong commit booted.
    /// Any of these fails the suite even if every case passed.
    pub infra_error: Option<String>,
    pub console_tail: String,
}

impl SuiteResult {
    /// The suite of a boot that broke before it said anything: no cases, the error, and what the
    /// console showed (empty when unknown).
    pub fn broken(tree: &str, arch: Arch, commit: &Checksum, e: &anyhow::Error, console_tail: String) -> SuiteResult {
        SuiteResult {
            tree: tree.to_string(),
            arch,
            commit: commit.clone(),
            cases: vec![],
            infra_error: Some(format!("{e:#}")),
            console_tail,
        }
    }

    /// `tree::arch`, the prefix of every test name in reports.
    pub fn id(&self) -> String {
        format!("{}::{}", self.tree, self.arch)
    }

    pub fn count(&self, status: Status) -> usize {
        self.cases.iter().filter(|c| c.status == status).count()
    }

    /// Passed the gate: no infrastructure error and no failing case.
    pub fn passed(&self) -> bool {
        self.infra_error.is_none() && !self.cases.iter().any(|c| c.status.is_failure())
    }
}

/// Fold one VM's events into a suite. `commit` is the commit the image was deployed with; a guest that
/// reports booting another one is an infrastructure error (the test would prove nothing about `commit`).
pub fn suite_from_outcome(tree: &str, arch: Arch, commit: &str, outcome: &VmOutcome) -> SuiteResult {
    let mut fold = EventFold::default();
    for ev in &outcome.events {
        fold.apply(commit, ev);
    }
    let EventFold {
        mut cases,
        finished,
        mut problems,
        announced,
        boot_ids,
        ..
    } = fold;
    mark_unfinished(&mut cases, &finished, outcome);
    push_boot_problems(&mut problems, announced, cases.len(), outcome);
    // Every boot QEMU saw (a reset) is one the guest's runner reported, and no more.
    if outcome.finished && !outcome.boots.is_empty() && outcome.boots.len() != boot_ids.len() {
        problems.push(format!(
            "the guest reported {} boot(s) but QEMU saw {}",
            boot_ids.len(),
            outcome.boots.len()
        ));
    }
    SuiteResult {
        tree: tree.to_owned(),
        arch: arch.to_owned(),
        commit: Checksum::new(commit),
        cases,
        infra_error: (!problems.is_empty()).then(|| problems.join("; ")),
        console_tail: outcome.console_tail.clone(),
    }
}

/// Owns the state built while folding guest events: the cases, which finished, and the problems seen so far.
#[derive(Default)]
struct EventFold {
    cases: Vec<TestCaseResult>,
    /// `finished[i]`: `cases[i]` got its `test-finished`.
    finished: Vec<bool>,
    problems: Vec<String>,
    /// The test count `run-started` announced.
    announced: Option<u32>,
    /// The boot events arrive in: 1, then each `booted` event's number.
    boot: u32,
    /// The boot id of each boot the guest reported (`run-started`, then each `booted`).
    boot_ids: Vec<String>,
}

impl EventFold {
    /// Find or create the case for `name`, in first-seen order.
    fn case(&mut self, name: &str) -> (usize, &mut TestCaseResult) {
        let cases = &mut self.cases;
        let i = cases.iter().position(|c| c.name == name).unwrap_or_else(|| {
            cases.push(TestCaseResult {
                name: name.to_owned(),
                status: Status::Error,
                duration: Duration::ZERO,
                output: String::new(),
                exit_code: None,
                subtests: Vec::new(),
            });
            self.finished.push(false);
            cases.len() - 1
        });
        (i, &mut cases[i])
    }

    /// Owns folding one guest event into the cases (and a wrong booted commit into the problems).
    fn apply(&mut self, commit: &str, ev: &GuestEvent) {
        match ev {
            GuestEvent::RunStarted {
                commit: booted,
                tests,
                boot_id,
                ..
            } => {
                self.announced = Some(*tests);
                self.boot_ids.push(boot_id.clone());
                // A boot proves something about `commit` only if the guest says it booted exactly that.
                if booted != commit {
                    self.problems
                        .push(format!("guest booted commit `{booted}`, expected `{commit}`"));
                }
            }
            GuestEvent::TestStarted { name } => {
                self.case(name);
            }
            GuestEvent::Subtest {
                test,
                number,
                description,
                status,
            } => {
                let boot = self.boot.max(1);
                let (_, c) = self.case(test);
                c.subtests.push(Subtest {
                    number: *number,
                    description: description.clone(),
                    status: *status,
                    boot,
                });
            }
            GuestEvent::TestFinished {
                name,
                status,
                exit_code,
                duration_ms,
                output,
            } => {
                let (i, c) = self.case(name);
                c.status = (*status).into();
                c.exit_code = *exit_code;
                c.duration = Duration::from_millis(*duration_ms);
                // A test that rebooted keeps what each earlier boot's part printed.
                c.output.push_str(output);
                self.finished[i] = true;
            }
            GuestEvent::Rebooting { test, mark, output } => {
                let (_, c) = self.case(test);
                c.output
                    .push_str(&format!("{output}\n--- rebooting (mark {mark:?}) ---\n"));
            }
            GuestEvent::Booted {
                number,
                boot_id,
                added_tests,
                ..
            } => {
                self.boot = *number;
                if let Some(n) = &mut self.announced {
                    *n += added_tests;
                }
                // A reboot that did not happen (a runner resuming in the same boot) must not pass as one.
                if !boot_id.is_empty() && self.boot_ids.contains(boot_id) {
                    self.problems
                        .push(format!("boot {number} has the boot id of an earlier boot ({boot_id})"));
                }
                self.boot_ids.push(boot_id.clone());
            }
            GuestEvent::RunFinished { .. } => {}
        }
    }
}

/// Owns turning every case that started but never finished into an `Error` that says why the VM ended.
fn mark_unfinished(cases: &mut [TestCaseResult], finished: &[bool], outcome: &VmOutcome) {
    let why = if let Some(b) = &outcome.badness {
        format!("console shows the guest broke: {b}")
    } else if outcome.timed_out {
        format!("the VM timed out after {:.1}s", outcome.wall.as_secs_f64())
    } else {
        "the VM ended".to_owned()
    };
    for (c, done) in cases.iter_mut().zip(finished) {
        if !done {
            c.status = Status::Error;
            // Keep what earlier boots' parts of a rebooting test printed.
            c.output.push_str(&format!("test started but never finished: {why}"));
        }
    }
}

/// Owns the whole-boot problems: console badness, a missing or empty run, a short count, no end marker.
fn push_boot_problems(problems: &mut Vec<String>, announced: Option<u32>, cases: usize, outcome: &VmOutcome) {
    if let Some(b) = &outcome.badness {
        problems.push(format!("console shows the guest broke: {b}"));
    }
    match announced {
        None => problems.push("guest never reported run-started".to_owned()),
        Some(0) => problems.push("the guest found no installed tests to run".to_owned()),
        Some(n) if outcome.finished && n as usize != cases => {
            problems.push(format!("the guest announced {n} tests but reported {cases}"))
        }
        Some(_) => {}
    }
    if !outcome.finished {
        problems.push(if outcome.timed_out {
            format!(
                "guest never reported an end marker (VM timed out after {:.1}s)",
                outcome.wall.as_secs_f64()
            )
        } else {
            "guest never reported an end marker".to_owned()
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::parse_all;

    pub(crate) const SAMPLE: &str = include_str!("../tests/fixtures/results.jsonl");

    pub(crate) fn outcome(events_text: &str) -> VmOutcome {
        let (events, _) = parse_all(events_text);
        VmOutcome {
            finished: events.iter().any(|e| matches!(e, GuestEvent::RunFinished { .. })),
            events,
            console_tail: "[    1.0] fedostree-runner: done\nreboot: Power down".into(),
            wall: Duration::from_millis(3200),
            ..Default::default()
        }
    }

    /// A run across reboots: subtests carry their boot; a `booted` event repeating an earlier boot id, or
    /// a boot count that differs from the resets QEMU saw, fails the run.
    #[test]
    fn reboots_are_real_and_counted() {
        let events = r#"{"event":"run-started","tests":1,"commit":"c","boot_id":"one"}
{"event":"test-started","name":"s/r"}
{"event":"subtest","test":"s/r","number":1,"description":"before","status":"pass"}
{"event":"rebooting","test":"s/r","mark":"m","output":"part one"}
{"event":"booted","number":2,"boot_id":"two","commit":"c"}
{"event":"test-started","name":"s/r"}
{"event":"subtest","test":"s/r","number":2,"description":"after","status":"pass"}
{"event":"test-finished","name":"s/r","status":"pass","exit_code":0,"duration_ms":5,"output":"part two"}
{"event":"run-finished","passed":1,"failed":0,"skipped":0}
"#;
        let boot = |n| crate::run::BootSection {
            number: n,
            ..Default::default()
        };
        let mut o = outcome(events);
        o.boots = vec![boot(1), boot(2)];
        let s = suite_from_outcome("base/minimal", Arch::X86_64, "c", &o);
        assert_eq!(s.infra_error, None);
        assert_eq!(s.cases.len(), 1);
        let boots: Vec<u32> = s.cases[0].subtests.iter().map(|t| t.boot).collect();
        assert_eq!(boots, [1, 2]);
        assert!(s.cases[0].output.contains("part one") && s.cases[0].output.ends_with("part two"));

        let same_id = suite_from_outcome("b", Arch::X86_64, "c", &outcome(&events.replace("\"two\"", "\"one\"")));
        assert!(same_id
            .infra_error
            .unwrap()
            .contains("boot 2 has the boot id of an earlier boot"));
        o.boots.push(boot(3));
        let miscounted = suite_from_outcome("b", Arch::X86_64, "c", &o);
        assert!(miscounted
            .infra_error
            .unwrap()
            .contains("reported 2 boot(s) but QEMU saw 3"));
    }

    #[test]
    fn complete_run() {
        let s = suite_from_outcome("dev/minimal", Arch::X86_64, "5f1c0a", &outcome(SAMPLE));
        assert_eq!(s.infra_error, None);
        assert!(s.passed());
        let names: Vec<_> = s.cases.iter().map(|c| (c.name.as_str(), c.status)).collect();
        assert_eq!(
            names,
            [
                ("fedostree/tap-example", Status::Pass),
                ("fedostree/os-release", Status::Pass),
                ("fedostree/needs-network", Status::Skip)
            ]
        );
        assert_eq!(s.cases[0].subtests.len(), 2);
        assert_eq!(s.cases[0].duration, Duration::from_millis(12));
        assert_eq!(s.cases[2].exit_code, Some(77));
    }

    #[test]
    fn no_end_marker_and_unfinished_test() {
        let cut: String = SAMPLE.lines().take(6).map(|l| format!("{l}\n")).collect();
        let mut o = outcome(&cut);
        o.timed_out = true;
        let s = suite_from_outcome("dev/minimal", Arch::X86_64, "5f1c0a", &o);
        assert_eq!(
            s.infra_error.as_deref(),
            Some("guest never reported an end marker (VM timed out after 3.2s)")
        );
        assert_eq!(s.cases[1].status, Status::Error);
        assert!(s.cases[1].output.contains("timed out"), "{}", s.cases[1].output);
        assert_eq!(s.console_tail, o.console_tail);
        assert!(!s.passed());
    }

    #[test]
    fn badness_and_wrong_commit_fail_the_suite() {
        let mut o = outcome(SAMPLE);
        o.badness = Some("Oops: 0002".into());
        let s = suite_from_outcome("dev/minimal", Arch::X86_64, "other", &o);
        let err = s.infra_error.unwrap();
        assert!(err.contains("guest booted commit `5f1c0a`, expected `other`"), "{err}");
        assert!(err.contains("Oops: 0002"), "{err}");
    }

    #[test]
    fn a_boot_that_ran_nothing_does_not_pass() {
        let run_started = SAMPLE.lines().next().unwrap();
        let commit = "5f1c0a";
        // No run-started at all.
        let s = suite_from_outcome("t", Arch::X86_64, commit, &outcome(""));
        assert!(s.infra_error.unwrap().contains("never reported run-started"));
        // Zero tests announced.
        let zero = format!(
            "{}\n{{\"event\":\"run-finished\",\"passed\":0,\"failed\":0,\"skipped\":0,\"timed_out\":0}}\n",
            run_started.replace("\"tests\":3", "\"tests\":0")
        );
        let mut o = outcome(&zero);
        o.finished = true;
        let s = suite_from_outcome("t", Arch::X86_64, commit, &o);
        assert!(
            s.infra_error.unwrap().contains("no installed tests"),
            "zero tests must not pass"
        );
    }
}
