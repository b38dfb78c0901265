//! Test certificates (rcgen): a CA, a broker certificate for localhost and 127.0.0.1, and
//! client certificates, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    pub pem: PathBuf,
}

pub fn ca(dir: &Path) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "shardlog test CA");
    let cert = p.self_signed(&key).expect("CA");
    let pem = dir.join("ca.pem");
    std::fs::write(&pem, cert.pem()).expect("write CA");
    Ca { cert, key, pem }
}

impl Ca {
    /// A certificate for `names` (DNS names or IPs) with subject `dn` ((type, value) pairs),
    /// signed by this CA: (certificate PEM path, key PEM path, both in one PEM path).
    pub fn issue(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
        dn: &[(DnType, &str)],
    ) -> (PathBuf, PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("sign");
        let (c, k, both) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
            dir.join(format!("{file}-keystore.pem")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        std::fs::write(&both, format!("{}{}", cert.pem(), key.serialize_pem()))
            .expect("write keystore");
        (c, k, both)
    }
}
