//! The status page: static HTML under `$STATE/public/status/`, written after every `ci run` and served
//! with the public repository. No JavaScript. The HTML comes from maud templates, which escape
//! everything they interpolate: nothing from a package, a test or a console can become markup.
//! `index.html` is the grid of trees × arches; `tree/<tree>.html` a tree's history with its package
//! diffs; `run/<id>/index.html` one run's tests, with the artifacts linked beside it.

use crate::history::{History, ResultRow, RunRow, TestRow};
use crate::verdict::RunStatus;
use anyhow::{Context, Result};
use fedostree_util::checksum::short;
use fedostree_util::Arch;
use maud::{html, Markup, DOCTYPE};
use std::path::{Path, PathBuf};

/// Results shown per tree page, newest first.
const TREE_PAGE_ROWS: usize = 200;
/// Runs listed on the front page.
const FRONT_PAGE_RUNS: usize = 30;
/// What a run directory holds that the page links to.
const ARTIFACTS: &[&str] = &[
    "console.log",
    "junit.xml",
    "junit-boots.xml",
    "timings.json",
    "boots.json",
    SCREENSHOT,
];
const SCREENSHOT: &str = "screenshot.png";

pub fn status_dir(public: &Path) -> PathBuf {
    public.join("status")
}

/// A tree name as a file name (`dev/minimal` → `dev--minimal`).
fn slug(tree: &str) -> String {
    tree.replace('/', "--")
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:70em;padding:0.5em 1em;color:#222}\n\
table{border-collapse:collapse;margin:0.5em 0;max-width:100%}\n\
td,th{border:1px solid #ccc;padding:0.3em 0.5em;text-align:left;vertical-align:top}\n\
.scroll{overflow-x:auto}\n\
.verdict-pass{background:#d9f2d9}.verdict-flaky{background:#fff1c2}\n\
.verdict-fail{background:#f8d0d0}.verdict-error{background:#e0d4f5}.verdict-none{background:#eee}\n\
.outcome-fail,.outcome-timeout,.outcome-error{color:#a00;font-weight:bold}\n\
code,pre{font-family:ui-monospace,monospace;font-size:0.9em;overflow-wrap:anywhere}\n\
pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:0.5em}\n\
small{color:#666}\n\
figure{margin:0.5em 0}figure img{max-width:100%;height:auto;border:1px solid #ccc}\n";

/// The frame every page shares: `depth` directories below the status root.
fn page(title: &str, depth: usize, body: Markup, generated: &str) -> String {
    let up = "../".repeat(depth);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href={ (up) "style.css" };
            }
            body {
                nav { a href={ (up) "index.html" } { "fedostree status" } }
                h1 { (title) }
                (body)
                footer { small { "generated " (generated) } }
            }
        }
    };
    markup.into_string() + "\n"
}

/// "3 min ago" from an RFC 3339 time, as of `now`.
fn age(at: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(at) else {
        return String::new();
    };
    let s = (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

fn verdict_cell(r: Option<&ResultRow>, href: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Markup {
    let Some(r) = r else {
        return html! { td class="verdict verdict-none" { "not tested" } };
    };
    let v = r.verdict.as_str();
    html! {
        td class={ "verdict verdict-" (v) } data-verdict=(v) {
            @match href {
                Some(h) => a href=(h) { (v) },
                None => (v),
            }
            br;
            small {
                (r.version.as_deref().unwrap_or("")) " " code { (r.commit.short()) }
                br;
                (age(&r.recorded_at, now)) @if r.published { ", published" }
            }
        }
    }
}

/// The package changes of a result (`db diff` JSON).
fn diff_html(diff: &serde_json::Value) -> Markup {
    let list = |key: &str| -> Vec<String> {
        diff[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        o => format!(
                            "{} {} → {}",
                            o["name"].as_str().unwrap_or(""),
                            o["from"].as_str().unwrap_or(""),
                            o["to"].as_str().unwrap_or("")
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let sections: Vec<(&str, Vec<String>)> = [
        ("upgraded", "Upgraded"),
        ("downgraded", "Downgraded"),
        ("removed", "Removed"),
        ("added", "Added"),
    ]
    .into_iter()
    .map(|(key, title)| (title, list(key)))
    .filter(|(_, items)| !items.is_empty())
    .collect();
    html! {
        @if sections.is_empty() { p { "No package changes" } }
        @for (title, items) in &sections {
            p { (title) ":" }
            ul { @for i in items { li { code { (i) } } } }
        }
    }
}

/// Write the whole page for the history in `history`. Run pages of finished runs are written once;
/// the front page and the tree pages every time.
pub fn write(history: &History, public: &Path) -> Result<()> {
    let dir = status_dir(public);
    fs_err::create_dir_all(dir.join("tree"))?;
    fs_err::create_dir_all(dir.join("run"))?;
    let now = chrono::Utc::now();
    let generated = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    fedostree_util::atomic::write(&dir.join("style.css"), STYLE)?;
    let latest = history.latest()?;
    let mut trees: Vec<&str> = latest.iter().map(|r| r.tree.as_str()).collect();
    trees.dedup();
    let front = front_page(&latest, &trees, &history.runs(FRONT_PAGE_RUNS)?, now);
    fedostree_util::atomic::write(&dir.join("index.html"), page("fedostree status", 0, front, &generated))?;
    for t in &trees {
        let rows = history.history(Some(t), TREE_PAGE_ROWS)?;
        let path = dir.join("tree").join(format!("{}.html", slug(t)));
        fedostree_util::atomic::write(&path, page(t, 1, tree_page(&rows, now), &generated))?;
    }
    // Run pages: one per run still in the history; a finished run's page never changes.
    for r in history.runs(usize::MAX >> 1)? {
        let out = dir.join("run").join(&r.id);
        if r.status != RunStatus::Running && out.join("index.html").exists() {
            continue;
        }
        write_run(history, &r, &out, &generated)?;
    }
    Ok(())
}

/// The grid of trees × arches (each cell the latest verdict) and the newest runs.
fn front_page(latest: &[ResultRow], trees: &[&str], runs: &[RunRow], now: chrono::DateTime<chrono::Utc>) -> Markup {
    let mut arches: Vec<Arch> = latest.iter().map(|r| r.arch).collect();
    arches.sort_by_key(|a| a.as_str());
    arches.dedup();
    html! {
        h2 { "Trees" }
        div class="scroll" {
            table id="grid" {
                tr { th { "tree" } @for a in &arches { th { (a.as_str()) } } }
                @for t in trees {
                    tr {
                        th { a href={ "tree/" (slug(t)) ".html" } { (t) } }
                        @for a in &arches {
                            @let r = latest.iter().find(|r| r.tree == *t && r.arch == *a);
                            @let href = r.map(|r| format!("run/{}/index.html#{}", r.run_id, anchor(&r.tree, r.arch)));
                            (verdict_cell(r, href.as_deref(), now))
                        }
                    }
                }
            }
        }
        h2 { "Runs" }
        ul id="runs" {
            @for r in runs {
                li {
                    a href={ "run/" (r.id) "/index.html" } { (r.id) } " " (r.status.as_str()) " "
                    small { (age(&r.started_at, now)) }
                }
            }
        }
    }
}

/// One tree's results, newest first, with what changed in its packages each time.
fn tree_page(rows: &[ResultRow], now: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        div class="scroll" {
            table class="history" {
                tr {
                    th { "tested" } th { "arch" } th { "commit" } th { "version" } th { "verdict" } th { "packages" }
                }
                @for r in rows {
                    @let v = r.verdict.as_str();
                    tr {
                        td { (age(&r.recorded_at, now)) }
                        td { (r.arch.as_str()) }
                        td { code { (r.commit.short()) } }
                        td { (r.version.as_deref().unwrap_or("")) }
                        td class={ "verdict verdict-" (v) } {
                            a href={ "../run/" (r.run_id) "/index.html#" (anchor(&r.tree, r.arch)) } { (v) }
                        }
                        td {
                            @match &r.package_diff {
                                Some(d) => details { summary { "diff" } (diff_html(d)) },
                                None => small { "first tested" },
                            }
                        }
                    }
                }
            }
        }
    }
}

fn anchor(tree: &str, arch: Arch) -> String {
    format!("{}--{}", slug(tree), arch)
}

/// One run's page: what was up to date, then each tested tree/arch with its tests and artifacts.
fn write_run(history: &History, run: &RunRow, out: &Path, generated: &str) -> Result<()> {
    fs_err::create_dir_all(out)?;
    let unchanged = history.unchanged_of_run(&run.id)?;
    let mut results = Vec::new();
    for r in history.results_of_run(&run.id)? {
        let tests = history.tests_of(r.id)?;
        let artifacts = link_artifacts(&r, &tests, out)?;
        results.push(result_section(&r, &tests, &artifacts));
    }
    let body = html! {
        p { (run.selection) " · started " (run.started_at) " · " (run.status.as_str()) }
        @if !unchanged.is_empty() {
            h2 { "Up to date" }
            ul class="unchanged" {
                @for (tree, arch, commit) in &unchanged { li { (tree) " " (arch) " " code { (short(commit)) } } }
            }
        }
        @for section in results { (section) }
    };
    fedostree_util::atomic::write(
        &out.join("index.html"),
        page(&format!("run {}", run.id), 2, body, generated),
    )
}

/// The artifacts of a result's attempts, linked beside the run page (the run directory is not served).
struct Artifacts {
    /// (href, file name, attempt)
    links: Vec<(String, &'static str, u32)>,
    /// (href, attempt) of the VM's screen where a test failed or the boot broke.
    screens: Vec<(String, u32)>,
}

/// Hard-link (or copy, across filesystems) each attempt's artifacts under `out`.
fn link_artifacts(r: &ResultRow, tests: &[TestRow], out: &Path) -> Result<Artifacts> {
    let mut found = Artifacts {
        links: Vec::new(),
        screens: Vec::new(),
    };
    if r.artifacts.is_empty() {
        return Ok(found);
    }
    let src = PathBuf::from(&r.artifacts);
    let mut attempt_dirs = vec![(1u32, src.clone())];
    let max_attempt = tests.iter().map(|t| t.attempt).max().unwrap_or(1);
    for n in 2..=max_attempt.max(2) {
        let d = src.join(format!("attempt-{n}"));
        if d.is_dir() {
            attempt_dirs.push((n, d));
        }
    }
    for (n, d) in attempt_dirs {
        let rel = format!("{}/{}/attempt-{n}", slug(&r.tree), r.arch);
        for name in ARTIFACTS {
            let from = d.join(name);
            if !from.is_file() {
                continue;
            }
            let to = out.join(&rel).join(name);
            fs_err::create_dir_all(to.parent().unwrap())?;
            // A finished run's artifacts never change: a hard link costs no space (same state dir);
            // another filesystem gets a copy.
            let _ = fs_err::remove_file(&to);
            if std::fs::hard_link(&from, &to).is_err() {
                fs_err::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
            }
            if *name == SCREENSHOT {
                found.screens.push((format!("{rel}/{name}"), n));
            }
            found.links.push((format!("{rel}/{name}"), name, n));
        }
    }
    Ok(found)
}

/// One tree/arch of a run: verdict, commit, error, timings, tests, artifacts, screen, package changes.
fn result_section(r: &ResultRow, tests: &[TestRow], artifacts: &Artifacts) -> Markup {
    let v = r.verdict.as_str();
    let times: Vec<String> = [
        ("compose", r.compose_s),
        ("image", r.image_s),
        ("boot and tests", r.boot_s),
        ("publish", r.publish_s),
        ("upgrade gate", r.upgrade_s),
    ]
    .iter()
    .filter_map(|(n, s)| s.map(|s| format!("{n} {s:.1} s")))
    .collect();
    html! {
        h2 id=(anchor(&r.tree, r.arch)) {
            (r.tree) " " (r.arch.as_str()) ": " span class={ "verdict verdict-" (v) } data-verdict=(v) { (v) }
        }
        p { code { (r.commit) } " " (r.version.as_deref().unwrap_or("")) @if r.published { " · published" } }
        @if let Some(e) = &r.infra_error { p { "Infrastructure error:" } pre { (e) } }
        @if let Some(u) = &r.upgrade { p class="upgrade" { "Upgrade gate: " (u) } }
        @if !times.is_empty() { p { small { (times.join(" · ")) } } }
        (tests_table(tests))
        @if !artifacts.links.is_empty() {
            p {
                @for (i, (href, name, n)) in artifacts.links.iter().enumerate() {
                    @if i > 0 { " · " }
                    a class="artifact" href=(href) { (name) @if *n > 1 { " (attempt " (n) ")" } }
                }
            }
        }
        // The screen where a test failed or the boot broke, shown where the failure is read.
        @for (src, n) in &artifacts.screens {
            figure {
                a href=(src) { img class="screenshot" src=(src) alt={ "the VM's screen, attempt " (n) }; }
                figcaption { small { "the VM's screen when it failed (attempt " (n) ")" } }
            }
        }
        @if let Some(d) = &r.package_diff {
            details { summary { "package changes" } (diff_html(d)) }
        }
    }
}

fn tests_table(tests: &[TestRow]) -> Markup {
    if tests.is_empty() {
        return html! { p { "No test results." } };
    }
    html! {
        div class="scroll" {
            table class="tests" {
                tr { th { "test" } th { "outcome" } th { "seconds" } th { "attempt" } th { "note" } }
                @for t in tests {
                    @let o = t.outcome.as_str();
                    tr class="test" data-outcome=(o) data-flaky=[t.flaky.then_some("true")] {
                        td { (t.name) }
                        td class={ "outcome-" (o) } { (o) }
                        td { (format!("{:.1}", t.duration_s)) }
                        td { (t.attempt) }
                        td {
                            @match (&t.denied, t.flaky) {
                                (Some(why), _) => { "denylisted: " (why) },
                                (None, true) => "flaky: passed on a rerun",
                                _ => {},
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        let evil = "<script>alert('x')</script> & \"q\"";
        let m = html! { p title=(evil) { (evil) } }.into_string();
        assert_eq!(
            m,
            "<p title=\"&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;q&quot;\">\
             &lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;q&quot;</p>"
        );
    }

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(age("2026-12-02T09:59:30Z", now), "30 s ago");
        assert_eq!(age("2026-12-02T09:00:00Z", now), "1 h ago");
        assert_eq!(age("2026-11-29T10:00:00Z", now), "3 days ago");
    }
}
