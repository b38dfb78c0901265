//! The registry's state: what the `_schemas` log says, applied record by record, and the
//! decisions (register, delete, configure) as the records they add to it.
//!
//! Invariants:
//! - the state is a function of the log: replaying the same records gives the same
//!   subjects, versions, ids and levels, and a later record for a key replaces an earlier
//!   one (what compaction keeps);
//! - a schema id names one schema for good: the same schema registered under another
//!   subject gets the id it already has, a new one the next id;
//! - versions of a subject only grow (a deleted version's number is not reused).
//!
//! Knows nothing of HTTP or Kafka I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::compat::{self, Level};
use super::parsed::{Parsed, SchemaType};
use super::RegistryError;

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub id: u32,
    pub deleted: bool,
}

/// Key of a `_schemas` record (Confluent's layout).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "keytype")]
pub enum Key {
    #[serde(rename = "SCHEMA")]
    Schema {
        subject: String,
        version: u32,
        magic: u8,
    },
    #[serde(rename = "CONFIG")]
    Config { subject: Option<String>, magic: u8 },
    /// shardlog's own: the lowest id a new schema may get (`{"next": N}`), so that an id
    /// whose schema was deleted for good and compacted away is never given again.
    #[serde(rename = "IDS")]
    Ids { magic: u8 },
}

/// Value of a SCHEMA record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaValue {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub deleted: bool,
}

/// A record to append: key and value (`None`: a tombstone) as JSON bytes.
pub type Record = (Vec<u8>, Option<Vec<u8>>);

fn record(key: &Key, value: Option<Value>) -> Record {
    (
        serde_json::to_vec(key).unwrap_or_default(),
        value.map(|v| v.to_string().into_bytes()),
    )
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Latest,
    Number(u32),
}

impl Which {
    pub fn parse(s: &str) -> Result<Which, RegistryError> {
        match s {
            "latest" | "-1" => Ok(Which::Latest),
            n => match n.parse::<u32>() {
                Ok(v) if v >= 1 => Ok(Which::Number(v)),
                _ => Err(RegistryError::invalid_version(s)),
            },
        }
    }
}

/// What registering a schema comes to.
pub enum Plan {
    /// The subject has this schema already (no write).
    Exists { id: u32, version: u32 },
    /// Append `records`: the schema becomes `version` of the subject with `id`.
    Write {
        records: Vec<Record>,
        id: u32,
        version: u32,
    },
}

#[derive(Default)]
pub struct State {
    schemas: BTreeMap<u32, Arc<Parsed>>,
    subjects: BTreeMap<String, BTreeMap<u32, Version>>,
    global: Option<Level>,
    levels: BTreeMap<String, Level>,
    /// No new schema gets an id below this (the IDS record).
    id_floor: u32,
}

