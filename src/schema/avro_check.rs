//! Checking that bytes are one Avro datum of a schema without decoding it into values:
//! the schema is walked over the bytes, each length and index checked against what is
//! left and what the schema allows. What validation on produce runs per record (the full
//! decode builds a value tree per record and costs several times more).
//!
//! Invariants: never panics, never allocates in proportion to a length the bytes claim, and
//! does a bounded amount of work per input byte (a step budget: an array of a million
//! nulls takes no bytes, but it takes steps).

use std::collections::HashMap;

use apache_avro::schema::{Name, Schema};

/// Deepest nesting of records, arrays, maps and unions followed.
const MAX_DEPTH: usize = 64;

/// A parsed Avro schema, ready to check data against.
pub struct AvroCheck {
    pub schema: Schema,
    /// Named types (records, enums, fixed) by full name, for references.
    names: HashMap<String, Schema>,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    steps: usize,
}

type Check = Result<(), String>;

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| format!("cut short: {n} bytes wanted at byte {}", self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let byte = *self
                .b
                .get(self.pos)
                .ok_or_else(|| format!("cut short in a number at byte {}", self.pos))?;
            self.pos += 1;
            z |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(format!(
            "a number longer than 10 bytes at byte {}",
            self.pos
        ))
    }

    fn int(&mut self) -> Result<i32, String> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| format!("{v} does not fit an int"))
    }

    /// A length (bytes, string) that the rest of the data can hold.
    fn len(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.b.len() - self.pos)
            .ok_or_else(|| format!("length {n} at byte {}", self.pos))
    }

    fn step(&mut self) -> Check {
        self.steps = self
            .steps
            .checked_sub(1)
            .ok_or("too many items for the bytes given")?;
        Ok(())
    }
}

fn collect(s: &Schema, names: &mut HashMap<String, Schema>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match s {
        Schema::Record(r) => {
            names.insert(r.name.fullname(None), s.clone());
            for f in &r.fields {
                collect(&f.schema, names, depth + 1);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(None), s.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.fullname(None), s.clone());
        }
        Schema::Array(a) => collect(&a.items, names, depth + 1),
        Schema::Map(m) => collect(&m.types, names, depth + 1),
        Schema::Union(u) => {
            for v in u.variants() {
                collect(v, names, depth + 1);
            }
        }
        Schema::Decimal(d) => collect(&d.inner, names, depth + 1),
        _ => {}
    }
}

impl AvroCheck {
    pub fn new(schema: Schema) -> AvroCheck {
        let mut names = HashMap::new();
        collect(&schema, &mut names, 0);
        AvroCheck { schema, names }
    }

    /// Whether `data` is exactly one datum of the schema; `Err` says what is wrong.
    pub fn check(&self, data: &[u8]) -> Check {
        let mut c = Cursor {
            b: data,
            pos: 0,
            // Every value consumes a byte or a step; nested empty values are bounded too.
            steps: data.len().saturating_mul(8).saturating_add(1024),
        };
        self.value(&self.schema, &mut c, None, 0)?;
        if c.pos != data.len() {
            return Err(format!("{} bytes left over", data.len() - c.pos));
        }
        Ok(())
    }

    fn value(&self, s: &Schema, c: &mut Cursor, ns: Option<&str>, depth: usize) -> Check {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        c.step()?;
        match s {
            Schema::Null => Ok(()),
            Schema::Boolean => match c.take(1)?[0] {
                0 | 1 => Ok(()),
                b => Err(format!("boolean byte {b}")),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => c.int().map(|_| ()),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => c.long().map(|_| ()),
            Schema::Float => c.take(4).map(|_| ()),
            Schema::Double => c.take(8).map(|_| ()),
            Schema::Bytes | Schema::BigDecimal => {
                let n = c.len()?;
                c.take(n).map(|_| ())
            }
            Schema::String => {
                let n = c.len()?;
                std::str::from_utf8(c.take(n)?)
                    .map(|_| ())
                    .map_err(|e| format!("a string that is not UTF-8: {e}"))
            }
            Schema::Uuid => {
                let n = c.len()?;
                let b = c.take(n)?;
                if n == 16 {
                    return Ok(());
                }
                let text = std::str::from_utf8(b).map_err(|_| "a uuid that is not UTF-8")?;
                uuid::Uuid::parse_str(text)
                    .map(|_| ())
                    .map_err(|e| format!("not a uuid: {e}"))
            }
            Schema::Fixed(f) => c.take(f.size).map(|_| ()),
            Schema::Duration => c.take(12).map(|_| ()),
            Schema::Decimal(d) => self.value(&d.inner, c, ns, depth + 1),
            Schema::Enum(e) => {
                let i = c.int()?;
                if i < 0 || i as usize >= e.symbols.len() {
                    return Err(format!("enum {} has no symbol {i}", e.name.fullname(None)));
                }
                Ok(())
            }
            Schema::Union(u) => {
                let i = c.long()?;
                let v = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| format!("union branch {i} of {}", u.variants().len()))?;
                self.value(v, c, ns, depth + 1)
            }
            Schema::Record(r) => {
                let ns = r.name.namespace.as_deref().or(ns);
                for f in &r.fields {
                    self.value(&f.schema, c, ns, depth + 1)
                        .map_err(|e| format!("{}: {e}", f.name))?;
                }
                Ok(())
            }
            Schema::Array(a) => self.blocks(c, |me, c| me.value(&a.items, c, ns, depth + 1)),
            Schema::Map(m) => self.blocks(c, |me, c| {
                me.value(&Schema::String, c, ns, depth + 1)?;
                me.value(&m.types, c, ns, depth + 1)
            }),
            Schema::Ref { name } => {
                let full = full_name(name, ns);
                let target = self
                    .names
                    .get(&full)
                    .ok_or_else(|| format!("unknown type {full}"))?;
                self.value(target, c, ns, depth + 1)
            }
        }
    }

