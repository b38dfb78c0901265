//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them (KIP-84): the
//! stored credential (salt, iterations, StoredKey, ServerKey — never the password) and the
//! server side of the exchange.
//!
//! Invariant: a password or salted password is never kept; an exchange for an unknown user
//! runs to its end against a made-up credential, so the answer never tells whether the user
//! exists; proofs are compared in constant time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::AuthError;

/// Iterations Kafka accepts for both mechanisms (ScramMechanism.java).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;
/// Longest SCRAM message taken from a client.
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The code DescribeUserScramCredentials and AlterUserScramCredentials use (KIP-554).
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Hi() of RFC 5802: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Mechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the broker stores for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

impl Credential {
    /// From the salted password a client computed (AlterUserScramCredentials, KIP-554).
    pub fn from_salted(mech: Mechanism, salt: Vec<u8>, iterations: u32, salted: &[u8]) -> Self {
        let client_key = mech.hmac(salted, b"Client Key");
        Credential {
            salt,
            iterations,
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(salted, b"Server Key"),
        }
    }

    /// From a password, with a fresh random salt.
    pub fn from_password(mech: Mechanism, password: &str, iterations: u32) -> Self {
        let salt = random_bytes(32);
        let salted = mech.salted_password(password.as_bytes(), &salt, iterations);
        Credential::from_salted(mech, salt, iterations, &salted)
    }

    /// Whether `password` is this credential's (SASL/PLAIN checks a password this way).
    pub fn matches(&self, mech: Mechanism, password: &str) -> bool {
        let salted = mech.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let stored = mech.hash(&mech.hmac(&salted, b"Client Key"));
        bool::from(stored.ct_eq(&self.stored_key))
    }
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    b
}

