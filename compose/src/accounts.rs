//! Users and groups the way rpm-ostree keeps them: created by the tree's own `systemd-sysusers`
//! from `sysusers.d`, present in the tree's `/etc/passwd` and `/etc/group`, and stable across
//! composes — the previous commit's entries for names still declared are seeded first, so an
//! existing user keeps its uid; a user or group that changes id is refused, and one that
//! disappears is refused unless the treefile lists it under `ignore-removed-users`/`-groups`.

use crate::sandbox::{self, Usr};
use crate::treefile::{AccountCheck, PasswdIds};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The previous commit's `/usr/etc/passwd` and `/usr/etc/group`.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub passwd: String,
    pub group: String,
}

/// Read them from `commit` in the archive repo at `repo` (None when it has no passwd: a dev tree).
pub fn previous(repo: &Path, commit: &str) -> Result<Option<Previous>> {
    let cat = |p: &str| {
        std::process::Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["cat", commit, p])
            .output()
            .context("running ostree cat")
    };
    let (pw, gr) = (cat("/usr/etc/passwd")?, cat("/usr/etc/group")?);
    if !pw.status.success() || !gr.status.success() {
        return Ok(None);
    }
    Ok(Some(Previous {
        passwd: String::from_utf8_lossy(&pw.stdout).into_owned(),
        group: String::from_utf8_lossy(&gr.stdout).into_owned(),
    }))
}

/// name → id of a passwd or group file.
pub(crate) fn ids(text: &str) -> BTreeMap<String, u32> {
    // The first line naming an account wins, as NSS reads these files.
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let c: Vec<&str> = l.split(':').collect();
        if let (Some(n), Some(id)) = (c.first(), c.get(2).and_then(|s| s.parse().ok())) {
            m.entry(n.to_string()).or_insert(id);
        }
    }
    m
}

/// Users and groups the tree's sysusers.d declares.
fn declared(root: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let cfg = sandbox::run_ok(
        root,
        Usr::ReadOnly,
        &["systemd-sysusers", "--cat-config"],
        "systemd-sysusers --cat-config",
    )?;
    let (mut users, mut groups) = (BTreeSet::new(), BTreeSet::new());
    for l in cfg.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["u", name, ..] => {
                users.insert(name.to_string());
                groups.insert(name.to_string());
            }
            ["g", name, ..] => {
                groups.insert(name.to_string());
            }
            ["m", user, group, ..] => {
                users.insert(user.to_string());
                groups.insert(group.to_string());
            }
            _ => {}
        }
    }
    Ok((users, groups))
}

/// Seed `rel` (etc/passwd or etc/group) with the previous entries for `keep` not already there.
fn seed(root: &Path, rel: &str, previous: &str, keep: &BTreeSet<String>) -> Result<()> {
    let path = crate::safepath::beneath(root, rel)?;
    let mut text = fs_err::read_to_string(&path).unwrap_or_default();
    let have = ids(&text);
    for l in previous.lines() {
        let name = l.split(':').next().unwrap_or("");
        if keep.contains(name) && !have.contains_key(name) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(l);
            text.push('\n');
        }
    }
    fs_err::create_dir_all(path.parent().context("no parent")?)?;
    crate::safepath::replace_file(&path, text)?;
    Ok(())
}

pub struct Policy<'a> {
    pub ignore_removed_users: &'a [String],
    pub ignore_removed_groups: &'a [String],
    pub etc_group_members: &'a [String],
    pub preserve_passwd: bool,
    pub check_passwd: &'a AccountCheck<PasswdIds>,
    pub check_groups: &'a AccountCheck<u32>,
}

/// name → (uid, primary gid) of a passwd file.
fn passwd_ids(text: &str) -> BTreeMap<String, (u32, u32)> {
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let c: Vec<&str> = l.split(':').collect();
        if let (Some(n), Some(uid), Some(gid)) = (
            c.first(),
            c.get(2).and_then(|s| s.parse().ok()),
            c.get(3).and_then(|s| s.parse().ok()),
        ) {
            m.entry(n.to_string()).or_insert((uid, gid));
        }
    }
    m
}

fn read_check_file(path: &Path) -> Result<String> {
    fs_err::read_to_string(path).map_err(|e| fedostree_util::InputError::new(e.to_string()))
}

