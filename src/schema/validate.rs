//! Checking one record's key or value against the registry: the serializers' wire format
//! (magic byte 0, a 4-byte big-endian schema id, the payload), an id registered under the
//! subject and, in `full` mode, a payload that decodes with that schema.
//!
//! Pure: works on bytes and a [`Snapshot`] of the registry; knows nothing of batches,
//! partitions or shards. Every check is bounded ([`super::avro_check`]; JSON by its size).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::parsed::{Form, Parsed};

/// What a topic checks (`schema.validation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    /// The wire format and a registered id.
    Id,
    /// That, and the payload decodes with the schema.
    Full,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "none" => Some(Mode::None),
            "id" => Some(Mode::Id),
            "full" => Some(Mode::Full),
            _ => None,
        }
    }
}

/// The registry as validation sees it: the ids each subject has (deleted versions
/// included: records written before a delete stay readable) and the schemas by id.
#[derive(Default)]
pub struct Snapshot {
    pub subjects: HashMap<String, HashSet<u32>>,
    pub schemas: HashMap<u32, Arc<Parsed>>,
    /// Whether it was loaded from `_schemas` at all (before that, nothing is known).
    pub loaded: bool,
}

/// Why a key or value is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The schema id the record carried, if it carried one.
    pub schema_id: Option<u32>,
    pub reason: String,
    /// The id is not in the snapshot: a newer snapshot may know it.
    pub unknown_id: bool,
}

fn refuse(schema_id: Option<u32>, reason: String) -> Refusal {
    Refusal {
        schema_id,
        reason,
        unknown_id: false,
    }
}

/// Checks `data` (a record's key or value) for `subject`: the schema id it carries.
pub fn check(snap: &Snapshot, subject: &str, mode: Mode, data: &[u8]) -> Result<u32, Refusal> {
    if data.len() < 5 || data[0] != 0 {
        return Err(refuse(
            None,
            format!(
                "not in the schema registry's wire format (magic byte 0, then a 4-byte schema id): {} bytes starting {:?}",
                data.len(),
                &data[..data.len().min(5)]
            ),
        ));
    }
    let id = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
    let known = snap
        .subjects
        .get(subject)
        .is_some_and(|ids| ids.contains(&id));
    if !known {
        return Err(Refusal {
            schema_id: Some(id),
            reason: format!("schema id {id} is not registered under subject {subject}"),
            unknown_id: true,
        });
    }
    if mode != Mode::Full {
        return Ok(id);
    }
    let Some(schema) = snap.schemas.get(&id) else {
        return Err(Refusal {
            schema_id: Some(id),
            reason: format!("schema {id} is not loaded"),
            unknown_id: true,
        });
    };
    let payload = &data[5..];
    match &schema.form {
        Form::Avro(a) => a.check(payload).map(|()| id).map_err(|e| {
            refuse(
                Some(id),
                format!("does not decode with Avro schema {id}: {e}"),
            )
        }),
        Form::Json(v) => {
            let doc: serde_json::Value = serde_json::from_slice(payload)
                .map_err(|e| refuse(Some(id), format!("not JSON: {e}")))?;
            let first = v.iter_errors(&doc).next().map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_string() } else { at };
                format!("at {at}: {e} (JSON Schema {id})")
            });
            match first {
                None => Ok(id),
                Some(why) => Err(refuse(Some(id), why)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::parsed::SchemaType;

    fn snap() -> Snapshot {
        let avro = Parsed::parse(
            SchemaType::Avro,
            r#"{"type":"record","name":"r","fields":[{"name":"n","type":"long"},{"name":"s","type":"string"}]}"#,
        )
        .expect("avro");
        let js = Parsed::parse(
            SchemaType::Json,
            r#"{"type":"object","properties":{"msg_id":{"type":"integer"}},"required":["msg_id"]}"#,
        )
        .expect("json");
        let mut s = Snapshot {
            loaded: true,
            ..Default::default()
        };
        s.subjects.insert("a-value".into(), [1].into());
        s.subjects.insert("j-value".into(), [2].into());
        s.schemas.insert(1, Arc::new(avro));
        s.schemas.insert(2, Arc::new(js));
        s
    }

    fn framed(id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend(id.to_be_bytes());
        v.extend(payload);
        v
    }

    #[test]
    fn wire_format_ids_and_payloads() {
        let s = snap();
        // n = 3 (zigzag 6), s = "hi".
        let good = framed(1, &[6, 4, b'h', b'i']);
        assert_eq!(check(&s, "a-value", Mode::Full, &good), Ok(1));
        assert!(check(&s, "a-value", Mode::Full, b"plain").is_err());
        assert!(check(&s, "a-value", Mode::Id, &[0, 0, 0]).is_err());
        let other = check(&s, "j-value", Mode::Id, &good).unwrap_err();
        assert!(
            other.unknown_id
                && other
                    .reason
                    .contains("not registered under subject j-value")
        );
        // Id mode does not look at the payload; full does.
        let truncated = framed(1, &[6, 40]);
        assert_eq!(check(&s, "a-value", Mode::Id, &truncated), Ok(1));
        assert!(check(&s, "a-value", Mode::Full, &truncated).is_err());
        let trailing = framed(1, &[6, 4, b'h', b'i', 9]);
        assert!(check(&s, "a-value", Mode::Full, &trailing)
            .unwrap_err()
            .reason
            .contains("left over"));
        // A huge claimed length is refused, not allocated.
        let huge = framed(1, &[6, 0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert!(check(&s, "a-value", Mode::Full, &huge).is_err());
        assert_eq!(
            check(&s, "j-value", Mode::Full, &framed(2, br#"{"msg_id":1}"#)),
            Ok(2)
        );
        let r = check(&s, "j-value", Mode::Full, &framed(2, br#"{"msg_id":"x"}"#)).unwrap_err();
        assert!(r.reason.contains("/msg_id"), "{r:?}");
        let r = check(&s, "j-value", Mode::Full, &framed(2, br#"{}"#)).unwrap_err();
        assert!(r.reason.contains("msg_id"), "{r:?}");
    }
}