mod b64 {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

/// The server's side of one SCRAM exchange.
pub struct ScramServer {
    mech: Mechanism,
    state: State,
}

enum State {
    Start,
    /// Sent server-first; waiting for client-final.
    First {
        user: String,
        /// `None` for an unknown user: the exchange fails at its end.
        credential: Option<Credential>,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

fn malformed(what: &str) -> AuthError {
    AuthError::Malformed(format!("SCRAM: {what}"))
}

/// Unescapes a SCRAM saslname (`=2C` is `,`, `=3D` is `=`; any other `=` is invalid).
fn saslname(s: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed("bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ScramServer {
    pub fn new(mech: Mechanism) -> Self {
        ScramServer {
            mech,
            state: State::Start,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// Whether the next message is client-first.
    pub fn client_first_pending(&self) -> bool {
        matches!(self.state, State::Start)
    }

    /// Takes the client-first message; answers server-first. `lookup` finds the user's
    /// credential for this mechanism.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl Fn(&str) -> Option<Credential>,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Start) {
            return Err(malformed("client-first sent twice"));
        }
        self.state = State::Done;
        if msg.len() > MAX_MESSAGE {
            return Err(malformed("message too long"));
        }
        let text = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
        // gs2-header: cbind flag, authzid, then client-first-bare.
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().unwrap_or("");
        let authzid = parts.next().ok_or_else(|| malformed("no gs2 header"))?;
        let bare = parts.next().ok_or_else(|| malformed("no gs2 header"))?;
        if flag != "n" && flag != "y" {
            return Err(malformed("channel binding is not supported"));
        }
        let mut user = None;
        let mut cnonce = None;
        for attr in bare.split(',') {
            match attr.split_once('=') {
                Some(("n", v)) if user.is_none() => user = Some(saslname(v)?),
                Some(("r", v)) if cnonce.is_none() => cnonce = Some(v.to_string()),
                Some(("m", _)) => return Err(malformed("mandatory extensions are not supported")),
                Some(("tokenauth", _)) => {
                    return Err(AuthError::Unsupported(
                        "delegation tokens are not supported".into(),
                    ))
                }
                Some((k, _)) if !k.is_empty() => {}
                _ => return Err(malformed("bad attribute in client-first")),
            }
        }
        let user = user.ok_or_else(|| malformed("no user name"))?;
        let cnonce = cnonce.ok_or_else(|| malformed("no nonce"))?;
        if user.is_empty()
            || cnonce.is_empty()
            || !cnonce.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        {
            return Err(malformed("empty user name or bad nonce"));
        }
        if let Some(a) = authzid.strip_prefix("a=") {
            if saslname(a)? != user {
                return Err(AuthError::Failed(format!(
                    "authorization id differs from the user {user:?}"
                )));
            }
        } else if !authzid.is_empty() {
            return Err(malformed("bad authorization id"));
        }
        let credential = lookup(&user);
        // An unknown user gets a made-up salt and the exchange goes on, failing at its end.
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (self.mech.hash(user.as_bytes()), MIN_ITERATIONS),
        };
        let nonce = format!("{cnonce}{}", B64.encode(random_bytes(24)));
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        self.state = State::First {
            user,
            credential,
            gs2_header: format!("{flag},{authzid},"),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first.into_bytes())
    }

    /// Takes the client-final message; answers server-final and the authenticated user.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(Vec<u8>, String), AuthError> {
        let State::First {
            user,
            credential,
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(malformed("client-final out of order"));
        };
        if msg.len() > MAX_MESSAGE {
            return Err(malformed("message too long"));
        }
        let text = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("no proof"))?;
        let mut binding = None;
        let mut got_nonce = None;
        for attr in without_proof.split(',') {
            match attr.split_once('=') {
                Some(("c", v)) if binding.is_none() => binding = Some(v),
                Some(("r", v)) if got_nonce.is_none() => got_nonce = Some(v),
                Some((k, _)) if !k.is_empty() => {}
                _ => return Err(malformed("bad attribute in client-final")),
            }
        }
        let binding = B64
            .decode(binding.ok_or_else(|| malformed("no channel binding"))?)
            .map_err(|_| malformed("bad channel binding"))?;
        if binding != gs2_header.as_bytes() {
            return Err(malformed("channel binding does not match the gs2 header"));
        }
        // It must end with the nonce sent (Kafka takes a longer one: some librdkafka
        // versions put the client nonce in front of the whole server nonce).
        if !got_nonce.is_some_and(|n| n.ends_with(nonce.as_str())) {
            return Err(malformed("nonce does not match"));
        }
        let proof = B64.decode(proof).map_err(|_| malformed("bad proof"))?;
        let Some(cred) = credential else {
            return Err(AuthError::Failed(format!("unknown user {user:?}")));
        };
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = self.mech.hmac(&cred.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(AuthError::Failed(format!("bad proof for user {user:?}")));
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !bool::from(self.mech.hash(&client_key).ct_eq(&cred.stored_key)) {
            return Err(AuthError::Failed(format!(
                "wrong password for user {user:?}"
            )));
        }
        let server_signature = self.mech.hmac(&cred.server_key, auth_message.as_bytes());
        Ok((
            format!("v={}", B64.encode(server_signature)).into_bytes(),
            user,
        ))
    }
}

/// The client's side of one exchange (for shardlog's own tools).
pub struct ScramClient {
    mech: Mechanism,
    bare: String,
    cnonce: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange for `user`; the client-first message.
    pub fn start(mech: Mechanism, user: &str) -> (ScramClient, Vec<u8>) {
        let cnonce = B64.encode(random_bytes(18));
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let bare = format!("n={name},r={cnonce}");
        let first = format!("n,,{bare}").into_bytes();
        (
            ScramClient {
                mech,
                bare,
                cnonce,
                server_signature: None,
            },
            first,
        )
    }

