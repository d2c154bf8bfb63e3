//! Treefile variables (`variables`, `basearch`, `releasever`): their values, the `if:` conditions of
//! `conditional-include`, and `${name}` substitution — rpm-ostree's rules: values are booleans,
//! unsigned integers or strings and are never converted into one another; a condition on an
//! undefined variable or across types is an error; an unknown `${name}` stays as written.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Names the compose defines itself; a treefile's `variables` may not.
pub const RESERVED: &[&str] = &["basearch", "releasever"];

/// A variable's value, typed as the YAML wrote it (`35` and `"35"` differ).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum VarValue {
    Bool(bool),
    Number(u64),
    String(String),
}

impl fmt::Display for VarValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarValue::Bool(b) => write!(f, "{b}"),
            VarValue::Number(n) => write!(f, "{n}"),
            VarValue::String(s) => f.write_str(s),
        }
    }
}

impl VarValue {
    fn type_name(&self) -> &'static str {
        match self {
            VarValue::Bool(_) => "a boolean",
            VarValue::Number(_) => "a number",
            VarValue::String(_) => "a string",
        }
    }
}

pub type Variables = BTreeMap<String, VarValue>;

/// `$`, `{` or `}` in a name or value would make substitution ambiguous (rpm-ostree refuses exactly
/// these). A name with other characters substitutes but cannot appear in a condition.
pub fn check(vars: &Variables) -> Result<(), String> {
    for (k, v) in vars {
        if let Some(c) = k.chars().find(|c| matches!(c, '$' | '{' | '}')) {
            return Err(format!("variable name `{k}` contains forbidden character `{c}`"));
        }
        let v = v.to_string();
        if let Some(c) = v.chars().find(|c| matches!(c, '$' | '{' | '}')) {
            return Err(format!(
                "variable `{k}`: value `{v}` contains forbidden character `{c}`"
            ));
        }
    }
    Ok(())
}

