//! A schema as the registry keeps it: its type, its text, and the parsed form that
//! compatibility checks and record validation use.

use std::sync::Arc;

use serde_json::Value;

/// The schema formats the registry serves (Confluent's `schemaType`; absent means AVRO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaType {
    Avro,
    Json,
}

impl SchemaType {
    pub fn parse(name: Option<&str>) -> Option<SchemaType> {
        match name.map(str::to_ascii_uppercase).as_deref() {
            None | Some("AVRO") => Some(SchemaType::Avro),
            Some("JSON") => Some(SchemaType::Json),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
        }
    }
}

/// Largest schema text accepted (a bound on what one registration may pin in memory).
pub const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// A parsed schema.
#[derive(Clone)]
pub struct Parsed {
    pub kind: SchemaType,
    /// The text as registered (what `GET /schemas/ids/{id}` returns).
    pub text: String,
    /// The text as JSON: two registrations are the same schema when these are equal.
    pub json: Value,
    pub form: Form,
}

#[derive(Clone)]
pub enum Form {
    Avro(Arc<super::avro_check::AvroCheck>),
    Json(Arc<jsonschema::Validator>),
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} schema {}", self.kind.name(), self.text)
    }
}

impl Parsed {
    /// Parses `text` as a schema of `kind`; `Err` says why it is not one.
    pub fn parse(kind: SchemaType, text: &str) -> Result<Parsed, String> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(format!("schema longer than {MAX_SCHEMA_BYTES} bytes"));
        }
        let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let form = match kind {
            SchemaType::Avro => Form::Avro(Arc::new(super::avro_check::AvroCheck::new(
                apache_avro::Schema::parse(&json)
                    .map_err(|e| format!("invalid Avro schema: {e}"))?,
            ))),
            SchemaType::Json => {
                if !json.is_object() && !json.is_boolean() {
                    return Err("a JSON Schema is an object or a boolean".into());
                }
                let v = jsonschema::validator_for(&json)
                    .map_err(|e| format!("invalid JSON Schema: {e}"))?;
                Form::Json(Arc::new(v))
            }
        };
        Ok(Parsed {
            kind,
            text: text.to_string(),
            json,
            form,
        })
    }

    /// Whether `other` is the same schema (same type, same JSON).
    pub fn same(&self, other: &Parsed) -> bool {
        self.kind == other.kind && self.json == other.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_avro_and_json_and_refuses_garbage() {
        let a = Parsed::parse(
            SchemaType::Avro,
            r#"{"type":"record","name":"r","fields":[{"name":"a","type":"int"}]}"#,
        )
        .expect("avro");
        let b = Parsed::parse(
            SchemaType::Avro,
            r#"{"type": "record", "name": "r", "fields": [{"name": "a", "type": "int"}]}"#,
        )
        .expect("avro");
        assert!(a.same(&b));
        assert!(Parsed::parse(SchemaType::Avro, r#"{"type":"recrd"}"#).is_err());
        assert!(Parsed::parse(SchemaType::Avro, "not json").is_err());
        assert!(Parsed::parse(SchemaType::Json, r#"{"type":"object"}"#).is_ok());
        assert!(Parsed::parse(SchemaType::Json, r#"{"type":7}"#).is_err());
        assert!(Parsed::parse(SchemaType::Json, "[1]").is_err());
        assert_eq!(SchemaType::parse(None), Some(SchemaType::Avro));
        assert_eq!(SchemaType::parse(Some("json")), Some(SchemaType::Json));
        assert_eq!(SchemaType::parse(Some("PROTOBUF")), None);
    }
}
