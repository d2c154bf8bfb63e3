//! Kernel module selection for the initramfs: the dependency closure of the wanted modules read from
//! the tree's `modules.dep` (what depmod wrote, so no module binary is inspected and any target
//! architecture works), minus what `modules.builtin` says is compiled in.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module name as the kernel spells it: file stem without `.ko[.xz|.zst|.gz]`, `-` folded to `_`.
pub(crate) fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.find(".ko").map_or(base, |i| &base[..i]);
    stem.replace('-', "_")
}

/// A parsed `modules.dep`: module name → (path relative to the modules dir, direct dependency names).
pub(crate) struct ModulesDep {
    pub(crate) modules: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl ModulesDep {
    pub(crate) fn load(modules_dir: &Path) -> Result<Self> {
        let dep_path = modules_dir.join("modules.dep");
        let dep = fs_err::read_to_string(&dep_path).with_context(|| format!("reading {}", dep_path.display()))?;
        let mut modules = BTreeMap::new();
        for (n, line) in dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, deps) = line.split_once(':').ok_or_else(|| {
                fedostree_util::InputError::new(format!("{}:{}: no ':' in {line:?}", dep_path.display(), n + 1))
            })?;
            let deps = deps.split_whitespace().map(module_name).collect();
            modules.insert(module_name(module), (module.trim().to_string(), deps));
        }
        // A kernel without modules.builtin has nothing built in worth skipping.
        let builtin_path = modules_dir.join("modules.builtin");
        let builtin = match fs_err::read_to_string(&builtin_path) {
            Ok(s) => s.lines().filter(|l| !l.trim().is_empty()).map(module_name).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", builtin_path.display())),
        };
        Ok(Self { modules, builtin })
    }

    /// Loadable modules for `wanted`, dependencies before dependents, each once.
    pub(crate) fn closure(&self, wanted: &[&str]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut state = BTreeMap::new();
        for w in wanted {
            self.visit(&module_name(w), None, &mut state, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        needed_by: Option<&str>,
        state: &mut BTreeMap<String, bool>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        match state.get(name) {
            Some(true) => return Ok(()),
            Some(false) => fedostree_util::bail_input!("kernel module dependency cycle through `{name}`"),
            None => {}
        }
        let Some((_, deps)) = self.modules.get(name) else {
            if self.builtin.contains(name) {
                return Ok(());
            }
            let why = needed_by.map(|m| format!(" (needed by `{m}`)")).unwrap_or_default();
            fedostree_util::bail_input!("kernel module `{name}`{why} is neither in modules.dep nor in modules.builtin");
        };
        state.insert(name.to_string(), false);
        // modprobe loads the dependencies listed last first; follow it so the order matches a real boot.
        for d in deps.iter().rev() {
            self.visit(d, Some(name), state, order)?;
        }
        state.insert(name.to_string(), true);
        order.push(name.to_string());
        Ok(())
    }
}
