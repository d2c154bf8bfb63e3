//! Progress of a compose step: an indicatif bar while it runs on a terminal (indicatif draws nothing
//! when stderr is not a TTY), then one step event (`fedostree_util::events`) when it ends.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    start: Instant,
}

impl Progress {
    /// A step of `total` units (bytes when `bytes`, else items).
    pub fn new(label: &str, total: u64, bytes: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let tmpl = if bytes {
                "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {msg}"
            } else {
                "{prefix:>10} [{bar:30}] {pos}/{len} {msg}"
            };
            let b = ProgressBar::new(total);
            b.set_style(ProgressStyle::with_template(tmpl).unwrap().progress_chars("=> "));
            b.set_prefix(label.to_string());
            b
        });
        Progress {
            bar,
            label: label.to_string(),
            start: Instant::now(),
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn set_message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        }
    }

    /// End the step with a one-line summary (printed in both modes).
    pub fn finish(self, summary: &str) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let secs = self.start.elapsed().as_secs_f64();
        fedostree_util::events::step(
            fedostree_util::events::Stage::Compose,
            format!("{}: {summary}", self.label),
            Some(secs),
        );
    }
}

/// Run `f` as a compose step and report it with the time it took once it succeeded.
pub fn timed<T>(label: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    fedostree_util::events::timed(fedostree_util::events::Stage::Compose, label, f)
}