    /// Array and map blocks: a count (negative: its absolute value, then the block's byte
    /// size), items, until a zero count.
    fn blocks(&self, c: &mut Cursor, mut item: impl FnMut(&Self, &mut Cursor) -> Check) -> Check {
        loop {
            let mut n = c.long()?;
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                n = n.checked_neg().ok_or("a block count out of range")?;
                let size = c.long()?;
                if size < 0 {
                    return Err(format!("block size {size}"));
                }
            }
            for _ in 0..n {
                c.step()?;
                item(self, c)?;
            }
        }
    }
}

fn full_name(name: &Name, ns: Option<&str>) -> String {
    if name.namespace.is_some() || name.name.contains('.') {
        return name.fullname(None);
    }
    match ns {
        Some(ns) if !ns.is_empty() => format!("{ns}.{}", name.name),
        _ => name.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;

    const SCHEMA: &str = r#"{"type":"record","name":"Node","namespace":"t","fields":[
        {"name":"id","type":"long"},
        {"name":"label","type":["null","string"],"default":null},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
        {"name":"tags","type":{"type":"map","values":"int"}},
        {"name":"hash","type":{"type":"fixed","name":"H","size":4}},
        {"name":"score","type":"double"},
        {"name":"ok","type":"boolean"},
        {"name":"children","type":{"type":"array","items":"Node"}}]}"#;

    fn sample() -> Value {
        let leaf = Value::Record(vec![
            ("id".into(), Value::Long(2)),
            ("label".into(), Value::Union(0, Box::new(Value::Null))),
            ("kind".into(), Value::Enum(1, "B".into())),
            ("tags".into(), Value::Map(Default::default())),
            ("hash".into(), Value::Fixed(4, vec![1, 2, 3, 4])),
            ("score".into(), Value::Double(0.5)),
            ("ok".into(), Value::Boolean(false)),
            ("children".into(), Value::Array(vec![])),
        ]);
        Value::Record(vec![
            ("id".into(), Value::Long(-1)),
            (
                "label".into(),
                Value::Union(1, Box::new(Value::String("root".into()))),
            ),
            ("kind".into(), Value::Enum(0, "A".into())),
            (
                "tags".into(),
                Value::Map([("x".to_string(), Value::Int(7))].into()),
            ),
            ("hash".into(), Value::Fixed(4, vec![9, 9, 9, 9])),
            ("score".into(), Value::Double(2.5)),
            ("ok".into(), Value::Boolean(true)),
            ("children".into(), Value::Array(vec![leaf])),
        ])
    }

    fn reference(schema: &Schema, data: &[u8]) -> bool {
        let mut r = data;
        matches!(apache_avro::from_avro_datum(schema, &mut r, None), Ok(v) if r.is_empty() && v.validate(schema))
    }

    #[test]
    fn accepts_data_and_refuses_damage() {
        let schema = Schema::parse_str(SCHEMA).expect("schema");
        let data = apache_avro::to_avro_datum(&schema, sample()).expect("encode");
        let c = AvroCheck::new(schema.clone());
        assert_eq!(c.check(&data), Ok(()));
        // Every cut is refused, as the reference decoder refuses it.
        for cut in 0..data.len() {
            assert!(c.check(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = data.clone();
        extra.push(0);
        assert!(c.check(&extra).unwrap_err().contains("left over"));
        // A huge array of nulls claims no bytes but is still bounded.
        let nulls =
            AvroCheck::new(Schema::parse_str(r#"{"type":"array","items":"null"}"#).expect("s"));
        let mut huge = Vec::new();
        crate::log::records::put_varint(&mut huge, i64::MAX / 2);
        assert!(nulls.check(&huge).is_err());
        // Flipped bytes: never a panic, and the same verdict as decoding when it accepts.
        for i in 0..data.len() {
            for bit in 0..8 {
                let mut d = data.clone();
                d[i] ^= 1 << bit;
                if c.check(&d).is_ok() {
                    assert!(reference(&schema, &d), "byte {i} bit {bit}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic_and_agree_with_decoding(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let schema = Schema::parse_str(SCHEMA).expect("schema");
            let c = AvroCheck::new(schema.clone());
            proptest::prop_assert_eq!(c.check(&data).is_ok(), reference(&schema, &data));
        }
    }
}
