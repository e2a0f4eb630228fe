//! The JSON-Schema validator that checks structured answers.

use serde_json::{json, Value};

use batchling_core::jobs::validate_json;

// ---------------------------------------------------------------------------------------------
// Schema validator.

#[test]
fn validator_subset() {
    let s = json!({
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "kind": {"enum": ["a", "b", 3]},
            "when": {"type": "string", "nullable": true},
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
            "any": {"anyOf": [{"type": "string"}, {"type": "number"}]},
            "odd key": {"const": 1},
            "map": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
        "required": ["id"],
        "additionalProperties": false,
        "$defs": {"item": {"type": "object", "properties": {"n": {"type": ["number", "null"]}}, "required": ["n"]}},
    });
    let ok = |v: Value| validate_json(&s, &v);
    assert_eq!(ok(json!({"id": 1})), Ok(()));
    assert_eq!(
        ok(json!({"id": 2.0, "kind": 3.0, "when": null, "any": 1.5, "odd key": 1.0})),
        Ok(())
    );
    assert_eq!(
        ok(json!({"id": 1, "items": [{"n": null}, {"n": 2}], "map": {"x": true}})),
        Ok(())
    );
    for (v, e) in [
        (json!([]), "$: expected object, got array"),
        (json!({}), "$: missing required property `id`"),
        (json!({"id": 1.5}), "$.id: expected integer, got number"),
        (json!({"id": 1, "kind": "c"}), "$.kind: \"c\" is not one of [\"a\",\"b\",3]"),
        (json!({"id": 1, "when": 3}), "$.when: expected string or null, got integer"),
        (json!({"id": 1, "items": [{"n": 1}, {}]}), "$.items[1]: missing required property `n`"),
        (json!({"id": 1, "items": [{"n": "x"}]}), "$.items[0].n: expected number or null, got string"),
        (json!({"id": 1, "any": true}), "$.any: matches none of the `anyOf` alternatives (first: $.any: expected string, got boolean)"),
        (json!({"id": 1, "odd key": 2}), "$[\"odd key\"]: expected 1, got 2"),
        (json!({"id": 1, "map": {"x": 1}}), "$.map.x: expected boolean, got integer"),
        (json!({"id": 1, "zzz": 1}), "$: unexpected property `zzz`"),
    ] {
        assert_eq!(ok(v.clone()), Err(e.to_string()), "{v}");
    }
    // $ref loops and dangling refs are reported, not followed forever.
    assert!(validate_json(&json!({"$ref": "#"}), &json!(1))
        .unwrap_err()
        .contains("loops"));
    assert_eq!(
        validate_json(&json!({"$ref": "#/$defs/none"}), &json!(1)),
        Err("$: cannot resolve `$ref` #/$defs/none".to_string())
    );
    // Unknown keywords and boolean schemas.
    assert_eq!(validate_json(&json!({"minLength": 3}), &json!("a")), Ok(()));
    assert_eq!(validate_json(&json!(true), &json!(1)), Ok(()));
    assert!(validate_json(&json!({"properties": {"a": false}}), &json!({"a": 1})).is_err());
}
