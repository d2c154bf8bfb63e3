//! Results in the shape ResultsDB's v2 API takes (`POST /api/v2.0/results`), one JSON object a line:
//! testcase `fedostree.<tree>.<arch>.<test>` (and `fedostree.<tree>.<arch>` for the tree's verdict),
//! outcome PASSED / FAILED / ERROR / INFO, item `<ref>@<commit>` of type `ostree-commit`. Each test's
//! last attempt is what it reports; a flake or a denylisted failure says so in the note.

use crate::history::{History, ResultRow, TestRow};
use crate::verdict::{TestOutcome, Verdict};
use anyhow::Result;
use serde_json::{json, Value};

fn outcome_of_test(t: &TestRow) -> &'static str {
    match (t.outcome, &t.denied) {
        (TestOutcome::Pass, _) => "PASSED",
        (TestOutcome::Skip, _) => "INFO",
        (_, Some(_)) => "INFO",
        (TestOutcome::Error, _) => "ERROR",
        (TestOutcome::Fail | TestOutcome::Timeout, None) => "FAILED",
    }
}

fn outcome_of_verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass | Verdict::Flaky => "PASSED",
        Verdict::Error => "ERROR",
        Verdict::Fail => "FAILED",
    }
}

fn data(r: &ResultRow) -> Value {
    json!({
        "item": format!("{}@{}", r.ref_, r.commit),
        "type": "ostree-commit",
        "arch": r.arch,
        "fedostree_tree": r.tree,
        "fedostree_run": r.run_id,
        "version": r.version,
    })
}

/// The lines for every result of `run_id`.
pub fn export_run(history: &History, run_id: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for r in history.results_of_run(run_id)? {
        let prefix = format!("fedostree.{}.{}", r.tree, r.arch);
        let note = match (&r.infra_error, r.verdict) {
            (Some(e), _) => e.clone(),
            (None, Verdict::Flaky) => "passed after reruns of flaky tests".into(),
            (None, Verdict::Pass | Verdict::Fail | Verdict::Error) => String::new(),
        };
        out.push(json!({
            "testcase": {"name": prefix},
            "outcome": outcome_of_verdict(r.verdict),
            "data": data(&r),
            "note": note,
            "submit_time": r.recorded_at,
        }));
        let tests = history.tests_of(r.id)?;
        let mut last: std::collections::BTreeMap<&str, &TestRow> = Default::default();
        for t in &tests {
            last.insert(&t.name, t);
        }
        for (name, t) in last {
            let note = match (&t.denied, t.flaky) {
                (Some(why), _) => format!("denylisted: {why}"),
                (None, true) => format!("flaky: passed on attempt {}", t.attempt),
                _ => String::new(),
            };
            out.push(json!({
                "testcase": {"name": format!("{prefix}.{name}")},
                "outcome": outcome_of_test(t),
                "data": data(&r),
                "note": note,
                "submit_time": r.recorded_at,
            }));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(outcome: &str, denied: Option<&str>, flaky: bool) -> TestRow {
        TestRow {
            name: "s/t".into(),
            outcome: outcome.parse().unwrap(),
            duration_s: 0.0,
            attempt: 1,
            flaky,
            denied: denied.map(Into::into),
        }
    }

    #[test]
    fn outcomes_map_to_resultsdb_values() {
        assert_eq!(outcome_of_test(&row("pass", None, true)), "PASSED");
        assert_eq!(outcome_of_test(&row("fail", None, false)), "FAILED");
        assert_eq!(outcome_of_test(&row("timeout", None, false)), "FAILED");
        assert_eq!(outcome_of_test(&row("error", None, false)), "ERROR");
        assert_eq!(outcome_of_test(&row("skip", None, false)), "INFO");
        assert_eq!(outcome_of_test(&row("fail", Some("known"), false)), "INFO");
        assert_eq!(outcome_of_verdict(Verdict::Flaky), "PASSED");
        assert_eq!(outcome_of_verdict(Verdict::Error), "ERROR");
    }
}
