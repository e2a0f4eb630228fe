//! OpenAI strict structured output for a schema written by hand.
//!
//! OpenAI's `response_format: {type: "json_schema", strict: true}` accepts a subset of JSON
//! Schema: every object has `additionalProperties: false` and lists all its properties in
//! `required`, and a handful of keywords are refused. OpenAI's own SDK helpers (Python's
//! `to_strict_json_schema`, Node's zod helpers) rewrite an ordinary schema into that form rather
//! than reject it; [`to_strict`] does the same:
//!
//! - every object gets `additionalProperties: false`;
//! - a property missing from `required` is added to it and made nullable (`"type": ["string",
//!   "null"]`, a `null` enum value, a `{"type": "null"}` branch of `anyOf`, or, for an object, an
//!   array, a bare `$ref` or a `const`, `anyOf: [<it>, {"type": "null"}]`); OpenAPI's
//!   `nullable: true` becomes the same;
//! - `oneOf` becomes `anyOf` (strict mode has no `oneOf`; the answer is still checked against the
//!   caller's own schema); a one-element `allOf` and a `$ref` with sibling keywords are inlined;
//! - nested objects, array items, `anyOf` branches and `$defs` / `definitions` are converted too;
//!   `$ref`s stay (strict mode resolves local ones, recursion included).
//!
//! What strict mode cannot express is refused with the keyword and its place as a JSON pointer
//! ([`StrictRefusal`]): `not`, `if`/`then`/`else`, `dependentRequired`, `dependentSchemas`,
//! `patternProperties`, a tuple (`prefixItems`, `items` as a list), an `allOf` of several schemas,
//! an object whose keys are free (no `properties`, or `additionalProperties` a schema), a value
//! with no type at all (`{}`, `true`), and a `$ref` that is not local or does not resolve.
//!
//! On the way back, [`drop_introduced_nulls`] removes the nulls the model had to write for those
//! optional properties, so the answer is checked against (and returned in) the caller's schema:
//! an absent optional field stays absent.
//!
//! An already-strict schema comes out unchanged.

use std::fmt;

use serde_json::{json, Map, Value};

use super::{Validator, MAX_REF_HOPS};

/// Keywords strict mode refuses, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("not", "strict mode has no negation"),
    ("if", "strict mode has no conditionals"),
    ("then", "strict mode has no conditionals"),
    ("else", "strict mode has no conditionals"),
    ("dependentRequired", "strict mode requires every property"),
    ("dependentSchemas", "strict mode has no conditional schemas"),
    (
        "patternProperties",
        "strict mode objects have fixed keys (`additionalProperties: false`); list the properties",
    ),
    (
        "prefixItems",
        "strict mode has no tuples; use an object with named properties",
    ),
];

/// `$ref`s with sibling keywords (and one-element `allOf`s) inlined in a row before giving up:
/// guards against a reference cycle.
const MAX_INLINE: usize = 32;

/// A schema that OpenAI's strict mode cannot express: which keyword, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictRefusal {
    pub keyword: String,
    /// A JSON pointer into the caller's schema, `#` being its root (`#/properties/a/items`).
    pub path: String,
    pub reason: String,
}