    /// Takes server-first; the client-final message.
    pub fn finish(&mut self, server_first: &[u8], password: &str) -> Result<Vec<u8>, AuthError> {
        let text =
            std::str::from_utf8(server_first).map_err(|_| malformed("server-first not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = B64.decode(v).ok(),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(i)) = (nonce, salt, iterations) else {
            return Err(malformed("incomplete server-first"));
        };
        if !nonce.starts_with(&self.cnonce) || !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&i) {
            return Err(malformed("server-first nonce or iterations refused"));
        }
        let salted = self.mech.salted_password(password.as_bytes(), &salt, i);
        let client_key = self.mech.hmac(&salted, b"Client Key");
        let stored = self.mech.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{text},{without_proof}", self.bare);
        let signature = self.mech.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.mech.hmac(&salted, b"Server Key");
        self.server_signature = Some(self.mech.hmac(&server_key, auth.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the server proved it knows the credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), AuthError> {
        let text =
            std::str::from_utf8(server_final).map_err(|_| malformed("server-final not UTF-8"))?;
        let got = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| AuthError::Failed(format!("server refused: {text}")))?;
        match &self.server_signature {
            Some(want) if bool::from(want.ct_eq(&got)) => Ok(()),
            _ => Err(AuthError::Failed(
                "the server's signature does not match".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, run through the server with a fixed nonce.
    #[test]
    fn rfc7677_proof_is_accepted_and_signed() {
        let mech = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = mech.salted_password(b"pencil", &salt, 4096);
        let cred = Credential::from_salted(mech, salt, 4096, &salted);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_first = format!("r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let mut s = ScramServer::new(mech);
        s.state = State::First {
            user: "user".into(),
            credential: Some(cred),
            gs2_header: "n,,".into(),
            client_first_bare: client_first_bare.into(),
            server_first,
            nonce: nonce.into(),
        };
        let final_msg = format!("c=biws,r={nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let (server_final, user) = s.client_final(final_msg.as_bytes()).unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            String::from_utf8(server_final).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    fn client_proof(mech: Mechanism, password: &str, salt: &[u8], i: u32, auth: &str) -> String {
        let salted = mech.salted_password(password.as_bytes(), salt, i);
        let ck = mech.hmac(&salted, b"Client Key");
        let sig = mech.hmac(&mech.hash(&ck), auth.as_bytes());
        B64.encode(ck.iter().zip(sig).map(|(a, b)| a ^ b).collect::<Vec<u8>>())
    }

    fn exchange(password: &str, user_known: bool) -> Result<String, AuthError> {
        let mech = Mechanism::Sha512;
        let cred = Credential::from_password(mech, "secret", 4096);
        let mut s = ScramServer::new(mech);
        let first = s.client_first(b"n,,n=alice,r=abc", |u| {
            (user_known && u == "alice").then(|| cred.clone())
        })?;
        let first = String::from_utf8(first).unwrap();
        let mut nonce = "";
        let mut salt = Vec::new();
        for a in first.split(',') {
            match a.split_once('=') {
                Some(("r", v)) => nonce = v,
                Some(("s", v)) => salt = B64.decode(v).unwrap(),
                _ => {}
            }
        }
        assert!(nonce.starts_with("abc"));
        let without = format!("c=biws,r={nonce}");
        let auth = format!("n=alice,r=abc,{first},{without}");
        let proof = client_proof(mech, password, &salt, 4096, &auth);
        s.client_final(format!("{without},p={proof}").as_bytes())
            .map(|(_, u)| u)
    }

    #[test]
    fn client_and_server_agree() {
        let mech = Mechanism::Sha256;
        let cred = Credential::from_password(mech, "pw", 4096);
        let (mut client, first) = ScramClient::start(mech, "a,b");
        let mut server = ScramServer::new(mech);
        let sf = server
            .client_first(&first, |u| (u == "a,b").then(|| cred.clone()))
            .unwrap();
        let cf = client.finish(&sf, "pw").unwrap();
        let (last, user) = server.client_final(&cf).unwrap();
        assert_eq!(user, "a,b");
        client.verify(&last).unwrap();
        assert!(client.verify(b"v=AAAA").is_err());
    }

    #[test]
    fn right_password_wrong_password_unknown_user() {
        assert_eq!(exchange("secret", true).unwrap(), "alice");
        assert!(matches!(exchange("guess", true), Err(AuthError::Failed(_))));
        assert!(matches!(
            exchange("secret", false),
            Err(AuthError::Failed(_))
        ));
    }

    #[test]
    fn hostile_messages_are_refused() {
        for m in [
            &b""[..],
            b"n,,",
            b"p=tls-unique,,n=a,r=b",
            b"n,,n=a",
            b"n,,r=b",
            b"n,,n=a=2,r=b",
            b"n,,n=a,r=b,m=x",
            b"n,a=bob,n=alice,r=b",
            b"\xff\xfe",
        ] {
            let mut s = ScramServer::new(Mechanism::Sha256);
            assert!(s.client_first(m, |_| None).is_err(), "{m:?}");
        }
        let mut s = ScramServer::new(Mechanism::Sha256);
        assert!(s.client_final(b"c=biws,r=x,p=AAAA").is_err());
        assert_eq!(saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
    }

    #[test]
    fn plain_password_check_uses_the_stored_credential() {
        let c = Credential::from_password(Mechanism::Sha256, "pw", 4096);
        assert!(c.matches(Mechanism::Sha256, "pw"));
        assert!(!c.matches(Mechanism::Sha256, "pw2"));
    }
}
