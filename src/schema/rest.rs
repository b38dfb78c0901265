//! Confluent's schema registry REST API: the paths, JSON shapes and error codes that
//! serializers and tools speak, answered from [`Registry`].
//!
//! Every call runs on a thread of its own with the caller's Kafka identity set; nothing
//! here holds state.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::compat::Level;
use super::parsed::{Parsed, SchemaType};
use super::state::{State, Which};
use super::store::Registry;
use super::RegistryError;

/// The first path segment of every registry path (the rest of the HTTP port is the
/// broker's own).
pub const ROOTS: [&str; 5] = ["subjects", "schemas", "config", "compatibility", "mode"];

/// Whether `path` (without the query) is one of the registry's.
pub fn owns(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    ROOTS.contains(&first)
}

/// The content type of every answer.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// One call: method, the path and query as sent (not decoded), the body.
pub struct Call<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub body: &'a [u8],
}

/// Answers one call: HTTP status and JSON body.
pub fn answer(registry: &Registry, bootstrap: &str, call: &Call) -> (u16, String) {
    match route(registry, bootstrap, call) {
        Ok(v) => (200, v.to_string()),
        Err(e) => (
            e.http,
            json!({"error_code": e.code, "message": e.message}).to_string(),
        ),
    }
}

fn flag(query: &BTreeMap<String, String>, key: &str) -> bool {
    query
        .get(key)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The request body as JSON (an object).
fn body(call: &Call) -> Result<Value, RegistryError> {
    let v: Value = serde_json::from_slice(call.body)
        .map_err(|e| RegistryError::bad_request(format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(RegistryError::bad_request("the body is not a JSON object"));
    }
    Ok(v)
}

/// The schema a register, lookup or compatibility body carries.
fn schema_of(call: &Call) -> Result<Parsed, RegistryError> {
    let b = body(call)?;
    let text = b["schema"]
        .as_str()
        .ok_or_else(|| RegistryError::invalid_schema("no \"schema\" string in the body"))?;
    let kind = SchemaType::parse(b["schemaType"].as_str()).ok_or_else(|| {
        RegistryError::invalid_schema(format!(
            "schemaType {} is not supported (AVRO, JSON)",
            b["schemaType"]
        ))
    })?;
    if b["references"].as_array().is_some_and(|r| !r.is_empty()) {
        return Err(RegistryError::invalid_schema(
            "schema references are not supported yet",
        ));
    }
    Parsed::parse(kind, text).map_err(RegistryError::invalid_schema)
}

/// A registered schema as the API shows it.
fn shown(subject: &str, version: u32, id: u32, p: &Parsed) -> Value {
    let mut v = json!({"subject": subject, "version": version, "id": id, "schema": p.text});
    if p.kind != SchemaType::Avro {
        v["schemaType"] = json!(p.kind.name());
    }
    v
}

fn level_of(call: &Call) -> Result<Level, RegistryError> {
    let b = body(call)?;
    let name = b["compatibility"]
        .as_str()
        .or(b["compatibilityLevel"].as_str())
        .unwrap_or("");
    Level::parse(name).ok_or_else(|| RegistryError::invalid_level(name))
}

fn route(registry: &Registry, bootstrap: &str, call: &Call) -> Result<Value, RegistryError> {
    let (path, raw_query) = call.target.split_once('?').unwrap_or((call.target, ""));
    let query: BTreeMap<String, String> = raw_query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .take(32)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (crate::ui::percent_decode(k), crate::ui::percent_decode(v))
        })
        .collect();
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .take(8)
        .map(crate::ui::percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let deleted = flag(&query, "deleted");
    let read = |f: &dyn Fn(&State) -> Result<Value, RegistryError>| registry.read(bootstrap, f);
    match (call.method, segs.as_slice()) {
        ("GET", ["subjects"]) => read(&|s| Ok(json!(s.subjects(deleted)))),
        ("GET", ["subjects", subject, "versions"]) => {
            read(&|s| Ok(json!(s.versions(subject, deleted)?)))
        }
        ("GET", ["subjects", subject, "versions", v]) => {
            let which = Which::parse(v)?;
            read(&|s| {
                let (n, ver, p) = s.version(subject, which, deleted)?;
                Ok(shown(subject, n, ver.id, &p))
            })
        }
        ("GET", ["subjects", subject, "versions", v, "schema"]) => {
            let which = Which::parse(v)?;
            read(&|s| {
                let (_, _, p) = s.version(subject, which, deleted)?;
                Ok(p.json.clone())
            })
        }
        ("GET", ["subjects", subject, "versions", v, "referencedby"]) => {
            let which = Which::parse(v)?;
            read(&|s| s.version(subject, which, deleted).map(|_| json!([])))
        }
        ("POST", ["subjects", subject, "versions"]) => {
            let schema = schema_of(call)?;
            let (id, version) = registry.register(bootstrap, subject, &schema)?;
            let mut v = json!({"id": id, "version": version, "subject": subject});
            if schema.kind != SchemaType::Avro {
                v["schemaType"] = json!(schema.kind.name());
            }
            Ok(v)
        }
        // Lookup: is this schema registered under the subject?
        ("POST", ["subjects", subject]) => {
            let schema = schema_of(call)?;
            read(&|s| {
                s.versions(subject, true)?;
                match s.find(subject, &schema, deleted) {
                    Some((n, id)) => Ok(shown(subject, n, id, &schema)),
                    None => Err(RegistryError {
                        http: 404,
                        code: 40403,
                        message: "Schema not found".into(),
                    }),
                }
            })
        }
        ("DELETE", ["subjects", subject]) => {
            let permanent = flag(&query, "permanent");
            registry.write(bootstrap, |s| {
                let (records, versions) = s.plan_delete(subject, None, permanent)?;
                Ok((records, json!(versions)))
            })
        }
        ("DELETE", ["subjects", subject, "versions", v]) => {
            let which = Which::parse(v)?;
            let permanent = flag(&query, "permanent");
            registry.write(bootstrap, |s| {
                let (records, versions) = s.plan_delete(subject, Some(which), permanent)?;
                Ok((records, json!(versions.first())))
            })
        }
        ("GET", ["schemas", "types"]) => Ok(json!(["JSON", "AVRO"])),
        ("GET", ["schemas", "ids", id]) => {
            let id = parse_id(id)?;
            read(&|s| {
                let p = s
                    .by_id(id)
                    .ok_or_else(|| RegistryError::schema_not_found(id))?;
                let mut v = json!({"schema": p.text});
                if p.kind != SchemaType::Avro {
                    v["schemaType"] = json!(p.kind.name());
                }
                Ok(v)
            })
        }
        ("GET", ["schemas", "ids", id, "schema"]) => {
            let id = parse_id(id)?;
            read(&|s| {
                let p = s
                    .by_id(id)
                    .ok_or_else(|| RegistryError::schema_not_found(id))?;
                Ok(p.json.clone())
            })
        }
        ("GET", ["schemas", "ids", id, "subjects"]) => {
            let id = parse_id(id)?;
            read(&|s| {
                s.by_id(id)
                    .ok_or_else(|| RegistryError::schema_not_found(id))?;
                let mut subjects: Vec<String> =
                    s.uses(id, deleted).into_iter().map(|(s, _)| s).collect();
                subjects.dedup();
                Ok(json!(subjects))
            })
        }
        ("GET", ["schemas", "ids", id, "versions"]) => {
            let id = parse_id(id)?;
            read(&|s| {
                s.by_id(id)
                    .ok_or_else(|| RegistryError::schema_not_found(id))?;
                let uses: Vec<Value> = s
                    .uses(id, deleted)
                    .into_iter()
                    .map(|(subject, version)| json!({"subject": subject, "version": version}))
                    .collect();
                Ok(json!(uses))
            })
        }
        ("GET", ["config"]) => read(&|s| Ok(json!({"compatibilityLevel": s.level(None).name()}))),
        ("GET", ["config", subject]) => {
            let fallback = flag(&query, "defaultToGlobal");
            read(&|s| match s.own_level(Some(subject)) {
                Some(l) => Ok(json!({"compatibilityLevel": l.name()})),
                None if fallback => Ok(json!({"compatibilityLevel": s.level(None).name()})),
                None => Err(RegistryError::no_subject_level(subject)),
            })
        }
        ("PUT", ["config"]) => {
            let level = level_of(call)?;
            registry.write(bootstrap, |_| {
                Ok((
                    vec![State::plan_level(None, Some(level))],
                    json!({"compatibility": level.name()}),
                ))
            })
        }
        ("PUT", ["config", subject]) => {
            let level = level_of(call)?;
            registry.write(bootstrap, |_| {
                Ok((
                    vec![State::plan_level(Some(subject), Some(level))],
                    json!({"compatibility": level.name()}),
                ))
            })
        }
        ("DELETE", ["config", subject]) => registry.write(bootstrap, |s| {
            let was = s
                .own_level(Some(subject))
                .ok_or_else(|| RegistryError::no_subject_level(subject))?;
            Ok((
                vec![State::plan_level(Some(subject), None)],
                json!({"compatibilityLevel": was.name()}),
            ))
        }),
        ("POST", ["compatibility", "subjects", subject, "versions", v]) => {
            let which = Which::parse(v)?;
            compatible(registry, bootstrap, call, subject, Some(which), &query)
        }
        ("POST", ["compatibility", "subjects", subject, "versions"]) => {
            compatible(registry, bootstrap, call, subject, None, &query)
        }
        ("GET", ["mode"]) | ("GET", ["mode", _]) => Ok(json!({"mode": "READWRITE"})),
        _ => Err(RegistryError::not_found(path)),
    }
}

fn parse_id(s: &str) -> Result<u32, RegistryError> {
    s.parse::<u32>()
        .map_err(|_| RegistryError::bad_request(format!("{s:?} is not a schema id")))
}

/// POST /compatibility/...: whether the schema could be registered, and why not.
fn compatible(
    registry: &Registry,
    bootstrap: &str,
    call: &Call,
    subject: &str,
    which: Option<Which>,
    query: &BTreeMap<String, String>,
) -> Result<Value, RegistryError> {
    let schema = schema_of(call)?;
    let verbose = flag(query, "verbose");
    registry.read(bootstrap, |s| {
        if let Some(w) = which {
            s.version(subject, w, false)?;
        }
        let broken = s.check(subject, &schema, which);
        let mut v = json!({"is_compatible": broken.is_empty()});
        if verbose || !broken.is_empty() {
            v["messages"] = json!(broken);
        }
        Ok(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owns_only_registry_paths() {
        assert!(owns("/subjects"));
        assert!(owns("/subjects/a-value/versions"));
        assert!(owns("/schemas/ids/1"));
        assert!(owns("/config"));
        assert!(!owns("/metrics"));
        assert!(!owns("/ui"));
        assert!(!owns("/"));
    }
}
