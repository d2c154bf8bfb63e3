//! fedostree-ci: the pipeline that takes a tree from RPMs to a published, VM-proven commit.
//!
//! [`pipeline`] runs compose → offline image update → boot on a throwaway overlay → installed-tests →
//! gate; [`publish`] moves the public ref only for a passing commit. [`ci_run`] is `fedostree ci`: a
//! pass over every tree that tests only what changed, with reruns, a [`denylist`], the [`history`]
//! in SQLite and the [`status_page`].

pub mod bisect;
pub mod ci_run;
pub mod denylist;
pub mod history;
pub mod lifecycle;
pub mod pipeline;
pub mod prune;
pub mod publish;
pub mod resultsdb;
pub mod scratch;
pub mod serve;
pub mod signing;
pub mod status_page;

pub use pipeline::{test_tree, TestOptions, TreeArchRun};
