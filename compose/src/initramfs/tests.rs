//! Tests of the initramfs builder against a fake tree: module closure, errors that name their input,
//! reproducibility, and the archive parsed back with a small newc reader.

use super::cpio::{S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG};
use super::*;
use fedostree_util::cmd::CommandRunExt;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

const KVER: &str = "6.1.0-test-amd64";

/// Shaped like Debian 6.1 cloud kernel's files: ext4 is built in, virtio_pci has several deps, and a
/// module file name uses '-' where the kernel name has '_'.
const MODULES_DEP: &str = "\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/broken.ko: kernel/drivers/absent.ko
";
const MODULES_BUILTIN: &str = "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n";
const LOAD_ORDER: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "virtio_mmio",
];

/// A real static busybox when `FEDOSTREE_TEST_BUSYBOX` names one (the image is never run, so any
/// bytes would do), else a stand-in.
fn busybox_bytes() -> Vec<u8> {
    match std::env::var_os("FEDOSTREE_TEST_BUSYBOX") {
        Some(p) => fs_err::read(&p).unwrap(),
        None => b"\x7fELF fake busybox".to_vec(),
    }
}

fn fake_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs_err::create_dir_all(root.join("usr/bin")).unwrap();
    fs_err::write(root.join("usr/bin/busybox"), busybox_bytes()).unwrap();
    let md = modules_dir(root);
    for line in MODULES_DEP.lines() {
        let ko = line.split(':').next().unwrap();
        if ko.contains("broken") {
            continue;
        }
        let path = md.join(ko);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, format!("dummy module {ko}")).unwrap();
    }
    fs_err::write(md.join("modules.dep"), MODULES_DEP).unwrap();
    fs_err::write(md.join("modules.builtin"), MODULES_BUILTIN).unwrap();
    dir
}

fn modules_dir(root: &Path) -> PathBuf {
    root.join("usr/lib/modules").join(KVER)
}

#[derive(Debug)]
struct Member {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u32,
    rdev: (u32, u32),
    name: String,
    data: Vec<u8>,
}

/// A minimal newc reader, independent of the writer, that checks framing as it goes.
fn read_newc(gz: &[u8]) -> Vec<Member> {
    let mut raw = Vec::new();
    GzDecoder::new(gz).read_to_end(&mut raw).unwrap();
    let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap();
    let align = |n: usize| (n + 3) & !3;
    let mut members = Vec::new();
    let mut pos = 0;
    loop {
        let h = &raw[pos..pos + 110];
        assert_eq!(&h[..6], b"070701", "magic at offset {pos}");
        let field = |i: usize| hex(&h[6 + 8 * i..14 + 8 * i]);
        let (namesize, filesize) = (field(11) as usize, field(6) as usize);
        let name_start = pos + 110;
        assert_eq!(raw[name_start + namesize - 1], 0, "name NUL-terminated");
        let name = String::from_utf8(raw[name_start..name_start + namesize - 1].to_vec()).unwrap();
        let data_start = align(name_start + namesize);
        let data = raw[data_start..data_start + filesize].to_vec();
        pos = align(data_start + filesize);
        if name == "TRAILER!!!" {
            assert_eq!(pos, raw.len(), "nothing after the trailer");
            return members;
        }
        members.push(Member {
            ino: field(0),
            mode: field(1),
            uid: field(2),
            gid: field(3),
            mtime: field(5),
            rdev: (field(9), field(10)),
            name,
            data,
        });
    }
}

#[test]
fn closure_is_in_load_order_and_skips_builtins() {
    let tree = fake_tree();
    let order = module_closure(&modules_dir(tree.path()), WANTED_MODULES).unwrap();
    assert_eq!(order, LOAD_ORDER);
}

#[test]
fn closure_normalizes_dashes() {
    let tree = fake_tree();
    let order = module_closure(&modules_dir(tree.path()), &["virtio-rng"]).unwrap();
    assert_eq!(order, ["virtio_ring", "virtio", "virtio_rng"]);
}

#[test]
fn missing_module_is_named() {
    let tree = fake_tree();
    let err = module_closure(&modules_dir(tree.path()), &["virtio_blk", "no_such_mod"]).unwrap_err();
    assert!(format!("{err:#}").contains("`no_such_mod`"), "{err:#}");
    let err = module_closure(&modules_dir(tree.path()), &["broken"]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("`absent`") && msg.contains("needed by `broken`"), "{msg}");
}

