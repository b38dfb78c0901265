//! Structural compatibility of two JSON Schemas: could every document the writer's schema
//! accepts be accepted by the reader's? Checked property by property, with the path of
//! each property that breaks and the rule. A sufficient, not complete, comparison of the
//! keywords that matter for records: `type`, `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, and the length and range bounds.
//!
//! Growth is allowed: an optional property may be added (even to an open content model:
//! Confluent's lenient policy), a type widened (`integer` to `number`, a type added to a
//! list), a bound relaxed.

use serde_json::{Map, Value};

use super::compat::{Direction, MAX_MESSAGES};

/// Deepest nesting compared (deeper parts are taken as compatible).
const MAX_DEPTH: usize = 32;

/// Why `reader` may refuse documents `writer` accepts (`version` is the registered one).
pub fn issues(dir: Direction, reader: &Value, writer: &Value, version: u32) -> Vec<String> {
    let mut c = Compare {
        dir,
        version,
        out: Vec::new(),
    };
    c.walk(reader, writer, "", 0);
    c.out
}

struct Compare {
    dir: Direction,
    version: u32,
    out: Vec<String>,
}

fn types(s: &Value) -> Option<Vec<String>> {
    match s.get("type") {
        Some(Value::String(t)) => Some(vec![t.clone()]),
        Some(Value::Array(ts)) => Some(
            ts.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
        ),
        _ if s.get("properties").is_some() => Some(vec!["object".into()]),
        _ => None,
    }
}

fn accepts(reader: &[String], t: &str) -> bool {
    reader
        .iter()
        .any(|r| r == t || (r == "number" && t == "integer"))
}

