//! [`write`]: the one way fedostree replaces a file. A new file with a random name beside it (created
//! exclusively, so a planted symlink is never followed) is written, fsynced and renamed over the old
//! one: a reader sees the old content or the new, never half, and a crash leaves at most a stray
//! `.fedostree-*` file.

use anyhow::{Context, Result};
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replace `path` with `data` (mode 0644).
pub fn write(path: &Path, data: impl AsRef<[u8]>) -> Result<()> {
    write_with(path, 0o644, |f| std::io::Write::write_all(f, data.as_ref()))
}

/// Replace `path` with what `fill` writes into the new file, which gets `mode` (not the 0600 of a
/// temporary file).
pub fn write_with(path: &Path, mode: u32, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<()> {
    replace(path, mode, true, fill)
}

/// [`write_with`] without the fsync: for files that are rebuilt rather than recovered after a crash
/// (a compose's tree, which is committed and then deleted; RPMs the dev repository rebuilds), where
/// an fsync per file only costs time.
pub fn replace_with(path: &Path, mode: u32, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<()> {
    replace(path, mode, false, fill)
}

fn replace(path: &Path, mode: u32, durable: bool, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let ctx = || format!("writing {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".fedostree-")
        .tempfile_in(dir)
        .with_context(ctx)?;
    fill(tmp.as_file_mut()).with_context(ctx)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(ctx)?;
    if durable {
        tmp.as_file().sync_all().with_context(ctx)?;
    }
    tmp.persist(path).map_err(|e| e.error).with_context(ctx)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_with_the_mode_and_leaves_nothing_beside() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write(&p, "one").unwrap();
        write(&p, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        write_with(&p, 0o600, |f| std::io::Write::write_all(f, b"three")).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        let e = write(&d.path().join("no/such/dir/f"), "x").unwrap_err();
        assert!(format!("{e:#}").contains("no/such/dir/f"), "{e:#}");
    }
}