/// Create the tree's users and groups; returns false when the tree has no systemd-sysusers. With
/// `preserve-passwd` (the default) the entries of still-declared accounts are seeded first from the
/// `check-*` files when they are of type file, else from the previous commit, so ids stay stable.
pub fn create(root: &Path, previous: Option<&Previous>, policy: &Policy) -> Result<bool> {
    if !sandbox::has(root, "usr/bin/systemd-sysusers") {
        return Ok(false);
    }
    let (users, groups) = declared(root)?;
    if policy.preserve_passwd {
        let seeds = match (policy.check_passwd, policy.check_groups) {
            (AccountCheck::File { path: p, .. }, AccountCheck::File { path: g, .. }) => {
                Some((read_check_file(p)?, read_check_file(g)?))
            }
            _ => previous.map(|prev| (prev.passwd.clone(), prev.group.clone())),
        };
        if let Some((passwd, group)) = seeds {
            seed(root, "etc/passwd", &passwd, &users)?;
            seed(root, "etc/group", &group, &groups)?;
        }
    }
    sandbox::run_ok(root, Usr::ReadOnly, &["systemd-sysusers"], "systemd-sysusers")?;
    let now_groups = ids(&fs_err::read_to_string(root.join("etc/group"))?);
    for g in policy.etc_group_members {
        if !now_groups.contains_key(g) {
            fedostree_util::bail_input!("etc-group-members: group `{g}` does not exist in the tree");
        }
    }
    Ok(true)
}