impl State {
    /// Applies one `_schemas` record; `Err` says why it was skipped.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let key: Key = serde_json::from_slice(key).map_err(|e| format!("key: {e}"))?;
        match (key, value) {
            (
                Key::Schema {
                    subject, version, ..
                },
                None,
            ) => {
                if let Some(vs) = self.subjects.get_mut(&subject) {
                    vs.remove(&version);
                    if vs.is_empty() {
                        self.subjects.remove(&subject);
                    }
                }
            }
            (
                Key::Schema {
                    subject, version, ..
                },
                Some(v),
            ) => {
                let v: SchemaValue =
                    serde_json::from_slice(v).map_err(|e| format!("value: {e}"))?;
                if v.subject != subject || v.version != version {
                    return Err("key and value disagree".into());
                }
                let kind = SchemaType::parse(v.schema_type.as_deref())
                    .ok_or_else(|| format!("unknown schema type {:?}", v.schema_type))?;
                let parsed = Parsed::parse(kind, &v.schema)?;
                self.schemas.insert(v.id, Arc::new(parsed));
                self.subjects.entry(subject).or_default().insert(
                    version,
                    Version {
                        id: v.id,
                        deleted: v.deleted,
                    },
                );
            }
            (Key::Ids { .. }, None) => {}
            (Key::Ids { .. }, Some(v)) => {
                let v: Value = serde_json::from_slice(v).map_err(|e| format!("value: {e}"))?;
                let next = v["next"].as_u64().and_then(|n| u32::try_from(n).ok());
                let next = next.ok_or("an IDS record without a next id")?;
                self.id_floor = self.id_floor.max(next);
            }
            (Key::Config { subject, .. }, value) => {
                let level = match value {
                    None => None,
                    Some(v) => {
                        let v: Value =
                            serde_json::from_slice(v).map_err(|e| format!("value: {e}"))?;
                        let name = v["compatibilityLevel"].as_str().unwrap_or_default();
                        Some(Level::parse(name).ok_or_else(|| format!("unknown level {name:?}"))?)
                    }
                };
                match (subject, level) {
                    (None, l) => self.global = l,
                    (Some(s), Some(l)) => {
                        self.levels.insert(s, l);
                    }
                    (Some(s), None) => {
                        self.levels.remove(&s);
                    }
                }
            }
        }
        Ok(())
    }

    /// What record validation needs: each subject's ids (deleted versions included) and
    /// the schemas.
    pub fn snapshot(&self) -> super::validate::Snapshot {
        super::validate::Snapshot {
            subjects: self
                .subjects
                .iter()
                .map(|(s, vs)| (s.clone(), vs.values().map(|v| v.id).collect()))
                .collect(),
            schemas: self
                .schemas
                .iter()
                .map(|(id, p)| (*id, p.clone()))
                .collect(),
            loaded: true,
        }
    }

    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, vs)| deleted || vs.values().any(|v| !v.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The subject's version numbers (only live ones unless `deleted`).
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, RegistryError> {
        let vs: Vec<u32> = self
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|(_, v)| deleted || !v.deleted)
            .map(|(n, _)| *n)
            .collect();
        if vs.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        Ok(vs)
    }

    /// One version of a subject: its number, id and schema.
    pub fn version(
        &self,
        subject: &str,
        which: Which,
        deleted: bool,
    ) -> Result<(u32, Version, Arc<Parsed>), RegistryError> {
        let vs = self.versions(subject, deleted)?;
        let n = match which {
            Which::Latest => vs.last().copied(),
            Which::Number(n) => vs.contains(&n).then_some(n),
        }
        .ok_or_else(|| RegistryError::version_not_found(subject, which))?;
        let v = self.subjects[subject][&n];
        let schema = self
            .schemas
            .get(&v.id)
            .cloned()
            .ok_or_else(|| RegistryError::schema_not_found(v.id))?;
        Ok((n, v, schema))
    }

    pub fn by_id(&self, id: u32) -> Option<Arc<Parsed>> {
        self.schemas.get(&id).cloned()
    }

    /// The (subject, version) pairs that use schema `id`.
    pub fn uses(&self, id: u32, deleted: bool) -> Vec<(String, u32)> {
        self.subjects
            .iter()
            .flat_map(|(s, vs)| {
                vs.iter()
                    .filter(move |(_, v)| v.id == id && (deleted || !v.deleted))
                    .map(move |(n, _)| (s.clone(), *n))
            })
            .collect()
    }

    /// The version of `subject` holding this very schema, if any.
    pub fn find(&self, subject: &str, schema: &Parsed, deleted: bool) -> Option<(u32, u32)> {
        self.subjects.get(subject)?.iter().find_map(|(n, v)| {
            let same = (deleted || !v.deleted) && self.schemas.get(&v.id)?.same(schema);
            same.then_some((*n, v.id))
        })
    }

    /// The level that applies to `subject`: its own, else the global one, else the default.
    pub fn level(&self, subject: Option<&str>) -> Level {
        subject
            .and_then(|s| self.levels.get(s))
            .copied()
            .or(self.global)
            .unwrap_or(compat::DEFAULT_LEVEL)
    }

    /// The level set for exactly this subject (`None`: the global one).
    pub fn own_level(&self, subject: Option<&str>) -> Option<Level> {
        match subject {
            Some(s) => self.levels.get(s).copied(),
            None => self.global,
        }
    }

    /// What breaks if `schema` is registered under `subject` now (its live versions).
    pub fn check(&self, subject: &str, schema: &Parsed, against: Option<Which>) -> Vec<String> {
        let live: Vec<(u32, Arc<Parsed>)> = self
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.deleted)
            .filter(|(n, _)| match against {
                None | Some(Which::Latest) => true,
                Some(Which::Number(want)) => **n == want,
            })
            .filter_map(|(n, v)| Some((*n, self.schemas.get(&v.id)?.clone())))
            .collect();
        let previous: Vec<(u32, &Parsed)> = live.iter().map(|(n, p)| (*n, &**p)).collect();
        compat::check(self.level(Some(subject)), schema, &previous)
    }

    /// Registering `schema` under `subject`: nothing (already there), a refusal naming what
    /// breaks, or the record that makes it the subject's next version.
    pub fn plan_register(&self, subject: &str, schema: &Parsed) -> Result<Plan, RegistryError> {
        if let Some((version, id)) = self.find(subject, schema, false) {
            return Ok(Plan::Exists { id, version });
        }
        let broken = self.check(subject, schema, None);
        if !broken.is_empty() {
            return Err(RegistryError::incompatible(subject, &broken));
        }
        let known = self
            .schemas
            .iter()
            .find(|(_, p)| p.same(schema))
            .map(|(id, _)| *id);
        let id = known.unwrap_or_else(|| {
            let after = self.schemas.keys().next_back().map_or(1, |m| m + 1);
            after.max(self.id_floor).max(1)
        });
        let version = self
            .subjects
            .get(subject)
            .and_then(|vs| vs.keys().next_back())
            .map_or(1, |m| m + 1);
        let value = SchemaValue {
            subject: subject.to_string(),
            version,
            id,
            schema: schema.text.clone(),
            schema_type: (schema.kind != SchemaType::Avro).then(|| schema.kind.name().to_string()),
            deleted: false,
        };
        let key = Key::Schema {
            subject: subject.to_string(),
            version,
            magic: 1,
        };
        let mut records = vec![record(&key, serde_json::to_value(&value).ok())];
        if known.is_none() {
            let next = json!({ "next": id.saturating_add(1) });
            records.push(record(&Key::Ids { magic: 0 }, Some(next)));
        }
        Ok(Plan::Write {
            records,
            id,
            version,
        })
    }

    /// Deleting versions of `subject` (all, or one): soft (marked deleted) or permanent (a
    /// tombstone, allowed only after a soft delete). The records and the versions deleted.
    pub fn plan_delete(
        &self,
        subject: &str,
        which: Option<Which>,
        permanent: bool,
    ) -> Result<(Vec<Record>, Vec<u32>), RegistryError> {
        let all = self.subjects.get(subject);
        let targets: Vec<(u32, Version)> = match which {
            None => all
                .into_iter()
                .flatten()
                .filter(|(_, v)| permanent || !v.deleted)
                .map(|(n, v)| (*n, *v))
                .collect(),
            Some(w) => {
                let (n, v, _) = self.version(subject, w, permanent)?;
                vec![(n, v)]
            }
        };
        if targets.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        let mut records = Vec::new();
        for (n, v) in &targets {
            let key = Key::Schema {
                subject: subject.to_string(),
                version: *n,
                magic: 1,
            };
            if permanent {
                if !v.deleted {
                    return Err(RegistryError::not_soft_deleted(subject, *n));
                }
                records.push(record(&key, None));
            } else {
                let schema = self
                    .schemas
                    .get(&v.id)
                    .ok_or_else(|| RegistryError::schema_not_found(v.id))?;
                let value = SchemaValue {
                    subject: subject.to_string(),
                    version: *n,
                    id: v.id,
                    schema: schema.text.clone(),
                    schema_type: (schema.kind != SchemaType::Avro)
                        .then(|| schema.kind.name().to_string()),
                    deleted: true,
                };
                records.push(record(&key, serde_json::to_value(&value).ok()));
            }
        }
        Ok((records, targets.iter().map(|(n, _)| *n).collect()))
    }

    /// Setting (or with `None`, removing) the level of a subject or the global one.
    pub fn plan_level(subject: Option<&str>, level: Option<Level>) -> Record {
        let key = Key::Config {
            subject: subject.map(str::to_string),
            magic: 0,
        };
        record(
            &key,
            level.map(|l| json!({ "compatibilityLevel": l.name() })),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avro(fields: &str) -> Parsed {
        let text = format!(r#"{{"type":"record","name":"r","fields":[{fields}]}}"#);
        Parsed::parse(SchemaType::Avro, &text).expect("avro")
    }

    fn write(s: &mut State, subject: &str, p: &Parsed) -> (u32, u32) {
        match s.plan_register(subject, p).expect("plan") {
            Plan::Exists { id, version } => (id, version),
            Plan::Write {
                records,
                id,
                version,
            } => {
                for (k, v) in records {
                    s.apply(&k, v.as_deref()).expect("apply");
                }
                (id, version)
            }
        }
    }

    #[test]
    fn ids_are_global_and_versions_grow() {
        let mut s = State::default();
        let a = avro(r#"{"name":"a","type":"int"}"#);
        let b = avro(r#"{"name":"a","type":"int"},{"name":"b","type":"int","default":1}"#);
        assert_eq!(write(&mut s, "t-value", &a), (1, 1));
        assert_eq!(write(&mut s, "t-value", &a), (1, 1));
        assert_eq!(write(&mut s, "t-value", &b), (2, 2));
        // The same schema under another subject keeps its id.
        assert_eq!(write(&mut s, "u-value", &b), (2, 1));
        assert_eq!(s.versions("t-value", false).expect("versions"), vec![1, 2]);
        // Incompatible: refused, nothing written.
        let c = avro(r#"{"name":"a","type":"string"}"#);
        assert!(s.plan_register("t-value", &c).is_err());
        // Soft delete, then permanent; the number is not reused.
        let (recs, vs) = s
            .plan_delete("t-value", Some(Which::Number(2)), false)
            .expect("soft");
        assert_eq!(vs, vec![2]);
        for (k, v) in recs {
            s.apply(&k, v.as_deref()).expect("apply");
        }
        assert!(s
            .plan_delete("t-value", Some(Which::Number(1)), true)
            .is_err());
        assert_eq!(s.versions("t-value", false).expect("live"), vec![1]);
        let d = avro(r#"{"name":"a","type":"int"},{"name":"d","type":"int","default":1}"#);
        assert_eq!(write(&mut s, "t-value", &d), (3, 3));
        // Levels: subject over global over the default.
        let (k, v) = State::plan_level(None, Some(Level::Full));
        s.apply(&k, v.as_deref()).expect("apply");
        assert_eq!(s.level(Some("t-value")), Level::Full);
        let (k, v) = State::plan_level(Some("t-value"), Some(Level::None));
        s.apply(&k, v.as_deref()).expect("apply");
        assert_eq!(s.level(Some("t-value")), Level::None);
        assert!(s.apply(b"garbage", None).is_err());
        // A schema deleted for good (and compacted away: its records gone) does not give
        // its id to the next new schema.
        let (recs, _) = s.plan_delete("u-value", None, false).expect("soft");
        for (k, v) in recs {
            s.apply(&k, v.as_deref()).expect("apply");
        }
        for subject in ["t-value", "u-value"] {
            let (recs, _) = s.plan_delete(subject, None, false).unwrap_or_default();
            for (k, v) in recs {
                s.apply(&k, v.as_deref()).expect("apply");
            }
            let (recs, _) = s.plan_delete(subject, None, true).expect("permanent");
            for (k, v) in recs {
                s.apply(&k, v.as_deref()).expect("apply");
            }
        }
        let mut replayed = State::default();
        let (k, v) = State::plan_level(None, None);
        replayed.apply(&k, v.as_deref()).expect("apply");
        replayed.id_floor = s.id_floor;
        let e = avro(r#"{"name":"e","type":"int"}"#);
        assert_eq!(write(&mut replayed, "v-value", &e), (4, 1));
    }
}
