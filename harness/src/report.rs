//! Reporters: consumers of the guest event stream and of finished suites (nextest's `Reporter` idea).
//! Terminal lines for people, JSON lines for machines (`--json`); neither re-parses the other's output.

use crate::protocol::GuestEvent;
use crate::results::{Status, SuiteResult};
use fedostree_util::Arch;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Receives every guest event as it arrives, then each suite once its VM is done, then `finish` once.
pub trait Reporter {
    fn event(&mut self, tree: &str, arch: Arch, e: &GuestEvent);
    fn suite_done(&mut self, s: &SuiteResult);
    /// All suites are done (the terminal reporter prints its summary here).
    fn finish(&mut self) {}
}

/// Fan one stream out to several reporters.
impl Reporter for Vec<Box<dyn Reporter + Send>> {
    fn event(&mut self, tree: &str, arch: Arch, e: &GuestEvent) {
        self.iter_mut().for_each(|r| r.event(tree, arch, e));
    }
    fn suite_done(&mut self, s: &SuiteResult) {
        self.iter_mut().for_each(|r| r.suite_done(s));
    }
    fn finish(&mut self) {
        self.iter_mut().for_each(|r| r.finish());
    }
}

/// A line per finished test in nextest's shape, failing output under it, and a summary line.
pub struct TerminalReporter {
    out: Box<dyn Write + Send>,
    color: bool,
    start: Instant,
    /// Replaces the measured wall time in the summary (snapshot tests).
    fixed_elapsed: Option<Duration>,
    counts: [usize; 5],
    infra_errors: usize,
}

const GREEN: &str = "\x1b[32;1m";
const RED: &str = "\x1b[31;1m";
const YELLOW: &str = "\x1b[33;1m";
const RESET: &str = "\x1b[0m";

impl TerminalReporter {
    pub fn new(out: Box<dyn Write + Send>, color: bool) -> Self {
        TerminalReporter {
            out,
            color,
            start: Instant::now(),
            fixed_elapsed: None,
            counts: [0; 5],
            infra_errors: 0,
        }
    }

    /// To stderr, colored only when stderr is a terminal.
    pub fn stderr() -> Self {
        let color = std::io::stderr().is_terminal();
        Self::new(Box::new(std::io::stderr()), color)
    }

    /// Print `elapsed` in the summary instead of the measured time (for reproducible output).
    pub fn with_fixed_elapsed(mut self, elapsed: Duration) -> Self {
        self.fixed_elapsed = Some(elapsed);
        self
    }

