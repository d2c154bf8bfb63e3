//! What a Debian package's maintainer scripts do that an RPM-based tree needs, as data:
//! accounts (`adduser`/`addgroup`/`useradd`/`groupadd`) → sysusers.d lines; `deb-systemd-helper
//! enable` and `systemctl enable` → preset lines; `update-alternatives --install` → candidate
//! symlinks (the set's highest priority wins); `setcap` → file capabilities; a policy package's
//! `semodule` → a `%post` that builds the policy at compose time ([`PolicyBuild`]). `ldconfig` is
//! left to compose. Every other command is dropped and named in the package's description, so nothing is
//! lost silently. Scripts are read line by line (debhelper writes one command per line), never run.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScriptFacts {
    /// sysusers.d lines (`u name - "gecos" /home /shell`, `g name -`).
    pub sysusers: Vec<String>,
    /// Units to enable by preset.
    pub enable: Vec<String>,
    pub alternatives: Vec<Alternative>,
    /// (path, capabilities) from `setcap`.
    pub caps: Vec<(String, String)>,
    /// "postinst: cmd1, cmd2" per script: the commands not carried over.
    pub dropped: Vec<String>,
    /// An SELinux policy package's postinst installs its modules with `semodule`.
    #[serde(default)]
    pub selinux_policy: Option<PolicyBuild>,
}

/// What Debian's `selinux-policy-*` postinst does with `semodule`, as its variables say: install
/// every module listed in `/usr/share/selinux/FLAVOUR/.modules` at `priority` into the `flavour`
/// store, with the `not_default` modules disabled. It loops over shell variables, so it is read as
/// these facts and carried over as a `%post` ([`PolicyBuild::post`]), not translated line by line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicyBuild {
    pub flavour: String,
    pub priority: u32,
    pub not_default: Vec<String>,
}

impl PolicyBuild {
    /// The postinst's assignments, when it is a policy package's (it runs `semodule` on `.modules`).
    fn read(text: &str) -> Option<PolicyBuild> {
        if !text.contains("semodule") || !text.contains(".modules") {
            return None;
        }
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches('"').to_string())
        };
        Some(PolicyBuild {
            flavour: value("flavour")?,
            priority: value("priority")?.parse().ok()?,
            not_default: value("notdefault")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
    }

    /// The `%post`: what the postinst runs on a fresh install, without loading the policy into
    /// the running kernel (`-n`: a compose is not the system it builds). `modules` is the content
    /// of the package's `.modules`.
    pub(crate) fn post(&self, package: &str, modules: &str) -> String {
        let dir = format!("/usr/share/selinux/{}", self.flavour);
        let mut args = vec![
            format!("-X {}", self.priority),
            "-n".into(),
            format!("-s {}", self.flavour),
        ];
        args.extend(modules.split_whitespace().map(|m| format!("-i {dir}/{m}.pp.bz2")));
        args.extend(self.not_default.iter().map(|m| format!("-d {m}")));
        format!(
            "# From {package}'s Debian postinst (fedostree devrepo): build the {} policy.\nset -e\nsemodule \\\n  {}\n",
            self.flavour,
            args.join(" \\\n  ")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Alternative {
    pub name: String,
    pub link: String,
    pub path: String,
    pub priority: i64,
    /// (link, path) of `--slave` links, which follow the master's choice.
    pub slaves: Vec<(String, String)>,
}

/// Shell words that are syntax or harmless builtins, not actions.
const SHELL: &[&str] = &[
    "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done", "in", ";;", "{", "}",
    "(", ")", "[", "[[", "test", "set", "exit", "return", "true", "false", ":", "echo", "printf", "local", "export",
    "shift", "unset", "trap", "break", "continue", "eval", "exec", "read", ".", "function", "!", "esac;", "fi;",
    "done;", "then;", "do;", "command", "wait", "umask", "cd",
];

/// Commands whose effect is carried over (or, for ldconfig, done by compose).
const TRANSLATED: &[&str] = &[
    "adduser",
    "addgroup",
    "useradd",
    "groupadd",
    "deb-systemd-helper",
    "systemctl",
    "update-alternatives",
    "setcap",
    "ldconfig",
];

/// Words of a command line as the shell splits them, quotes removed (no expansion: scripts are
/// never run).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Simple commands of one script line: split at `;`, `&&`, `||`, `|`, comments removed.
fn commands(line: &str) -> Vec<String> {
    let line = match line.find(" #") {
        Some(i) => &line[..i],
        None if line.trim_start().starts_with('#') => "",
        None => line,
    };
    line.replace("&&", ";")
        .replace("||", ";")
        .replace('|', ";")
        .split(';')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// The command word: skips `VAR=value` assignments, redirections, `if`/`!`/`then` and friends.
fn command_word(cmd: &[String]) -> Option<(usize, &str)> {
    cmd.iter().enumerate().find_map(|(i, w)| {
        let w = w.as_str();
        let skip = w.contains('=') && !w.starts_with('-')
            || w.starts_with('>')
            || w.starts_with('<')
            || w.starts_with("2>")
            || matches!(
                w,
                "if" | "then" | "else" | "elif" | "!" | "do" | "while" | "until" | "{" | "("
            );
        (!skip).then_some((i, w))
    })
}

fn basename(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

/// Value of `--opt VALUE` or `--opt=VALUE`.
fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == name {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{name}=")).map(str::to_string)
        }
    })
}

/// Positional arguments: not options and not values of options that take one.
fn positional(args: &[String], with_value: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if with_value.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') && !a.starts_with('>') && !a.contains("/dev/null") && !a.starts_with('$') {
            out.push(a.clone());
        }
        i += 1;
    }
    out
}

