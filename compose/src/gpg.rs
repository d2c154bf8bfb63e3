//! OpenPGP for repositories, as dnf does it: `gpgcheck=1` verifies every RPM's header signature (and
//! through it the payload digest) against the repository's `gpgkey=` keys; `repo_gpgcheck=1` verifies
//! `repomd.xml` against its detached `repomd.xml.asc`; [`sign_detached`] makes such signatures (the
//! dev repository's key itself lives in the devrepo crate). RSA and EdDSA keys, as Fedora uses.

use anyhow::{anyhow, Result};
use fedostree_util::InputError;
use pgp::composed::{ArmorOptions, Deserializable, DetachedSignature};
use pgp::ser::Serialize;
use rpm::signature::pgp::{Signer, Verifier};
use rpm::signature::{Signing, Verifying};

/// The keys one repository trusts.
pub struct RepoKeys {
    repo: String,
    verifier: Verifier,
    id: String,
}

impl RepoKeys {
    /// The keys of repository `repo_id` from its `gpgkey=` files, as (url, armored bytes); one file may
    /// hold several keys. A file without a usable key is an error naming it. (Fetching them is
    /// `repo::repo_keys`'s.)
    pub fn from_files(repo_id: &str, files: &[(String, Vec<u8>)]) -> Result<RepoKeys> {
        let mut verifier = Verifier::new();
        let mut id = <sha2::Sha256 as sha2::Digest>::new();
        for (url, bytes) in files {
            verifier.load_from_asc_bytes(bytes).map_err(|e| {
                InputError::new(format!(
                    "repository `{repo_id}`: gpgkey {url} holds no usable OpenPGP public key: {e}"
                ))
            })?;
            sha2::Digest::update(&mut id, (bytes.len() as u64).to_be_bytes());
            sha2::Digest::update(&mut id, bytes);
        }
        Ok(RepoKeys {
            repo: repo_id.to_string(),
            verifier,
            id: hex::encode(sha2::Digest::finalize(id)),
        })
    }

    /// A digest of the key material: what an RPM was checked against, for caches of checked work.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Check an RPM's header signature and its header and payload digests.
    pub fn verify_rpm(&self, pkg: &rpm::Package, what: &str) -> Result<()> {
        pkg.verify_signature(&self.verifier).map_err(|e| {
            let why = match e {
                rpm::Error::NoSignatureFound => "the package is not signed".to_string(),
                e => e.to_string(),
            };
            InputError::new(format!(
                "{what}: signature check against repository `{}` keys failed: {why}",
                self.repo
            ))
        })
    }

    /// Check `data` against an ASCII-armored detached signature (`repomd.xml.asc`).
    pub fn verify_detached(&self, data: &[u8], armored: &[u8], what: &str) -> Result<()> {
        let fail = |why: String| {
            InputError::new(format!(
                "{what}: signature check against repository `{}` keys failed: {why}",
                self.repo
            ))
        };
        let (sig, _) =
            DetachedSignature::from_armor_single(armored).map_err(|e| fail(format!("unreadable signature: {e}")))?;
        let bytes = sig.to_bytes().map_err(|e| fail(e.to_string()))?;
        self.verifier.verify(data, &bytes).map_err(|e| fail(e.to_string()))
    }
}

