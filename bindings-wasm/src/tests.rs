//! The binding's conversions, run in Node by wasm-bindgen-test-runner
//! (`scripts/build-wasm.sh --test`). The JS-side checks, including parity with the napi
//! binding, are in tests/wasm-smoke.test.mjs.

use super::*;
use batchling_core::host::wire;
use wasm_bindgen_test::wasm_bindgen_test;

fn options(pairs: &[(&str, f64)]) -> JsValue {
    let o = js_sys::Object::new();
    for (key, value) in pairs {
        Reflect::set(&o, &JsValue::from_str(key), &JsValue::from_f64(*value)).unwrap();
    }
    o.into()
}

fn message(error: JsValue) -> String {
    error.dyn_into::<js_sys::Error>().unwrap().message().into()
}

#[wasm_bindgen_test]
fn batcher_cycle_through_the_scratch_buffer() {
    let mut b =
        NativeBatcher::new(options(&[("maxBatchSize", 2.0), ("maxDelayMs", 10.0)])).unwrap();
    let scratch = Float64Array::new_with_length(64);
    let n = b.add(1000.0, &[0, 0], false, &scratch) as usize;
    let out = scratch.to_vec();
    assert_eq!(out[1], 2.0, "two add results");
    let (a, c) = (out[2], out[3]);
    assert_eq!(out[4], wire::RUN_BATCH);
    let batch = out[5];
    assert_eq!(&out[6..11], &[0.0, 1.0, 2.0, a, c]);
    assert!(n >= 11);
    let n = b
        .completed_many(1005.0, &[batch], &[0], &[], &scratch)
        .unwrap() as usize;
    let out = scratch.to_vec();
    assert_eq!(&out[2..n], &[wire::RESOLVE, a, wire::RESOLVE, c]);
    let status = b.status();
    let get = |k: &str| Reflect::get(&status, &k.into()).unwrap().as_f64();
    assert_eq!(get("processed"), Some(2.0));
    assert_eq!(get("lastBatchTime"), Some(1000.0));
    assert_eq!(get("averageBatchSize"), Some(2.0));
}

#[wasm_bindgen_test]
fn an_outcome_too_big_for_the_scratch_buffer_is_kept_for_take_overflow() {
    let mut b = NativeBatcher::new(options(&[("maxBatchSize", 3.0), ("maxDelayMs", 0.0)])).unwrap();
    let small = Float64Array::new_with_length(2);
    let n = b.add(0.0, &[0, 0, 0], false, &small) as usize;
    assert!(n > 2);
    assert_eq!(
        small.to_vec(),
        vec![0.0, 0.0],
        "the scratch buffer is left alone"
    );
    let overflow = b.take_overflow();
    assert_eq!(overflow.len(), n);
    assert_eq!(overflow[1], 3.0);
    assert!(b.take_overflow().is_empty());
}

#[wasm_bindgen_test]
fn option_errors_carry_the_config_error_text() {
    let e = NativeBatcher::new(options(&[("maxBatchSize", 0.0), ("maxDelayMs", 0.0)]))
        .err()
        .unwrap();
    assert_eq!(
        message(e),
        "invalid option `maxBatchSize`: must be at least 1"
    );
    let e = NativeBatcher::new(options(&[("maxDelayMs", 0.0)]))
        .err()
        .unwrap();
    assert_eq!(message(e), "Missing field `maxBatchSize`");
    let e = NativeInterceptor::new(r#"{"pollIntervalMs":0}"#)
        .err()
        .unwrap();
    assert_eq!(
        message(e),
        "invalid option `pollIntervalMs`: must be at least 1"
    );
}

#[wasm_bindgen_test]
fn interceptor_dry_run_answers_with_the_dry_run_header() {
    let mut i = NativeInterceptor::new(r#"{"batchSize":1,"dryRun":true,"tagSeed":7}"#).unwrap();
    let json = i
        .submit(
            0.0,
            1.0,
            "POST".into(),
            "https://api.openai.com/v1/chat/completions".into(),
            r#"[["content-type","application/json"]]"#,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#.into(),
            None,
        )
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let respond = value["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "respond")
        .expect("a respond output");
    assert_eq!(respond["status"], 200);
    assert!(respond["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "x-batchling-dry-run" && h[1] == "1"));
}
