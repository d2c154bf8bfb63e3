//! The words the CI history stores, as enums: a tree/arch's [`Verdict`], a run's [`RunStatus`] and a
//! test attempt's [`TestOutcome`]. Each is written to SQLite as its lowercase name and read back
//! strictly: an unknown stored value is an error, never a default.

use fedostree_harness::results::Status;

/// A [`fedostree_util::word_enum!`] that serializes as its word and lives in SQLite through
/// `ToSql`/`FromSql`.
macro_rules! stored_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        fedostree_util::word_enum! {
            $(#[$m])*
            pub enum $name, $what { $($(#[$vm])* $variant = $text),+ }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?.parse().map_err(|e: String| rusqlite::types::FromSqlError::Other(e.into()))
            }
        }
    };
}

stored_enum! {
    /// What a pass concluded about one tree/arch.
    Verdict, "verdict" {
        /// Every blocking test passed on its first attempt.
        Pass = "pass",
        /// Every blocking test passed, some only on a rerun.
        Flaky = "flaky",
        /// A blocking test failed on every attempt.
        Fail = "fail",
        /// The infrastructure broke (compose, image, VM): nothing can be said about the tree.
        Error = "error",
    }
}

stored_enum! {
    /// Where a `ci run` is.
    RunStatus, "run status" {
        Running = "running",
        Finished = "finished",
        /// A signal ended it, or its process is gone.
        Interrupted = "interrupted",
    }
}

stored_enum! {
    /// One attempt of one test, as the harness judged it.
    TestOutcome, "test outcome" {
        Pass = "pass",
        Fail = "fail",
        Skip = "skip",
        Timeout = "timeout",
        Error = "error",
    }
}

impl From<Status> for TestOutcome {
    fn from(s: Status) -> TestOutcome {
        match s {
            Status::Pass => TestOutcome::Pass,
            Status::Fail => TestOutcome::Fail,
            Status::Skip => TestOutcome::Skip,
            Status::Timeout => TestOutcome::Timeout,
            Status::Error => TestOutcome::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn stored_values_round_trip_and_unknown_ones_are_errors() {
        let db = Connection::open_in_memory().unwrap();
        db.execute("CREATE TABLE t (v TEXT)", []).unwrap();
        for v in Verdict::ALL {
            db.execute("INSERT INTO t VALUES (?1)", [v]).unwrap();
        }
        let back: Vec<Verdict> = db
            .prepare("SELECT v FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(back, Verdict::ALL);
        // A typo in the database is an error, not FAILED.
        db.execute("INSERT INTO t VALUES ('pased')", []).unwrap();
        let e = db
            .prepare("SELECT v FROM t")
            .unwrap()
            .query_map([], |r| r.get::<_, Verdict>(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap_err();
        assert!(e.to_string().contains("unknown verdict \"pased\""), "{e}");
        assert_eq!("interrupted".parse(), Ok(RunStatus::Interrupted));
        assert!("done".parse::<RunStatus>().is_err());
        for s in [Status::Pass, Status::Fail, Status::Skip, Status::Timeout, Status::Error] {
            assert_eq!(TestOutcome::from(s).as_str(), s.label().to_lowercase());
        }
    }
}
