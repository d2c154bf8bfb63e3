//! What each command does with its parsed arguments: it builds the library's options, calls the
//! library, and renders the result ([`crate::render`]). Exit codes come from the library's verdicts.

use crate::args::{self, arches_or_host, BootArg, Cli, Command, ComposeArgs, DbCommand, ImageArgs, TestArgs};
use crate::render::{one_or_array, say};
use anyhow::Result;
use fedostree_compose::loaded_tree::LoadedTree;
use fedostree_compose::{compose_tree, dbdiff};
use fedostree_devrepo as devrepo;
use fedostree_harness::qemu::BootPath;
use fedostree_pipeline::run::ScratchOptions;
use fedostree_pipeline::run::{self as pipeline_run, Candidate, CommitSource, TestOptions};
use fedostree_util::cancel::Cancel;
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::{Arch, Exit, InputError};
use std::path::Path;

/// Run one parsed command line; `cancel` is what SIGINT/SIGTERM trip.
pub fn run(cli: Cli, cancel: &Cancel) -> Result<Exit> {
    let state = StateDir::new(&cli.state_dir);
    let sources = || Sources::discover(cli.trees_dir.clone()).map_err(InputError::new);
    match cli.command {
        Command::Devrepo { arch, bump, debian } => cmd_devrepo(&state, sources()?, arches_or_host(arch)?, bump, debian),
        Command::Compose(a) => cmd_compose(&state, sources, a),
        Command::Test(a) => {
            let json = a.json;
            cmd_test(&state, &test_options(a, sources()?, cancel)?, json)
        }
        Command::Image(a) => cmd_image(&state, &sources()?, a),
        Command::Serve {
            addr,
            candidates,
            max_connections,
            client_timeout,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let dir = if candidates { state.repo() } else { state.public() };
            let limits = fedostree_pipeline::serve::Limits {
                max_connections: max_connections.max(1),
                client_timeout,
            };
            rt.block_on(fedostree_pipeline::serve::serve(dir, addr, limits))?;
            Ok(Exit::Ok)
        }
        Command::Ci { command } => crate::ci_cmd::run(&state, sources, command, cancel),
        Command::Bisect(a) => cmd_bisect(&state, sources()?, a, cancel),
        Command::Db {
            command: DbCommand::Diff { json, from, to },
        } => cmd_db_diff(&state, &from, &to, json),
    }
}

/// `fedostree test`'s options, its flags checked against each other.
fn test_options(a: TestArgs, sources: Sources, cancel: &Cancel) -> Result<TestOptions> {
    let scratch = !a.add_rpm.is_empty() || !a.add_repo.is_empty();
    let arches = arches_or_host(a.arch)?;
    if a.from_ref.is_some() && a.from.is_none() && !scratch {
        fedostree_util::bail_input!("--ref goes with --from, --add-rpm or --add-repo");
    }
    if a.publish_to.is_some() && !scratch {
        fedostree_util::bail_input!("--publish-to publishes a scratch build: give --add-rpm or --add-repo");
    }
    if a.from_ref.is_some() && arches.len() > 1 {
        fedostree_util::bail_input!("--ref names one architecture's ref: give one --arch");
    }
    let no_publish = a.publishing.no_publish;
    let source = match (a.from, a.scenario, scratch) {
        (Some(url), _, _) => CommitSource::Pulled(Candidate { url, ref_: a.from_ref }),
        (None, Some(s), _) => CommitSource::Scenario(s),
        (None, None, true) => CommitSource::Scratch(ScratchOptions {
            rpms: a.add_rpm,
            repos: a.add_repo,
            ref_: a.from_ref,
            publish_to: a.publish_to.filter(|_| !no_publish),
        }),
        (None, None, false) => CommitSource::Compose,
    };
    Ok(TestOptions {
        tree: a.tree,
        sources,
        arches,
        accel: a.vm.accel(),
        backend: a.vm.backend(),
        // A worker reports; publishing is the compose server's, which holds the key. A scratch build
        // is published only where --publish-to says.
        publish: !no_publish && matches!(source, CommitSource::Compose | CommitSource::Scenario(_)),
        vm_timeout: a.vm.vm_timeout(),
        run_id: pipeline_run::new_run_id(),
        signing: a.publishing.signing(),
        retain: a.publishing.retain as usize,
        scratch_delta: !a.publishing.no_scratch_delta,
        upgrade: !a.publishing.no_upgrade,
        boot: match a.boot {
            BootArg::Direct => BootPath::DirectKernel,
            BootArg::Firmware => BootPath::Firmware,
        },
        source,
        cancel: cancel.clone(),
    })
}

fn cmd_devrepo(state: &StateDir, sources: Sources, arches: Vec<Arch>, bump: Vec<String>, debian: bool) -> Result<Exit> {
    if debian {
        for &a in &arches {
            devrepo::debian_repo::build(state, a, &sources.checkout)?;
        }
    }
    let opts = devrepo::DevRepoOptions {
        arches,
        bump,
        source_dir: sources.checkout,
    };
    devrepo::build(state, &opts)?;
    Ok(Exit::Ok)
}

