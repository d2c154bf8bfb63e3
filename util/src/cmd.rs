//! Running external commands: one extension trait so every call logs its command line and puts the
//! tail of stderr into the error (bootc's `CommandRunExt`). Shared by every fedostree crate.

use anyhow::{anyhow, Context, Result};
use std::process::{Command, Output, Stdio};

/// How many bytes of stderr an error message carries.
const STDERR_TAIL: usize = 2000;

pub trait CommandRunExt {
    /// Run to completion; a non-zero exit is an error that quotes the command and its stderr tail.
    fn run(&mut self) -> Result<()>;
    /// Run and return stdout as a string (stderr goes into the error on failure).
    fn run_get_string(&mut self) -> Result<String>;
    /// Run and parse stdout as JSON.
    fn run_and_parse_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T>;
    /// Run with `input` on stdin (written from its own thread, so a large output cannot deadlock it)
    /// and return stdout.
    fn run_with_input(&mut self, input: &[u8]) -> Result<Vec<u8>>;
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim_end();
    match s.char_indices().rev().nth(STDERR_TAIL) {
        Some((i, _)) => format!("…{}", &s[i..]),
        None => s.to_string(),
    }
}

fn output_checked(cmd: &mut Command) -> Result<Output> {
    output_with(cmd, None)
}

fn output_with(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    use std::io::Write;
    let desc = describe(cmd);
    tracing::debug!(command = %desc, "exec");
    let spawned = || format!("spawning `{desc}`");
    let out = match input {
        None => cmd.stdin(Stdio::null()).output().with_context(spawned)?,
        Some(input) => {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(spawned)?;
            let mut stdin = child.stdin.take().expect("piped");
            std::thread::scope(|s| {
                // A program that exits without reading all of it is judged by its exit status.
                s.spawn(move || stdin.write_all(input));
                child.wait_with_output()
            })
            .with_context(|| format!("running `{desc}`"))?
        }
    };
    if !out.status.success() {
        return Err(anyhow!("`{desc}` failed ({}): {}", out.status, tail(&out.stderr)));
    }
    Ok(out)
}

impl CommandRunExt for Command {
    fn run(&mut self) -> Result<()> {
        output_checked(self).map(|_| ())
    }

    fn run_get_string(&mut self) -> Result<String> {
        let out = output_checked(self)?;
        String::from_utf8(out.stdout).with_context(|| format!("`{}`: stdout is not UTF-8", describe(self)))
    }

    fn run_and_parse_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let out = output_checked(self)?;
        serde_json::from_slice(&out.stdout).with_context(|| format!("`{}`: parsing JSON output", describe(self)))
    }

    fn run_with_input(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        Ok(output_with(self, Some(input))?.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_quotes_command_and_stderr() {
        let err = Command::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn stdout_is_returned() {
        let s = Command::new("echo").arg("hi").run_get_string().unwrap();
        assert_eq!(s, "hi\n");
    }
}
