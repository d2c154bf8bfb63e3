//! fedostree-ci: the CI service over the pipeline (`fedostree-pipeline`).
//!
//! [`ci_run`] is `fedostree ci run`: a pass over every tree that tests only what changed, with reruns,
//! a [`denylist`], the [`history`] in SQLite and the [`status_page`]; [`resultsdb`] exports results and
//! [`prune`] keeps the public repository and history bounded.

pub mod ci_run;
pub mod denylist;
pub mod history;
pub mod prune;
pub mod resultsdb;
pub mod status_page;
pub mod verdict;
