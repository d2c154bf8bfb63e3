//! The guest results protocol: JSON lines the in-guest runner writes to the `org.fedostree.results`
//! virtio-serial port, and a parser for a file that is read while QEMU is still writing it.

use serde::{Deserialize, Serialize};

/// One line of the guest protocol. Fields the runner may not know are defaulted, so an older or simpler
/// runner still parses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum GuestEvent {
    RunStarted {
        tests: u32,
        #[serde(default)]
        arch: String,
        #[serde(default)]
        kernel: String,
        #[serde(default)]
        deployment: String,
        #[serde(default)]
        commit: String,
        /// `/proc/sys/kernel/random/boot_id`: a later `booted` event must carry another one.
        #[serde(default)]
        boot_id: String,
    },
    TestStarted {
        name: String,
    },
    Subtest {
        test: String,
        number: u32,
        #[serde(default)]
        description: String,
        status: SubtestStatus,
    },
    TestFinished {
        name: String,
        status: TestStatus,
        #[serde(default)]
        exit_code: Option<i32>,
        #[serde(default)]
        duration_ms: u64,
        #[serde(default)]
        output: String,
    },
    /// A test asked for a reboot (`$FEDOSTREE_REBOOT_PREPARE MARK`, then exited): the runner reboots the
    /// guest and runs the test again with `FEDOSTREE_REBOOT_MARK=MARK` (autopkgtest's reboot marks).
    Rebooting {
        test: String,
        mark: String,
        #[serde(default)]
        output: String,
    },
    /// The runner resumed after a reboot: boot `number` (the first boot is 1, announced by `run-started`).
    Booted {
        number: u32,
        #[serde(default)]
        boot_id: String,
        #[serde(default)]
        deployment: String,
        #[serde(default)]
        commit: String,
        /// Tests this boot adds to those `run-started` announced: the upgrade gate's tests of the
        /// candidate, known only once it booted.
        #[serde(default)]
        added_tests: u32,
    },
    RunFinished {
        passed: u32,
        failed: u32,
        skipped: u32,
        #[serde(default)]
        timed_out: u32,
    },
}

/// A TAP line's verdict: `ok`, `not ok`, `# SKIP`, `# TODO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubtestStatus {
    Pass,
    Fail,
    Skip,
    Todo,
}

/// An installed test's verdict as the runner saw it (exit 0 pass, 77 skip, else fail; or killed at its
/// timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestStatus {
    Pass,
    Fail,
    Skip,
    Timeout,
}

/// Turns appended bytes into events. Keeps a partial last line until its newline arrives (the file is read
/// while being written); lines that are not protocol JSON are counted, not fatal.
#[derive(Debug, Default)]
pub struct EventParser {
    partial: Vec<u8>,
    garbage: usize,
}

impl EventParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed newly read bytes; returns the events completed by them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<GuestEvent> {
        self.partial.extend_from_slice(bytes);
        let Some(last_nl) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_nl + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        complete
            .split(|&b| b == b'\n')
            .filter_map(|l| self.parse_line(l))
            .collect()
    }

    /// The stream has ended: parse a last line that never got its newline.
    pub fn finish(&mut self) -> Vec<GuestEvent> {
        let last = std::mem::take(&mut self.partial);
        self.parse_line(&last).into_iter().collect()
    }

    /// Lines seen that were not protocol events.
    pub fn garbage(&self) -> usize {
        self.garbage
    }

    fn parse_line(&mut self, line: &[u8]) -> Option<GuestEvent> {
        // A virtio-serial port can carry NULs or CRs around writes; they are never part of an event.
        let text = String::from_utf8_lossy(line);
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if text.is_empty() {
            return None;
        }
        match serde_json::from_str(text) {
            Ok(ev) => Some(ev),
            Err(e) => {
                self.garbage += 1;
                tracing::warn!(line = %text, error = %e, "results port: not a protocol event");
                None
            }
        }
    }
}

/// Parse a complete results file (including an unterminated last line).
pub fn parse_all(text: &str) -> (Vec<GuestEvent>, usize) {
    let mut p = EventParser::new();
    let mut events = p.feed(text.as_bytes());
    events.extend(p.finish());
    (events, p.garbage())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../tests/fixtures/results.jsonl");

    #[test]
    fn parses_the_documented_sample() {
        let (events, garbage) = parse_all(SAMPLE);
        assert_eq!(garbage, 0);
        assert_eq!(events.len(), 9);
        assert!(matches!(&events[0], GuestEvent::RunStarted { tests: 3, arch, .. } if arch == "x86_64"));
        assert_eq!(
            events[2],
            GuestEvent::Subtest {
                test: "fedostree/tap-example".into(),
                number: 1,
                description: "first".into(),
                status: SubtestStatus::Pass
            }
        );
        assert_eq!(
            events.last(),
            Some(&GuestEvent::RunFinished {
                passed: 2,
                failed: 0,
                skipped: 1,
                timed_out: 0
            })
        );
    }

    #[test]
    fn round_trips_kebab_case() {
        let ev = GuestEvent::TestFinished {
            name: "a/b".into(),
            status: TestStatus::Timeout,
            exit_code: None,
            duration_ms: 5,
            output: "x".into(),
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert!(
            s.starts_with(r#"{"event":"test-finished","name":"a/b","status":"timeout""#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<GuestEvent>(&s).unwrap(), ev);
    }

    #[test]
    fn byte_by_byte_feed_equals_whole() {
        let mut p = EventParser::new();
        let mut events = Vec::new();
        for b in SAMPLE.as_bytes() {
            events.extend(p.feed(std::slice::from_ref(b)));
        }
        events.extend(p.finish());
        assert_eq!(events, parse_all(SAMPLE).0);
    }

    #[test]
    fn garbage_and_partial_lines() {
        let mut p = EventParser::new();
        let evs = p.feed(
            b"\0boot noise\n{\"event\":\"test-started\",\"name\":\"t\"}\r\n{\"event\":\"bogus\"}\n{\"event\":\"test-st",
        );
        assert_eq!(evs, vec![GuestEvent::TestStarted { name: "t".into() }]);
        assert_eq!(p.garbage(), 2);
        assert_eq!(p.feed(b"arted\",\"name\":\"u\"}"), vec![]);
        assert_eq!(p.finish(), vec![GuestEvent::TestStarted { name: "u".into() }]);
        // A torn last line at VM exit is garbage, not an error.
        let (evs, garbage) = parse_all("{\"event\":\"run-fin");
        assert!(evs.is_empty());
        assert_eq!(garbage, 1);
    }
}
