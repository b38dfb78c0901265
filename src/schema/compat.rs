//! Compatibility between schema versions (Confluent's levels) with messages that name the
//! field and the rule broken.
//!
//! BACKWARD: the new schema reads data written with the previous one (consumers upgrade
//! first); FORWARD: the previous schema reads data written with the new one (producers
//! upgrade first); FULL: both. `_TRANSITIVE` checks every live version, not only the
//! latest. Avro follows Avro's reader/writer resolution (apache-avro); JSON Schema is
//! compared structurally (`json_compat`).

use apache_avro::error::CompatibilityError;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use super::json_compat;
use super::parsed::{Form, Parsed};

/// Compatibility levels, as the registry API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// The level of a subject with none of its own and no global one set: Confluent's.
pub const DEFAULT_LEVEL: Level = Level::Backward;

const LEVELS: [(Level, &str); 7] = [
    (Level::None, "NONE"),
    (Level::Backward, "BACKWARD"),
    (Level::BackwardTransitive, "BACKWARD_TRANSITIVE"),
    (Level::Forward, "FORWARD"),
    (Level::ForwardTransitive, "FORWARD_TRANSITIVE"),
    (Level::Full, "FULL"),
    (Level::FullTransitive, "FULL_TRANSITIVE"),
];

impl Level {
    pub fn parse(name: &str) -> Option<Level> {
        let upper = name.trim().to_ascii_uppercase();
        LEVELS.iter().find(|(_, n)| *n == upper).map(|(l, _)| *l)
    }

    pub fn name(self) -> &'static str {
        LEVELS
            .iter()
            .find(|(l, _)| *l == self)
            .map_or("NONE", |(_, n)| n)
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        )
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }
}

/// Which way data flows in one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The new schema reads data written with version `n`.
    Backward,
    /// Readers of version `n` read data written with the new schema.
    Forward,
}

/// Most messages one check returns.
pub const MAX_MESSAGES: usize = 20;

/// What breaks if `new` is registered after `previous` (live versions, oldest first, with
/// their version numbers) under `level`: empty when it is compatible.
pub fn check(level: Level, new: &Parsed, previous: &[(u32, &Parsed)]) -> Vec<String> {
    let against: Vec<&(u32, &Parsed)> = if level.transitive() {
        previous.iter().rev().collect()
    } else {
        previous.last().into_iter().collect()
    };
    let mut out = Vec::new();
    for (version, old) in against {
        if old.kind != new.kind {
            out.push(format!(
                "the schema type changed from {} (version {version}) to {}",
                old.kind.name(),
                new.kind.name()
            ));
            continue;
        }
        if level.backward() {
            for m in issues(Direction::Backward, new, old, *version) {
                out.push(format!("BACKWARD: {m}"));
            }
        }
        if level.forward() {
            for m in issues(Direction::Forward, old, new, *version) {
                out.push(format!("FORWARD: {m}"));
            }
        }
        if out.len() >= MAX_MESSAGES {
            out.truncate(MAX_MESSAGES);
            break;
        }
    }
    out
}

/// Why `reader` cannot read data written with `writer` (`version` is the registered one of
/// the two, for the messages).
fn issues(dir: Direction, reader: &Parsed, writer: &Parsed, version: u32) -> Vec<String> {
    match (&reader.form, &writer.form) {
        (Form::Avro(r), Form::Avro(w)) => {
            match SchemaCompatibility::can_read(&w.schema, &r.schema) {
                Ok(()) => Vec::new(),
                Err(e) => vec![explain_avro(dir, &e, version, (&r.schema, &w.schema))],
            }
        }
        (Form::Json(_), Form::Json(_)) => {
            json_compat::issues(dir, &reader.json, &writer.json, version)
        }
        _ => vec!["the schema types differ".into()],
    }
}