/// Replace every `${name}` of a defined variable; others stay as written.
pub fn substitute(s: &str, vars: &Variables) -> String {
    let mut out = s.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), &v.to_string());
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One `if:` condition: `name op value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    var: String,
    op: Op,
    value: VarValue,
}

impl Condition {
    /// Parse `name op value`, where op is one of `== != < <= > >=` and value is `true`, `false`, an
    /// unsigned integer or a double-quoted string (no escapes).
    pub fn parse(text: &str) -> Result<Condition, String> {
        let invalid = || format!("invalid condition `{text}` (expected `name op value`)");
        let s = text.trim();
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        if name_end == 0 {
            return Err(invalid());
        }
        let (var, rest) = s.split_at(name_end);
        let rest = rest.trim_start();
        let op_end = rest.find(|c| !matches!(c, '=' | '!' | '<' | '>')).unwrap_or(rest.len());
        let (op_text, value_text) = rest.split_at(op_end);
        let op = match op_text {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "" => return Err(invalid()),
            other => {
                return Err(format!(
                    "`{text}`: expected one of ==, !=, <, <=, >, >= but got `{other}`"
                ))
            }
        };
        let v = value_text.trim();
        let value = match v {
            "true" => VarValue::Bool(true),
            "false" => VarValue::Bool(false),
            _ if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                VarValue::Number(v.parse().map_err(|_| format!("`{text}`: number `{v}` is too large"))?)
            }
            _ if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') => VarValue::String(v[1..v.len() - 1].into()),
            _ => return Err(invalid()),
        };
        Ok(Condition {
            var: var.to_owned(),
            op,
            value,
        })
    }

    pub fn evaluate(&self, vars: &Variables) -> Result<bool, String> {
        let have = vars
            .get(&self.var)
            .ok_or_else(|| format!("undefined variable `{}`", self.var))?;
        let want = &self.value;
        let ordering = match (have, want) {
            (VarValue::Number(a), VarValue::Number(b)) => a.cmp(b),
            (VarValue::Bool(a), VarValue::Bool(b)) => a.cmp(b),
            (VarValue::String(a), VarValue::String(b)) => a.cmp(b),
            _ => {
                return Err(format!(
                    "variable `{}` is {} ({have}), compared with {} ({want})",
                    self.var,
                    have.type_name(),
                    want.type_name()
                ))
            }
        };
        let numeric = matches!(have, VarValue::Number(_));
        use std::cmp::Ordering::*;
        Ok(match self.op {
            Op::Eq => ordering == Equal,
            Op::Ne => ordering != Equal,
            _ if !numeric => {
                return Err(format!(
                    "variable `{}` is {}: only numbers compare with <, <=, >, >=",
                    self.var,
                    have.type_name()
                ))
            }
            Op::Lt => ordering == Less,
            Op::Le => ordering != Greater,
            Op::Gt => ordering == Greater,
            Op::Ge => ordering != Less,
        })
    }
}

/// Every condition holds (all are evaluated, so an error in a later one is reported even after a
/// false one, as rpm-ostree does).
pub fn all_hold(conditions: &[String], vars: &Variables) -> Result<bool, String> {
    let mut all = true;
    for c in conditions {
        let holds = Condition::parse(c)
            .and_then(|c| c.evaluate(vars))
            .map_err(|e| format!("if `{c}`: {e}"))?;
        all &= holds;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        [
            ("basearch", VarValue::String("x86_64".into())),
            ("releasever", VarValue::Number(41)),
            ("rawhide", VarValue::Bool(false)),
            ("stream", VarValue::String("next".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn holds(c: &str) -> Result<bool, String> {
        Condition::parse(c)?.evaluate(&vars())
    }

    #[test]
    fn operators_on_each_type() {
        assert!(holds(r#"basearch == "x86_64""#).unwrap());
        assert!(!holds(r#"basearch != "x86_64""#).unwrap());
        assert!(holds("releasever >= 41").unwrap());
        assert!(holds("releasever>40").unwrap());
        assert!(!holds("releasever < 41").unwrap());
        assert!(holds("releasever <= 41").unwrap());
        assert!(holds("rawhide == false").unwrap());
        assert!(holds("  stream   !=   \"stable\"  ").unwrap());
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(holds("nosuch == 1")
            .unwrap_err()
            .contains("undefined variable `nosuch`"));
        let e = holds(r#"releasever == "41""#).unwrap_err();
        assert!(e.contains("is a number") && e.contains("a string"), "{e}");
        assert!(holds("rawhide < true").unwrap_err().contains("only numbers"));
        assert!(holds("stream =~ \"x\"").unwrap_err().contains("expected one of"));
        assert!(holds("stream == next").unwrap_err().contains("invalid condition"));
        assert!(holds("releasever == -1").unwrap_err().contains("invalid condition"));
        assert!(holds("== 1").unwrap_err().contains("invalid condition"));
    }

    #[test]
    fn all_conditions_are_evaluated() {
        let v = vars();
        assert!(all_hold(&["releasever >= 40".into(), "rawhide == false".into()], &v).unwrap());
        assert!(!all_hold(&["releasever >= 42".into(), "rawhide == false".into()], &v).unwrap());
        // A false first condition does not hide an error in the second.
        assert!(all_hold(&["releasever >= 42".into(), "nosuch == 1".into()], &v).is_err());
        assert!(all_hold(&[], &v).unwrap());
    }

    #[test]
    fn substitution_leaves_unknown_names() {
        let v = vars();
        assert_eq!(
            substitute("fedora/${releasever}/${basearch}/${stream}-${unknown}", &v),
            "fedora/41/x86_64/next-${unknown}"
        );
        assert_eq!(substitute("${rawhide}", &v), "false");
    }

    #[test]
    fn forbidden_characters_in_values() {
        let mut v = vars();
        assert!(check(&v).is_ok());
        v.insert("bad".into(), VarValue::String("${x}".into()));
        assert!(check(&v).unwrap_err().contains("forbidden character"));
    }
}
