//! Text for people (and JSON on request) from the library's results: the only place in the
//! command line that writes results; progress and events go through the reporters.

use anyhow::Result;
use fedostree_compose::compose_tree::ComposeResult;
use fedostree_pipeline::TreeArchRun;

/// A line on stdout. A reader that went away (`| head`) ends the output, not the command: Rust
/// ignores SIGPIPE, and `println!` would panic on the broken pipe.
pub fn say(line: impl std::fmt::Display) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Pretty JSON of one arch's result, or an array of them for several arches.
pub fn one_or_array<T: serde::Serialize>(items: &[T]) -> Result<String> {
    Ok(match items {
        [one] => serde_json::to_string_pretty(one)?,
        all => serde_json::to_string_pretty(all)?,
    })
}

/// `fedostree compose`'s lines: the package list of a dry run, else what happened to the ref.
pub fn compose_result(r: &ComposeResult, dry_run: bool) -> Result<()> {
    if dry_run {
        say(format_args!("{} ({}): {} packages", r.ref_, r.arch, r.packages))?;
        for p in &r.package_list {
            say(format_args!("  {p}"))?;
        }
    } else {
        let what = if r.changed { "committed" } else { "unchanged" };
        say(format_args!(
            "{} {what} {} {}",
            r.ref_,
            r.commit.as_deref().unwrap_or("-"),
            r.version.as_deref().unwrap_or("")
        ))?;
    }
    Ok(())
}

/// `fedostree test`'s verdict line for one tree/arch (stderr, after the reporter's summary).
pub fn test_run(r: &TreeArchRun) {
    let verdict = if r.published {
        "published"
    } else if r.suite.passed() {
        "passed (not published)"
    } else {
        "NOT published"
    };
    let boots = match r.timings.boots {
        0 | 1 => String::new(),
        n => format!(", {n} boots"),
    };
    eprintln!(
        "{} {}: {verdict} ({} boot{boots}); artifacts in {}",
        r.ref_,
        r.commit.short(),
        r.timings.boot_path,
        r.run_dir.display()
    );
    if let Some(e) = &r.suite.infra_error {
        eprintln!(
            "infrastructure error: {e}\n--- console tail ---\n{}",
            r.suite.console_tail
        );
    }
}
