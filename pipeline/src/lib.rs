//! fedostree-pipeline: a commit's path to a verdict.
//!
//! [`run`] says what a run is: its options, the [`run::CommitSource`] its commit comes from, what it
//! returns, and the two decisions made from suites ([`run::verdict`], [`run::gate`]). [`stages`] are the
//! blocking steps before a boot (compose with its dev repository, the offline image update, a pull from
//! a compose server) and the publish after it; [`guest`] boots one VM on a throwaway overlay.
//! [`test_tree`] strings them together for `fedostree test`. The other sources of commits live beside
//! it: [`scratch`] (the packager fast path), [`bisect`] and the multi-boot [`lifecycle`] scenario.
//! [`publish`] signs and moves public refs ([`signing`] holds the key), [`serve`] serves repositories.
//!
//! Dependencies between these files point one way: `run` ← `stages`, `guest` ← `scratch`, `lifecycle`,
//! `bisect` ← `test_tree`; `publish` and `serve` take no part in choosing commits.

pub mod bisect;
pub mod guest;
pub mod lifecycle;
pub mod publish;
pub mod run;
pub mod scratch;
pub mod serve;
pub mod signing;
pub mod stages;
pub mod test_tree;
pub mod upgrade;

pub use run::{CommitSource, TestOptions, TreeArchRun};
pub use test_tree::test_tree;
