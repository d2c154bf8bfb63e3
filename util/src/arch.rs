//! [`Arch`]: the one architecture type every crate passes around (treefiles, images, VMs, the CLI).

crate::word_enum! {
    /// An architecture fedostree composes for and boots. Spelled like `uname -m`, RPM and the treefiles.
    #[derive(PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
    pub enum Arch, "architecture" {
        #[serde(rename = "x86_64")]
        X86_64 = "x86_64",
        #[serde(rename = "aarch64")]
        Aarch64 = "aarch64",
    }
}

impl Arch {
    /// The architecture this binary runs on, if fedostree supports it.
    pub fn host() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }

    /// Debian's name for it (the dev repository converts Debian binaries).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The serial device the guest kernel logs to (`console=`).
    pub fn console_tty(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }
}

impl AsRef<str> for Arch {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// An architecture is a path component of images, runs and repositories (`images/<tree>/<arch>`).
impl AsRef<std::path::Path> for Arch {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(self.as_str())
    }
}

impl PartialEq<str> for Arch {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Arch {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_spelling() {
        for a in Arch::ALL {
            assert_eq!(a.as_str().parse::<Arch>(), Ok(*a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        let e = "ppc64le".parse::<Arch>().unwrap_err();
        assert!(e.contains("ppc64le"), "{e}");
    }
}
