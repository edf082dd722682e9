//! The journal line format, its canonical serialization and the record hash.
//!
//! # Byte format (normative; ARCHITECTURE.md copies this)
//!
//! `journal.jsonl` is UTF-8, one record per line, each line terminated by `\n` (0x0A).
//! A line is a JSON object with exactly five keys:
//!
//! | key     | type            | meaning                                                    |
//! |---------|-----------------|------------------------------------------------------------|
//! | `seq`   | integer         | 1, 2, 3, ... without gaps                                  |
//! | `ts`    | string          | RFC 3339 UTC with milliseconds, e.g. `2026-05-01T09:30:00.123Z` |
//! | `prev`  | string          | `hash` of the record with `seq - 1`; 64 `0` for seq 1      |
//! | `event` | object          | the [`Event`], with `"type"` naming the variant            |
//! | `hash`  | string          | lowercase hex SHA-256, see below                           |
//!
//! `hash` = SHA-256 over the UTF-8 bytes of the *canonical JSON* of the same object
//! **without** the `hash` key. Canonical JSON is exactly what Python produces with
//! `json.dumps(obj, ensure_ascii=False, separators=(',', ':'), sort_keys=True)`:
//!
//! - object keys sorted by code point (= UTF-8 byte order) at every level, no duplicates;
//! - no whitespace anywhere; `,` between items and `:` between key and value;
//! - strings: `"` → `\"`, `\` → `\\`, 0x08 → `\b`, 0x0C → `\f`, 0x0A → `\n`, 0x0D → `\r`,
//!   0x09 → `\t`, every other code point below 0x20 → `\u00XX` (lowercase hex); every other
//!   character, including non-ASCII, U+007F and U+2028, is written as itself in UTF-8;
//! - integers in decimal without leading zeros or `+`; floats are not allowed (rejected);
//! - `true`, `false`, `null` (`null` is how an absent optional value is written).
//!
//! The line itself is the canonical JSON of the full object *including* `hash` (so `hash`
//! sits between `event` and `prev`). A verifier therefore needs only to parse the line,
//! remove `hash`, re-serialize canonically, hash, compare; and check that `seq` increases
//! by one and `prev` equals the previous line's `hash`. `tests/verify_python.py` does this
//! in under 30 lines of Python.
//!
//! The canonical writer below works over [`serde_json::Value`] and sorts keys itself, so it
//! does not depend on how serde_json orders maps (the `preserve_order` feature may be on).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Event, Record};

/// The `prev` of the first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why a value or a line cannot be (re)serialized canonically.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("floats are not allowed in records (found {0})")]
    Float(String),
    #[error("not valid UTF-8 JSON: {0}")]
    Json(String),
    #[error("not a journal record: {0}")]
    Shape(String),
    #[error("event does not match any known record type: {0}")]
    Event(String),
    #[error("cannot serialize event: {0}")]
    Serialize(String),
}