impl fmt::Display for StrictRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` at {}: {}", self.keyword, self.path, self.reason)
    }
}

impl std::error::Error for StrictRefusal {}

fn refuse(keyword: &str, path: &str, reason: impl Into<String>) -> StrictRefusal {
    StrictRefusal {
        keyword: keyword.to_string(),
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// `schema` in the form OpenAI's strict structured output accepts (see the module docs).
pub fn to_strict(schema: &Value) -> Result<Value, StrictRefusal> {
    let mut out = schema.clone();
    Converter {
        root: Validator { root: schema },
    }
    .convert(&mut out, "#", 0)?;
    Ok(out)
}

struct Converter<'a> {
    /// The caller's schema, for resolving `$ref`s.
    root: Validator<'a>,
}

impl Converter<'_> {
    fn resolve(&self, reference: &str, path: &str) -> Result<&Value, StrictRefusal> {
        if !reference.starts_with('#') {
            return Err(refuse(
                "$ref",
                path,
                format!("`{reference}` is not a local reference (`#/...`); inline the schema"),
            ));
        }
        self.root
            .resolve(reference)
            .ok_or_else(|| refuse("$ref", path, format!("`{reference}` does not resolve")))
    }

    fn convert(&self, schema: &mut Value, path: &str, inlined: usize) -> Result<(), StrictRefusal> {
        let obj = match schema {
            Value::Object(obj) => obj,
            Value::Bool(b) => {
                return Err(refuse(
                    "type",
                    path,
                    format!(
                        "the schema `{b}` gives no type, which strict mode needs for every value"
                    ),
                ))
            }
            _ => return Err(refuse("type", path, "a schema must be a JSON object")),
        };
        if let Some((keyword, why)) = UNSUPPORTED.iter().find(|(k, _)| obj.contains_key(*k)) {
            return Err(refuse(keyword, path, format!("not supported: {why}")));
        }

        // Inline what strict mode wants inlined, then convert the result.
        if let Some(all) = obj.get("allOf") {
            let entries = all.as_array().map(Vec::as_slice).unwrap_or_default();
            let [only] = entries else {
                return Err(refuse(
                    "allOf",
                    path,
                    "strict mode cannot combine several schemas; merge them into one",
                ));
            };
            let merged = inline(only, obj, "allOf");
            return self.convert_inlined(schema, merged, "allOf", path, inlined);
        }
        if let Some(reference) = obj.get("$ref") {
            let Some(reference) = reference.as_str() else {
                return Err(refuse("$ref", path, "must be a string"));
            };
            let target = self.resolve(reference, path)?;
            if obj.len() == 1 {
                // A bare reference stays: the target is converted where it is defined.
                return Ok(());
            }
            let merged = inline(target, obj, "$ref");
            return self.convert_inlined(schema, merged, "$ref", path, inlined);
        }

        if obj.contains_key("oneOf") {
            if obj.contains_key("anyOf") {
                return Err(refuse(
                    "oneOf",
                    path,
                    "strict mode has no `oneOf`, and this schema has `anyOf` beside it; merge them",
                ));
            }
            let alternatives = obj.remove("oneOf").unwrap_or_default();
            obj.insert("anyOf".into(), alternatives);
        }
        if let Some(alternatives) = obj.get_mut("anyOf") {
            let Some(list) = alternatives.as_array_mut() else {
                return Err(refuse("anyOf", path, "must be a list of schemas"));
            };
            for (i, sub) in list.iter_mut().enumerate() {
                self.convert(sub, &format!("{path}/anyOf/{i}"), 0)?;
            }
        }
        if obj.get("nullable") == Some(&Value::Bool(true)) {
            obj.remove("nullable");
            make_nullable(schema);
        }
        let Value::Object(obj) = schema else {
            unreachable!("make_nullable keeps a typed schema an object")
        };

        if is_object(obj) {
            self.convert_object(obj, path)?;
        }
        match obj.get_mut("items") {
            Some(Value::Array(_)) => {
                return Err(refuse(
                    "items",
                    path,
                    "a list of item schemas is a tuple, which strict mode does not support; use \
                     one schema for every item",
                ))
            }
            Some(items) => self.convert(items, &format!("{path}/items"), 0)?,
            None => {}
        }
        for key in ["$defs", "definitions"] {
            if let Some(defs) = obj.get_mut(key).and_then(Value::as_object_mut) {
                for (name, sub) in defs.iter_mut() {
                    self.convert(sub, &format!("{path}/{key}/{}", pointer_escape(name)), 0)?;
                }
            }
        }
        if !["type", "$ref", "anyOf", "enum", "const"]
            .iter()
            .any(|k| obj.contains_key(*k))
        {
            return Err(refuse(
                "type",
                path,
                "is missing, and nothing else (`enum`, `const`, `anyOf`, `$ref`) says what the \
                 value is; strict mode needs a type for every value",
            ));
        }
        Ok(())
    }

    fn convert_inlined(
        &self,
        schema: &mut Value,
        merged: Value,
        keyword: &str,
        path: &str,
        inlined: usize,
    ) -> Result<(), StrictRefusal> {
        if inlined >= MAX_INLINE {
            return Err(refuse(
                keyword,
                path,
                "references loop without reaching a schema",
            ));
        }
        *schema = merged;
        self.convert(schema, path, inlined + 1)
    }

    fn convert_object(
        &self,
        obj: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), StrictRefusal> {
        let has_properties = obj.contains_key("properties");
        match obj.get("additionalProperties") {
            Some(Value::Bool(false)) => {}
            None | Some(Value::Bool(true)) if has_properties => {
                obj.insert("additionalProperties".into(), Value::Bool(false));
            }
            Some(Value::Object(extra)) if extra.is_empty() && has_properties => {
                obj.insert("additionalProperties".into(), Value::Bool(false));
            }
            _ => {
                return Err(refuse(
                    "additionalProperties",
                    path,
                    "an object with free keys (a map) cannot be expressed: strict mode objects \
                     have `additionalProperties: false`; list the keys in `properties`",
                ))
            }
        }
        if !has_properties {
            return Ok(());
        }
        let mut required: Vec<Value> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(list)) if list.iter().all(Value::is_string) => list.clone(),
            Some(_) => return Err(refuse("required", path, "must be a list of property names")),
        };
        let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) else {
            return Err(refuse("properties", path, "must be an object of schemas"));
        };
        let mut added = false;
        for (name, sub) in props.iter_mut() {
            self.convert(
                sub,
                &format!("{path}/properties/{}", pointer_escape(name)),
                0,
            )?;
            if !required.iter().any(|r| r == name) {
                make_nullable(sub);
                required.push(Value::String(name.clone()));
                added = true;
            }
        }
        if added || !obj.contains_key("required") {
            obj.insert("required".into(), Value::Array(required));
        }
        Ok(())
    }
}