/// An ASCII-armored detached signature over `data`, made at time `t` (reproducible: EdDSA and RSA
/// PKCS#1 signatures are deterministic).
pub fn sign_detached(signer: &Signer, data: &[u8], t: u32) -> Result<String> {
    let bytes = signer
        .sign(data, rpm::Timestamp::from(t))
        .map_err(|e| anyhow!("signing: {e}"))?;
    let sig = DetachedSignature::from_bytes(&bytes[..]).map_err(|e| anyhow!("reading back a signature: {e}"))?;
    sig.to_armored_string(ArmorOptions::default())
        .map_err(|e| anyhow!("armoring a signature: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The dev repository's key pair (the devrepo crate owns it; a test fixture here).
    const DEV_SECRET_KEY: &str = include_str!("../../devrepo/keys/fedostree-dev.secret.asc");
    const DEV_PUBLIC_KEY: &str = include_str!("../../devrepo/keys/RPM-GPG-KEY-fedostree-dev");

    fn dev_signer() -> Result<Signer> {
        Signer::from_asc(DEV_SECRET_KEY).map_err(|e| anyhow!("loading the dev signing key: {e}"))
    }
    use crate::repo::RepoConfig;

    fn repo(keys: Vec<String>) -> RepoConfig {
        RepoConfig {
            id: "t".into(),
            name: "t".into(),
            baseurl: "file:///nonexistent".into(),
            gpgcheck: true,
            repo_gpgcheck: true,
            gpgkeys: keys,
            source: "t.repo".into(),
            unexpanded: None,
            ..RepoConfig::default()
        }
    }

    fn key_file(dir: &std::path::Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        format!("file://{}", p.display())
    }

    #[test]
    fn detached_signatures_verify_and_tampering_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let keys = crate::repo::repo_keys(&repo(vec![key_file(d.path(), "k", DEV_PUBLIC_KEY)])).unwrap();
        let data = b"<repomd/>\n";
        let sig = sign_detached(&dev_signer().unwrap(), data, 1_704_067_200).unwrap();
        assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----"), "{sig}");
        // Deterministic: the same data and time give the same bytes (reproducible repodata).
        assert_eq!(sig, sign_detached(&dev_signer().unwrap(), data, 1_704_067_200).unwrap());
        keys.verify_detached(data, sig.as_bytes(), "repomd.xml").unwrap();
        let e = keys
            .verify_detached(b"<repomd>evil</repomd>\n", sig.as_bytes(), "repomd.xml")
            .unwrap_err();
        assert!(fedostree_util::is_input_error(&e), "{e:#}");
        assert!(format!("{e:#}").contains("repository `t`"), "{e:#}");
        let e = keys.verify_detached(data, b"garbage", "repomd.xml").unwrap_err();
        assert!(format!("{e:#}").contains("unreadable signature"), "{e:#}");
    }

    #[test]
    fn gpgcheck_without_a_usable_key_is_an_error() {
        let e = crate::repo::repo_keys(&repo(vec![])).err().unwrap();
        assert!(format!("{e:#}").contains("no gpgkey"), "{e:#}");
        let d = tempfile::tempdir().unwrap();
        let e = crate::repo::repo_keys(&repo(vec![key_file(d.path(), "k", "not a key")]))
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("no usable OpenPGP public key"), "{e:#}");
        assert!(fedostree_util::is_input_error(&e));
    }

    /// RSA keys (what Fedora signed with for years) and EdDSA keys both verify; each key verifies only
    /// its own signatures.
    #[test]
    fn rsa_and_eddsa_packages_verify_against_their_own_keys_only() {
        let d = tempfile::tempdir().unwrap();
        let rsa_secret = include_str!("../tests/keys/rsa-test.secret.asc");
        let rsa_public = include_str!("../tests/keys/rsa-test.pub.asc");
        let build = |signer: Signer| {
            rpm::PackageBuilder::new("signed", "1.0", "MIT", "noarch", "signature test")
                .release("1")
                .with_file_contents(b"x\n".to_vec(), rpm::FileOptions::new("/usr/share/signed/x"))
                .unwrap()
                .build_and_sign(signer)
                .unwrap()
        };
        let by_rsa = build(Signer::from_asc(rsa_secret).unwrap());
        let by_dev = build(dev_signer().unwrap());
        let rsa = crate::repo::repo_keys(&repo(vec![key_file(d.path(), "rsa", rsa_public)])).unwrap();
        let dev = crate::repo::repo_keys(&repo(vec![key_file(d.path(), "dev", DEV_PUBLIC_KEY)])).unwrap();
        rsa.verify_rpm(&by_rsa, "signed").unwrap();
        dev.verify_rpm(&by_dev, "signed").unwrap();
        assert!(rsa.verify_rpm(&by_dev, "signed").is_err());
        let e = dev.verify_rpm(&by_rsa, "signed").unwrap_err();
        assert!(fedostree_util::is_input_error(&e), "{e:#}");
        // Both keys in one repository: either signature is accepted.
        let both = crate::repo::repo_keys(&repo(vec![
            key_file(d.path(), "rsa", rsa_public),
            key_file(d.path(), "dev", DEV_PUBLIC_KEY),
        ]))
        .unwrap();
        both.verify_rpm(&by_rsa, "signed").unwrap();
        both.verify_rpm(&by_dev, "signed").unwrap();
    }
}
