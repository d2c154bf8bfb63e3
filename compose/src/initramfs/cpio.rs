//! The newc ("070701") cpio writer for the initramfs: deterministic by construction (sorted entries,
//! mtime 0, uid/gid 0, sequential inodes), so identical inputs give byte-identical archives and every
//! deploy does not copy a "new" initramfs into /boot.

use std::collections::BTreeMap;

pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFLNK: u32 = 0o120000;
pub(crate) const S_IFCHR: u32 = 0o020000;

/// One archive member; its path is the key of [`Archive::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir { perm: u32 },
    File { perm: u32, data: Vec<u8> },
    Symlink { target: String },
    CharDev { perm: u32, major: u32, minor: u32 },
}

/// An archive under construction: paths are relative ("bin/sh"), and the map keeps them sorted, which
/// also puts every directory before its contents.
#[derive(Debug, Default)]
pub(crate) struct Archive {
    pub(crate) entries: BTreeMap<String, Entry>,
}

impl Archive {
    pub(crate) fn dir(&mut self, path: &str) {
        self.entries.insert(path.to_string(), Entry::Dir { perm: 0o755 });
    }

    pub(crate) fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) {
        self.entries.insert(path.to_string(), Entry::File { perm, data });
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) {
        self.entries.insert(
            path.to_string(),
            Entry::Symlink {
                target: target.to_string(),
            },
        );
    }

    pub(crate) fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entries
            .insert(path.to_string(), Entry::CharDev { perm, major, minor });
    }

    /// The uncompressed newc stream, ending with the TRAILER!!! record.
    pub(crate) fn to_newc(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (path, entry)) in self.entries.iter().enumerate() {
            let ino = i as u32 + 1;
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir { perm } => (S_IFDIR | perm, 2, &[], (0, 0)),
                Entry::File { perm, data } => (S_IFREG | perm, 1, data, (0, 0)),
                Entry::Symlink { target } => (S_IFLNK | 0o777, 1, target.as_bytes(), (0, 0)),
                Entry::CharDev { perm, major, minor } => (S_IFCHR | perm, 1, &[], (*major, *minor)),
            };
            write_record(&mut out, ino, mode, nlink, rdev, path, data);
        }
        write_record(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
        out
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn write_record(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), name: &str, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1, // namesize counts the NUL
        0,                     // check (only for the "070702" crc format)
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// The regular files of one newc archive at the start of `stream` ("070701" or "070702"), and the
/// offset just past its TRAILER!!! record. Used to see what dracut put into an image.
pub(crate) fn regular_files(stream: &[u8]) -> Result<(Vec<String>, usize), String> {
    let mut files = Vec::new();
    let mut at = 0usize;
    loop {
        let header = stream
            .get(at..at + 110)
            .ok_or_else(|| format!("cpio: truncated header at offset {at}"))?;
        if &header[..6] != b"070701" && &header[..6] != b"070702" {
            return Err(format!("cpio: no newc magic at offset {at}"));
        }
        let field = |i: usize| {
            let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).unwrap_or("");
            u32::from_str_radix(hex, 16).map_err(|_| format!("cpio: bad header field at offset {at}"))
        };
        let (mode, size, namesize) = (field(1)?, field(6)? as usize, field(11)? as usize);
        let name_end = at + 110 + namesize;
        let name = stream
            .get(at + 110..name_end.saturating_sub(1))
            .ok_or_else(|| format!("cpio: truncated name at offset {at}"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let data_start = name_end.next_multiple_of(4);
        at = (data_start + size).next_multiple_of(4);
        if name == "TRAILER!!!" {
            return Ok((files, at.min(stream.len())));
        }
        if mode & 0o170000 == S_IFREG {
            files.push(name.trim_start_matches("./").to_string());
        }
    }
}