/// Appends the canonical JSON of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut String) -> Result<(), RecordError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_u64() {
                out.push_str(&i.to_string());
            } else if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else {
                return Err(RecordError::Float(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out)?;
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Canonical JSON of `value` as a string.
pub fn canonical(value: &Value) -> Result<String, RecordError> {
    let mut out = String::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn chain_object(seq: u64, ts: &str, prev: &str, event: Value) -> serde_json::Map<String, Value> {
    let mut obj = serde_json::Map::new();
    obj.insert("seq".to_owned(), Value::from(seq));
    obj.insert("ts".to_owned(), Value::from(ts));
    obj.insert("prev".to_owned(), Value::from(prev));
    obj.insert("event".to_owned(), event);
    obj
}

/// An event serialized canonically ahead of time, so that the appender that chains it
/// (under the journal lock) only has to assemble the line and hash it.
#[derive(Debug, Clone)]
pub struct Prepared {
    event: Event,
    /// Canonical JSON of `event`.
    canonical: String,
}

impl Prepared {
    /// Serializes `event` canonically (fails on what [`seal`] would fail on).
    pub fn new(event: Event) -> Result<Prepared, RecordError> {
        let value =
            serde_json::to_value(&event).map_err(|e| RecordError::Serialize(e.to_string()))?;
        let canonical = canonical(&value)?;
        Ok(Prepared { event, canonical })
    }

    /// The event it will record.
    pub fn event(&self) -> &Event {
        &self.event
    }
}

/// Builds a record (computing its hash) and its journal line (without the trailing `\n`).
pub fn seal(
    seq: u64,
    ts: String,
    prev: String,
    event: Event,
) -> Result<(Record, String), RecordError> {
    Ok(seal_prepared(seq, ts, prev, Prepared::new(event)?))
}

/// [`seal`] of an event already serialized: the canonical object is assembled as text. Its
/// keys in code-point order are `event`, `hash`, `prev`, `seq`, `ts`, which is the order
/// written here; `canonical_matches_assembled_line` checks it against the generic writer.
pub fn seal_prepared(seq: u64, ts: String, prev: String, prepared: Prepared) -> (Record, String) {
    let mut tail = String::with_capacity(prev.len() + ts.len() + 40);
    tail.push_str(",\"prev\":");
    write_string(&prev, &mut tail);
    tail.push_str(",\"seq\":");
    tail.push_str(&seq.to_string());
    tail.push_str(",\"ts\":");
    write_string(&ts, &mut tail);
    tail.push('}');
    let mut unhashed = String::with_capacity(prepared.canonical.len() + tail.len() + 12);
    unhashed.push_str("{\"event\":");
    unhashed.push_str(&prepared.canonical);
    unhashed.push_str(&tail);
    let hash = sha256_hex(unhashed.as_bytes());
    let mut line = String::with_capacity(unhashed.len() + hash.len() + 12);
    line.push_str("{\"event\":");
    line.push_str(&prepared.canonical);
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push('"');
    line.push_str(&tail);
    (
        Record {
            seq,
            ts,
            prev,
            hash,
            event: prepared.event,
        },
        line,
    )
}

/// The journal line of an existing record (canonical JSON including its stored `hash`).
pub fn line_of(record: &Record) -> Result<String, RecordError> {
    let event_value =
        serde_json::to_value(&record.event).map_err(|e| RecordError::Serialize(e.to_string()))?;
    let mut obj = chain_object(record.seq, &record.ts, &record.prev, event_value);
    obj.insert("hash".to_owned(), Value::from(record.hash.clone()));
    canonical(&Value::Object(obj))
}

/// A journal line, parsed.
#[derive(Debug, Clone)]
pub struct ParsedLine {
    pub record: Record,
    /// The SHA-256 recomputed from the line's content (equal to `record.hash` when intact).
    pub computed_hash: String,
}

impl ParsedLine {
    /// The stored hash matches the content.
    pub fn intact(&self) -> bool {
        self.computed_hash == self.record.hash
    }
}

/// Parses one journal line (without or with its trailing `\n`) and recomputes its hash.
///
/// The hash is recomputed from the JSON as written, not from the re-serialized [`Event`], so
/// that an edit is detected even if it is something serde would normalize away.
pub fn parse_line(line: &[u8]) -> Result<ParsedLine, RecordError> {
    let text = std::str::from_utf8(line).map_err(|e| RecordError::Json(e.to_string()))?;
    let value: Value = serde_json::from_str(text.trim_end_matches('\n'))
        .map_err(|e| RecordError::Json(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(RecordError::Shape(
            "the line is not a JSON object".to_owned(),
        ));
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "seq" | "ts" | "prev" | "event" | "hash") {
            return Err(RecordError::Shape(format!("unexpected key `{key}`")));
        }
    }
    let hash = match obj.remove("hash") {
        Some(Value::String(h)) => h,
        _ => {
            return Err(RecordError::Shape(
                "`hash` missing or not a string".to_owned(),
            ))
        }
    };
    let seq = obj
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| RecordError::Shape("`seq` missing or not an unsigned integer".to_owned()))?;
    let ts = obj
        .get("ts")
        .and_then(Value::as_str)
        .ok_or_else(|| RecordError::Shape("`ts` missing or not a string".to_owned()))?
        .to_owned();
    let prev = obj
        .get("prev")
        .and_then(Value::as_str)
        .ok_or_else(|| RecordError::Shape("`prev` missing or not a string".to_owned()))?
        .to_owned();
    let event_value = obj
        .get("event")
        .cloned()
        .ok_or_else(|| RecordError::Shape("`event` missing".to_owned()))?;
    let computed_hash = sha256_hex(canonical(&Value::Object(obj))?.as_bytes());
    let event: Event =
        serde_json::from_value(event_value).map_err(|e| RecordError::Event(e.to_string()))?;
    Ok(ParsedLine {
        record: Record {
            seq,
            ts,
            prev,
            hash,
            event,
        },
        computed_hash,
    })
}

/// Only the `seq` and `hash` of a line, without checking anything else (used to find the
/// chain head from the journal's tail).
pub fn seq_and_hash(line: &[u8]) -> Option<(u64, String)> {
    #[derive(serde::Deserialize)]
    struct Head {
        seq: u64,
        hash: String,
    }
    let head: Head = serde_json::from_slice(line).ok()?;
    if head.hash.len() == 64 && head.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some((head.seq, head.hash))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_matches_python_rules() {
        let v: Value =
            serde_json::json!({"b": "é\"\\\n\t\u{1}\u{7f}\u{2028}", "a": [1, -2, null, true]});
        assert_eq!(
            canonical(&v).unwrap(),
            "{\"a\":[1,-2,null,true],\"b\":\"é\\\"\\\\\\n\\t\\u0001\u{7f}\u{2028}\"}"
        );
    }

    #[test]
    fn canonical_matches_assembled_line() {
        let event = Event::Pause {
            on: false,
            user: "zé\"\u{1}".into(),
            reason: "r".into(),
            at: "t".into(),
            channel: None,
        };
        let (record, line) = seal(3, "ts\n\"".into(), "ab".repeat(32), event.clone()).unwrap();
        let mut obj = chain_object(
            3,
            "ts\n\"",
            &"ab".repeat(32),
            serde_json::to_value(&event).unwrap(),
        );
        let hash = sha256_hex(canonical(&Value::Object(obj.clone())).unwrap().as_bytes());
        assert_eq!(record.hash, hash);
        obj.insert("hash".to_owned(), Value::from(hash));
        assert_eq!(line, canonical(&Value::Object(obj)).unwrap());
        assert_eq!(line_of(&record).unwrap(), line);
    }

    #[test]
    fn floats_are_rejected() {
        let v: Value = serde_json::json!({"x": 1.5});
        assert!(matches!(canonical(&v), Err(RecordError::Float(_))));
    }

    #[test]
    fn sealed_line_parses_back_intact() {
        let event = Event::Pause {
            on: true,
            user: "ü".into(),
            reason: "a\u{0}b".into(),
            at: "t".into(),
            channel: Some("c".into()),
        };
        let (record, line) = seal(
            7,
            "2026-01-01T00:00:00.000Z".into(),
            GENESIS_PREV.into(),
            event,
        )
        .unwrap();
        let parsed = parse_line(line.as_bytes()).unwrap();
        assert!(parsed.intact());
        assert_eq!(parsed.record, record);
        assert_eq!(line_of(&record).unwrap(), line);
        let edited = line.replace("\"on\":true", "\"on\":false");
        assert!(!parse_line(edited.as_bytes()).unwrap().intact());
    }

    #[test]
    fn a_pause_line_without_channel_keeps_its_bytes_and_hash() {
        // Written before `channel` existed: no such key in the event.
        let old = seal(
            1,
            "2026-01-01T00:00:00.000Z".into(),
            GENESIS_PREV.into(),
            Event::Pause {
                on: true,
                user: "u".into(),
                reason: "r".into(),
                at: "t".into(),
                channel: None,
            },
        )
        .unwrap()
        .1;
        assert!(!old.contains("channel"), "{old}");
        let parsed = parse_line(old.as_bytes()).unwrap();
        assert!(parsed.intact());
        assert_eq!(line_of(&parsed.record).unwrap(), old);
        let scoped = seal(
            2,
            "2026-01-01T00:00:00.000Z".into(),
            GENESIS_PREV.into(),
            Event::Pause {
                on: false,
                user: "u".into(),
                reason: "r".into(),
                at: "t".into(),
                channel: Some("sample".into()),
            },
        )
        .unwrap()
        .1;
        assert!(scoped.contains("\"channel\":\"sample\""), "{scoped}");
        assert!(parse_line(scoped.as_bytes()).unwrap().intact());
    }
}