fn account(facts: &mut ScriptFacts, cmd: &str, args: &[String]) {
    // Options that take a value (`adduser --group` is a flag, `useradd -g G` is not).
    let with_value = [
        "--home",
        "-d",
        "--shell",
        "-s",
        "--gecos",
        "-c",
        "--comment",
        "--ingroup",
        "-g",
        "--gid",
        "--uid",
        "-u",
        "-G",
        "--groups",
        "--firstuid",
        "--lastuid",
        "-K",
    ];
    let pos = positional(args, &with_value);
    let Some(name) = pos.first().filter(|n| !n.contains('$')) else {
        return;
    };
    let system = args.iter().any(|a| a == "--system" || a == "-r");
    match cmd {
        "addgroup" | "groupadd" => facts.sysusers.push(format!("g {name} -")),
        // `adduser USER GROUP` adds a member.
        "adduser" if !system && pos.len() == 2 => facts.sysusers.push(format!("m {} {}", pos[0], pos[1])),
        _ => {
            let home = opt(args, "--home")
                .or_else(|| opt(args, "-d"))
                .unwrap_or_else(|| "/".into());
            let shell = opt(args, "--shell")
                .or_else(|| opt(args, "-s"))
                .unwrap_or_else(|| "/usr/sbin/nologin".into());
            let gecos = opt(args, "--gecos")
                .or_else(|| opt(args, "-c"))
                .or_else(|| opt(args, "--comment"))
                .unwrap_or_default()
                .replace('"', "");
            // sysusers' `u NAME -` creates a group of the same name; `-:GROUP` joins an existing one.
            let id = match opt(args, "--ingroup").or_else(|| opt(args, "-g")) {
                Some(g) => format!("-:{g}"),
                None => "-".into(),
            };
            facts.sysusers.push(format!("u {name} {id} \"{gecos}\" {home} {shell}"));
        }
    }
}

