//! Checks of treefile values that need none of the treefile types: each takes plain values and
//! returns the error message, which [`crate::treefile`] reports with the file (and the key) at fault.

use crate::treefile_vars::{self, Variables};
use std::collections::BTreeMap;

/// A `ref`, variables substituted: every variable it names is defined, and it can name a ref.
pub(crate) fn check_ref(ref_: &str) -> Result<(), String> {
    if ref_.contains("${") {
        return Err(format!("`ref` `{ref_}` names a variable that is not defined"));
    }
    if ref_.is_empty() || ref_.contains(['\0', ' ', '\n']) {
        return Err(format!("invalid ref `{ref_}`"));
    }
    Ok(())
}

/// `remove-files` entries name paths beneath `/`, relative to it.
pub(crate) fn check_remove_files(remove_files: &[String]) -> Result<(), String> {
    for f in remove_files {
        if f.starts_with('/') || f.split('/').any(|c| c == "..") {
            return Err(format!(
                "remove-files entry `{f}` must be relative to / and must not contain `..`"
            ));
        }
    }
    Ok(())
}

/// The names of `packages` and `exclude-packages` contain no control character.
pub(crate) fn check_package_names(packages: &[String], exclude_packages: &[String]) -> Result<(), String> {
    for (key, names) in [("packages", packages), ("exclude-packages", exclude_packages)] {
        if let Some(bad) = names.iter().find(|n| n.chars().any(char::is_control)) {
            return Err(format!("`{key}`: package name {bad:?} contains a control character"));
        }
    }
    Ok(())
}

/// `repovars` names are variable names, and neither `releasever` nor `basearch` (the compose's own).
pub(crate) fn check_repovars(repovars: &BTreeMap<String, String>) -> Result<(), String> {
    for name in repovars.keys() {
        if name == "releasever" || name == "basearch" {
            return Err(format!(
                "`repovars`: `{name}` cannot be set here (rpm-ostree refuses it too): {}",
                if name == "releasever" {
                    "use the `releasever` key"
                } else {
                    "it is the compose architecture"
                }
            ));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`repovars`: `{name}` is not a variable name (letters, digits, _)"
            ));
        }
    }
    Ok(())
}

/// A treefile's own `variables`: none named like the compose's own, and [`treefile_vars::check`]'s rules.
pub(crate) fn check_variables(own: &Variables) -> Result<(), String> {
    if let Some(name) = own.keys().find(|k| treefile_vars::RESERVED.contains(&k.as_str())) {
        return Err(format!("`{name}` is defined by the compose itself"));
    }
    treefile_vars::check(own)
}