/// `check-passwd` and `check-groups`, once every file has its owner: an account of the reference
/// (the previous commit's by default, a file's, or the treefile's own data) keeps its ids; one that
/// is gone is refused unless listed in `ignore-removed-users`/`-groups` or, as in rpm-ostree, no
/// file of the tree is owned by its id any more.
pub fn check(root: &Path, previous: Option<&Previous>, policy: &Policy) -> Result<()> {
    let (Ok(passwd), Ok(group)) = (
        fs_err::read_to_string(root.join("etc/passwd")),
        fs_err::read_to_string(root.join("etc/group")),
    ) else {
        // A tree without accounts (dev trees): nothing to check.
        return Ok(());
    };
    let ref_users: Option<BTreeMap<String, (u32, u32)>> = match policy.check_passwd {
        AccountCheck::None => None,
        AccountCheck::Previous => previous.map(|p| passwd_ids(&p.passwd)),
        AccountCheck::File { path, .. } => Some(passwd_ids(&read_check_file(path)?)),
        AccountCheck::Data { entries } => Some(entries.iter().map(|(n, i)| (n.clone(), i.ids())).collect()),
    };
    let ref_groups: Option<BTreeMap<String, u32>> = match policy.check_groups {
        AccountCheck::None => None,
        AccountCheck::Previous => previous.map(|p| ids(&p.group)),
        AccountCheck::File { path, .. } => Some(ids(&read_check_file(path)?)),
        AccountCheck::Data { entries } => Some(entries.clone()),
    };
    let now_users = passwd_ids(&passwd);
    let now_groups = ids(&group);
    let mut owned: Option<(BTreeSet<u32>, BTreeSet<u32>)> = None;
    let mut owned_ids = || -> Result<(BTreeSet<u32>, BTreeSet<u32>)> {
        if owned.is_none() {
            owned = Some(owned_ids(root)?);
        }
        Ok(owned.clone().unwrap())
    };
    let mut problems = Vec::new();
    for (name, &(uid, gid)) in ref_users.iter().flatten() {
        match now_users.get(name) {
            Some(&(now_uid, _)) if now_uid != uid => {
                problems.push(format!("user `{name}` would change uid {uid} → {now_uid}"))
            }
            Some(&(_, now_gid)) if now_gid != gid => {
                problems.push(format!("user `{name}` would change primary gid {gid} → {now_gid}"))
            }
            Some(_) => {}
            None if ignored(policy.ignore_removed_users, name) || !owned_ids()?.0.contains(&uid) => {}
            None => problems.push(format!(
                "user `{name}` (uid {uid}) is no longer in the tree but owns files (list it under ignore-removed-users to allow that)"
            )),
        }
    }
    for (name, &gid) in ref_groups.iter().flatten() {
        match now_groups.get(name) {
            Some(&now) if now != gid => problems.push(format!("group `{name}` would change gid {gid} → {now}")),
            Some(_) => {}
            None if ignored(policy.ignore_removed_groups, name) || !owned_ids()?.1.contains(&gid) => {}
            None => problems.push(format!(
                "group `{name}` (gid {gid}) is no longer in the tree but owns files (list it under ignore-removed-groups to allow that)"
            )),
        }
    }
    if !problems.is_empty() {
        let against = match (policy.check_passwd, policy.check_groups) {
            (AccountCheck::Previous, _) | (_, AccountCheck::Previous) => {
                "the previous commit or the treefile's check-passwd/check-groups"
            }
            _ => "the treefile's check-passwd/check-groups",
        };
        fedostree_util::bail_input!("accounts differ from {against}:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

fn ignored(list: &[String], name: &str) -> bool {
    list.iter().any(|i| i == name || i == "*")
}

/// Every uid and gid that owns something in the tree.
fn owned_ids(root: &Path) -> Result<(BTreeSet<u32>, BTreeSet<u32>)> {
    use std::os::unix::fs::MetadataExt;
    let (mut uids, mut gids) = (BTreeSet::new(), BTreeSet::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs_err::read_dir(&dir)? {
            let e = e?;
            let m = e.path().symlink_metadata()?;
            uids.insert(m.uid());
            gids.insert(m.gid());
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok((uids, gids))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree whose accounts are `passwd`/`group`, and the uid and gid its files are owned by (this
    /// process's: the test needs no privilege).
    fn tree(passwd: &str, group: &str) -> (tempfile::TempDir, u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(d.path().join("etc/group"), group).unwrap();
        let m = std::fs::metadata(d.path().join("etc/passwd")).unwrap();
        (d, m.uid(), m.gid())
    }

    fn policy<'a>(
        users: &'a AccountCheck<PasswdIds>,
        groups: &'a AccountCheck<u32>,
        ignore: &'a [String],
    ) -> Policy<'a> {
        Policy {
            ignore_removed_users: ignore,
            ignore_removed_groups: ignore,
            etc_group_members: &[],
            preserve_passwd: true,
            check_passwd: users,
            check_groups: groups,
        }
    }

    #[test]
    fn renumbered_or_removed_accounts_are_refused() {
        let (t, owner_uid, owner_gid) = tree(
            "root:x:0:0::/root:/bin/sh\nmessagebus:x:996:999::/:/usr/sbin/nologin\n",
            "root:x:0:\nmessagebus:x:996:\n",
        );
        // `old` owns the tree's files by id; `gone`'s ids own nothing.
        let prev = Previous {
            passwd: format!("root:x:0:0::/root:/bin/sh\nmessagebus:x:999:999::/:/x\nold:x:{owner_uid}:{owner_gid}::/:/x\ngone:x:4000000:4000000::/:/x\n"),
            group: format!("root:x:0:\nmessagebus:x:999:\nold:x:{owner_gid}:\ngone:x:4000000:\n"),
        };
        let (p, g) = (AccountCheck::Previous, AccountCheck::Previous);
        let e = check(t.path(), Some(&prev), &policy(&p, &g, &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("user `messagebus` would change uid 999 → 996"), "{e}");
        assert!(e.contains("group `messagebus` would change gid 999 → 996"), "{e}");
        assert!(
            e.contains(&format!(
                "user `old` (uid {owner_uid}) is no longer in the tree but owns files"
            )),
            "{e}"
        );
        assert!(
            !e.contains("`gone`"),
            "an id that owns nothing may go, as in rpm-ostree: {e}"
        );

        let (t, ..) = tree(
            "root:x:0:0::/root:/bin/sh\nmessagebus:x:999:999::/:/x\n",
            "root:x:0:\nmessagebus:x:999:\n",
        );
        assert!(check(t.path(), Some(&prev), &policy(&p, &g, &["old".into()])).is_ok());
        let (none_p, none_g) = (AccountCheck::None, AccountCheck::None);
        assert!(check(t.path(), Some(&prev), &policy(&none_p, &none_g, &[])).is_ok());
    }

    #[test]
    fn data_and_file_references() {
        let (t, ..) = tree(
            "root:x:0:0::/root:/bin/sh\nbin:x:1:1::/:/x\nadm:x:3:4::/:/x\n",
            "root:x:0:\nbin:x:1:\nadm:x:4:\n",
        );
        let data = |v: &str| -> AccountCheck<PasswdIds> { serde_yaml_ng::from_str(v).unwrap() };
        let groups: AccountCheck<u32> = serde_yaml_ng::from_str("{type: data, entries: {bin: 1, adm: 4}}").unwrap();
        let ok = data("{type: data, entries: {bin: 1, adm: [3, 4]}}");
        assert!(check(t.path(), None, &policy(&ok, &groups, &[])).is_ok());
        let bad = data("{type: data, entries: {adm: 3}}");
        let e = check(t.path(), None, &policy(&bad, &groups, &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("user `adm` would change primary gid 3 → 4"), "{e}");

        let f = t.path().join("ref-group");
        std::fs::write(&f, "bin:x:2:\n").unwrap();
        let file = AccountCheck::File {
            filename: "ref-group".into(),
            path: f,
        };
        let e = check(t.path(), None, &policy(&ok, &file, &[])).unwrap_err().to_string();
        assert!(e.contains("group `bin` would change gid 2 → 1"), "{e}");
    }
}
