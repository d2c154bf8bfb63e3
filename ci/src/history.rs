//! The CI history: an SQLite database at `$STATE/ci.sqlite` (runs, tree/arch results, every attempt of
//! every test, the trees a run found up to date). WAL and a busy timeout let two `ci run` processes
//! write at once; each result is one transaction, so a reader never sees half of one.

use crate::verdict::{RunStatus, TestOutcome, Verdict};
use anyhow::{Context, Result};
use fedostree_util::{Arch, Checksum};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::time::Duration;

/// The schema's migrations, in order; `PRAGMA user_version` is how many were applied.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_history.sql", include_str!("../migrations/0001_history.sql")),
    (
        "0002_upgrade_gate.sql",
        include_str!("../migrations/0002_upgrade_gate.sql"),
    ),
];

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct History {
    conn: Connection,
}

/// What a tree/arch result records: written by [`History::record_result`], read back in a
/// [`ResultRow`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResultRecord {
    pub run_id: String,
    pub tree: String,
    pub arch: Arch,
    #[serde(rename = "ref")]
    pub ref_: String,
    /// Empty when the compose failed (there is no commit).
    pub commit: Checksum,
    pub parent_commit: Option<Checksum>,
    pub version: Option<String>,
    pub verdict: Verdict,
    pub published: bool,
    pub infra_error: Option<String>,
    pub compose_s: Option<f64>,
    pub image_s: Option<f64>,
    pub boot_s: Option<f64>,
    pub publish_s: Option<f64>,
    pub artifacts: String,
    pub package_diff: Option<serde_json::Value>,
    /// The upgrade gate: what it upgraded, or why it did not run.
    pub upgrade: Option<String>,
    pub upgrade_s: Option<f64>,
}

/// A tree/arch result as recorded: its record, with the row's id and time (flat in JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResultRow {
    pub id: i64,
    #[serde(flatten)]
    pub record: ResultRecord,
    pub recorded_at: String,
}

impl std::ops::Deref for ResultRow {
    type Target = ResultRecord;
    fn deref(&self) -> &ResultRecord {
        &self.record
    }
}

/// One attempt of one test.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TestRow {
    pub name: String,
    pub outcome: TestOutcome,
    pub duration_s: f64,
    pub attempt: u32,
    pub flaky: bool,
    pub denied: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: RunStatus,
    pub selection: String,
}

/// What a run records for one tree/arch it tested.
#[derive(Debug, Clone)]
pub struct NewResult {
    pub record: ResultRecord,
    pub tests: Vec<TestRow>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

const RESULT_COLUMNS: &str = "id, run_id, tree, arch, ref, commit_id, parent_commit, version, verdict, published, \
     infra_error, compose_s, image_s, boot_s, publish_s, artifacts, package_diff, recorded_at, upgrade, upgrade_s";

fn result_row(r: &rusqlite::Row) -> rusqlite::Result<ResultRow> {
    let diff: Option<String> = r.get(16)?;
    Ok(ResultRow {
        id: r.get(0)?,
        record: ResultRecord {
            run_id: r.get(1)?,
            tree: r.get(2)?,
            arch: r.get(3)?,
            ref_: r.get(4)?,
            commit: r.get(5)?,
            parent_commit: r.get(6)?,
            version: r.get(7)?,
            verdict: r.get(8)?,
            published: r.get(9)?,
            infra_error: r.get(10)?,
            compose_s: r.get(11)?,
            image_s: r.get(12)?,
            boot_s: r.get(13)?,
            publish_s: r.get(14)?,
            artifacts: r.get(15)?,
            package_diff: diff.and_then(|d| serde_json::from_str(&d).ok()),
            upgrade: r.get(18)?,
            upgrade_s: r.get(19)?,
        },
        recorded_at: r.get(17)?,
    })
}

fn run_row(r: &rusqlite::Row) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        started_at: r.get(1)?,
        finished_at: r.get(2)?,
        status: r.get(3)?,
        selection: r.get(4)?,
    })
}

