//! The GPG key that signs the public repository's commits and summary (Debian's libostree 2022.7 has
//! gpgme but no ed25519 signing backend). Either the caller's (`--gpg-key ID`, `--gpg-homedir DIR`)
//! or the project's own, generated once, non-interactively, into `$STATE/keys/gnupg`.
//!
//! gpg-agent's socket lives in the home directory unless `/run/user/$UID` exists, and a Unix socket
//! path is limited to 107 bytes: every use goes through a short link in the system temp dir, and the
//! agent it started is stopped afterwards.

use anyhow::{bail, Context, Result};
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::state::StateDir;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct SigningSpec {
    /// A key id or fingerprint in `homedir` (`--gpg-key`).
    pub key_id: Option<String>,
    /// The GnuPG home holding it (`--gpg-homedir`; GnuPG's default without it).
    pub homedir: Option<PathBuf>,
}

/// A key ready to sign with.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub key_id: String,
    homedir: Option<PathBuf>,
}

/// `$STATE/keys/gnupg`: the project's generated key.
fn project_home(state: &StateDir) -> PathBuf {
    state.root().join("keys/gnupg")
}

impl SigningKey {
    /// The key `spec` names, or the project's (generated on first use).
    pub fn resolve(state: &StateDir, spec: &SigningSpec) -> Result<SigningKey> {
        match &spec.key_id {
            Some(id) => {
                let key = SigningKey {
                    key_id: id.clone(),
                    homedir: spec.homedir.clone(),
                };
                // A key that cannot sign is the input's fault: say so before anything is published.
                key.with_home(|home| {
                    let mut c = gpg(home);
                    c.args(["--list-secret-keys", "--with-colons", id]);
                    c.run_get_string()
                        .map(drop)
                        .map_err(|e| fedostree_util::InputError::new(format!("--gpg-key {id}: no secret key: {e:#}")))
                })?;
                Ok(key)
            }
            None if spec.homedir.is_some() => {
                fedostree_util::bail_input!("--gpg-homedir needs --gpg-key to say which key signs")
            }
            None => project_key(state),
        }
    }

    /// Run `f` with a GnuPG home path short enough for gpg-agent's socket; the agent is stopped after.
    pub fn with_home<T>(&self, f: impl FnOnce(Option<&Path>) -> Result<T>) -> Result<T> {
        match &self.homedir {
            None => f(None),
            Some(home) => with_short_home(home, |h| f(Some(h))),
        }
    }

    /// Write the public key (binary OpenPGP, as `ostree remote add --set=gpgkeypath=` reads it).
    pub fn export_public(&self, to: &Path) -> Result<()> {
        let key = self.with_home(|home| {
            let mut c = gpg(home);
            c.args(["--export", &self.key_id]);
            let out = c.output().context("running gpg --export")?;
            if !out.status.success() || out.stdout.is_empty() {
                bail!(
                    "gpg --export {} gave no key: {}",
                    self.key_id,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(out.stdout)
        })?;
        if fs_err::read(to).ok().as_deref() != Some(&key[..]) {
            fedostree_compose::safepath::replace_file(to, key)?;
        }
        Ok(())
    }

    /// The GnuPG home to hand libostree (None: GnuPG's default).
    pub fn homedir(&self) -> Option<&Path> {
        self.homedir.as_deref()
    }
}

fn gpg(home: Option<&Path>) -> Command {
    let mut c = Command::new("gpg");
    c.args(["--batch", "--no-tty", "--quiet"]);
    if let Some(h) = home {
        c.arg("--homedir").arg(h);
    }
    c
}

/// Link `home` from a short path, run `f` with it, stop the agent that may have started, unlink.
fn with_short_home<T>(home: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let home = home
        .canonicalize()
        .with_context(|| format!("GnuPG home {}", home.display()))?;
    let link_dir = tempfile::Builder::new().prefix("fgpg").tempdir_in("/tmp")?;
    let short = link_dir.path().join("h");
    std::os::unix::fs::symlink(&home, &short)?;
    let result = f(&short);
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&short)
        .args(["--kill", "gpg-agent"])
        .status();
    result
}

/// The project's key, generated into `$STATE/keys/gnupg` the first time (in a scratch home renamed
/// into place, so a killed generation leaves nothing half-made).
fn project_key(state: &StateDir) -> Result<SigningKey> {
    let home = project_home(state);
    let keys = home.parent().expect("keys dir").to_path_buf();
    fs_err::create_dir_all(&keys)?;
    let _lock = fedostree_util::lock::FileLock::acquire(&keys.join(".lock"))?;
    if !home.join("key-id").is_file() {
        let scratch = tempfile::Builder::new().prefix(".gnupg-").tempdir_in(&keys)?;
        std::fs::set_permissions(scratch.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let id = with_short_home(scratch.path(), |h| {
            let params = "%no-protection\n%transient-key\nKey-Type: EDDSA\nKey-Curve: ed25519\n\
                          Key-Usage: sign\nName-Real: fedostree public repository\n\
                          Name-Email: fedostree@localhost\nExpire-Date: 0\n%commit\n";
            let mut c = gpg(Some(h));
            c.arg("--generate-key"); // parameters on stdin
            c.run_with_input(params.as_bytes())
                .context("generating the public repository's GPG key")?;
            let mut c = gpg(Some(h));
            c.args(["--list-secret-keys", "--with-colons"]);
            let listing = c.run_get_string()?;
            listing
                .lines()
                .find_map(|l| l.strip_prefix("fpr:").map(|r| r.trim_matches(':').to_owned()))
                .context("gpg listed no fingerprint for the key it generated")
        })?;
        fs_err::write(scratch.path().join("key-id"), format!("{id}\n"))?;
        let _ = fs_err::remove_dir_all(&home);
        fs_err::rename(scratch.keep(), &home)?;
    }
    let key_id = fs_err::read_to_string(home.join("key-id"))?.trim().to_owned();
    Ok(SigningKey {
        key_id,
        homedir: Some(home),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_key_is_made_once_and_exported() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::new(
            d.path()
                .join("a-long-state-directory-name-to-push-the-agent-socket-past-its-limit"),
        );
        let key = SigningKey::resolve(&state, &SigningSpec::default()).unwrap();
        assert_eq!(key.key_id.len(), 40, "a v4 fingerprint: {}", key.key_id);
        let again = SigningKey::resolve(&state, &SigningSpec::default()).unwrap();
        assert_eq!(again.key_id, key.key_id, "generated once");
        let out = d.path().join("fedostree.gpg");
        key.export_public(&out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.len() > 50 && bytes[0] & 0x80 != 0, "binary OpenPGP");
        // The caller's key: one that does not exist is refused by name.
        let spec = SigningSpec {
            key_id: Some("0000000000000000DEADBEEF".into()),
            homedir: key.homedir().map(Path::to_path_buf),
        };
        let e = SigningKey::resolve(&state, &spec).unwrap_err().to_string();
        assert!(e.contains("--gpg-key 0000000000000000DEADBEEF: no secret key"), "{e}");
    }
}
