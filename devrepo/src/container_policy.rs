//! `fedostree-selinux-container`: the reference policy's `container` and `docker` modules, which
//! Debian's `selinux-policy-default` leaves out (they are in `selinux-policy-src`). Built here, as
//! Fedora builds its container-selinux: each module's `.te`/`.if`/`.fc` from Debian's policy source,
//! compiled by the policy's own development Makefile against the headers of the same Debian version
//! (`selinux-policy-dev`, unpacked: the host's are not used), with the host's m4, checkmodule and
//! semodule_package. The overlay (`devrepo/own/fedostree-selinux-container`) adds the local rules the
//! engine needs and Docker's `selinux-enabled`; the `%posttrans` installs it all into the store the
//! policy package's `%post` built.

use super::debian::{self, Deb};
use super::spec::PkgSpec;
use anyhow::{bail, Context, Result};
use fedostree_util::cmd::CommandRunExt;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const NAME: &str = "fedostree-selinux-container";
/// The modules built, in the order semodule installs them (docker uses container's interfaces).
const MODULES: &[&str] = &["container", "docker"];
/// Where the package keeps them (Fedora's container-selinux: /usr/share/selinux/packages).
const DEST: &str = "/usr/share/selinux/packages/fedostree-selinux-container";
/// Fedora's container-selinux installs at 200: above the distribution's modules (100), below local ones.
const PRIORITY: u32 = 200;

/// The package without its modules: the policy source's version (the one the modules are built
/// from), `bumps` raising its release.
pub(crate) fn skeleton(src: &Deb, dev: &Deb, bumps: u32) -> Result<PkgSpec> {
    if src.version != dev.version {
        bail!(
            "{NAME}: {} {} and {} {} differ: the modules must be built against their own version's headers",
            src.package,
            src.version,
            dev.package,
            dev.version
        );
    }
    let v = debian::split_version(&src.version)?;
    let evr = super::spec::evr(v.epoch, &v.version, &v.release);
    let mut install = format!("semodule -n -s default -X {PRIORITY}");
    for m in MODULES {
        install += &format!(" -i {DEST}/{m}.pp");
    }
    install += &format!(" -i {DEST}/fedostree-container-local.cil\n");
    Ok(PkgSpec {
        name: NAME.into(),
        epoch: v.epoch,
        version: v.version,
        release: super::repo::bumped_release(&v.release, bumps),
        arch: "noarch".into(),
        summary: "The reference policy's container and docker modules (built from Debian's selinux-policy-src) and Docker with SELinux".into(),
        license: "GPL-2.0-only".into(),
        // Built against this version's headers: only its policy may load them.
        requires: vec![format!("selinux-policy-default = {evr}"), "policycoreutils".into()],
        // After every %post: the policy package's has built the store the modules join.
        posttrans: Some(install),
        ..Default::default()
    })
}

/// The complete package: the modules compiled in `tmp`, plus the overlay from `source_dir`.
pub(crate) fn spec(
    src: &Deb,
    dev: &Deb,
    bumps: u32,
    source_dir: &Path,
    shared: &BTreeSet<String>,
    tmp: &Path,
) -> Result<PkgSpec> {
    let mut s = skeleton(src, dev, bumps)?;
    for pp in build_modules(src, dev, tmp)? {
        let file = pp
            .file_name()
            .context("module without a name")?
            .to_string_lossy()
            .into_owned();
        s.file(&format!("{DEST}/{file}"), pp, 0o644)?;
    }
    let overlay = super::own::overlay_dir(source_dir, NAME);
    if !overlay.is_dir() {
        bail!("{NAME}: overlay {} does not exist", overlay.display());
    }
    s.tree(&overlay, "", &|d: &str| Some(d.to_string()))?;
    s.own_parents(shared)?;
    Ok(s)
}

/// The overlay's files, for the input hash: a change to the local rules rebuilds the package.
pub(crate) fn overlay_hash(source_dir: &Path) -> Result<String> {
    let mut s = PkgSpec::default();
    s.tree(&super::own::overlay_dir(source_dir, NAME), "", &|d: &str| {
        Some(d.to_string())
    })?;
    s.content_hash()
}