fn alternative(facts: &mut ScriptFacts, args: &[String]) {
    let Some(i) = args.iter().position(|a| a == "--install") else {
        return;
    };
    let a = &args[i + 1..];
    if a.len() < 4 {
        return;
    }
    let Ok(priority) = a[3].parse() else { return };
    let mut slaves = Vec::new();
    let mut j = 4;
    while j + 3 < a.len() && a[j] == "--slave" {
        slaves.push((a[j + 1].clone(), a[j + 3].clone()));
        j += 4;
    }
    facts.alternatives.push(Alternative {
        link: a[0].clone(),
        name: a[1].clone(),
        path: a[2].clone(),
        priority,
        slaves,
    });
}

/// Read one maintainer script (`which` is its name: postinst, preinst, …) into `facts`.
pub(crate) fn read_script(which: &str, text: &str, facts: &mut ScriptFacts) {
    let mut dropped = BTreeSet::new();
    if which == "postinst" {
        facts.selinux_policy = PolicyBuild::read(text);
    }
    // Continuation lines are one command.
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        for cmd in commands(line) {
            let w = words(&cmd);
            let Some((i, word)) = command_word(&w) else { continue };
            let name = basename(word);
            let args = &w[i + 1..];
            match name {
                "adduser" | "addgroup" | "useradd" | "groupadd" => account(facts, name, args),
                "deb-systemd-helper" | "systemctl" => {
                    if let Some(e) = args.iter().position(|a| a == "enable") {
                        for u in &args[e + 1..] {
                            if !u.starts_with('-') && !u.starts_with('>') && !u.contains('$') && u.contains('.') {
                                facts.enable.push(u.clone());
                            }
                        }
                    }
                }
                // A loop over shell variables cannot be read without running it: say so.
                "update-alternatives" if args.iter().any(|a| a.contains('$')) => {
                    dropped.insert("update-alternatives (with shell variables)".to_string());
                }
                "update-alternatives" => alternative(facts, args),
                // iproute2 sets caps on /bin/ip only when a debconf question (default false) says
                // so: a script that asks debconf cannot be read as unconditional.
                "setcap" if text.contains("db_get") => {
                    dropped.insert("setcap (depends on a debconf answer)".to_string());
                }
                "semodule" if facts.selinux_policy.is_some() => {}
                "setcap" => {
                    let pos = positional(args, &[]);
                    if let [caps, path] = pos.as_slice() {
                        facts.caps.push((path.clone(), caps.clone()));
                    }
                }
                _ if SHELL.contains(&name) || name.ends_with("()") || name.starts_with('$') => {}
                _ if TRANSLATED.contains(&name) => {}
                _ => {
                    if name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c)) {
                        dropped.insert(name.to_string());
                    }
                }
            }
        }
    }
    if !dropped.is_empty() {
        facts.dropped.push(format!(
            "{which}: {}",
            dropped.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    facts.sysusers.dedup();
    facts.enable.sort();
    facts.enable.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debhelper_scripts_become_sysusers_presets_and_alternatives() {
        let postinst = r#"#!/bin/sh
set -e
if [ "$1" = configure ]; then
    addgroup --system docker
    adduser --system --group --home /var/lib/foo --no-create-home --gecos "Foo daemon" foo >/dev/null
    useradd -r -g nogroup -d /nonexistent -s /usr/sbin/nologin -c "bar user" bar
    adduser alice docker
    update-alternatives --install /usr/sbin/iptables iptables /usr/sbin/iptables-nft 20 \
        --slave /usr/sbin/iptables-save iptables-save /usr/sbin/iptables-nft-save
    setcap cap_net_raw+ep /bin/ping || true
    dpkg-maintscript-helper rm_conffile /etc/old -- "$@"
fi
# Automatically added by dh_installsystemd/13.11.4
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] ; then
	if deb-systemd-helper debian-installed 'docker.service'; then
		deb-systemd-helper unmask 'docker.service' >/dev/null || true
		if deb-systemd-helper --quiet was-enabled 'docker.service'; then
			deb-systemd-helper enable 'docker.service' >/dev/null || true
		fi
	fi
	deb-systemd-invoke start 'docker.service' >/dev/null || true
fi
ldconfig
"#;
        let mut f = ScriptFacts::default();
        read_script("postinst", postinst, &mut f);
        assert_eq!(
            f.sysusers,
            [
                "g docker -",
                "u foo - \"Foo daemon\" /var/lib/foo /usr/sbin/nologin",
                "u bar -:nogroup \"bar user\" /nonexistent /usr/sbin/nologin",
                "m alice docker"
            ]
        );
        assert_eq!(f.enable, ["docker.service"]);
        assert_eq!(
            f.alternatives,
            [Alternative {
                name: "iptables".into(),
                link: "/usr/sbin/iptables".into(),
                path: "/usr/sbin/iptables-nft".into(),
                priority: 20,
                slaves: vec![("/usr/sbin/iptables-save".into(), "/usr/sbin/iptables-nft-save".into())],
            }]
        );
        assert_eq!(f.caps, [("/bin/ping".to_string(), "cap_net_raw+ep".to_string())]);
        assert_eq!(f.dropped, ["postinst: deb-systemd-invoke, dpkg-maintscript-helper"]);
    }

    #[test]
    fn a_policy_packages_semodule_becomes_a_post_that_builds_the_policy() {
        // selinux-policy-default's postinst, abridged.
        let postinst = r#"#!/bin/sh
set -e
flavour="default"
priority=100
notdefault="amtu bugzilla"
. /etc/selinux/config
case "$1" in
    configure)
	for module in `cat /usr/share/selinux/${flavour}/.modules`; do
	    to_install="$to_install -i/usr/share/selinux/${flavour}/${module}.pp.bz2"
	done
	semodule -X $priority $noreload -s $flavour $to_remove $to_install $to_disable || ret=$?
    ;;
esac
dpkg-maintscript-helper rm_conffile /etc/selinux/default/users/local.users 2:2.20140421-10\~ -- "$@"
"#;
        let mut f = ScriptFacts::default();
        read_script("postinst", postinst, &mut f);
        let pb = f.selinux_policy.clone().unwrap();
        assert_eq!(pb.flavour, "default");
        assert_eq!(pb.priority, 100);
        assert_eq!(pb.not_default, ["amtu", "bugzilla"]);
        assert!(!f.dropped.iter().any(|d| d.contains("semodule")), "{:?}", f.dropped);
        let post = pb.post("selinux-policy-default", "base\nunconfined\n");
        assert!(
            post.contains(
                "semodule \\\n  -X 100 \\\n  -n \\\n  -s default \\\n  -i /usr/share/selinux/default/base.pp.bz2"
            ),
            "{post}"
        );
        assert!(post.ends_with("-d amtu \\\n  -d bugzilla\n"), "{post}");
        // Any other package's semodule is not a policy build.
        let mut other = ScriptFacts::default();
        read_script("postinst", "#!/bin/sh\nsemodule -i /usr/share/x.pp\n", &mut other);
        assert_eq!(other.selinux_policy, None);
        assert_eq!(other.dropped, ["postinst: semodule"]);
    }

    #[test]
    fn setcap_behind_a_debconf_question_is_dropped_not_applied() {
        // iproute2's postinst, abridged: the question defaults to false.
        let postinst = r#"#!/bin/sh
. /usr/share/debconf/confmodule
if command -v setcap > /dev/null; then
    db_get iproute2/setcaps
    if test "$RET" = "true"; then
        setcap "cap_dac_override,cap_sys_admin,cap_net_admin=ep" /bin/ip
    fi
fi
"#;
        let mut f = ScriptFacts::default();
        read_script("postinst", postinst, &mut f);
        assert!(f.caps.is_empty(), "{:?}", f.caps);
        assert_eq!(f.dropped.len(), 1);
        assert!(
            f.dropped[0].contains("setcap (depends on a debconf answer)"),
            "{:?}",
            f.dropped
        );
    }
}
