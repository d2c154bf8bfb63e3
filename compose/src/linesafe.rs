//! Values from packages (paths, symlink targets, names) written into line-oriented files: tmpfiles.d
//! snippets, the package list. A package must never be able to add a line or a field: a newline in a
//! packaged path would otherwise inject a tmpfiles directive that a systemd tree runs as root.

use anyhow::Result;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether `s` can stand as one whitespace-separated field of a line as it is.
pub fn is_plain_field(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A tmpfiles.d path field: systemd unquotes and C-unescapes fields and expands `%` specifiers, so
/// whitespace, control bytes, quotes, backslashes and non-ASCII bytes become `\xNN` and `%` becomes `%%`.
pub fn tmpfiles_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'%' => out.push_str("%%"),
            b'\\' | b'"' | b'\'' => out.push_str(&format!("\\x{b:02x}")),
            0x21..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// A tmpfiles.d `L` argument (the symlink target, the rest of the line): specifiers are expanded but
/// escapes are not reliably undone across systemd versions, so anything that could end or reshape
/// the line is refused rather than escaped.
pub fn tmpfiles_argument(target: &Path, link: &Path) -> Result<String> {
    let Some(t) = target.to_str() else {
        fedostree_util::bail_input!("{}: symlink target is not UTF-8", link.display());
    };
    if t.is_empty() || t.chars().any(|c| c.is_control() || c == '\\') || t.trim() != t {
        fedostree_util::bail_input!(
            "{}: symlink target {t:?} has control characters, backslashes or surrounding whitespace; refusing \
             to write it into a tmpfiles.d line",
            link.display()
        );
    }
    Ok(t.replace('%', "%%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfiles_fields_cannot_add_lines_or_fields() {
        let evil = Path::new("/var/lib/x\nr! /etc/shadow");
        let f = tmpfiles_path(evil);
        assert!(!f.contains('\n') && !f.contains(' '), "{f}");
        assert_eq!(f, "/var/lib/x\\x0ar!\\x20/etc/shadow");
        assert_eq!(tmpfiles_path(Path::new("/var/a%b\\c")), "/var/a%%b\\x5cc");
        assert_eq!(tmpfiles_path(Path::new("/var/lib/ok")), "/var/lib/ok");
        let link = Path::new("/var/l");
        assert_eq!(
            tmpfiles_argument(Path::new("../run/x y%n"), link).unwrap(),
            "../run/x y%%n"
        );
        for bad in ["a\nL /etc/x - - - - /", "a\\x0a", " a", "a\t", ""] {
            let e = tmpfiles_argument(Path::new(bad), link).unwrap_err().to_string();
            assert!(e.contains("/var/l"), "{e}");
        }
    }

    #[test]
    fn plain_fields() {
        assert!(is_plain_field("/usr/bin/sh"));
        assert!(!is_plain_field("/usr/share/a b"));
        assert!(!is_plain_field("/usr/x\n/etc/y"));
        assert!(!is_plain_field(""));
    }
}
