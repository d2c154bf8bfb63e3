//! Users and groups the way rpm-ostree keeps them: created by the tree's own `systemd-sysusers`
//! from `sysusers.d`, present in the tree's `/etc/passwd` and `/etc/group`, and stable across
//! composes — the previous commit's entries for names still declared are seeded first, so an
//! existing user keeps its uid; a user or group that changes id is refused, and one that
//! disappears is refused unless the treefile lists it under `ignore-removed-users`/`-groups`.

use crate::sandbox::{self, Usr};
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
}

/// Create the tree's users and groups; returns false when the tree has no systemd-sysusers.
pub fn create(root: &Path, previous: Option<&Previous>, policy: &Policy) -> Result<bool> {
    if !sandbox::has(root, "usr/bin/systemd-sysusers") {
        return Ok(false);
    }
    let (users, groups) = declared(root)?;
    if let Some(prev) = previous {
        seed(root, "etc/passwd", &prev.passwd, &users)?;
        seed(root, "etc/group", &prev.group, &groups)?;
    }
    sandbox::run_ok(root, Usr::ReadOnly, &["systemd-sysusers"], "systemd-sysusers")?;
    let now_users = ids(&fs_err::read_to_string(root.join("etc/passwd"))?);
    let now_groups = ids(&fs_err::read_to_string(root.join("etc/group"))?);
    if let Some(prev) = previous {
        check("user", &ids(&prev.passwd), &now_users, policy.ignore_removed_users)?;
        check("group", &ids(&prev.group), &now_groups, policy.ignore_removed_groups)?;
    }
    for g in policy.etc_group_members {
        if !now_groups.contains_key(g) {
            fedostree_util::bail_input!("etc-group-members: group `{g}` does not exist in the tree");
        }
    }
    Ok(true)
}

fn check(kind: &str, before: &BTreeMap<String, u32>, after: &BTreeMap<String, u32>, ignore: &[String]) -> Result<()> {
    let mut problems = Vec::new();
    for (name, id) in before {
        match after.get(name) {
            Some(now) if now != id => problems.push(format!("{kind} `{name}` would change id {id} → {now}")),
            None if !ignore.iter().any(|i| i == name || i == "*") => problems.push(format!(
                "{kind} `{name}` (id {id}) is no longer in the tree (list it under ignore-removed-{kind}s to allow that)"
            )),
            _ => {}
        }
    }
    if !problems.is_empty() {
        fedostree_util::bail_input!("accounts differ from the previous commit:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbered_or_removed_accounts_are_refused() {
        let before = ids("root:x:0:0::/root:/bin/sh\nmessagebus:x:999:999::/:/usr/sbin/nologin\nold:x:998:998::/:/x\n");
        let after = ids("root:x:0:0::/root:/bin/sh\nmessagebus:x:997:997::/:/usr/sbin/nologin\n");
        let e = check("user", &before, &after, &[]).unwrap_err().to_string();
        assert!(e.contains("`messagebus` would change id 999 → 997"), "{e}");
        assert!(e.contains("`old` (id 998) is no longer in the tree"), "{e}");
        let same = ids("root:x:0:0::/root:/bin/sh\nmessagebus:x:999:999::/:/x\n");
        assert!(check("user", &before, &same, &["old".into()]).is_ok());
    }
}