fn obj(s: &Value, key: &str) -> Map<String, Value> {
    s.get(key)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn required(s: &Value) -> Vec<String> {
    s.get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `additionalProperties: false` (a closed content model).
fn closed(s: &Value) -> bool {
    s.get("additionalProperties") == Some(&Value::Bool(false))
}

impl Compare {
    fn name(path: &str) -> String {
        if path.is_empty() {
            "the document".into()
        } else {
            format!("property \"{path}\"")
        }
    }

    fn push(&mut self, msg: String) {
        if self.out.len() < MAX_MESSAGES {
            self.out.push(msg);
        }
    }

    /// (old, new) of a pair that is (reader, writer) in this direction.
    fn old_new<'a, T: ?Sized>(&self, reader: &'a T, writer: &'a T) -> (&'a T, &'a T) {
        match self.dir {
            Direction::Backward => (writer, reader),
            Direction::Forward => (reader, writer),
        }
    }

    fn walk(&mut self, reader: &Value, writer: &Value, path: &str, depth: usize) {
        if depth > MAX_DEPTH || reader == writer || reader == &Value::Bool(true) {
            return;
        }
        let v = self.version;
        let at = Self::name(path);
        if let (Some(r), Some(w)) = (types(reader), types(writer)) {
            if w.iter().any(|t| !accepts(&r, t)) {
                let (old, new) = self.old_new(&r, &w);
                self.push(format!(
                    "{at}: type changed from {} to {} (rule: a type may only be widened)",
                    old.join("|"),
                    new.join("|")
                ));
                return;
            }
        }
        // Properties.
        let (rp, wp) = (obj(reader, "properties"), obj(writer, "properties"));
        let (rr, wr) = (required(reader), required(writer));
        for f in rr.iter().filter(|f| !wr.contains(f)) {
            let p = join(path, f);
            let msg = match self.dir {
                Direction::Backward => format!(
                    "property \"{p}\" is required by the new schema but records written with version {v} may lack it (rule: a new property must be optional)"
                ),
                Direction::Forward => format!(
                    "property \"{p}\" is required by version {v} but the new schema may leave it out (rule: a required property may not be removed or made optional)"
                ),
            };
            self.push(msg);
        }
        if closed(reader) {
            for f in wp.keys().filter(|f| !rp.contains_key(*f)) {
                let p = join(path, f);
                self.push(match self.dir {
                    Direction::Backward => format!(
                        "property \"{p}\" was removed from a closed schema (additionalProperties: false): records of version {v} carry it"
                    ),
                    Direction::Forward => format!(
                        "property \"{p}\" was added, but version {v} is closed (additionalProperties: false) and refuses it"
                    ),
                });
            }
            if !closed(writer) {
                self.push(match self.dir {
                    Direction::Backward => format!(
                        "{at}: the new schema is closed (additionalProperties: false); records of version {v} may carry other properties"
                    ),
                    Direction::Forward => format!(
                        "{at}: version {v} is closed (additionalProperties: false) and the new schema accepts other properties"
                    ),
                });
            }
        }
        for (f, rs) in &rp {
            if let Some(ws) = wp.get(f) {
                self.walk(rs, ws, &join(path, f), depth + 1);
            }
        }
        // Arrays.
        if let (Some(ri), Some(wi)) = (reader.get("items"), writer.get("items")) {
            self.walk(ri, wi, &format!("{path}[]"), depth + 1);
        }
        // Enumerations.
        if let Some(re) = reader.get("enum").and_then(Value::as_array) {
            match writer.get("enum").and_then(Value::as_array) {
                Some(we) => {
                    if let Some(x) = we.iter().find(|x| !re.contains(x)) {
                        let msg = match self.dir {
                            Direction::Backward => format!(
                                "{at}: enum value {x} removed; records of version {v} may hold it"
                            ),
                            Direction::Forward => format!(
                                "{at}: enum value {x} added; readers of version {v} refuse it"
                            ),
                        };
                        self.push(msg);
                    }
                }
                None => self.push(format!("{at}: restricted to an enum")),
            }
        }
        // Bounds: the reader's may not be tighter.
        for (key, upper) in [
            ("maxLength", true),
            ("maxItems", true),
            ("maximum", true),
            ("minLength", false),
            ("minItems", false),
            ("minimum", false),
        ] {
            let Some(r) = reader.get(key).and_then(Value::as_f64) else {
                continue;
            };
            let tighter = match writer.get(key).and_then(Value::as_f64) {
                None => true,
                Some(w) if upper => r < w,
                Some(w) => r > w,
            };
            if tighter {
                let msg = match self.dir {
                    Direction::Backward => format!("{at}: {key} tightened to {r}; records of version {v} may exceed it"),
                    Direction::Forward => format!("{at}: {key} relaxed from {r}; readers of version {v} refuse the new values"),
                };
                self.push(msg);
            }
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn back(new: &Value, old: &Value) -> Vec<String> {
        issues(Direction::Backward, new, old, 1)
    }

    #[test]
    fn optional_properties_and_widening_are_growth() {
        let v1 = json!({"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]});
        let v2 = json!({"type":"object","properties":{"id":{"type":"number"},"note":{"type":"string"}},"required":["id"]});
        assert!(back(&v2, &v1).is_empty());
        let v3 = json!({"type":"object","properties":{"id":{"type":["integer","null"]}},"required":["id"]});
        assert!(back(&v3, &v1).is_empty());
    }

    #[test]
    fn breakage_names_the_property_and_rule() {
        let v1 = json!({"type":"object","properties":{"msg_id":{"type":"integer"},"who":{"type":"object","properties":{"name":{"type":"string"}}}},"required":["msg_id"]});
        let retyped = json!({"type":"object","properties":{"msg_id":{"type":"string"},"who":{"type":"object","properties":{"name":{"type":"string"}}}},"required":["msg_id"]});
        let m = back(&retyped, &v1);
        assert!(
            m[0].contains("property \"msg_id\": type changed from integer to string"),
            "{m:?}"
        );
        let nested = json!({"type":"object","properties":{"msg_id":{"type":"integer"},"who":{"type":"object","properties":{"name":{"type":"integer"}}}},"required":["msg_id"]});
        let m = back(&nested, &v1);
        assert!(m[0].contains("property \"who.name\""), "{m:?}");
        let required = json!({"type":"object","properties":{"msg_id":{"type":"integer"},"sku":{"type":"string"}},"required":["msg_id","sku"]});
        let m = back(&required, &v1);
        assert!(
            m[0].contains("property \"sku\" is required by the new schema"),
            "{m:?}"
        );
        // Removing a required property breaks readers of version 1 (FORWARD).
        let removed = json!({"type":"object","properties":{"who":{"type":"object"}}});
        assert!(back(&removed, &v1).is_empty());
        let m = issues(Direction::Forward, &v1, &removed, 1);
        assert!(
            m[0].contains("property \"msg_id\" is required by version 1"),
            "{m:?}"
        );
        let shorter =
            json!({"type":"object","properties":{"msg_id":{"type":"integer","maximum":10}}});
        assert!(back(&shorter, &v1)[0].contains("maximum tightened"));
    }
}
