//! JUnit XML with quick-junit (what nextest writes): a testsuite per tree/arch, a testcase per installed test
//! and per TAP subtest. For CI dashboards only — the gate reads `SuiteResult`, never this XML.

use crate::protocol::SubtestStatus;
use crate::results::{Status, Subtest, SuiteResult, TestCaseResult};
use anyhow::{Context, Result};
use fedostree_util::events::{Event, EventKind};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::path::Path;

/// The synthetic testcase that carries a suite's infrastructure error, so dashboards show it as a failure.
pub const INFRA_CASE: &str = "fedostree::vm";

fn non_success(kind: NonSuccessKind, message: &str, ty: &str, description: &str) -> TestCaseStatus {
    let mut st = TestCaseStatus::non_success(kind);
    st.set_message(message).set_type(ty);
    if !description.is_empty() {
        st.set_description(description);
    }
    st
}

/// A TAP subtest of `c` as its own testcase (`<test>::subtest N description`) of `class`.
fn subtest_case(c: &TestCaseResult, st: &Subtest, class: &str) -> TestCase {
    let status = match st.status {
        SubtestStatus::Pass => TestCaseStatus::success(),
        SubtestStatus::Skip | SubtestStatus::Todo => TestCaseStatus::skipped(),
        SubtestStatus::Fail => non_success(NonSuccessKind::Failure, "not ok", "tap failure", &c.output),
    };
    let name = format!("{}::subtest {} {}", c.name, st.number, st.description);
    let mut tc = TestCase::new(name.trim_end(), status);
    tc.set_classname(class);
    tc
}

/// The report as a value (for `write_junit` and tests).
pub fn junit_report(suites: &[SuiteResult]) -> Report {
    junit_report_with_stages(suites, &[])
}

/// The report, each testsuite also carrying its tree/arch's stage events: how long each stage took as
/// properties (`stage.compose` = seconds), and every event's line as the suite's system-out.
pub fn junit_report_with_stages(suites: &[SuiteResult], stages: &[Event]) -> Report {
    let mut report = Report::new("fedostree");
    for s in suites {
        let class = s.id();
        let mut suite = TestSuite::new(class.clone());
        suite.add_property(("commit", s.commit.as_str()));
        add_stages(&mut suite, s, stages);
        for c in &s.cases {
            let status = match c.status {
                Status::Pass => TestCaseStatus::success(),
                Status::Skip => TestCaseStatus::skipped(),
                Status::Fail => {
                    let msg = match c.exit_code {
                        Some(code) => format!("exited with code {code}"),
                        None => "failed".to_owned(),
                    };
                    non_success(NonSuccessKind::Failure, &msg, "test failure", &c.output)
                }
                Status::Timeout => non_success(NonSuccessKind::Failure, "timed out", "timeout", &c.output),
                Status::Error => non_success(NonSuccessKind::Error, "never finished", "harness error", &c.output),
            };
            let mut tc = TestCase::new(c.name.as_str(), status);
            tc.set_classname(class.as_str()).set_time(c.duration);
            if c.status.is_failure() {
                tc.set_system_err(s.console_tail.as_str());
            }
            suite.add_test_case(tc);
            for st in &c.subtests {
                suite.add_test_case(subtest_case(c, st, &class));
            }
        }
        if let Some(err) = &s.infra_error {
            let status = non_success(NonSuccessKind::Error, err, "infrastructure", "");
            let mut tc = TestCase::new(INFRA_CASE, status);
            tc.set_classname(class.as_str()).set_system_err(s.console_tail.as_str());
            suite.add_test_case(tc);
        }
        report.add_test_suite(suite);
    }
    report
}

