//! [`Checksum`]: an OSTree commit checksum, so a commit never travels as a bare `&str` and its short
//! form cannot panic.

use std::fmt;

/// A commit checksum as ostree prints it (64 lowercase hex digits for SHA-256). Not validated on
/// construction: a checksum read back from history or a test fixture may be short, and only `short()`
/// cares about length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Checksum(String);

impl Checksum {
    /// How many leading digits name a commit in human output (as `ostree log` users abbreviate).
    pub const SHORT: usize = 12;

    pub fn new(s: impl Into<String>) -> Checksum {
        Checksum(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first [`Self::SHORT`] characters, or all of a shorter string.
    pub fn short(&self) -> &str {
        short(&self.0)
    }
}

/// The short form of a checksum held as a string (rows read back from SQLite, JSON): never panics.
pub fn short(s: &str) -> &str {
    match s.char_indices().nth(Checksum::SHORT) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Checksum {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Checksum {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Checksum {
    fn from(s: String) -> Checksum {
        Checksum(s)
    }
}

impl From<&str> for Checksum {
    fn from(s: &str) -> Checksum {
        Checksum(s.to_string())
    }
}

impl From<Checksum> for String {
    fn from(c: Checksum) -> String {
        c.0
    }
}

impl PartialEq<str> for Checksum {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Checksum {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Checksum {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_never_panics() {
        let full = Checksum::new("0123456789abcdef0123");
        assert_eq!(full.short(), "0123456789ab");
        assert_eq!(Checksum::new("c0ffee").short(), "c0ffee");
        assert_eq!(Checksum::new("").short(), "");
        assert_eq!(short("ééééééééééééé"), "éééééééééééé");
    }
}