/// One Avro incompatibility as a sentence naming the field (a dotted path) and the rule.
fn explain_avro(
    dir: Direction,
    e: &CompatibilityError,
    version: u32,
    (reader, writer): (&Schema, &Schema),
) -> String {
    let mut path = Vec::new();
    let mut e = e;
    // Bounded by the depth of the schemas (the error chain follows their nesting).
    while let CompatibilityError::FieldTypeMismatch(field, inner) = e {
        path.push(field.as_str());
        e = inner;
    }
    let at = |last: Option<&str>| {
        let mut p = path.clone();
        p.extend(last);
        if p.is_empty() {
            "the record".to_string()
        } else {
            format!("field \"{}\"", p.join("."))
        }
    };
    match (e, dir) {
        (CompatibilityError::MissingDefaultValue(f), Direction::Backward) => format!(
            "{} was added without a default: records written with version {version} lack it (rule: a new field needs a default)",
            at(Some(f))
        ),
        (CompatibilityError::MissingDefaultValue(f), Direction::Forward) => format!(
            "{} was removed, or lost its default: readers of version {version} require it (rule: a field without a default may not be removed)",
            at(Some(f))
        ),
        (CompatibilityError::WrongType { writer_schema_type, reader_schema_type }, _)
        | (
            CompatibilityError::NameMismatch {
                writer_name: writer_schema_type,
                reader_name: reader_schema_type,
            },
            _,
        ) => {
            let (old, new) = match dir {
                Direction::Backward => (writer_schema_type, reader_schema_type),
                Direction::Forward => (reader_schema_type, writer_schema_type),
            };
            format!(
                "{}: type changed from {old} to {new} (rule: a type may only be promoted as Avro allows, e.g. int to long)",
                at(None)
            )
        }
        (CompatibilityError::TypeExpected { .. }, _) => {
            let (r, w) = (type_at(reader, &path), type_at(writer, &path));
            let (old, new) = match dir {
                Direction::Backward => (w, r),
                Direction::Forward => (r, w),
            };
            format!(
                "{}: type changed from {old} to {new} (rule: a type may only be promoted as Avro allows, e.g. int to long)",
                at(None)
            )
        }
        (CompatibilityError::MissingSymbols, Direction::Backward) => format!(
            "{}: enum symbols removed that records of version {version} may hold",
            at(None)
        ),
        (CompatibilityError::MissingSymbols, Direction::Forward) => format!(
            "{}: enum symbols added that readers of version {version} do not know",
            at(None)
        ),
        (CompatibilityError::MissingUnionElements, Direction::Backward) => format!(
            "{}: union branches removed that records of version {version} may use",
            at(None)
        ),
        (CompatibilityError::MissingUnionElements, Direction::Forward) => format!(
            "{}: union branches added that readers of version {version} cannot read",
            at(None)
        ),
        (other, _) => format!("{}: {other}", at(None)),
    }
}

/// The type name of the field at `path` (record field names) in `schema`.
fn type_at(schema: &Schema, path: &[&str]) -> String {
    let mut s = schema;
    for f in path {
        let Schema::Record(r) = s else {
            return "?".into();
        };
        match r.lookup.get(*f).and_then(|i| r.fields.get(*i)) {
            Some(field) => s = &field.schema,
            None => return "?".into(),
        }
    }
    type_name(s)
}

fn type_name(s: &Schema) -> String {
    match s {
        Schema::Union(u) => u
            .variants()
            .iter()
            .map(type_name)
            .collect::<Vec<_>>()
            .join("|"),
        Schema::Record(r) => r.name.name.clone(),
        Schema::Enum(e) => e.name.name.clone(),
        Schema::Fixed(f) => f.name.name.clone(),
        Schema::Ref { name } => name.name.clone(),
        Schema::Array(a) => format!("array<{}>", type_name(&a.items)),
        Schema::Map(m) => format!("map<{}>", type_name(&m.types)),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::parsed::SchemaType;

    fn avro(fields: &str) -> Parsed {
        let text = format!(r#"{{"type":"record","name":"order","fields":[{fields}]}}"#);
        Parsed::parse(SchemaType::Avro, &text).expect("avro")
    }

    #[test]
    fn avro_growth_passes_and_breakage_names_the_field() {
        let v1 = avro(r#"{"name":"id","type":"int"},{"name":"note","type":"string"}"#);
        let grown = avro(
            r#"{"name":"id","type":"long"},{"name":"note","type":"string"},{"name":"email","type":["null","string"],"default":null}"#,
        );
        assert_eq!(
            check(Level::Backward, &grown, &[(1, &v1)]),
            Vec::<String>::new()
        );
        let retyped = avro(r#"{"name":"id","type":"string"},{"name":"note","type":"string"}"#);
        let m = check(Level::Backward, &retyped, &[(1, &v1)]);
        assert!(
            m[0].contains("field \"id\": type changed from int to string"),
            "{m:?}"
        );
        let required = avro(
            r#"{"name":"id","type":"int"},{"name":"note","type":"string"},{"name":"sku","type":"string"}"#,
        );
        let m = check(Level::Backward, &required, &[(1, &v1)]);
        assert!(
            m[0].contains("field \"sku\" was added without a default"),
            "{m:?}"
        );
        // A required field removed: fine for new readers, breaks readers of version 1.
        let removed = avro(r#"{"name":"id","type":"int"}"#);
        assert!(check(Level::Backward, &removed, &[(1, &v1)]).is_empty());
        let m = check(Level::Full, &removed, &[(1, &v1)]);
        assert!(
            m[0].starts_with("FORWARD: field \"note\" was removed"),
            "{m:?}"
        );
        assert!(check(Level::None, &retyped, &[(1, &v1)]).is_empty());
    }

    #[test]
    fn transitive_levels_check_every_version() {
        let v1 = avro(r#"{"name":"id","type":"int"}"#);
        let v2 = avro(r#"{"name":"id","type":"int"},{"name":"a","type":"int","default":0}"#);
        let v3 = avro(r#"{"name":"id","type":"int"},{"name":"a","type":"string","default":""}"#);
        // Against v2 only: `a` changed type. Transitively v1 is checked too.
        assert_eq!(check(Level::Backward, &v3, &[(1, &v1), (2, &v2)]).len(), 1);
        assert!(check(Level::Forward, &v3, &[(1, &v1)]).is_empty());
        assert!(!check(Level::ForwardTransitive, &v3, &[(1, &v1), (2, &v2)]).is_empty());
        assert_eq!(Level::parse("full_transitive"), Some(Level::FullTransitive));
        assert_eq!(Level::parse("sideways"), None);
    }
}
