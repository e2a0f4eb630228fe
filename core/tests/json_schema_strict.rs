//! Strict schemas: turning a JSON Schema into a provider's strict form and dropping introduced nulls.

use serde_json::{json, Value};

use batchling_core::jobs::validate_json;
use batchling_core::json_schema::*;

fn strict(schema: Value) -> Value {
    to_strict(&schema).unwrap_or_else(|e| panic!("refused: {e}"))
}

fn refusal(schema: Value) -> StrictRefusal {
    to_strict(&schema).expect_err("should be refused")
}

#[test]
fn optional_properties_become_required_and_nullable() {
    let schema = json!({
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "maybe": {"type": ["integer", "null"]},
            "fixed": {"const": "x"},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "required": ["answer"],
    });
    assert_eq!(
        strict(schema),
        json!({
            "type": "object",
            "properties": {
                "answer": {"type": "string"},
                "confidence": {"type": ["number", "null"], "minimum": 0},
                "kind": {"type": ["string", "null"], "enum": ["a", "b", null]},
                // Already nullable: only added to `required`.
                "maybe": {"type": ["integer", "null"]},
                "fixed": {"anyOf": [{"const": "x"}, {"type": "null"}]},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            },
            "required": ["answer", "confidence", "kind", "maybe", "fixed", "either"],
            "additionalProperties": false,
        })
    );
}

#[test]
fn the_issue_example_gets_additional_properties_false() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]});
    assert_eq!(
        strict(schema),
        json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": false})
    );
    // No `required` at all: every property is optional.
    let schema = json!({"type": "object", "properties": {"a": {"type": "boolean"}}});
    assert_eq!(
        strict(schema),
        json!({"type": "object", "properties": {"a": {"type": ["boolean", "null"]}}, "additionalProperties": false, "required": ["a"]})
    );
}

#[test]
fn nested_objects_and_arrays_of_objects() {
    let schema = json!({
        "type": "object",
        "properties": {
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": true,
            },
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                    "required": ["sku", "qty"],
                },
            },
        },
        "required": ["items"],
    });
    let out = strict(schema);
    assert_eq!(
        out["properties"]["address"],
        // The object itself was optional: nullable as a whole.
        json!({"anyOf": [
            {
                "type": "object",
                "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}},
                "required": ["city", "zip"],
                "additionalProperties": false,
            },
            {"type": "null"},
        ]})
    );
    assert_eq!(
        out["properties"]["items"],
        json!({
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["sku", "qty"],
                "additionalProperties": false,
            },
        })
    );
    assert_eq!(out["required"], json!(["items", "address"]));
}

#[test]
fn refs_and_defs() {
    let schema = json!({
        "type": "object",
        "properties": {
            "author": {"$ref": "#/$defs/person"},
            "editor": {"$ref": "#/$defs/person"},
            "reviewer": {"$ref": "#/definitions/person", "description": "who reviewed it"},
        },
        "required": ["author"],
        "$defs": {
            "person": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "friends": {"type": "array", "items": {"$ref": "#/$defs/person"}}},
                "required": ["name"],
            },
        },
        "definitions": {
            "person": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        },
    });
    let out = strict(schema);
    // A bare $ref stays (recursion included); an optional one is wrapped to accept null.
    assert_eq!(
        out["properties"]["author"],
        json!({"$ref": "#/$defs/person"})
    );
    assert_eq!(
        out["properties"]["editor"],
        json!({"anyOf": [{"$ref": "#/$defs/person"}, {"type": "null"}]})
    );
    // A $ref with siblings is inlined (strict mode takes no siblings beside $ref).
    assert_eq!(
        out["properties"]["reviewer"],
        json!({"anyOf": [
            {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": false,
                "description": "who reviewed it",
            },
            {"type": "null"},
        ]})
    );
    // The definitions are converted where they are.
    assert_eq!(
        out["$defs"]["person"],
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "friends": {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/person"}}, {"type": "null"}]},
            },
            "required": ["name", "friends"],
            "additionalProperties": false,
        })
    );
    assert_eq!(
        out["definitions"]["person"]["additionalProperties"],
        json!(false)
    );
}

#[test]
fn one_of_nullable_and_single_all_of() {
    let schema = json!({
        "type": "object",
        "properties": {
            "shape": {"oneOf": [
                {"type": "object", "properties": {"r": {"type": "number"}}, "required": ["r"]},
                {"type": "object", "properties": {"w": {"type": "number"}, "h": {"type": "number"}}},
            ]},
            "legacy": {"type": "string", "nullable": true},
            "base": {"allOf": [{"$ref": "#/$defs/base"}], "description": "merged"},
        },
        "required": ["shape", "legacy", "base"],
        "$defs": {"base": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}},
    });
    let out = strict(schema);
    assert_eq!(
        out["properties"]["shape"],
        json!({"anyOf": [
            {"type": "object", "properties": {"r": {"type": "number"}}, "required": ["r"], "additionalProperties": false},
            {"type": "object", "properties": {"w": {"type": ["number", "null"]}, "h": {"type": ["number", "null"]}}, "additionalProperties": false, "required": ["w", "h"]},
        ]})
    );
    assert_eq!(
        out["properties"]["legacy"],
        json!({"type": ["string", "null"]})
    );
    assert_eq!(
        out["properties"]["base"],
        json!({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"], "description": "merged", "additionalProperties": false})
    );
}

#[test]
fn already_strict_schemas_are_unchanged() {
    let schemas = [
        json!({
            "type": "object",
            "properties": {
                "title": {"type": "string", "description": "the title"},
                "score": {"type": "integer", "minimum": 1, "maximum": 5},
                "note": {"type": ["string", "null"]},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 1},
                "detail": {
                    "type": "object",
                    "properties": {"ok": {"type": "boolean"}},
                    "required": ["ok"],
                    "additionalProperties": false,
                },
                "ref": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
            },
            // Not in `properties` order: the order is kept.
            "required": ["score", "title", "note", "tags", "detail", "ref"],
            "additionalProperties": false,
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                    "required": ["children"],
                    "additionalProperties": false,
                },
            },
        }),
        json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false}),
        json!({"type": "object", "additionalProperties": false}),
    ];
    for schema in schemas {
        assert_eq!(strict(schema.clone()), schema);
        // And converting twice changes nothing more.
        let once = strict(json!({"type": "object", "properties": {"a": {"type": "string"}}}));
        assert_eq!(strict(once.clone()), once);
    }
}

