//! File capabilities: the text an RPM header carries (`RPMTAG_FILECAPS`, written by `%caps(...)` in
//! a spec file, in `cap_from_text(3)` form) turned into the `security.capability` extended attribute
//! that the commit carries, as rpm does when it installs the file and rpm-ostree when it imports it.

use std::fmt;

/// Capability names in kernel order (the bit number is the index).
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

const ALL: u64 = (1u64 << NAMES.len()) - 1;

/// The extended attribute's name.
pub const XATTR: &str = "security.capability";

/// A file's capability sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileCaps {
    pub permitted: u64,
    pub inheritable: u64,
    pub effective: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn cap_set(list: &str, op: char) -> Result<u64, Invalid> {
    if list.is_empty() || list.eq_ignore_ascii_case("all") {
        // `=ep` means every capability; `+ep` with no names means nothing to libcap either.
        return Ok(if op == '=' || !list.is_empty() { ALL } else { 0 });
    }
    let mut set = 0u64;
    for name in list.split(',') {
        let lower = name.to_ascii_lowercase();
        let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
        let bit = NAMES
            .iter()
            .position(|n| *n == bare)
            .ok_or_else(|| Invalid(format!("unknown capability `{name}`")))?;
        set |= 1u64 << bit;
    }
    Ok(set)
}

impl FileCaps {
    /// Parse `cap_from_text(3)` text: whitespace-separated clauses `names` then one or more
    /// `op flags` (`=` clears the names in every set, then raises `flags`; `+` raises; `-` lowers).
    pub fn parse(text: &str) -> Result<FileCaps, Invalid> {
        let mut caps = FileCaps::default();
        for clause in text.split_whitespace() {
            let start = clause
                .find(['=', '+', '-'])
                .ok_or_else(|| Invalid(format!("`{clause}`: no `=`, `+` or `-`")))?;
            let set = cap_set(&clause[..start], clause[start..].chars().next().unwrap_or('='))?;
            let mut rest = &clause[start..];
            while let Some(op) = rest.chars().next() {
                let flags_end = rest[1..].find(['=', '+', '-']).map_or(rest.len(), |i| i + 1);
                let flags = &rest[1..flags_end];
                if op == '=' {
                    caps.permitted &= !set;
                    caps.inheritable &= !set;
                    caps.effective &= !set;
                } else if flags.is_empty() {
                    return Err(Invalid(format!("`{clause}`: `{op}` without flags")));
                }
                for flag in flags.chars() {
                    let target = match flag {
                        'p' => &mut caps.permitted,
                        'i' => &mut caps.inheritable,
                        'e' => &mut caps.effective,
                        other => return Err(Invalid(format!("`{clause}`: unknown flag `{other}`"))),
                    };
                    if op == '-' {
                        *target &= !set;
                    } else {
                        *target |= set;
                    }
                }
                rest = &rest[flags_end..];
            }
        }
        Ok(caps)
    }

    /// The `security.capability` value (`struct vfs_cap_data`, revision 2, little-endian). A file
    /// has one effective bit: it raises all of the permitted and inheritable set or none of it, and
    /// text that asks for part of it is refused, as `cap_set_file(3)` refuses it.
    pub fn to_xattr(self) -> Result<Vec<u8>, Invalid> {
        let raised = self.permitted | self.inheritable;
        if self.effective != 0 && self.effective != raised {
            return Err(Invalid(
                "the effective flag must cover all of the permitted and inheritable capabilities or none".to_owned(),
            ));
        }
        const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
        const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
        let magic = VFS_CAP_REVISION_2
            | if self.effective != 0 {
                VFS_CAP_FLAGS_EFFECTIVE
            } else {
                0
            };
        let mut v = Vec::with_capacity(20);
        for word in [
            magic,
            self.permitted as u32,
            self.inheritable as u32,
            (self.permitted >> 32) as u32,
            (self.inheritable >> 32) as u32,
        ] {
            v.extend_from_slice(&word.to_le_bytes());
        }
        Ok(v)
    }
}

/// The attribute value for header text, or why the text is refused.
pub fn xattr_for(text: &str) -> Result<Vec<u8>, Invalid> {
    FileCaps::parse(text)?.to_xattr()
}

/// The extended attributes the commit gives packaged files, by committed path: a package's `/etc`
/// is committed as `/usr/etc`. A later package's file replaces an earlier one's, as on import.
pub fn commit_xattrs<'a>(
    packages_caps: impl Iterator<Item = &'a [(std::path::PathBuf, Vec<u8>)]>,
) -> crate::write_tree::Xattrs {
    let mut map = crate::write_tree::Xattrs::new();
    for caps in packages_caps {
        for (path, value) in caps {
            let committed = crate::commit_paths::commit_path(path);
            map.insert(
                committed.trim_start_matches('/').into(),
                vec![(XATTR.to_owned(), value.clone())],
            );
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_RAW: u64 = 1 << 13;
    const NET_ADMIN: u64 = 1 << 12;

    #[test]
    fn text_forms_rpm_writes() {
        let c = FileCaps::parse("cap_net_raw=ep").unwrap();
        assert_eq!((c.permitted, c.inheritable, c.effective), (NET_RAW, 0, NET_RAW));
        let c = FileCaps::parse("cap_net_admin,cap_net_raw+ep").unwrap();
        assert_eq!(c.permitted, NET_ADMIN | NET_RAW);
        let c = FileCaps::parse("CAP_NET_RAW=pie").unwrap();
        assert_eq!(c.inheritable, NET_RAW);
        let c = FileCaps::parse("=ep cap_net_raw-e").unwrap();
        assert_eq!(c.permitted, ALL);
        assert_eq!(c.effective, ALL & !NET_RAW);
        let c = FileCaps::parse("cap_net_raw=p cap_net_raw=").unwrap();
        assert_eq!(c, FileCaps::default());
        let c = FileCaps::parse("cap_setuid,cap_setgid+p-e").unwrap();
        assert_eq!((c.permitted, c.effective), ((1 << 7) | (1 << 6), 0));
    }

    #[test]
    fn the_xattr_is_vfs_cap_data_revision_2() {
        // What `setcap cap_net_raw=ep` writes (getfattr -e hex: 0x0100000200200000…).
        assert_eq!(
            xattr_for("cap_net_raw=ep").unwrap(),
            [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // A capability above bit 31 lands in the second word.
        let v = xattr_for("cap_checkpoint_restore=p").unwrap();
        assert_eq!(&v[..4], &[0, 0, 0, 2]);
        assert_eq!(&v[12..16], &(1u32 << 8).to_le_bytes());
    }

    #[test]
    fn bad_text_is_refused() {
        assert!(FileCaps::parse("cap_flying=ep").unwrap_err().0.contains("cap_flying"));
        assert!(FileCaps::parse("cap_net_raw").is_err());
        assert!(FileCaps::parse("cap_net_raw=x").is_err());
        assert!(FileCaps::parse("cap_net_raw+").is_err());
        assert!(xattr_for("cap_net_raw,cap_net_admin=p cap_net_raw+e").is_err());
    }
}