#[test]
fn missing_modules_dep_is_named() {
    let tree = fake_tree();
    let err = build(tree.path(), "0.0.0-other").unwrap_err();
    assert!(format!("{err:#}").contains("0.0.0-other/modules.dep"), "{err:#}");
}

#[test]
fn missing_busybox_is_named() {
    let tree = fake_tree();
    fs_err::remove_file(tree.path().join("usr/bin/busybox")).unwrap();
    let err = build(tree.path(), KVER).unwrap_err();
    let want = tree.path().join("usr/bin/busybox");
    assert!(format!("{err:#}").contains(&want.display().to_string()), "{err:#}");
}

#[test]
fn output_is_reproducible() {
    let (a, b) = (fake_tree(), fake_tree());
    let first = build(a.path(), KVER).unwrap();
    assert_eq!(first, build(a.path(), KVER).unwrap(), "same tree twice");
    assert_eq!(first, build(b.path(), KVER).unwrap(), "identical tree elsewhere");
    // gzip header: no name flag, mtime 0.
    assert_eq!(&first[..3], b"\x1f\x8b\x08");
    assert_eq!(first[3] & 0x08, 0, "FNAME set");
    assert_eq!(&first[4..8], &[0, 0, 0, 0], "gzip mtime");
}

#[test]
fn archive_contents() {
    let tree = fake_tree();
    let members = read_newc(&build(tree.path(), KVER).unwrap());
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries sorted");
    for (i, m) in members.iter().enumerate() {
        assert_eq!(m.ino, i as u32 + 1, "{} inode", m.name);
        assert_eq!((m.uid, m.gid, m.mtime), (0, 0, 0), "{} owner/mtime", m.name);
        assert!(!m.name.starts_with('/') && !m.name.is_empty());
    }
    let get = |n: &str| {
        members
            .iter()
            .find(|m| m.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };

    for d in ["bin", "dev", "proc", "sys", "run", "sysroot", "etc", "lib/modules"] {
        assert_eq!(get(d).mode, S_IFDIR | 0o755, "{d}");
    }
    let console = get("dev/console");
    assert_eq!((console.mode, console.rdev), (S_IFCHR | 0o600, (5, 1)));
    let init = get("init");
    assert_eq!(init.mode, S_IFREG | 0o755);
    assert_eq!(init.data, INIT_SCRIPT.as_bytes());
    let bb = get("bin/busybox");
    assert_eq!((bb.mode, &bb.data), (S_IFREG | 0o755, &busybox_bytes()));
    for applet in APPLETS {
        let link = get(&format!("bin/{applet}"));
        assert_eq!(
            (link.mode, link.data.as_slice()),
            (S_IFLNK | 0o777, &b"busybox"[..]),
            "{applet}"
        );
    }
    let links = members.iter().filter(|m| m.mode & 0o170000 == S_IFLNK).count();
    assert_eq!(
        links,
        APPLETS.len(),
        "no symlink besides the applets (none to busybox itself)"
    );

    let order = String::from_utf8(get("lib/modules/load-order").data.clone()).unwrap();
    let want: Vec<String> = LOAD_ORDER.iter().map(|m| format!("{m}.ko")).collect();
    assert_eq!(order.lines().collect::<Vec<_>>(), want);
    for m in LOAD_ORDER {
        let member = get(&format!("lib/modules/{m}.ko"));
        assert_eq!(member.mode, S_IFREG | 0o644);
        assert!(
            String::from_utf8_lossy(&member.data).ends_with(&format!("/{m}.ko")),
            "{m} content"
        );
    }
    let modules = members.iter().filter(|m| m.name.ends_with(".ko")).count();
    assert_eq!(modules, LOAD_ORDER.len(), "only the closure is copied");
}

/// The external commands a shell script runs: the first word of every simple command (after `;`, `|`,
/// `&&`, `||`, `$(`, parentheses, braces, `!` and control keywords), minus shell builtins, keywords,
/// assignments, case patterns, words that are expansions, and functions the script defines itself.
fn commands_of(script: &str) -> std::collections::BTreeSet<String> {
    const SHELL: &[&str] = &[
        "if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until", "case", "esac", "export",
        "set", "exit", "cd", "[", "test", ".", "return", "local", "shift", "read", ":", "true", "false", "break",
        "continue", "echo", "printf",
    ];
    let mut functions = std::collections::BTreeSet::new();
    let mut words = Vec::new();
    for line in script.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let line = without_quotes_and_expansions(line.split(" #").next().unwrap_or_default());
        let line = line.as_str();
        if let Some(f) = line
            .split_once("()")
            .map(|(f, _)| f.trim())
            .filter(|f| f.chars().all(|c| c.is_alphanumeric() || c == '_'))
        {
            functions.insert(f.to_string());
        }
        let mut spaced = line.to_string();
        for sep in ["&&", "||", "$(", ";", "|", "(", ")", "{", "}", "!"] {
            spaced = spaced.replace(sep, " \n ");
        }
        for segment in spaced.split('\n') {
            let mut it = segment.split_whitespace().peekable();
            // `exec cmd`, `then cmd`, `do cmd`, `else cmd`: the command is the next word.
            while it
                .peek()
                .is_some_and(|w| ["exec", "then", "do", "else", "if", "while", "until"].contains(w))
            {
                it.next();
            }
            if let Some(w) = it.next() {
                words.push(w.to_string());
            }
        }
    }
    words
        .into_iter()
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '['))
        .filter(|w| !w.contains('=') && !SHELL.contains(&w.as_str()) && !functions.contains(w))
        .collect()
}