#[test]
fn refusals_name_the_keyword_and_the_path() {
    let cases = [
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}}}),
            "not",
            "#/properties/a",
        ),
        (
            json!({"type": "object", "properties": {"list": {"type": "array", "items": {"type": "object", "properties": {"v": {"if": {"type": "string"}, "then": {}}}}}}}),
            "if",
            "#/properties/list/items/properties/v",
        ),
        (
            json!({"type": "object", "properties": {"meta": {"type": "object"}}}),
            "additionalProperties",
            "#/properties/meta",
        ),
        (
            json!({"type": "object", "properties": {"m": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}}}),
            "additionalProperties",
            "#/properties/m",
        ),
        (
            json!({"type": "object", "properties": {"m": {"type": "object", "patternProperties": {"^x": {"type": "string"}}}}}),
            "patternProperties",
            "#/properties/m",
        ),
        (
            json!({"type": "object", "properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}]}}}),
            "prefixItems",
            "#/properties/pair",
        ),
        (
            json!({"type": "object", "properties": {"pair": {"type": "array", "items": [{"type": "string"}]}}}),
            "items",
            "#/properties/pair",
        ),
        (
            json!({"type": "object", "properties": {"both": {"allOf": [{"type": "object"}, {"type": "object"}]}}}),
            "allOf",
            "#/properties/both",
        ),
        (
            json!({"type": "object", "properties": {"any": {}}}),
            "type",
            "#/properties/any",
        ),
        (
            json!({"type": "object", "properties": {"any": true}}),
            "type",
            "#/properties/any",
        ),
        (
            json!({"type": "object", "properties": {"x": {"$ref": "https://example.com/x.json"}}}),
            "$ref",
            "#/properties/x",
        ),
        (
            json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}),
            "$ref",
            "#/properties/x",
        ),
        (
            json!({"type": "object", "properties": {"a/b": {"type": "string", "dependentRequired": {}}}}),
            "dependentRequired",
            "#/properties/a~1b",
        ),
        (
            json!({"type": "object", "properties": {}, "$defs": {"d": {"type": "object", "properties": {"e": {"else": {}}}}}}),
            "else",
            "#/$defs/d/properties/e",
        ),
        (
            json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/a", "description": "loop"}}, "$defs": {"a": {"$ref": "#/properties/x", "title": "t"}}}),
            "$ref",
            "#/properties/x",
        ),
    ];
    for (schema, keyword, path) in cases {
        let e = refusal(schema.clone());
        assert_eq!(
            (e.keyword.as_str(), e.path.as_str()),
            (keyword, path),
            "{schema}: {e}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("`{keyword}` at {path}: ")),
            "{e}"
        );
    }
}

#[test]
fn dropping_the_introduced_nulls() {
    let schema = json!({
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "note": {"type": "string"},
            "maybe": {"type": ["string", "null"]},
            "required_null": {"type": "string"},
            "nested": {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                "required": ["x"],
            },
            "rows": {"type": "array", "items": {"$ref": "#/$defs/row"}},
            "choice": {"anyOf": [
                {"type": "object", "properties": {"r": {"type": "number"}}, "required": ["r"], "additionalProperties": false},
                {"type": "object", "properties": {"w": {"type": "number"}, "h": {"type": "number"}}, "required": ["w"], "additionalProperties": false},
            ]},
        },
        "required": ["answer", "required_null", "rows"],
        "$defs": {"row": {"type": "object", "properties": {"k": {"type": "string"}, "v": {"type": "string"}}, "required": ["k"]}},
    });
    let mut answer = json!({
        "answer": "42",
        "note": null,
        "maybe": null,
        "required_null": null,
        "nested": {"x": 1, "y": null},
        "rows": [{"k": "a", "v": null}, {"k": "b", "v": "2"}],
        "choice": {"w": 1.5, "h": null},
    });
    drop_introduced_nulls(&schema, &mut answer);
    assert_eq!(
        answer,
        json!({
            "answer": "42",
            // A nullable optional field keeps its null: the caller's schema allows it.
            "maybe": null,
            // A required field's null is left for validation to report.
            "required_null": null,
            "nested": {"x": 1},
            "rows": [{"k": "a"}, {"k": "b", "v": "2"}],
            "choice": {"w": 1.5},
        })
    );
    let e = validate_json(&schema, &answer).unwrap_err();
    assert_eq!(e, "$.required_null: expected string, got null");

    // The round trip: what strict mode lets the model write, minus the nulls, fits the schema.
    let mut full = json!({
        "answer": "a", "note": null, "maybe": null, "required_null": "r", "nested": null,
        "rows": [], "choice": null,
    });
    assert!(validate_json(&strict(schema.clone()), &full).is_ok());
    drop_introduced_nulls(&schema, &mut full);
    assert_eq!(
        full,
        json!({"answer": "a", "maybe": null, "required_null": "r", "rows": []})
    );
    assert_eq!(validate_json(&schema, &full), Ok(()));
}
