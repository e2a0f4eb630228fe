//! JSON Schema: a validator for the subset structured output uses, and the conversion of a
//! hand-written schema to OpenAI's strict form (`strict`).

use serde_json::Value;

mod strict;
pub use strict::{drop_introduced_nulls, to_strict, StrictRefusal};

/// Checks `value` against `schema`, supporting the subset structured output uses: `type` (a name
/// or a list of names; `integer` accepts whole numbers), OpenAPI's `nullable: true`, `enum`,
/// `const`, `properties`, `required`, `additionalProperties` (`false` or a schema), `items`,
/// `anyOf` / `oneOf` (both as "at least one"), `allOf`, and local `$ref`s (`#/$defs/...`).
/// Other keywords are ignored. The error names the first offending place as a path (`$.a[2].b`).
pub fn validate_json(schema: &Value, value: &Value) -> Result<(), String> {
    Validator { root: schema }.check(schema, value, "$", 0)
}

struct Validator<'a> {
    root: &'a Value,
}

/// `$ref` hops allowed without descending into the value (guards against `$ref` cycles).
/// `$ref` hops followed in a row before a reference counts as a loop.
const MAX_REF_HOPS: usize = 32;

impl<'a> Validator<'a> {
    /// The schema a local reference (`#/...`) names; `None` when it is not local or does not
    /// resolve.
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        reference
            .strip_prefix('#')
            .and_then(|pointer| self.root.pointer(pointer))
    }

    fn check(&self, schema: &Value, value: &Value, path: &str, hops: usize) -> Result<(), String> {
        let obj = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(format!("{path}: no value is allowed here")),
            Value::Object(obj) => obj,
            _ => return Ok(()),
        };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            if hops >= MAX_REF_HOPS {
                return Err(format!("{path}: `$ref` {reference} loops"));
            }
            let target = self
                .resolve(reference)
                .ok_or_else(|| format!("{path}: cannot resolve `$ref` {reference}"))?;
            self.check(target, value, path, hops + 1)?;
        }
        if let Some(t) = obj.get("type") {
            let mut names: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if obj.get("nullable") == Some(&Value::Bool(true)) {
                names.push("null");
            }
            if !names.is_empty() && !names.iter().any(|n| type_matches(n, value)) {
                return Err(format!(
                    "{path}: expected {}, got {}",
                    names.join(" or "),
                    type_name(value)
                ));
            }
        }
        if let Some(options) = obj.get("enum").and_then(Value::as_array) {
            if !options.iter().any(|o| json_eq(o, value)) {
                return Err(format!(
                    "{path}: {} is not one of {}",
                    short(value),
                    short(&Value::Array(options.clone()))
                ));
            }
        }
        if let Some(c) = obj.get("const") {
            if !json_eq(c, value) {
                return Err(format!(
                    "{path}: expected {}, got {}",
                    short(c),
                    short(value)
                ));
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alternatives) = obj.get(key).and_then(Value::as_array) {
                let mut first_error = None;
                let matched = alternatives.iter().any(|alt| {
                    let res = self.check(alt, value, path, hops);
                    if let Err(e) = &res {
                        first_error.get_or_insert_with(|| e.clone());
                    }
                    res.is_ok()
                });
                if !matched && !alternatives.is_empty() {
                    return Err(format!(
                        "{path}: matches none of the `{key}` alternatives (first: {})",
                        first_error.unwrap_or_default()
                    ));
                }
            }
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, value, path, hops)?;
            }
        }
        match value {
            Value::Object(map) => {
                let props = obj.get("properties").and_then(Value::as_object);
                if let Some(required) = obj.get("required").and_then(Value::as_array) {
                    for key in required.iter().filter_map(Value::as_str) {
                        if !map.contains_key(key) {
                            return Err(format!("{path}: missing required property `{key}`"));
                        }
                    }
                }
                for (key, item) in map {
                    let child = child_path(path, key);
                    match props.and_then(|p| p.get(key)) {
                        Some(sub) => self.check(sub, item, &child, 0)?,
                        None => match obj.get("additionalProperties") {
                            Some(Value::Bool(false)) => {
                                return Err(format!("{path}: unexpected property `{key}`"))
                            }
                            Some(extra @ Value::Object(_)) => self.check(extra, item, &child, 0)?,
                            _ => {}
                        },
                    }
                }
            }
            Value::Array(items) => {
                if let Some(sub) = obj.get("items").filter(|s| !s.is_array()) {
                    for (i, item) in items.iter().enumerate() {
                        self.check(sub, item, &format!("{path}[{i}]"), 0)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn type_matches(name: &str, v: &Value) -> bool {
    match name {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Equality with numbers compared by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

/// A value for an error message, cut to a readable length.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 80 {
        return s;
    }
    let mut end = 77;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