    fn paint(&self, color: &str, text: &str) -> String {
        if self.color {
            format!("{color}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    fn status_label(&self, s: Status) -> String {
        let color = match s {
            Status::Pass => GREEN,
            Status::Skip => YELLOW,
            _ => RED,
        };
        self.paint(color, &format!("{:>8}", s.label()))
    }

    fn test_line(&mut self, status: Status, duration: Option<Duration>, id: &str, output: &str) {
        let time = match duration {
            Some(d) => format!("{:>8.3}s", d.as_secs_f64()),
            None => format!("{:>9}", ""),
        };
        let line = format!("{} [{time}] {id}", self.status_label(status));
        let _ = writeln!(self.out, "{line}");
        if status.is_failure() && !output.is_empty() {
            let head = self.paint(RED, &format!("--- OUTPUT: {id} ---"));
            let _ = writeln!(self.out, "{head}\n{}", output.trim_end());
        }
    }
}

impl Reporter for TerminalReporter {
    fn event(&mut self, tree: &str, arch: Arch, e: &GuestEvent) {
        if let GuestEvent::Booted {
            number,
            commit,
            boot_id,
            ..
        } = e
        {
            let _ = writeln!(
                self.out,
                "{:>8} {tree}::{arch}: boot {number} (boot id {boot_id}, commit {commit})",
                "REBOOTED"
            );
        }
        if let GuestEvent::TestFinished {
            name,
            status,
            duration_ms,
            output,
            ..
        } = e
        {
            let id = format!("{tree}::{arch}::{name}");
            self.test_line((*status).into(), Some(Duration::from_millis(*duration_ms)), &id, output);
        }
    }

    fn suite_done(&mut self, s: &SuiteResult) {
        for c in &s.cases {
            self.counts[c.status as usize] += 1;
            // Finished tests were printed as their events arrived; the rest only exist here.
            if c.status == Status::Error {
                self.test_line(Status::Error, None, &format!("{}::{}", s.id(), c.name), &c.output);
            }
        }
        if let Some(err) = &s.infra_error {
            self.infra_errors += 1;
            let line = format!("{} [{:>9}] {}: {err}", self.status_label(Status::Error), "", s.id());
            let head = self.paint(RED, &format!("--- CONSOLE: {} (last lines) ---", s.id()));
            let _ = writeln!(self.out, "{line}\n{head}\n{}", s.console_tail.trim_end());
        }
    }

    fn finish(&mut self) {
        let elapsed = self.fixed_elapsed.unwrap_or_else(|| self.start.elapsed());
        let [passed, failed, skipped, timed_out, errors] = self.counts;
        let run: usize = self.counts.iter().sum();
        let mut parts = vec![format!("{run} tests run: {passed} passed")];
        for (n, what) in [
            (failed, "failed"),
            (timed_out, "timed out"),
            (errors, "errored"),
            (skipped, "skipped"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if self.infra_errors > 0 {
            let n = self.infra_errors;
            parts.push(format!(
                "{n} VM{} with infrastructure errors",
                if n == 1 { "" } else { "s" }
            ));
        }
        let bad = failed + timed_out + errors + self.infra_errors > 0;
        let word = self.paint(if bad { RED } else { GREEN }, "Summary");
        let _ = writeln!(
            self.out,
            "{word} [{:>8.3}s] {}",
            elapsed.as_secs_f64(),
            parts.join(", ")
        );
        let _ = self.out.flush();
    }
}

/// `--json`: every event as one JSON line with `tree` and `arch` added, plus a `suite-finished` line per
/// suite carrying the verdicts.
pub struct JsonReporter {
    out: Box<dyn Write + Send>,
}

impl JsonReporter {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonReporter { out }
    }

    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }

    fn line(&mut self, v: &Value) {
        let _ = writeln!(self.out, "{v}");
        let _ = self.out.flush();
    }
}

impl Reporter for JsonReporter {
    fn event(&mut self, tree: &str, arch: Arch, e: &GuestEvent) {
        let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("tree".into(), tree.into());
            obj.insert("arch".into(), arch.as_str().into());
        }
        self.line(&v);
    }

    fn suite_done(&mut self, s: &SuiteResult) {
        let v = json!({
            "event": "suite-finished",
            "tree": s.tree,
            "arch": s.arch,
            "commit": s.commit,
            "passed": s.count(Status::Pass),
            "failed": s.count(Status::Fail),
            "skipped": s.count(Status::Skip),
            "timed_out": s.count(Status::Timeout),
            "errors": s.count(Status::Error),
            "infra_error": s.infra_error,
            "ok": s.passed(),
        });
        self.line(&v);
    }
}

/// The stage events (`fedostree_util::events`) as JSON lines on stdout, beside [`JsonReporter`]'s guest
/// events: with `--json` one stream carries the whole run. Each line is written under stdout's lock,
/// so lines from the two never interleave.
pub struct JsonStageLines;

impl fedostree_util::events::Sink for JsonStageLines {
    fn emit(&self, e: &fedostree_util::events::Event) {
        if let Ok(line) = serde_json::to_string(e) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::suite_from_outcome;
    use crate::results::tests::{outcome, SAMPLE};
    use std::sync::{Arc, Mutex};

    /// A `Write` the test can read back after the reporter consumed it.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn drive(r: &mut dyn Reporter, text: &str, arch: Arch) {
        let o = outcome(text);
        for e in &o.events {
            r.event("dev/minimal", arch, e);
        }
        r.suite_done(&suite_from_outcome("dev/minimal", arch, "5f1c0a", &o));
    }

    fn failing_run() -> String {
        let cut: String = SAMPLE.lines().take(6).map(|l| format!("{l}\n")).collect();
        cut.replace(
            r#""status":"pass","exit_code":0,"duration_ms":12"#,
            r#""status":"fail","exit_code":1,"duration_ms":1500"#,
        )
    }

    #[test]
    fn terminal_output() {
        let buf = Buf::default();
        let mut r =
            TerminalReporter::new(Box::new(buf.clone()), false).with_fixed_elapsed(Duration::from_millis(12_345));
        drive(&mut r, SAMPLE, Arch::X86_64);
        drive(&mut r, &failing_run(), Arch::Aarch64);
        r.finish();
        insta::assert_snapshot!(buf.text());
    }

    #[test]
    fn terminal_all_pass_summary() {
        let buf = Buf::default();
        let mut r = TerminalReporter::new(Box::new(buf.clone()), false).with_fixed_elapsed(Duration::from_millis(300));
        drive(&mut r, SAMPLE, Arch::X86_64);
        r.finish();
        assert_eq!(
            buf.text().lines().last().unwrap(),
            "Summary [   0.300s] 3 tests run: 2 passed, 1 skipped"
        );
    }

    #[test]
    fn json_lines_carry_tree_and_arch() {
        let buf = Buf::default();
        let mut r: Vec<Box<dyn Reporter + Send>> = vec![Box::new(JsonReporter::new(Box::new(buf.clone())))];
        drive(&mut r, SAMPLE, Arch::X86_64);
        r.finish();
        let lines: Vec<Value> = buf.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 10);
        assert!(lines
            .iter()
            .all(|v| v["tree"] == "dev/minimal" && v["arch"] == "x86_64"));
        assert_eq!(lines[1]["event"], "test-started");
        assert_eq!(lines[9]["event"], "suite-finished");
        assert_eq!(lines[9]["ok"], true);
        assert_eq!(lines[9]["skipped"], 1);
    }
}