/// The merged treefile of `tree` for each arch, as JSON: one object, or an array for several arches.
fn cmd_print_treefile(tree: &str, trees: &Path, arches: &[Arch]) -> Result<Exit> {
    let loaded = LoadedTree::load(trees, tree, arches)?;
    let mut merged = Vec::new();
    for &arch in arches {
        merged.push(serde_json::to_value(loaded.treefile(arch)?)?);
    }
    say(one_or_array(&merged)?)?;
    Ok(Exit::Ok)
}

fn cmd_compose(state: &StateDir, sources: impl Fn() -> Result<Sources>, a: ComposeArgs) -> Result<Exit> {
    let arches = arches_or_host(a.arch)?;
    if a.print_only {
        return cmd_print_treefile(&a.tree, &sources()?.trees, &arches);
    }
    if a.write_lockfile_to.is_some() && arches.len() > 1 {
        fedostree_util::bail_input!("--ex-write-lockfile-to writes one architecture's lockfile: give one --arch");
    }
    let sources = sources()?;
    let loaded = LoadedTree::load(&sources.trees, &a.tree, &arches)?;
    let mut results = Vec::new();
    for arch in arches {
        let o = compose_tree::ComposeOptions {
            dry_run: a.dry_run,
            force: a.force,
            lockfiles: a.lockfiles.clone(),
            lockfile_strict: a.lockfile_strict,
            write_lockfile_to: a.write_lockfile_to.clone(),
            ..compose_tree::ComposeOptions::new(a.tree.clone(), arch)
        };
        let tf = loaded.treefile(arch)?;
        devrepo::ensure_for_tree(state, &sources, tf)?;
        let r = compose_tree::compose_treefile(state, tf, &o)?;
        crate::render::compose_result(&r, o.dry_run)?;
        results.push(r);
    }
    if let Some(path) = a.write_compose_json {
        fs_err::write(&path, one_or_array(&results)? + "\n")?;
    }
    Ok(Exit::Ok)
}

fn cmd_image(state: &StateDir, sources: &Sources, a: ImageArgs) -> Result<Exit> {
    let arches = arches_or_host(a.arch)?;
    let loaded = LoadedTree::load(&sources.trees, &a.tree, &arches)?;
    for arch in arches {
        let backend = args::backend(a.backend);
        let (_, image, _) = fedostree_pipeline::stages::prepare(state, sources, &loaded, arch, backend)?;
        let report = serde_json::json!({
            "arch": arch,
            "disk": image.disk,
            "commit": image.commit,
            "created": image.created,
            "updated": image.updated,
            "backend": image.backend.to_string(),
            "boot-checksum": image.boot.boot_checksum,
            "stats": image.stats,
        });
        say(serde_json::to_string_pretty(&report)?)?;
    }
    Ok(Exit::Ok)
}

fn cmd_db_diff(state: &StateDir, from: &str, to: &str, json: bool) -> Result<Exit> {
    let repo = fedostree_compose::commit::open_or_create_repo(&state.repo())?;
    let d = dbdiff::diff(&repo, from, to)?;
    if json {
        say(serde_json::to_string_pretty(&d)?)?;
    } else {
        say(d.render().trim_end_matches('\n'))?;
    }
    Ok(Exit::Ok)
}

fn cmd_bisect(state: &StateDir, sources: Sources, a: args::BisectArgs, cancel: &Cancel) -> Result<Exit> {
    use fedostree_harness::report::Reporter;
    let arch = match arches_or_host(a.arch)?.as_slice() {
        [one] => *one,
        _ => fedostree_util::bail_input!("bisect runs on one architecture: give one --arch"),
    };
    let opts = fedostree_pipeline::bisect::BisectOptions {
        tree: a.tree,
        arch,
        sources,
        good: a.good,
        bad: a.bad,
        tests: a.tests,
        script: a.script,
        repo_url: a.repo,
        accel: a.vm.accel(),
        backend: a.vm.backend(),
        vm_timeout: a.vm.vm_timeout(),
        run_id: pipeline_run::new_run_id(),
        cancel: cancel.clone(),
    };
    // The steps' own test lines would drown the bisection's (they are in each step's artifacts): no
    // reporter, only the step lines.
    let mut none: Vec<Box<dyn Reporter + Send>> = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = rt.block_on(fedostree_pipeline::bisect::bisect(state, &opts, &mut none))?;
    if a.json {
        say(serde_json::to_string_pretty(&report)?)?;
    } else {
        say(report.render().trim_end())?;
    }
    Ok(match report.first_bad {
        Some(_) => Exit::Ok,
        None => Exit::Infra,
    })
}

fn cmd_test(state: &StateDir, opts: &TestOptions, json: bool) -> Result<Exit> {
    use fedostree_harness::report::{JsonReporter, Reporter, TerminalReporter};
    let mut reporter: Box<dyn Reporter + Send> = if json {
        // The stages' events join the guest's on stdout: one JSON stream for the whole run.
        fedostree_util::events::set_sink(std::sync::Arc::new(fedostree_harness::report::JsonStageLines));
        Box::new(JsonReporter::stdout())
    } else {
        Box::new(TerminalReporter::stderr())
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let runs = rt.block_on(fedostree_pipeline::test_tree(state, opts, reporter.as_mut()))?;
    reporter.finish();
    for r in &runs {
        crate::render::test_run(r);
    }
    eprintln!("run directory: {}", state.runs().join(&opts.run_id).display());
    let suites: Vec<_> = runs.iter().map(|r| r.suite.clone()).collect();
    Ok(pipeline_run::verdict(&suites))
}