/// The stage events of `s`'s tree and arch: durations as properties, all of them as system-out.
fn add_stages(suite: &mut TestSuite, s: &SuiteResult, stages: &[Event]) {
    let mine: Vec<&Event> = stages
        .iter()
        .filter(|e| e.tree.as_deref() == Some(s.tree.as_str()) && e.arch == Some(s.arch))
        .collect();
    for e in &mine {
        if let EventKind::StageFinished { secs, .. } = &e.kind {
            suite.add_property((format!("stage.{}", e.stage.as_str()), format!("{secs:.3}")));
        }
    }
    if !mine.is_empty() {
        let lines: Vec<String> = mine.iter().map(|e| e.plain()).collect();
        suite.set_system_out(lines.join("\n") + "\n");
    }
}

/// A run whose guest rebooted, one testsuite per boot (`<tree>::<arch>::boot-N`): each holds the TAP
/// subtests reported during that boot, so a dashboard shows which boot an assertion belongs to.
pub fn junit_per_boot(s: &SuiteResult) -> Report {
    let mut report = Report::new("fedostree-boots");
    let last = s
        .cases
        .iter()
        .flat_map(|c| &c.subtests)
        .map(|st| st.boot)
        .max()
        .unwrap_or(1);
    for boot in 1..=last {
        let name = format!("{}::boot-{boot}", s.id());
        let mut suite = TestSuite::new(name.clone());
        suite.add_property(("commit", s.commit.as_str()));
        for c in &s.cases {
            for st in c.subtests.iter().filter(|st| st.boot == boot) {
                suite.add_test_case(subtest_case(c, st, &name));
            }
        }
        report.add_test_suite(suite);
    }
    report
}

/// Write [`junit_per_boot`] of `suite` to `path`.
pub fn write_junit_per_boot(suite: &SuiteResult, path: &Path) -> Result<()> {
    let xml = junit_per_boot(suite).to_string().context("serializing JUnit")?;
    fs_err::write(path, xml).with_context(|| format!("writing {}", path.display()))
}

/// Write the JUnit file for `suites` to `path` (parent directories created).
pub fn write_junit(suites: &[SuiteResult], path: &Path) -> Result<()> {
    write_junit_with_stages(suites, &[], path)
}

