//! A JSON object read as its entries in order, each value kept as the exact text it was written
//! in. The result files a run wrote are read here without re-formatting any number, so what
//! goes back to the host reads as it was written.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// An object's `(key, value text)` pairs, in the order written (a repeated key stays repeated).
#[derive(Debug, Default)]
pub(crate) struct Entries<'a>(pub Vec<(String, &'a RawValue)>);

impl<'a> Entries<'a> {
    /// The last value under `key` (as `JSON.parse` keeps the last of repeated keys).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// `raw` as an object's entries; `None` when it is not an object.
    pub fn of(raw: &'a RawValue) -> Option<Entries<'a>> {
        if !raw.get().starts_with('{') {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for EntriesVisitor<'a> {
            type Value = Entries<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(std::marker::PhantomData))
    }
}

/// The number `raw` holds, parsed exactly (`None` for anything but a JSON number).
pub(crate) fn number(raw: Option<&RawValue>) -> Option<f64> {
    let text = raw?.get().trim();
    match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => text.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_order_and_value_text() {
        let text = r#"{"b": 1.50, "a": [1, null, "x"], "b": 0.000015}"#;
        let entries: Entries = serde_json::from_str(text).unwrap();
        assert_eq!(
            entries
                .0
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["b", "a", "b"]
        );
        assert_eq!(entries.get("b").unwrap().get(), "0.000015");
        assert_eq!(number(entries.get("b")), Some(0.000015));
        assert_eq!(number(entries.get("a")), None);
    }
}
