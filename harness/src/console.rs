//! Serial console checks: signs that the guest is broken ("badness", kola's term), and log tails.

/// Substrings that mean the boot or the kernel went wrong, whatever the tests report. Checked per line.
/// Kept to messages the kernel, busybox, dracut and systemd print only on failure, so a passing boot never
/// matches.
const BADNESS: &[&str] = &[
    "Kernel panic - not syncing",
    "Oops:",
    "BUG:",
    "general protection fault",
    "segfault at",
    "Attempted to kill init",
    "No working init found",
    "Call Trace:",
    "emergency shell",
    "Emergency shell",
    "initramfs: FATAL",
    "dracut: FATAL",
    "switch_root: ",
    "Kernel BUG",
    "Unable to handle kernel",
    "watchdog: BUG: soft lockup",
    "INFO: task hung",
    "rcu: INFO: rcu_sched detected stalls",
];

/// The first console line showing badness, trimmed, or `None` for a clean log.
pub fn find_badness(console_text: &str) -> Option<String> {
    console_text
        .lines()
        .find(|line| is_bad(line))
        .map(|l| l.trim_matches(|c: char| c.is_whitespace()).to_owned())
}

/// The in-guest runner echoes every protocol line to the console with this prefix; those lines carry test
/// output (which may legitimately mention "BUG:" or "segfault at") and are judged by the results, not here.
const RUNNER_ECHO: &str = "fedostree-result: ";

pub(crate) fn is_bad(line: &str) -> bool {
    !line.contains(RUNNER_ECHO) && BADNESS.iter().any(|p| line.contains(p))
}

/// The last `n_lines` lines of `text` (carriage returns from the serial line removed).
pub fn tail(text: &str, n_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n_lines);
    lines[start..]
        .iter()
        .map(|l| l.trim_end_matches('\r'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Incremental badness scanning for a console log that grows while it is read: only complete lines are
/// checked, each once.
#[derive(Debug, Default)]
pub struct ConsoleScan {
    text: String,
    scanned: usize,
    badness: Option<String>,
}

impl ConsoleScan {
    /// Append newly read bytes; returns the first badness line once one is seen.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<&str> {
        self.text.push_str(&String::from_utf8_lossy(bytes));
        if self.badness.is_none() {
            if let Some(end) = self.text.rfind('\n').filter(|&end| end >= self.scanned) {
                self.badness = find_badness(&self.text[self.scanned..end]);
                self.scanned = end;
            }
        }
        self.badness.as_deref()
    }

    /// Check the unterminated last line too (call once the log is complete).
    pub fn finish(&mut self) -> Option<&str> {
        if self.badness.is_none() {
            self.badness = find_badness(&self.text[self.scanned..]);
            self.scanned = self.text.len();
        }
        self.badness.as_deref()
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn badness(&self) -> Option<&str> {
        self.badness.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real serial logs of Debian's cloud kernel under TCG with the test initramfs (tests/support).
    const CLEAN: &str = include_str!("../tests/fixtures/console-clean.txt");
    const PANIC: &str = include_str!("../tests/fixtures/console-panic.txt");

    #[test]
    fn clean_boot_has_no_badness() {
        assert_eq!(find_badness(CLEAN), None);
    }

    #[test]
    fn panic_is_quoted() {
        assert_eq!(
            find_badness(PANIC).as_deref(),
            Some("[    2.458590] Kernel panic - not syncing: sysrq triggered crash")
        );
    }

    #[test]
    fn each_pattern_matches() {
        for line in [
            "[ 2.1] BUG: unable to handle page fault for address: 0000000000001234",
            "[ 2.1] Oops: 0002 [#1] PREEMPT SMP NOPTI",
            "[ 2.1] general protection fault, probably for non-canonical address",
            "[ 3.0] sh[87]: segfault at 0 ip 000055 sp 00007ff error 4 in busybox",
            "Entering emergency shell",
            "initramfs: FATAL: root device LABEL=root not found",
            "switch_root: can't execute '/sbin/init': No such file or directory",
            "[ 1.0] Kernel panic - not syncing: No working init found.",
            "[ 1.0] Call Trace:",
        ] {
            assert_eq!(find_badness(line).as_deref(), Some(line.trim()), "{line}");
        }
    }

    #[test]
    fn runner_echo_of_test_output_is_not_badness() {
        let line = r#"fedostree-result: {"event":"test-finished","output":"BUG: expected"}"#;
        assert_eq!(find_badness(line), None);
    }

    #[test]
    fn tail_takes_last_lines() {
        assert_eq!(tail("a\r\nb\r\nc\r\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn scan_waits_for_complete_lines() {
        let mut s = ConsoleScan::default();
        assert_eq!(s.feed(b"boot ok\nKernel pan"), None);
        assert_eq!(
            s.feed(b"ic - not syncing: x\nmore"),
            Some("Kernel panic - not syncing: x")
        );
        let mut s = ConsoleScan::default();
        assert_eq!(s.feed(b"Oops: 0002"), None);
        assert_eq!(s.finish(), Some("Oops: 0002"));
    }
}
