//! Progress output: indicatif bars on a terminal, plain lines otherwise (indicatif draws nothing
//! when stderr is not a TTY, and CI logs want one line per step).

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
        eprintln!("{}: {summary} ({:.2}s)", self.label, self.start.elapsed().as_secs_f64());
    }
}

/// Run `f` and print `label: N.Ns` once it succeeded: the per-step timings of a compose log.
pub fn timed<T>(label: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    let out = f()?;
    eprintln!("{label}: {:.1}s", start.elapsed().as_secs_f64());
    Ok(out)
}
