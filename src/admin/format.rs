//! How `consume` prints a record: kcat's `--format`, JSON lines, or the value (pretty JSON
//! on a terminal); and the date-times its options take.

use anyhow::Result;

use super::batch::InRecord;

/// Milliseconds since the epoch from a number or an RFC 3339 date-time (UTC `Z` or an
/// offset like `+02:00`; seconds may have a fraction).
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!("{s:?} is neither milliseconds nor a date-time like 2026-11-24T10:00:00Z")
    };
    let (date, rest) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [y, mo, da] = d[..] else {
        return Err(bad());
    };
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        (c, sign * (h * 60 + m))
    } else {
        (rest, 0)
    };
    let t: Vec<&str> = clock.split(':').collect();
    let [h, mi, sec] = t[..] else {
        return Err(bad());
    };
    let (h, mi): (i64, i64) = (
        h.parse().map_err(|_| bad())?,
        mi.parse().map_err(|_| bad())?,
    );
    let sec: f64 = sec.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || h > 23
        || mi > 59
        || !(0.0..61.0).contains(&sec)
    {
        return Err(bad());
    }
    // Days from 1970-01-01 (the civil-from-days inverse, proleptic Gregorian).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 - offset_min * 60;
    Ok(secs * 1000 + (sec * 1000.0).round() as i64)
}

pub fn text(b: &Option<Vec<u8>>) -> String {
    b.as_deref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `r` in kcat's `format`.
pub fn format_record(format: &str, topic: &str, partition: i32, r: &InRecord) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(x)) => {
                chars.next();
                match x {
                    't' => out.push_str(topic),
                    'p' => out.push_str(&partition.to_string()),
                    'o' => out.push_str(&r.offset.to_string()),
                    'T' => out.push_str(&r.timestamp.to_string()),
                    'k' => out.push_str(&text(&r.key)),
                    'K' => out.push_str(&r.key.as_ref().map_or(-1, |k| k.len() as i64).to_string()),
                    's' | 'v' => out.push_str(&text(&r.value)),
                    'S' => {
                        out.push_str(&r.value.as_ref().map_or(-1, |v| v.len() as i64).to_string())
                    }
                    'h' => {
                        let hs: Vec<String> = r
                            .headers
                            .iter()
                            .map(|(k, v)| match v {
                                Some(v) => format!("{k}={}", String::from_utf8_lossy(v)),
                                None => format!("{k}=NULL"),
                            })
                            .collect();
                        out.push_str(&hs.join(","));
                    }
                    '%' => out.push('%'),
                    other => {
                        out.push('%');
                        out.push(other);
                    }
                }
            }
            ('\\', Some(x)) => {
                chars.next();
                match x {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    '\\' => out.push('\\'),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// `r` as one JSON object.
pub fn json_record(topic: &str, partition: i32, r: &InRecord) -> serde_json::Value {
    let mut o = serde_json::json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
    });
    for (name, b) in [("key", &r.key), ("value", &r.value)] {
        match b.as_deref().map(std::str::from_utf8) {
            None => o[name] = serde_json::Value::Null,
            Some(Ok(s)) => o[name] = s.into(),
            Some(Err(_)) => {
                o[name] = serde_json::Value::Null;
                o[format!("{name}_hex")] = hex(b.as_deref().unwrap_or_default()).into();
            }
        }
    }
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .into(),
            )
        })
        .collect();
    o["headers"] = headers.into();
    o
}

/// The value as it is, or pretty-printed on a terminal when it is JSON.
pub fn default_line(r: &InRecord, terminal: bool) -> String {
    let v = text(&r.value);
    if terminal {
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(&v) {
            if j.is_object() || j.is_array() {
                return serde_json::to_string_pretty(&j).unwrap_or(v);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_and_formats() {
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("2000-03-01T00:00:00Z").unwrap(), 951_868_800_000);
        assert_eq!(
            parse_time("2026-11-24T10:00:00.5+01:00").unwrap(),
            1_795_510_800_500
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
        let r = InRecord {
            offset: 5,
            timestamp: 9,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![("a".into(), Some(b"1".to_vec())), ("b".into(), None)],
        };
        assert_eq!(
            format_record("%t/%p@%o %T %k=%s (%K,%S) [%h] 100%%\\n", "t", 3, &r),
            "t/3@5 9 k=v (1,1) [a=1,b=NULL] 100%\n"
        );
        let j = json_record("t", 3, &r);
        assert_eq!(j["value"], "v");
        assert_eq!(j["headers"]["a"], "1");
        assert!(j["headers"]["b"].is_null());
        let bin = InRecord {
            value: Some(vec![0xff, 0x00]),
            ..r
        };
        assert_eq!(json_record("t", 3, &bin)["value_hex"], "ff00");
    }
}