impl History {
    /// Open (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<History> {
        let ctx = || format!("opening the CI history {}", path.display());
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir).with_context(ctx)?;
        }
        let mut conn = Connection::open(path).with_context(ctx)?;
        conn.busy_timeout(BUSY_TIMEOUT).with_context(ctx)?;
        conn.pragma_update(None, "journal_mode", "WAL").with_context(ctx)?;
        conn.pragma_update(None, "foreign_keys", "ON").with_context(ctx)?;
        conn.pragma_update(None, "synchronous", "NORMAL").with_context(ctx)?;
        migrate(&mut conn).with_context(ctx)?;
        Ok(History { conn })
    }

    pub fn begin_run(&self, id: &str, selection: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO runs (id, started_at, status, pid, selection) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, now(), RunStatus::Running, std::process::id(), selection],
        )?;
        Ok(())
    }

    pub fn finish_run(&self, id: &str, status: RunStatus) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
            params![id, status, now()],
        )?;
        Ok(())
    }

    /// Runs left 'running' by a process that is gone (killed, or the machine went down) are marked
    /// interrupted; their results were never recorded, so the next run tests those trees again.
    pub fn mark_interrupted(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT id, pid FROM runs WHERE status = ?1")?;
        let running: Vec<(String, u32)> = stmt
            .query_map([RunStatus::Running], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut gone = Vec::new();
        for (id, pid) in running {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                self.finish_run(&id, RunStatus::Interrupted)?;
                gone.push(id);
            }
        }
        Ok(gone)
    }

    /// The last conclusive result of `tree` on `arch` (an infrastructure error says nothing about
    /// the tree, so it never makes a commit "tested").
    pub fn last_tested(&self, tree: &str, arch: Arch) -> Result<Option<ResultRow>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {RESULT_COLUMNS} FROM results WHERE tree = ?1 AND arch = ?2 AND verdict != ?3 \
                     ORDER BY id DESC LIMIT 1"
                ),
                params![tree, arch, Verdict::Error],
                result_row,
            )
            .optional()?)
    }

    /// One tree/arch result and all its tests, in one transaction.
    pub fn record_result(&mut self, new: &NewResult) -> Result<i64> {
        let r = &new.record;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO results (run_id, tree, arch, ref, commit_id, parent_commit, version, verdict, published, \
             infra_error, compose_s, image_s, boot_s, publish_s, artifacts, package_diff, recorded_at, upgrade, \
             upgrade_s) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            params![
                r.run_id,
                r.tree,
                r.arch,
                r.ref_,
                r.commit,
                r.parent_commit,
                r.version,
                r.verdict,
                r.published,
                r.infra_error,
                r.compose_s,
                r.image_s,
                r.boot_s,
                r.publish_s,
                r.artifacts,
                r.package_diff.as_ref().map(|d| d.to_string()),
                now(),
                r.upgrade,
                r.upgrade_s,
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut stmt = tx.prepare(
                "INSERT INTO tests (result_id, name, outcome, duration_s, attempt, flaky, denied) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for t in &new.tests {
                stmt.execute(params![
                    id,
                    t.name,
                    t.outcome,
                    t.duration_s,
                    t.attempt,
                    t.flaky,
                    t.denied
                ])?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    pub fn record_unchanged(&self, run_id: &str, tree: &str, arch: Arch, commit: &Checksum) -> Result<()> {
        self.conn.execute(
            "INSERT INTO unchanged (run_id, tree, arch, commit_id) VALUES (?1, ?2, ?3, ?4)",
            params![run_id, tree, arch, commit],
        )?;
        Ok(())
    }

    /// The newest runs first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, started_at, finished_at, status, selection FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], run_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, started_at, finished_at, status, selection FROM runs WHERE id = ?1",
                [id],
                run_row,
            )
            .optional()?)
    }

    pub fn results_of_run(&self, run_id: &str) -> Result<Vec<ResultRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {RESULT_COLUMNS} FROM results WHERE run_id = ?1 ORDER BY tree, arch, id"
        ))?;
        let rows = stmt.query_map([run_id], result_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Results, newest first, of the trees matching `tree` (all when `None`).
    pub fn history(&self, tree: Option<&str>, limit: usize) -> Result<Vec<ResultRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {RESULT_COLUMNS} FROM results WHERE (?1 IS NULL OR tree = ?1) ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![tree, limit as i64], result_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The newest result of every tree/arch ever tested.
    pub fn latest(&self) -> Result<Vec<ResultRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {RESULT_COLUMNS} FROM results WHERE id IN (SELECT max(id) FROM results GROUP BY tree, arch) \
             ORDER BY tree, arch"
        ))?;
        let rows = stmt.query_map([], result_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn tests_of(&self, result_id: i64) -> Result<Vec<TestRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, outcome, duration_s, attempt, flaky, denied FROM tests WHERE result_id = ?1 \
             ORDER BY name, attempt",
        )?;
        let rows = stmt
            .query_map([result_id], |r| {
                Ok(TestRow {
                    name: r.get(0)?,
                    outcome: r.get(1)?,
                    duration_s: r.get(2)?,
                    attempt: r.get(3)?,
                    flaky: r.get(4)?,
                    denied: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// (tree, arch, commit) of every tree/arch a run found up to date.
    pub fn unchanged_of_run(&self, run_id: &str) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT tree, arch, commit_id FROM unchanged WHERE run_id = ?1 ORDER BY tree, arch")?;
        let rows = stmt
            .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Every commit the history still points at (results and their parents), for pruning.
    pub fn commits_of_runs(&self, run_ids: &[String]) -> Result<Vec<Checksum>> {
        let mut out = Vec::new();
        for id in run_ids {
            for r in self.results_of_run(id)? {
                out.push(r.record.commit);
            }
        }
        Ok(out)
    }

    /// Forget runs (their results, tests and up-to-date rows go with them).
    pub fn delete_runs(&mut self, run_ids: &[String]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for id in run_ids {
            tx.execute("DELETE FROM runs WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: usize = tx.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if applied > MIGRATIONS.len() {
        anyhow::bail!(
            "the database is at schema version {applied}, newer than this fedostree knows ({}): use a newer fedostree",
            MIGRATIONS.len()
        );
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)
            .with_context(|| format!("applying migration {name}"))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(run: &str, tree: &str, verdict: &str, commit: &str) -> NewResult {
        NewResult {
            record: ResultRecord {
                run_id: run.into(),
                tree: tree.into(),
                arch: Arch::X86_64,
                ref_: format!("fedostree/{tree}"),
                commit: commit.into(),
                parent_commit: None,
                version: Some("1".into()),
                verdict: verdict.parse().unwrap(),
                published: verdict == "pass",
                infra_error: None,
                compose_s: Some(1.0),
                image_s: None,
                boot_s: None,
                publish_s: None,
                artifacts: "/nowhere".into(),
                package_diff: Some(serde_json::json!({"added": ["a-1-1.noarch"]})),
                upgrade: Some("not run: --no-upgrade: the upgrade from the published commit was not checked".into()),
                upgrade_s: None,
            },
            tests: vec![
                TestRow {
                    name: "s/t".into(),
                    outcome: TestOutcome::Fail,
                    duration_s: 0.5,
                    attempt: 1,
                    flaky: false,
                    denied: None,
                },
                TestRow {
                    name: "s/t".into(),
                    outcome: TestOutcome::Pass,
                    duration_s: 0.4,
                    attempt: 2,
                    flaky: true,
                    denied: None,
                },
            ],
        }
    }

    #[test]
    fn migrates_once_and_reads_back_what_it_wrote() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("ci.sqlite");
        {
            let mut h = History::open(&db).unwrap();
            h.begin_run("r1", "*").unwrap();
            let id = h.record_result(&result("r1", "dev/minimal", "flaky", "c1")).unwrap();
            h.record_unchanged("r1", "dev/broken", Arch::X86_64, &"c0".into())
                .unwrap();
            h.finish_run("r1", RunStatus::Finished).unwrap();
            assert_eq!(h.tests_of(id).unwrap().len(), 2);
        }
        // Reopening applies nothing twice.
        let h = History::open(&db).unwrap();
        let last = h.last_tested("dev/minimal", Arch::X86_64).unwrap().unwrap();
        assert_eq!((last.commit.as_str(), last.verdict.as_str()), ("c1", "flaky"));
        assert_eq!(last.package_diff.as_ref().unwrap()["added"][0], "a-1-1.noarch");
        assert_eq!(h.runs(10).unwrap()[0].status, RunStatus::Finished);
        assert_eq!(h.unchanged_of_run("r1").unwrap()[0].2, "c0");
    }

    #[test]
    fn an_infrastructure_error_never_makes_a_commit_tested() {
        let d = tempfile::tempdir().unwrap();
        let mut h = History::open(&d.path().join("ci.sqlite")).unwrap();
        h.begin_run("r1", "*").unwrap();
        h.record_result(&result("r1", "t", "fail", "c1")).unwrap();
        h.record_result(&result("r1", "t", "error", "c2")).unwrap();
        assert_eq!(h.last_tested("t", Arch::X86_64).unwrap().unwrap().commit, "c1");
        assert_eq!(h.latest().unwrap()[0].commit, "c2", "the page still shows the error");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("ci.sqlite");
        Connection::open(&db)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = format!("{:#}", History::open(&db).err().unwrap());
        assert!(err.contains("schema version 99"), "{err}");
    }

    #[test]
    fn deleting_a_run_takes_its_rows_along() {
        let d = tempfile::tempdir().unwrap();
        let mut h = History::open(&d.path().join("ci.sqlite")).unwrap();
        h.begin_run("r1", "*").unwrap();
        let id = h.record_result(&result("r1", "t", "pass", "c1")).unwrap();
        h.delete_runs(&["r1".into()]).unwrap();
        assert!(h.tests_of(id).unwrap().is_empty());
        assert!(h.history(None, 10).unwrap().is_empty());
    }

    /// Two processes' worth of writers on one database: WAL and the busy timeout serialize them; no
    /// row is lost and nothing is corrupted.
    #[test]
    fn concurrent_writers_lose_nothing() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("ci.sqlite");
        History::open(&db).unwrap();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut h = History::open(&db).unwrap();
                    let run = format!("run-{w}");
                    h.begin_run(&run, "*").unwrap();
                    for i in 0..50 {
                        h.record_result(&result(&run, &format!("tree-{w}"), "pass", &format!("c{i}")))
                            .unwrap();
                    }
                    h.finish_run(&run, RunStatus::Finished).unwrap();
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let h = History::open(&db).unwrap();
        assert_eq!(h.history(None, 1000).unwrap().len(), 200);
        let tests: i64 = h
            .conn
            .query_row("SELECT count(*) FROM tests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tests, 400);
        let ok: String = h.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
    }
}
