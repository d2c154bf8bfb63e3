-- fedostree ci history, version 1. A migration is applied once, in one transaction, and never edited
-- after it shipped: a change is a new file (history.rs lists them in order; PRAGMA user_version is
-- the number of the last one applied).

-- One `fedostree ci run` (or one pass of `ci watch`).
CREATE TABLE runs (
    id TEXT PRIMARY KEY,                 -- the run id, also the name of $STATE/runs/<id>
    started_at TEXT NOT NULL,            -- RFC 3339, UTC
    finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'interrupted')),
    pid INTEGER NOT NULL,                -- a 'running' run whose pid is gone was interrupted
    selection TEXT NOT NULL              -- what was asked: trees glob and arches
);

-- One tree on one architecture tested in a run.
CREATE TABLE results (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tree TEXT NOT NULL,
    arch TEXT NOT NULL,
    ref TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    parent_commit TEXT,                  -- the commit this tree/arch was last tested at
    version TEXT,
    verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'flaky', 'fail', 'error')),
    published INTEGER NOT NULL,
    infra_error TEXT,
    compose_s REAL,
    image_s REAL,
    boot_s REAL,
    publish_s REAL,
    artifacts TEXT NOT NULL,             -- the run directory of this tree/arch
    package_diff TEXT,                   -- JSON: packages added, removed, up- and downgraded since parent_commit
    recorded_at TEXT NOT NULL
);
CREATE INDEX results_by_tree ON results (tree, arch, id);
CREATE INDEX results_by_run ON results (run_id);

-- Every attempt of every test: a rerun in a fresh VM is attempt 2, 3, ...
CREATE TABLE tests (
    result_id INTEGER NOT NULL REFERENCES results(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('pass', 'fail', 'skip', 'timeout', 'error')),
    duration_s REAL NOT NULL,
    attempt INTEGER NOT NULL,
    flaky INTEGER NOT NULL,              -- passed on this attempt after failing on an earlier one
    denied TEXT                          -- the denylist's reason when this failure does not block
);
CREATE INDEX tests_by_result ON tests (result_id);

-- Trees a run found up to date (nothing composed, nothing booted).
CREATE TABLE unchanged (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tree TEXT NOT NULL,
    arch TEXT NOT NULL,
    commit_id TEXT NOT NULL
);