/// `line` with quoted strings, `${…}` and `$((…))` reduced to a placeholder word, so their contents
/// are never taken for commands.
fn without_quotes_and_expansions(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                }
                out.push('Q');
            }
            '$' if matches!(chars.peek(), Some('{')) || chars.clone().take(2).eq(['(', '(']) => {
                let (open, close) = if chars.peek() == Some(&'{') {
                    ('{', '}')
                } else {
                    ('(', ')')
                };
                let mut depth = 0;
                for q in chars.by_ref() {
                    depth += i32::from(q == open) - i32::from(q == close);
                    if depth == 0 {
                        break;
                    }
                }
                out.push_str("$V");
            }
            c => out.push(c),
        }
    }
    out
}

/// `/init` runs only applets the archive links, so no command is "not found" at boot. The commands
/// come from init.sh itself: a new command in the script fails this test until it is linked.
#[test]
fn init_uses_only_linked_applets() {
    let used = commands_of(INIT_SCRIPT);
    for cmd in [
        "mount",
        "insmod",
        "findfs",
        "switch_root",
        "poweroff",
        "usleep",
        "readlink",
        "cut",
        "touch",
    ] {
        assert!(used.contains(cmd), "the extractor missed {cmd}: {used:?}");
    }
    let missing: Vec<&String> = used.iter().filter(|c| !APPLETS.contains(&c.as_str())).collect();
    assert!(
        missing.is_empty(),
        "init.sh runs {missing:?}, which the initramfs does not link"
    );
}

#[test]
fn command_extractor_sees_commands_everywhere() {
    let s = "f() { g; }\nx=1 y=$(h -a | j) z=$((x + 1))\nif k && ! l; then m \"(s t)\"; else n ${x#u}; fi\ncase $a in b=*) o ;; esac\nexec p q # r\n";
    let got: Vec<String> = commands_of(s).into_iter().collect();
    assert_eq!(got, ["g", "h", "j", "k", "l", "m", "n", "o", "p"]);
}

#[test]
fn init_script_parses() {
    Command::new("sh").args(["-n", "-c", INIT_SCRIPT]).run().unwrap();
}

/// GNU cpio, an independent reader, lists the same members (cpio is installed by ci/setup).
#[test]
fn gnu_cpio_reads_the_archive() {
    let tree = fake_tree();
    let gz = build(tree.path(), KVER).unwrap();
    let mut raw = Vec::new();
    GzDecoder::new(gz.as_slice()).read_to_end(&mut raw).unwrap();
    let file = tree.path().join("initramfs.cpio");
    fs_err::write(&file, raw).unwrap();
    let listed = Command::new("cpio")
        .args(["-it", "--quiet", "-F"])
        .arg(&file)
        .run_get_string()
        .unwrap();
    let ours: Vec<String> = read_newc(&gz).into_iter().map(|m| m.name).collect();
    assert_eq!(listed.lines().collect::<Vec<_>>(), ours);
}
