//! SASL/PLAIN (RFC 4616) as Kafka takes it: `authzid NUL authcid NUL password`, the
//! authorization id empty or equal to the user; the password checked against the user's
//! stored SCRAM credential (no second password store).

use super::scram::{Credential, Mechanism};
use super::AuthError;

/// Longest PLAIN message taken from a client.
const MAX_MESSAGE: usize = 4096;

/// Checks a PLAIN message; the authenticated user name. `lookup` finds a user's stored
/// credentials (any mechanism).
pub fn authenticate(
    msg: &[u8],
    lookup: impl Fn(&str) -> Vec<(Mechanism, Credential)>,
) -> Result<String, AuthError> {
    if msg.len() > MAX_MESSAGE {
        return Err(AuthError::Malformed("PLAIN: message too long".into()));
    }
    let text =
        std::str::from_utf8(msg).map_err(|_| AuthError::Malformed("PLAIN: not UTF-8".into()))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "PLAIN: expected authzid, user and password separated by NUL".into(),
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(AuthError::Malformed("PLAIN: empty user or password".into()));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(AuthError::Failed(format!(
            "authorization id differs from the user {user:?}"
        )));
    }
    let creds = lookup(user);
    // The strongest stored credential decides; an unknown user still costs one derivation,
    // so timing does not tell whether the user exists.
    match creds.iter().max_by_key(|(m, _)| *m) {
        Some((m, c)) if c.matches(*m, password) => Ok(user.to_string()),
        Some(_) => Err(AuthError::Failed(format!(
            "wrong password for user {user:?}"
        ))),
        None => {
            let _ = Credential::from_password(
                Mechanism::Sha256,
                password,
                super::scram::MIN_ITERATIONS,
            );
            Err(AuthError::Failed(format!("unknown user {user:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages() {
        let c = Credential::from_password(Mechanism::Sha512, "pw", 4096);
        let lookup = |u: &str| {
            if u == "alice" {
                vec![(Mechanism::Sha512, c.clone())]
            } else {
                Vec::new()
            }
        };
        assert_eq!(authenticate(b"\0alice\0pw", lookup).unwrap(), "alice");
        assert_eq!(authenticate(b"alice\0alice\0pw", lookup).unwrap(), "alice");
        assert!(matches!(
            authenticate(b"\0alice\0no", lookup),
            Err(AuthError::Failed(_))
        ));
        assert!(matches!(
            authenticate(b"\0bob\0pw", lookup),
            Err(AuthError::Failed(_))
        ));
        assert!(matches!(
            authenticate(b"bob\0alice\0pw", lookup),
            Err(AuthError::Failed(_))
        ));
        for bad in [
            &b""[..],
            b"\0alice",
            b"\0alice\0pw\0x",
            b"\0\0pw",
            b"\xff\0a\0b",
        ] {
            assert!(authenticate(bad, lookup).is_err());
        }
    }
}