/// [`write_junit`], each testsuite with its stage events (see [`junit_report_with_stages`]).
pub fn write_junit_with_stages(suites: &[SuiteResult], stages: &[Event], path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs_err::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let xml = junit_report_with_stages(suites, stages)
        .to_string()
        .context("serializing JUnit")?;
    fs_err::write(path, xml).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::suite_from_outcome;
    use crate::results::tests::{outcome, SAMPLE};
    use fedostree_util::Arch;

    fn suites() -> Vec<SuiteResult> {
        let ok = suite_from_outcome("dev/minimal", Arch::X86_64, "5f1c0a", &outcome(SAMPLE));
        let failing = SAMPLE
            .replace(
                r#""number":1,"description":"first","status":"pass""#,
                r#""number":1,"description":"first","status":"fail""#,
            )
            .replace(
                r#""status":"pass","exit_code":0,"duration_ms":12"#,
                r#""status":"fail","exit_code":1,"duration_ms":12"#,
            );
        let cut: String = failing.lines().take(6).map(|l| format!("{l}\n")).collect();
        let bad = suite_from_outcome("dev/minimal", Arch::Aarch64, "5f1c0a", &outcome(&cut));
        vec![ok, bad]
    }

    /// Parse our own XML back, as nextest does, and count what dashboards will count.
    #[test]
    fn junit_parses_back_with_expected_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/junit.xml");
        write_junit(&suites(), &path).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let ts: Vec<_> = root.children().filter(|n| n.has_tag_name("testsuite")).collect();
        assert_eq!(ts.len(), 2);
        let attr = |n: &roxmltree::Node, a: &str| n.attribute(a).unwrap().to_owned();
        assert_eq!(attr(&ts[0], "name"), "dev/minimal::x86_64");
        // 3 tests + 2 subtests; one skipped test and one skipped subtest.
        assert_eq!(
            (attr(&ts[0], "tests"), attr(&ts[0], "failures"), attr(&ts[0], "skipped")),
            ("5".into(), "0".into(), "2".into())
        );
        // aarch64: tap-example failed (+ failed subtest 1, skipped subtest 2), os-release never finished,
        // plus the infrastructure case.
        assert_eq!(attr(&ts[1], "tests"), "5");
        assert_eq!(attr(&ts[1], "failures"), "2");
        assert_eq!(attr(&ts[1], "errors"), "2");
        let names: Vec<String> = ts[1]
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .map(|n| attr(&n, "name"))
            .collect();
        assert_eq!(
            names,
            [
                "fedostree/tap-example",
                "fedostree/tap-example::subtest 1 first",
                "fedostree/tap-example::subtest 2 second",
                "fedostree/os-release",
                INFRA_CASE
            ]
        );
        let failure = ts[1].descendants().find(|n| n.has_tag_name("failure")).unwrap();
        assert_eq!(attr(&failure, "message"), "exited with code 1");
        assert!(failure.text().unwrap_or_default().contains("ok 2 second"));
        let infra = ts[1]
            .children()
            .find(|n| n.attribute("name") == Some(INFRA_CASE))
            .unwrap();
        assert!(attr(
            &infra.descendants().find(|n| n.has_tag_name("error")).unwrap(),
            "message"
        )
        .contains("never reported an end marker"));
        assert!(infra
            .descendants()
            .any(|n| n.has_tag_name("system-err") && n.text().unwrap_or_default().contains("reboot: Power down")));
    }

    /// A run that rebooted: one suite per boot, each with the subtests reported during that boot.
    #[test]
    fn per_boot_junit_puts_each_subtest_in_its_boot() {
        let mut s = suites().remove(0);
        let tap = s.cases.iter_mut().find(|c| !c.subtests.is_empty()).unwrap();
        tap.subtests[1].boot = 2;
        let xml = junit_per_boot(&s).to_string().unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let ts: Vec<_> = doc
            .root_element()
            .children()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        let summary: Vec<(String, usize)> = ts
            .iter()
            .map(|t| {
                let n = t.children().filter(|n| n.has_tag_name("testcase")).count();
                (t.attribute("name").unwrap().to_owned(), n)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("dev/minimal::x86_64::boot-1".to_owned(), 1),
                ("dev/minimal::x86_64::boot-2".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn junit_snapshot() {
        let xml = junit_report(&suites()).to_string().unwrap();
        insta::assert_snapshot!(xml);
    }

    /// A suite's stage events land in its testsuite only: durations as properties, lines as system-out.
    #[test]
    fn stage_events_go_to_their_own_suite() {
        use fedostree_util::events::Stage;
        let event = |arch, stage, kind| Event {
            stage,
            tree: Some("dev/minimal".into()),
            arch: Some(arch),
            kind,
        };
        let stages = [
            event(
                Arch::X86_64,
                Stage::Compose,
                EventKind::StageStarted {
                    what: "composing".into(),
                },
            ),
            event(
                Arch::X86_64,
                Stage::Compose,
                EventKind::StageFinished {
                    summary: "8 packages".into(),
                    secs: 4.25,
                },
            ),
            event(
                Arch::Aarch64,
                Stage::Image,
                EventKind::StageFinished {
                    summary: "updated".into(),
                    secs: 1.5,
                },
            ),
        ];
        let xml = junit_report_with_stages(&suites(), &stages).to_string().unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let suite = |name: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some(name))
                .unwrap()
        };
        let prop = |s: roxmltree::Node, name: &str| {
            s.descendants()
                .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
                .and_then(|n| n.attribute("value").map(str::to_owned))
        };
        let x86 = suite("dev/minimal::x86_64");
        assert_eq!(prop(x86, "stage.compose").as_deref(), Some("4.250"));
        assert_eq!(prop(x86, "stage.image"), None, "aarch64's image is not x86_64's");
        let out = x86.descendants().find(|n| n.has_tag_name("system-out")).unwrap();
        assert!(
            out.text().unwrap().contains("compose dev/minimal x86_64: composing"),
            "{xml}"
        );
        assert_eq!(
            prop(suite("dev/minimal::aarch64"), "stage.image").as_deref(),
            Some("1.500")
        );
    }
}
