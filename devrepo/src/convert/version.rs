//! Debian versions as RPM Epoch/Version/Release, mapped so that rpmvercmp orders them as dpkg does.
//!
//! `[E:]U[-R]` → Epoch E, Version U, Release R (`0` for a native package, which has no revision).
//! RPM forbids `-` in a version and reads `:` as the epoch separator, so those become `_` in the
//! upstream part: rpmvercmp treats every non-alphanumeric character but `~` and `^` as a separator,
//! and dpkg's upstream versions that contain them only ever compare against each other at the same
//! positions. `~` sorts before everything in both. The test below checks the claim on every version
//! of every package of the real set, pairwise, with libsolv's rpmvercmp.

/// RPM epoch, version and release of a Debian version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Evr {
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
}

impl Evr {
    #[cfg(test)]
    /// `E:V-R` (no `E:` when there is no epoch), as RPM dependencies spell it.
    pub fn text(&self) -> String {
        crate::spec::evr(self.epoch, &self.version, &self.release)
    }
}

pub(crate) fn rpm_evr(v: &debversion::Version) -> Evr {
    Evr {
        epoch: v.epoch,
        version: v.upstream_version.replace(['-', ':'], "_"),
        release: v.debian_revision.clone().unwrap_or_else(|| "0".to_string()),
    }
}

/// The version in a dependency: a Debian constraint without a revision constrains the upstream
/// version only, which is what an RPM dependency without a release does.
pub(crate) fn rpm_constraint_version(v: &debversion::Version) -> String {
    let e = rpm_evr(v);
    let epoch = e.epoch.map(|e| format!("{e}:")).unwrap_or_default();
    match &v.debian_revision {
        Some(r) => format!("{epoch}{}-{r}", e.version),
        None => format!("{epoch}{}", e.version),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn v(s: &str) -> debversion::Version {
        s.parse().unwrap()
    }

    #[test]
    fn versions_split_into_epoch_version_release() {
        assert_eq!(
            rpm_evr(&v("1:2.36-9+deb12u4")),
            Evr {
                epoch: Some(1),
                version: "2.36".into(),
                release: "9+deb12u4".into()
            }
        );
        assert_eq!(rpm_evr(&v("35")).release, "0");
        assert_eq!(rpm_evr(&v("1:1.2-3-4")).version, "1.2_3");
        assert_eq!(rpm_evr(&v("2:1:2-1")).version, "1_2");
        assert_eq!(rpm_constraint_version(&v("2.36")), "2.36");
        assert_eq!(rpm_constraint_version(&v("1:2.36-1~")), "1:2.36-1~");
    }

    /// Pairs whose order is easy to get wrong: tildes, revisions, epochs, `+` suffixes.
    #[test]
    fn rpm_orders_tricky_versions_as_dpkg_does() {
        let vs = [
            "1.0~rc1-1",
            "1.0-1",
            "1.0-1+b1",
            "1.0-1~bpo12+1",
            "1.0-2",
            "1.0+dfsg-1",
            "1.0.1-1",
            "1:0.9-1",
            "2.36-9+deb12u4",
            "2.36-9+deb12u10",
            "6.1.158-1",
            "6.1.19-1",
            "20.10.24+dfsg1-1+deb12u1+b6",
        ];
        assert_same_order(&vs.iter().map(|s| v(s)).collect::<Vec<_>>());
    }

    pub(crate) fn assert_same_order(vs: &[debversion::Version]) {
        for a in vs {
            for b in vs {
                let dpkg = a.cmp(b);
                let rpm = fedostree_compose::solve::evrcmp(&rpm_evr(a).text(), &rpm_evr(b).text());
                assert_eq!(dpkg, rpm, "dpkg orders {a} vs {b} as {dpkg:?}, rpm as {rpm:?}");
            }
        }
    }
}
