//! The status page: static HTML under `$STATE/public/status/`, written after every `ci run` and served
//! with the public repository. No JavaScript; everything that comes from a package, a test or a console
//! is escaped. `index.html` is the grid of trees × arches; `tree/<tree>.html` a tree's history with its
//! package diffs; `run/<id>/index.html` one run's tests, with the artifacts linked beside it.

use crate::history::{History, ResultRow, RunRow, TestRow};
use anyhow::{Context, Result};
use fedostree_util::Arch;
use std::fmt::Write as _;
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

/// `&`, `<`, `>`, `"` and `'` as entities: safe in element content and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

fn page(title: &str, depth: usize, body: &str, generated: &str) -> String {
    let up = "../".repeat(depth);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<link rel=\"stylesheet\" href=\"{up}style.css\">\n</head>\n<body>\n\
         <nav><a href=\"{up}index.html\">fedostree status</a></nav>\n<h1>{t}</h1>\n{body}\n\
         <footer><small>generated {g}</small></footer>\n</body>\n</html>\n",
        t = escape(title),
        g = escape(generated),
    )
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

fn verdict_cell(r: Option<&ResultRow>, href: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> String {
    let Some(r) = r else {
        return "<td class=\"verdict verdict-none\">not tested</td>".into();
    };
    let label = match href {
        Some(h) => format!("<a href=\"{}\">{}</a>", escape(h), escape(r.verdict.as_str())),
        None => escape(r.verdict.as_str()),
    };
    format!(
        "<td class=\"verdict verdict-{v}\" data-verdict=\"{v}\">{label}<br><small>{ver} <code>{c}</code><br>{age}{p}</small></td>",
        v = escape(r.verdict.as_str()),
        ver = escape(r.version.as_deref().unwrap_or("")),
        c = escape(&r.commit[..r.commit.len().min(12)]),
        age = escape(&age(&r.recorded_at, now)),
        p = if r.published { ", published" } else { "" },
    )
}

fn diff_html(diff: &serde_json::Value) -> String {
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
    let mut s = String::new();
    for (key, title) in [
        ("upgraded", "Upgraded"),
        ("downgraded", "Downgraded"),
        ("removed", "Removed"),
        ("added", "Added"),
    ] {
        let items = list(key);
        if !items.is_empty() {
            let _ = write!(s, "<p>{title}:</p><ul>");
            for i in items {
                let _ = write!(s, "<li><code>{}</code></li>", escape(&i));
            }
            s.push_str("</ul>");
        }
    }
    if s.is_empty() {
        s.push_str("<p>No package changes</p>");
    }
    s
}

/// Write the whole page for the history in `history`. Run pages of finished runs are written once;
/// the front page and the tree pages every time.
pub fn write(history: &History, public: &Path) -> Result<()> {
    let dir = status_dir(public);
    fs_err::create_dir_all(dir.join("tree"))?;
    fs_err::create_dir_all(dir.join("run"))?;
    let now = chrono::Utc::now();
    let generated = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    write_atomic(&dir.join("style.css"), STYLE)?;

    let latest = history.latest()?;
    let runs = history.runs(FRONT_PAGE_RUNS)?;
    let mut trees: Vec<&str> = latest.iter().map(|r| r.tree.as_str()).collect();
    trees.dedup();
    let mut arches: Vec<&str> = latest.iter().map(|r| r.arch.as_str()).collect();
    arches.sort();
    arches.dedup();

    // Front page.
    let mut body = String::from("<h2>Trees</h2>\n<div class=\"scroll\"><table id=\"grid\">\n<tr><th>tree</th>");
    for a in &arches {
        let _ = write!(body, "<th>{}</th>", escape(a));
    }
    body.push_str("</tr>\n");
    for t in &trees {
        let _ = write!(
            body,
            "<tr><th><a href=\"tree/{}.html\">{}</a></th>",
            escape(&slug(t)),
            escape(t)
        );
        for a in &arches {
            let r = latest.iter().find(|r| r.tree == *t && r.arch == *a);
            let href = r.map(|r| format!("run/{}/index.html#{}", r.run_id, anchor(&r.tree, r.arch)));
            body.push_str(&verdict_cell(r, href.as_deref(), now));
        }
        body.push_str("</tr>\n");
    }
    body.push_str("</table></div>\n<h2>Runs</h2>\n<ul id=\"runs\">\n");
    for r in &runs {
        let _ = writeln!(
            body,
            "<li><a href=\"run/{id}/index.html\">{id}</a> {status} <small>{age}</small></li>",
            id = escape(&r.id),
            status = escape(r.status.as_str()),
            age = escape(&age(&r.started_at, now)),
        );
    }
    body.push_str("</ul>");
    write_atomic(&dir.join("index.html"), &page("fedostree status", 0, &body, &generated))?;

    // Tree pages.
    for t in &trees {
        let rows = history.history(Some(t), TREE_PAGE_ROWS)?;
        let mut body = String::from(
            "<div class=\"scroll\"><table class=\"history\">\n<tr><th>tested</th><th>arch</th><th>commit</th><th>version</th><th>verdict</th><th>packages</th></tr>\n",
        );
        for r in &rows {
            let diff = match &r.package_diff {
                Some(d) => format!("<details><summary>diff</summary>{}</details>", diff_html(d)),
                None => "<small>first tested</small>".into(),
            };
            let _ = writeln!(
                body,
                "<tr><td>{age}</td><td>{arch}</td><td><code>{c}</code></td><td>{ver}</td>\
                 <td class=\"verdict verdict-{v}\"><a href=\"../run/{run}/index.html#{anchor}\">{v}</a></td><td>{diff}</td></tr>",
                age = escape(&age(&r.recorded_at, now)),
                arch = escape(r.arch.as_str()),
                c = escape(&r.commit[..r.commit.len().min(12)]),
                ver = escape(r.version.as_deref().unwrap_or("")),
                v = escape(r.verdict.as_str()),
                run = escape(&r.run_id),
                anchor = anchor(&r.tree, r.arch),
            );
        }
        body.push_str("</table></div>");
        write_atomic(
            &dir.join("tree").join(format!("{}.html", slug(t))),
            &page(t, 1, &body, &generated),
        )?;
    }

    // Run pages: one per run still in the history; a finished run's page never changes.
    for r in history.runs(usize::MAX >> 1)? {
        let out = dir.join("run").join(&r.id);
        if r.status != crate::verdict::RunStatus::Running && out.join("index.html").exists() {
            continue;
        }
        write_run(history, &r, &out, &generated)?;
    }
    Ok(())
}

fn anchor(tree: &str, arch: Arch) -> String {
    format!("{}--{}", slug(tree), arch)
}

fn write_run(history: &History, run: &RunRow, out: &Path, generated: &str) -> Result<()> {
    fs_err::create_dir_all(out)?;
    let mut body = format!(
        "<p>{} · started {} · {}</p>\n",
        escape(&run.selection),
        escape(&run.started_at),
        escape(run.status.as_str())
    );
    let unchanged = history.unchanged_of_run(&run.id)?;
    if !unchanged.is_empty() {
        body.push_str("<h2>Up to date</h2>\n<ul class=\"unchanged\">");
        for (tree, arch, commit) in &unchanged {
            let _ = write!(
                body,
                "<li>{} {} <code>{}</code></li>",
                escape(tree),
                escape(arch),
                escape(&commit[..commit.len().min(12)])
            );
        }
        body.push_str("</ul>\n");
    }
    for r in history.results_of_run(&run.id)? {
        let id = anchor(&r.tree, r.arch);
        let _ = writeln!(
            body,
            "<h2 id=\"{id}\">{tree} {arch}: <span class=\"verdict verdict-{v}\" data-verdict=\"{v}\">{v}</span></h2>\n\
             <p><code>{commit}</code> {ver}{published}</p>",
            tree = escape(&r.tree),
            arch = escape(r.arch.as_str()),
            v = escape(r.verdict.as_str()),
            commit = escape(&r.commit),
            ver = escape(r.version.as_deref().unwrap_or("")),
            published = if r.published { " · published" } else { "" },
        );
        if let Some(e) = &r.infra_error {
            let _ = writeln!(body, "<p>Infrastructure error:</p><pre>{}</pre>", escape(e));
        }
        let times: Vec<String> = [
            ("compose", r.compose_s),
            ("image", r.image_s),
            ("boot and tests", r.boot_s),
            ("publish", r.publish_s),
        ]
        .iter()
        .filter_map(|(n, s)| s.map(|s| format!("{n} {s:.1} s")))
        .collect();
        if !times.is_empty() {
            let _ = writeln!(body, "<p><small>{}</small></p>", escape(&times.join(" · ")));
        }
        let tests = history.tests_of(r.id)?;
        body.push_str(&tests_table(&tests));
        // Artifacts of each attempt, linked beside the page (the run directory is not served).
        let src = PathBuf::from(&r.artifacts);
        let mut attempt_dirs = match r.artifacts.is_empty() {
            true => vec![],
            false => vec![(1u32, src.clone())],
        };
        let max_attempt = tests.iter().map(|t| t.attempt).max().unwrap_or(1);
        for n in 2..=max_attempt.max(2) {
            let d = src.join(format!("attempt-{n}"));
            if !r.artifacts.is_empty() && d.is_dir() {
                attempt_dirs.push((n, d));
            }
        }
        let mut links = Vec::new();
        let mut screens = Vec::new();
        for (n, d) in attempt_dirs {
            let rel = format!("{}/{}/attempt-{n}", slug(&r.tree), r.arch);
            for name in ARTIFACTS {
                let from = d.join(name);
                if !from.is_file() {
                    continue;
                }
                let to = out.join(&rel).join(name);
                fs_err::create_dir_all(to.parent().unwrap())?;
                // A finished run's artifacts never change: a hard link costs no space (same state
                // dir); another filesystem gets a copy.
                let _ = fs_err::remove_file(&to);
                if std::fs::hard_link(&from, &to).is_err() {
                    fs_err::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
                }
                if *name == SCREENSHOT {
                    screens.push((n, format!("{rel}/{name}")));
                }
                links.push(format!(
                    "<a class=\"artifact\" href=\"{}/{}\">{}{}</a>",
                    escape(&rel),
                    escape(name),
                    escape(name),
                    if n > 1 {
                        format!(" (attempt {n})")
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if !links.is_empty() {
            let _ = writeln!(body, "<p>{}</p>", links.join(" · "));
        }
        // The screen where a test failed or the boot broke, shown where the failure is read.
        for (n, src) in screens {
            let _ = writeln!(
                body,
                "<figure><a href=\"{src}\"><img class=\"screenshot\" src=\"{src}\" alt=\"the VM's screen, attempt {n}\"></a><figcaption><small>the VM's screen when it failed (attempt {n})</small></figcaption></figure>",
                src = escape(&src),
            );
        }
        if let Some(d) = &r.package_diff {
            let _ = writeln!(
                body,
                "<details><summary>package changes</summary>{}</details>",
                diff_html(d)
            );
        }
    }
    write_atomic(
        &out.join("index.html"),
        &page(&format!("run {}", run.id), 2, &body, generated),
    )
}

fn tests_table(tests: &[TestRow]) -> String {
    if tests.is_empty() {
        return "<p>No test results.</p>\n".into();
    }
    let mut s = String::from(
        "<div class=\"scroll\"><table class=\"tests\">\n<tr><th>test</th><th>outcome</th><th>seconds</th><th>attempt</th><th>note</th></tr>\n",
    );
    for t in tests {
        let note = match (&t.denied, t.flaky) {
            (Some(why), _) => format!("denylisted: {}", escape(why)),
            (None, true) => "flaky: passed on a rerun".into(),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "<tr class=\"test\" data-outcome=\"{o}\"{flaky}><td>{n}</td><td class=\"outcome-{o}\">{o}</td><td>{d:.1}</td><td>{a}</td><td>{note}</td></tr>",
            o = escape(t.outcome.as_str()),
            flaky = if t.flaky { " data-flaky=\"true\"" } else { "" },
            n = escape(&t.name),
            d = t.duration_s,
            a = t.attempt,
        );
    }
    s.push_str("</table></div>\n");
    s
}

/// Readers (a web server) never see half a page.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs_err::write(&tmp, text)?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
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