/// `MODULES` compiled into `.pp` files under `tmp`.
fn build_modules(src: &Deb, dev: &Deb, tmp: &Path) -> Result<Vec<PathBuf>> {
    let root = tmp.join("selinux-policy");
    debian::extract(dev, &root.join("dev"))?;
    debian::extract(src, &root.join("src"))?;
    let tarball = root.join("src/usr/src/selinux-policy-src.tar.zst");
    Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .run()
        .with_context(|| format!("{NAME}: unpacking {}", tarball.display()))?;
    let modules_dir = root.join("selinux-policy-src/policy/modules");
    let build = root.join("build");
    fs_err::create_dir_all(&build)?;
    for m in MODULES {
        let te = find_module(&modules_dir, m)?;
        for ext in ["te", "if", "fc"] {
            fs_err::copy(te.with_extension(ext), build.join(format!("{m}.{ext}")))?;
        }
    }
    let headers = root.join("dev/usr/share/selinux/devel/include");
    Command::new("make")
        .arg("-s")
        .arg("-f")
        .arg(headers.join("Makefile"))
        .arg(format!("HEADERDIR={}", headers.display()))
        // The store the tree's policy lives in, not whatever the host's /etc/selinux/config says.
        .arg("NAME=default")
        .args(MODULES.iter().map(|m| format!("{m}.pp")))
        .current_dir(&build)
        .run()
        .with_context(|| format!("{NAME}: building {MODULES:?} with {}", headers.display()))?;
    Ok(MODULES.iter().map(|m| build.join(format!("{m}.pp"))).collect())
}

/// `modules_dir/<layer>/<name>.te`: the reference policy files modules by layer (services, system…).
fn find_module(modules_dir: &Path, name: &str) -> Result<PathBuf> {
    for layer in fs_err::read_dir(modules_dir)? {
        let te = layer?.path().join(format!("{name}.te"));
        if te.is_file() {
            return Ok(te);
        }
    }
    bail!("{NAME}: no module {name} (.te) under {}", modules_dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(package: &str, version: &str) -> Deb {
        Deb {
            package: package.into(),
            version: version.into(),
            sha256: String::new(),
            path: PathBuf::new(),
        }
    }

    /// The package takes the policy's version, requires exactly that policy, and installs both modules
    /// and the local rules in one semodule transaction at Fedora's container-selinux priority.
    #[test]
    fn skeleton_pins_the_policy_it_was_built_against() {
        let s = skeleton(
            &deb("selinux-policy-src", "2:2.20221101-9"),
            &deb("selinux-policy-dev", "2:2.20221101-9"),
            1,
        )
        .unwrap();
        assert_eq!(s.nevra(), "fedostree-selinux-container-2:2.20221101-10.noarch");
        assert!(
            s.requires
                .contains(&"selinux-policy-default = 2:2.20221101-9".to_string()),
            "{:?}",
            s.requires
        );
        let post = s.posttrans.unwrap();
        assert_eq!(post.matches("semodule ").count(), 1, "{post}");
        for m in ["container.pp", "docker.pp", "fedostree-container-local.cil"] {
            assert!(post.contains(&format!("{DEST}/{m}")), "{post}");
        }
        assert!(post.contains("-X 200"), "{post}");
    }

    /// Headers of another version than the source would compile modules the tree's policy may refuse.
    #[test]
    fn source_and_headers_of_different_versions_are_refused() {
        let e = skeleton(
            &deb("selinux-policy-src", "2:2.20221101-9"),
            &deb("selinux-policy-dev", "2:2.20221101-10"),
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("selinux-policy-dev 2:2.20221101-10"), "{e}");
    }

    #[test]
    fn a_module_is_found_in_its_layer_or_named_missing() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(d.path().join("services")).unwrap();
        fs_err::create_dir_all(d.path().join("system")).unwrap();
        fs_err::write(d.path().join("services/docker.te"), "").unwrap();
        assert_eq!(
            find_module(d.path(), "docker").unwrap(),
            d.path().join("services/docker.te")
        );
        let e = find_module(d.path(), "podman").unwrap_err();
        assert!(e.to_string().contains("no module podman"), "{e}");
    }
}