/// `base` (a referenced or `allOf` schema) with the keywords of `site` (where it is used) on
/// top, minus the inlining `keyword`.
fn inline(base: &Value, site: &Map<String, Value>, keyword: &str) -> Value {
    let mut merged = match base {
        Value::Object(b) => b.clone(),
        // `true` / `false` / junk: convert() then refuses it with this path.
        other if site.len() == 1 => return other.clone(),
        _ => Map::new(),
    };
    for (k, v) in site {
        if k != keyword {
            merged.insert(k.clone(), v.clone());
        }
    }
    Value::Object(merged)
}

fn is_object(obj: &Map<String, Value>) -> bool {
    obj.contains_key("properties")
        || match obj.get("type") {
            Some(Value::String(t)) => t == "object",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
            _ => false,
        }
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Lets `schema` (already converted) also accept `null`.
fn make_nullable(schema: &mut Value) {
    let Value::Object(obj) = schema else {
        return;
    };
    // Structures (and bare references, constants) become `anyOf: [it, null]`, as OpenAI's zod
    // helper writes them; scalars get `null` in their type list.
    let structure =
        matches!(obj.get("type"), Some(Value::String(t)) if t == "object" || t == "array");
    if structure || obj.contains_key("const") || (obj.contains_key("$ref") && obj.len() == 1) {
        if obj.get("const") != Some(&Value::Null) {
            let inner = std::mem::take(schema);
            *schema = json!({"anyOf": [inner, {"type": "null"}]});
        }
        return;
    }
    match obj.get_mut("type") {
        Some(Value::String(t)) if t != "null" => {
            let t = std::mem::take(t);
            obj.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(ts)) if !ts.iter().any(|t| t == "null") => ts.push(json!("null")),
        _ => {}
    }
    if let Some(Value::Array(values)) = obj.get_mut("enum") {
        if !values.contains(&Value::Null) {
            values.push(Value::Null);
        }
    }
    if let Some(Value::Array(alternatives)) = obj.get_mut("anyOf") {
        let null_branch = alternatives
            .iter()
            .any(|a| a.get("type") == Some(&json!("null")) || a.get("const") == Some(&Value::Null));
        if !null_branch {
            alternatives.push(json!({"type": "null"}));
        }
    }
}

/// Removes from `value` (an answer to the strict form of `schema`) the `null`s of optional
/// properties whose own schema does not accept `null`: the nulls [`to_strict`] made the model
/// write in place of leaving them out. Everything else is left for validation against `schema`.
pub fn drop_introduced_nulls(schema: &Value, value: &mut Value) {
    Nulls {
        validator: Validator { root: schema },
    }
    .strip(schema, value, 0);
}

struct Nulls<'a> {
    validator: Validator<'a>,
}

impl Nulls<'_> {
    fn accepts(&self, schema: &Value, value: &Value) -> bool {
        self.validator.check(schema, value, "$", 0).is_ok()
    }

    fn strip(&self, schema: &Value, value: &mut Value, hops: usize) {
        let Value::Object(obj) = schema else {
            return;
        };
        if let Some(target) = obj
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| self.validator.resolve(r))
        {
            if hops < MAX_REF_HOPS {
                self.strip(target, value, hops + 1);
            }
        }
        for sub in obj
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.strip(sub, value, hops);
        }
        for key in ["anyOf", "oneOf"] {
            let Some(alternatives) = obj.get(key).and_then(Value::as_array) else {
                continue;
            };
            // The first alternative the answer fits once its nulls are dropped.
            for alt in alternatives {
                let mut candidate = value.clone();
                self.strip(alt, &mut candidate, hops);
                if self.accepts(alt, &candidate) {
                    *value = candidate;
                    break;
                }
            }
        }
        match value {
            Value::Object(map) => {
                let Some(props) = obj.get("properties").and_then(Value::as_object) else {
                    return;
                };
                let required: Vec<&str> = obj
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for (name, sub) in props {
                    let Some(item) = map.get_mut(name) else {
                        continue;
                    };
                    if item.is_null() {
                        if !required.contains(&name.as_str()) && !self.accepts(sub, item) {
                            map.remove(name);
                        }
                    } else {
                        self.strip(sub, item, 0);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(sub) = obj.get("items").filter(|s| s.is_object()) {
                    for item in items {
                        self.strip(sub, item, 0);
                    }
                }
            }
            _ => {}
        }
    }
}
