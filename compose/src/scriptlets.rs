//! RPM scriptlets as the package headers declare them: [`Phase`], [`Scriptlet`] and [`read`].
//! Running them in the sandbox at compose time is `scriptlet_run.rs`'s.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    Pre,
    Post,
    PostTrans,
    TransFileTriggerIn,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pre => "%pre",
            Phase::Post => "%post",
            Phase::PostTrans => "%posttrans",
            Phase::TransFileTriggerIn => "%transfiletriggerin",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Scriptlet {
    pub phase: Phase,
    /// Interpreter and its arguments (`/bin/sh` when the header names none).
    pub program: Vec<String>,
    pub body: String,
    /// `%transfiletriggerin`: the paths whose files fire it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
    /// The body asks rpm to expand macros (`-e`) or query formats (`-q`) first: refused by name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_expansion: bool,
}

/// rpm's `RPMSCRIPT_FLAG_EXPAND` and `RPMSCRIPT_FLAG_QFORMAT`.
const SCRIPT_FLAGS_EXPANDED: u32 = 0b11;
/// rpm's `RPMSENSE_TRIGGERIN`.
const SENSE_TRIGGERIN: u32 = 1 << 16;

/// The scriptlets an RPM header carries.
pub fn read(md: &rpm::PackageMetadata) -> Vec<Scriptlet> {
    let mut out = Vec::new();
    for (phase, s) in [
        (Phase::Pre, md.get_pre_install_script()),
        (Phase::Post, md.get_post_install_script()),
        (Phase::PostTrans, md.get_post_trans_script()),
    ] {
        if let Ok(s) = s {
            let program = s
                .program
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into()]);
            // An interpreter-only scriptlet (`%post -p /sbin/ldconfig`) has an empty body.
            out.push(Scriptlet {
                phase,
                program,
                body: s.script,
                patterns: Vec::new(),
                needs_expansion: s.flags.is_some_and(|f| f.bits() & SCRIPT_FLAGS_EXPANDED != 0),
            });
        }
    }
    out.extend(trans_file_triggers_in(&md.header));
    out
}

/// The `%transfiletriggerin` scripts of a header. rpm stores one entry per (script, path) pair in
/// the NAME/FLAGS/INDEX arrays; INDEX points into the SCRIPTS/SCRIPTPROG/SCRIPTFLAGS arrays.
fn trans_file_triggers_in(h: &rpm::Header<rpm::IndexTag>) -> Vec<Scriptlet> {
    use rpm::IndexTag::*;
    let strings = |t| h.get_entry_data_as_string_array(t).unwrap_or_default();
    let numbers = |t| h.get_entry_data_as_u32_array(t).unwrap_or_default();
    let (scripts, progs, names) = (
        strings(RPMTAG_TRANSFILETRIGGERSCRIPTS),
        strings(RPMTAG_TRANSFILETRIGGERSCRIPTPROG),
        strings(RPMTAG_TRANSFILETRIGGERNAME),
    );
    let (index, senses, script_flags) = (
        numbers(RPMTAG_TRANSFILETRIGGERINDEX),
        numbers(RPMTAG_TRANSFILETRIGGERFLAGS),
        numbers(RPMTAG_TRANSFILETRIGGERSCRIPTFLAGS),
    );
    let mut out = Vec::new();
    for (i, body) in scripts.iter().enumerate() {
        let patterns: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(j, _)| index.get(*j) == Some(&(i as u32)))
            .filter(|(j, _)| senses.get(*j).is_some_and(|s| s & SENSE_TRIGGERIN != 0))
            .map(|(_, n)| n.to_string())
            .collect();
        if patterns.is_empty() {
            continue;
        }
        let program = progs.get(i).filter(|p| !p.is_empty()).unwrap_or(&"/bin/sh");
        out.push(Scriptlet {
            phase: Phase::TransFileTriggerIn,
            program: vec![program.to_string()],
            body: body.to_string(),
            patterns,
            needs_expansion: script_flags.get(i).is_some_and(|f| f & SCRIPT_FLAGS_EXPANDED != 0),
        });
    }
    out
}
