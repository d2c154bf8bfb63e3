//! fedostree-ci: the pipeline that takes a tree from RPMs to a published, VM-proven commit.
//!
//! [`pipeline`] runs compose → offline image update → boot on a throwaway overlay → installed-tests →
//! gate; [`publish`] moves the public ref only for a passing commit.

pub mod lifecycle;
pub mod pipeline;
pub mod publish;
pub mod serve;
pub mod signing;

pub use pipeline::{test_tree, TestOptions, TreeArchRun};
