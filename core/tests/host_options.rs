//! The options as users write them (`new RequestBatcher({ … })`, `batchify({ … })`): every rule
//! in one place, answered as data with the option named as the user spelt it.

use batchling_core::batcher::HostBatcherOptions;
use batchling_core::host::options::{
    batcher_options, check_batcher_options, check_interceptor_options, interceptor_options,
    js_number,
};
use batchling_core::interceptor::InterceptorOptions;
use batchling_core::options::OptionError;
use serde_json::{json, Value};

const FUNCTION: &str = r#"{"$type":"function"}"#;

fn function() -> Value {
    serde_json::from_str(FUNCTION).unwrap()
}

fn undefined() -> Value {
    json!({ "$type": "undefined" })
}

/// A valid RequestBatcher options object with `extra` merged over it.
fn batcher(extra: Value) -> Value {
    let mut options = json!({ "maxBatchSize": 10, "maxDelayMs": 5, "batchHandler": function() });
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    options
}

fn batcher_err(options: Value) -> OptionError {
    batcher_options(&options).expect_err("refused")
}

fn batchify_err(options: Value) -> OptionError {
    interceptor_options(&options, InterceptorOptions::default()).expect_err("refused")
}

#[test]
fn batcher_options_become_the_engine_options() {
    let options = batcher(json!({
        "keyGenerator": function(),
        "maxQueueSize": 100,
        "retry": { "attempts": 2, "backoffMs": 10, "maxBackoffMs": 50 },
        "timeoutMs": 1000,
        "jitterSeed": 7,
        "errorHandler": undefined(),
    }));
    assert_eq!(
        batcher_options(&options).unwrap(),
        HostBatcherOptions {
            max_batch_size: 10.0,
            max_delay_ms: 5.0,
            max_queue_size: Some(100.0),
            max_concurrent_batches: None,
            retry_attempts: Some(2.0),
            retry_backoff_ms: Some(10.0),
            retry_max_backoff_ms: Some(50.0),
            timeout_ms: Some(1000.0),
            jitter_seed: Some(7.0),
        }
    );
}

#[test]
fn batcher_option_errors_name_the_option_and_the_rule() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!(null), "options", "pass an options object: new RequestBatcher({ maxBatchSize, maxDelayMs, batchHandler })"),
        (function(), "options", "pass an options object: new RequestBatcher({ maxBatchSize, maxDelayMs, batchHandler })"),
        (json!(42), "options", "pass an options object: new RequestBatcher({ maxBatchSize, maxDelayMs, batchHandler })"),
        (batcher(json!({ "maxBatchSize": 0 })), "maxBatchSize", "must be an integer >= 1, got 0"),
        (batcher(json!({ "maxBatchSize": 1.5 })), "maxBatchSize", "must be an integer >= 1, got 1.5"),
        (batcher(json!({ "maxBatchSize": "10" })), "maxBatchSize", "must be an integer >= 1, got 10"),
        (batcher(json!({ "maxBatchSize": undefined() })), "maxBatchSize", "must be an integer >= 1, is required"),
        (batcher(json!({ "maxBatchSize": { "$type": "number", "text": "NaN" } })), "maxBatchSize", "must be an integer >= 1, got NaN"),
        (batcher(json!({ "maxBatchSize": { "$type": "bigint", "text": "10" } })), "maxBatchSize", "must be an integer >= 1, got 10"),
        (batcher(json!({ "maxDelayMs": -0.5 })), "maxDelayMs", "must be an integer >= 0, got -0.5"),
        (batcher(json!({ "batchHandler": {} })), "batchHandler", "must be a function (items) => results"),
        (batcher(json!({ "keyGenerator": "id" })), "keyGenerator", "must be a function (item) => key"),
        (batcher(json!({ "errorHandler": 1 })), "errorHandler", "must be a function (error, items) => void"),
        (batcher(json!({ "maxQueueSize": 0 })), "maxQueueSize", "must be an integer >= 1, got 0"),
        (batcher(json!({ "timeoutMs": 0.5 })), "timeoutMs", "must be an integer >= 1, got 0.5"),
        (batcher(json!({ "jitterSeed": 1_152_921_504_606_846_976_u64 })), "jitterSeed", "must be a non-negative integer, got 1152921504606846976"),
        (batcher(json!({ "retry": true })), "retry", "must be an object { attempts, backoffMs?, maxBackoffMs? }"),
        (batcher(json!({ "retry": { "backoffMs": 10 } })), "retry.attempts", "must be an integer >= 0, is required"),
        (batcher(json!({ "retry": { "attempts": 1, "backofMs": 5 } })), "retry.backofMs", "unknown option; known options: attempts, backoffMs, maxBackoffMs"),
        (batcher(json!({ "retry": { "attempts": 2, "backoffMs": 100, "maxBackoffMs": 50 } })), "retry.maxBackoffMs", "must be at least retry.backoffMs"),
        (batcher(json!({ "retry": { "attempts": 4_294_967_296_u64 } })), "retry.attempts", "must be a whole number from 0 to 4294967295, got 4294967296"),
        (batcher(json!({ "onError": 10 })), "onError", "unknown option; known options: maxBatchSize, maxDelayMs, batchHandler, keyGenerator, errorHandler, maxQueueSize, maxConcurrentBatches, retry, timeoutMs, jitterSeed"),
        // A key present with the value `undefined` is still a key.
        (batcher(json!({ "timeOutMs": undefined() })), "timeOutMs", "unknown option; known options: maxBatchSize, maxDelayMs, batchHandler, keyGenerator, errorHandler, maxQueueSize, maxConcurrentBatches, retry, timeoutMs, jitterSeed"),
        // Values are checked before unknown keys: a typo in place of a required option names it.
        (json!({ "maxBatchSise": 10, "maxDelayMs": 5, "batchHandler": function() }), "maxBatchSize", "must be an integer >= 1, is required"),
    ];
    for (options, option, message) in cases {
        assert_eq!(
            batcher_err(options.clone()),
            OptionError::new(option, message),
            "{options}"
        );
    }
}

#[test]
fn explicitly_undefined_optional_options_are_omitted() {
    let options = batcher(json!({
        "keyGenerator": undefined(), "errorHandler": undefined(), "maxQueueSize": undefined(),
        "maxConcurrentBatches": undefined(), "retry": undefined(), "timeoutMs": undefined(),
        "jitterSeed": undefined(),
    }));
    let engine = batcher_options(&options).unwrap();
    assert_eq!(engine.max_queue_size, None);
    assert_eq!(engine.retry_attempts, None);
}

#[test]
fn batchify_options_become_the_engine_options_over_the_hosts_own() {
    let user = json!({
        "batchSize": 50,
        "dryRun": true,
        "cache": { "storage": { "$type": "object" }, "prefix": "p:" },
        "retry": { "attempts": 3, "backoffMs": undefined() },
        "onEvent": function(),
        "hosts": [{ "baseUrl": "https://x.example/v1", "provider": "openai", "maxRequests": 3, "maxFileBytes": undefined() }],
        "lineAttempts": 2,
        "resubmit": false,
    });
    let host = InterceptorOptions {
        cache: Some(false),
        tag_seed: Some(9),
        max_concurrent_batches: Some(2),
        ..InterceptorOptions::default()
    };
    let engine = interceptor_options(&user, host).unwrap();
    assert_eq!(
        engine,
        InterceptorOptions {
            batch_size: Some(50),
            dry_run: Some(true),
            cache: Some(false),
            retry_attempts: Some(3),
            tag_seed: Some(9),
            max_concurrent_batches: Some(2),
            hosts: Some(vec![
                json!({ "baseUrl": "https://x.example/v1", "provider": "openai", "maxRequests": 3 })
            ]),
            line_attempts: Some(2),
            resubmit: Some(false),
            ..InterceptorOptions::default()
        }
    );
    assert!(engine.to_config().is_ok());
}

#[test]
fn batchify_option_errors_name_the_option_and_the_rule() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!("x"), "options", "pass an options object, e.g. batchify({ batchSize: 100 })"),
        (json!({ "batchSize": 0 }), "batchSize", "must be an integer >= 1, got 0"),
        (json!({ "batchWindowMs": -1 }), "batchWindowMs", "must be an integer >= 0, got -1"),
        (json!({ "pollIntervalMs": 0 }), "pollIntervalMs", "must be an integer >= 1, got 0"),
        (json!({ "dryRun": "yes" }), "dryRun", "must be a boolean, got yes"),
        (json!({ "cache": { "path": "" } }), "cache", "must be true, false, { path: string }, { storage } or { redis: \"redis://host:port/db\" }, each with maxAgeDays? (a number of days)"),
        (json!({ "cache": { "storage": function() } }), "cache", "must be true, false, { path: string }, { storage } or { redis: \"redis://host:port/db\" }, each with maxAgeDays? (a number of days)"),
        (json!({ "cache": {} }), "cache", "must be true, false, { path: string }, { storage } or { redis: \"redis://host:port/db\" }, each with maxAgeDays? (a number of days)"),
        (json!({ "cache": { "maxAgeDays": 0 } }), "cache.maxAgeDays", "must be a number of days above 0, got 0"),
        (json!({ "cache": { "path": "c.jsonl", "maxAgeDays": "seven" } }), "cache.maxAgeDays", "must be a number of days above 0, got seven"),
        (json!({ "deleteProviderFiles": "no" }), "deleteProviderFiles", "must be a boolean, got no"),
        (json!({ "onEvent": 1 }), "onEvent", "must be a function (event) => void"),
        (json!({ "retry": { "attempts": 0 } }), "retry.attempts", "must be an integer >= 1, got 0"),
        (json!({ "retry": null }), "retry", "must be an object { attempts?, backoffMs?, maxBackoffMs? }"),
        (json!({ "lineAttempts": 0 }), "lineAttempts", "must be an integer >= 1, got 0"),
        (json!({ "lineAttempts": 1.5 }), "lineAttempts", "must be an integer >= 1, got 1.5"),
        (json!({ "resubmit": "no" }), "resubmit", "must be a boolean, got no"),
        (json!({ "maxEnqueuedTokens": 0 }), "maxEnqueuedTokens", "must be an integer >= 1, got 0"),
        (json!({ "maxEnqueuedTokens": 1.5 }), "maxEnqueuedTokens", "must be an integer >= 1, got 1.5"),
        (json!({ "maxEnqueuedTokens": "2000000" }), "maxEnqueuedTokens", "must be an integer >= 1, got 2000000"),
        (json!({ "batchsize": 10 }), "batchsize", "unknown option; known options: batchSize, batchWindowMs, pollIntervalMs, dryRun, cache, retry, onEvent, hosts, lineAttempts, resubmit, maxEnqueuedTokens, deadlineMs, maxSyncFallbacks, prices, deleteProviderFiles"),
        (json!({ "deadlineMs": 0 }), "deadlineMs", "must be an integer >= 1, got 0"),
        (json!({ "maxSyncFallbacks": 0 }), "maxSyncFallbacks", "must be an integer >= 1, got 0"),
        (json!({ "deadlineMs": "5s" }), "deadlineMs", "must be an integer >= 1, got 5s"),
        (json!({ "prices": [] }), "prices", "must be an object { \"<model>\": { provider?, inputPerMTok, outputPerMTok, cachedInputPerMTok?, cacheWritePerMTok?, cacheReadPerMTok? } } (list USD per million tokens)"),
        (json!({ "prices": { "ft:x": 1 } }), "prices.ft:x", "must be an object { provider?, inputPerMTok, outputPerMTok, cachedInputPerMTok?, cacheWritePerMTok?, cacheReadPerMTok? }, got 1"),
        (json!({ "prices": { "ft:x": { "outputPerMTok": 1 } } }), "prices.ft:x.inputPerMTok", "must be a number >= 0 (list USD per million tokens), and is required, got undefined"),
        (json!({ "prices": { "ft:x": { "inputPerMTok": 1, "outputPerMTok": -2 } } }), "prices.ft:x.outputPerMTok", "must be a finite number >= 0 (USD per million tokens), got -2"),
        (json!({ "prices": { "ft:x": { "inputPerMTok": 1, "outputPerMTok": 2, "cacheReadPerMTok": "0.1" } } }), "prices.ft:x.cacheReadPerMTok", "must be a number >= 0 (list USD per million tokens), got 0.1"),
        (json!({ "prices": { "ft:x": { "inputPerMTok": { "$type": "number", "text": "NaN" }, "outputPerMTok": 2 } } }), "prices.ft:x.inputPerMTok", "must be a number >= 0 (list USD per million tokens), and is required, got NaN"),
        (json!({ "prices": { "ft:x": { "inputPerMTok": 1, "outputPerMTok": 2, "provider": "openia" } } }), "prices.ft:x.provider", "must be one of openai, anthropic, gemini, groq, doubleword, azure, mistral, together, xai, got openia"),
        (json!({ "prices": { "ft:x": { "inputPerMTok": 1, "outputPerMTok": 2, "cachedInput": 1 } } }), "prices.ft:x.cachedInput", "unknown option; known options: provider, inputPerMTok, outputPerMTok, cachedInputPerMTok, cacheWritePerMTok, cacheReadPerMTok"),
        (json!({ "hosts": {} }), "hosts", "must be an array like [{ baseUrl: \"https://host/v1\", provider: \"openai\" }]"),
        (json!({ "hosts": [null] }), "hosts[0]", "must be an object { baseUrl, provider, completionWindow?, maxRequests?, maxFileBytes?, maxInlineBytes? }"),
        (json!({ "hosts": [{ "baseUrl": "https://x.example/v1" }] }), "hosts[0].provider", "must be a non-empty string, got undefined"),
        (json!({ "hosts": [{ "baseUrl": "", "provider": "openai" }] }), "hosts[0].baseUrl", "must be a non-empty string, got "),
        (json!({ "hosts": [{ "baseUrl": "https://x.example/v1", "provider": "openai", "apiKey": "k" }] }), "hosts[0].apiKey", "unknown option; known options: baseUrl, provider, completionWindow, maxRequests, maxFileBytes, maxInlineBytes"),
        (json!({ "hosts": [{ "baseUrl": "https://x.example/v1", "provider": "openai", "maxRequests": 0 }] }), "hosts[0].maxRequests", "must be an integer >= 1, got 0"),
        (json!({ "hosts": [{ "baseUrl": "https://x.example/v1", "provider": "openai", "completionWindow": 24 }] }), "hosts[0].completionWindow", "must be a duration string like \"24h\", got 24"),
    ];
    for (options, option, message) in cases {
        assert_eq!(
            batchify_err(options.clone()),
            OptionError::new(option, message),
            "{options}"
        );
    }
}

#[test]
fn the_engine_rules_of_a_declared_host_are_checked_too() {
    let err = batchify_err(
        json!({ "hosts": [{ "baseUrl": "https://a.example/v1", "provider": "openai" }, { "baseUrl": "https://b.example/v1", "provider": "acme" }] }),
    );
    assert_eq!(err.option, "hosts");
    assert!(
        err.message.starts_with("hosts[1]: ") && err.message.contains("acme"),
        "{}",
        err.message
    );
    let err = batchify_err(
        json!({ "hosts": [{ "baseUrl": "ftp://a.example/v1", "provider": "openai" }] }),
    );
    assert_eq!(err.option, "hosts");
    assert!(err.message.contains("http or https"), "{}", err.message);
}

#[test]
fn the_hosts_own_limits_are_checked_with_the_users_names() {
    let host = InterceptorOptions {
        max_concurrent_batches: Some(0),
        ..InterceptorOptions::default()
    };
    assert_eq!(
        interceptor_options(&json!({}), host).unwrap_err(),
        OptionError::new("maxConcurrent", "must be at least 1")
    );
    let host = InterceptorOptions {
        cost_limit_usd: Some(-1.0),
        ..InterceptorOptions::default()
    };
    assert_eq!(
        interceptor_options(&json!({}), host).unwrap_err().option,
        "costLimit.usd"
    );
}

#[test]
fn the_check_functions_answer_with_an_envelope() {
    let ok: Value = serde_json::from_str(&check_batcher_options(
        &json!({ "maxBatchSize": 3, "maxDelayMs": 0, "batchHandler": function() }).to_string(),
    ))
    .unwrap();
    assert_eq!(
        ok,
        json!({ "ok": true, "options": { "maxBatchSize": 3.0, "maxDelayMs": 0.0 } })
    );
    let refused: Value = serde_json::from_str(&check_interceptor_options(
        &json!({ "retry": { "attempts": 0 } }).to_string(),
        r#"{"cache":true,"tagSeed":1}"#,
    ))
    .unwrap();
    assert_eq!(
        refused,
        json!({
            "ok": false,
            "code": "ERR_BATCHLING_INVALID_OPTION",
            "option": "retry.attempts",
            "message": "must be an integer >= 1, got 0",
        })
    );
    let ok: Value = serde_json::from_str(&check_interceptor_options(
        r#"{"batchSize":5}"#,
        r#"{"cache":true,"tagSeed":1}"#,
    ))
    .unwrap();
    assert_eq!(
        ok,
        json!({ "ok": true, "options": { "batchSize": 5, "cache": true, "tagSeed": 1 } })
    );
    // The age limit and file deletion reach the engine's options.
    let ok: Value = serde_json::from_str(&check_interceptor_options(
        r#"{"cache":{"maxAgeDays":7},"deleteProviderFiles":false}"#,
        r#"{"cache":true,"tagSeed":1}"#,
    ))
    .unwrap();
    assert_eq!(
        ok,
        json!({ "ok": true, "options": { "cache": true, "tagSeed": 1, "cacheMaxAgeDays": 7.0, "deleteProviderFiles": false } })
    );
    let garbage: Value = serde_json::from_str(&check_batcher_options("nope")).unwrap();
    assert_eq!(garbage["ok"], json!(false));
    assert_eq!(garbage["option"], json!("options"));
}

#[test]
fn numbers_are_quoted_as_js_writes_them() {
    for (n, text) in [
        (0.5, "0.5"),
        (-1.5, "-1.5"),
        (1e21, "1e+21"),
        (1.5e22, "1.5e+22"),
        (1e-7, "1e-7"),
        (1.25e-7, "1.25e-7"),
        (0.000001, "0.000001"),
        (123456789.125, "123456789.125"),
        (2f64.powi(64), "18446744073709552000"),
        (f64::NAN, "NaN"),
        (f64::NEG_INFINITY, "-Infinity"),
        (-0.0, "0"),
    ] {
        assert_eq!(js_number(n), text, "{n}");
    }
}

#[test]
fn a_count_the_engine_option_cannot_hold_is_refused_not_wrapped() {
    assert_eq!(
        batchify_err(json!({ "retry": { "attempts": 4_294_967_296_u64 } })),
        OptionError::new(
            "retry.attempts",
            "must be at most 4294967295, got 4294967296"
        )
    );
}

#[test]
fn prices_become_engine_options_and_batch_checks_them() {
    let options = interceptor_options(
        &json!({ "prices": {
            "ft:gpt-4o-mini:acme::x": { "provider": "openai", "inputPerMTok": 0.3, "outputPerMTok": 1.2, "cachedInputPerMTok": 0.15 },
            "claude-haiku-4-5": { "inputPerMTok": 1, "outputPerMTok": 5, "cacheWritePerMTok": 1.25, "cacheReadPerMTok": 0.1, "provider": { "$type": "undefined" } },
        } }),
        InterceptorOptions::default(),
    )
    .unwrap();
    let prices = options.prices.clone().unwrap();
    let ft = prices["ft:gpt-4o-mini:acme::x"];
    assert_eq!(ft.provider, Some(batchling_core::ProviderId::OpenAi));
    assert_eq!(
        (
            ft.input_per_mtok,
            ft.output_per_mtok,
            ft.cached_input_per_mtok
        ),
        (0.3, 1.2, Some(0.15))
    );
    assert_eq!(prices["claude-haiku-4-5"].provider, None);
    assert_eq!(prices["claude-haiku-4-5"].cache_write_per_mtok, Some(1.25));
    // The engine takes them as JSON and checks them again.
    let json = serde_json::to_string(&options).unwrap();
    assert!(batchling_core::interceptor::Interceptor::from_options_json(&json).is_ok());
    let bad = json.replace("0.15", "-0.15");
    let e = batchling_core::interceptor::Interceptor::from_options_json(&bad)
        .err()
        .unwrap();
    assert_eq!(e.option, "prices.ft:gpt-4o-mini:acme::x.cachedInputPerMTok");

    // `new Batch({ prices })`: the same rules, through the builder's `prices` call.
    use batchling_core::host::batch_options::{check, BatchCall};
    let call = BatchCall::parse("prices").unwrap();
    assert!(check(call, r#"{"m":{"inputPerMTok":1,"outputPerMTok":2}}"#, "").is_ok());
    let e = check(
        call,
        r#"{"m":{"inputPerMTok":1,"outputPerMTok":"NaN"}}"#,
        "",
    )
    .unwrap_err();
    assert_eq!(e.option, "prices.m.outputPerMTok");
    let e = check(
        BatchCall::Options,
        r#"{"stateFile":"s","resultsDir":"r","prices":5}"#,
        "",
    )
    .unwrap_err();
    assert_eq!(e.option, "prices");
}

/// `cache: { redis }`: the core checks the store's options, turns them into the engine's fleet
/// mode with the host's owner id, and hands the host the store to open.
#[test]
fn a_redis_cache_turns_on_fleet_mode_with_the_hosts_owner() {
    let host = r#"{"cache":true,"tagSeed":1,"fleetOwner":"w_Ab-1"}"#;
    let ok: Value = serde_json::from_str(&check_interceptor_options(
        r#"{"cache":{"redis":"redis://127.0.0.1:6390/2"}}"#,
        host,
    ))
    .unwrap();
    let day_ms = 24 * 3600 * 1000u64;
    assert_eq!(
        ok,
        json!({
            "ok": true,
            "options": {
                "cache": false,
                "tagSeed": 1,
                "fleet": { "owner": "w_Ab-1", "answerTtlMs": 30 * day_ms, "recordTtlMs": 30 * day_ms },
            },
            "redis": { "url": "redis://127.0.0.1:6390/2" },
        })
    );
    let ok: Value = serde_json::from_str(&check_interceptor_options(
        &json!({ "cache": {
            "redis": { "url": "rediss://user:pw@redis.internal", "prefix": "app:", "connectTimeoutMs": 500,
                       "retryForMs": 3000, "leaseMs": 900, "graceMs": 300, "pollMs": 50 },
            "maxAgeDays": 0.5,
        }})
        .to_string(),
        host,
    ))
    .unwrap();
    assert_eq!(
        ok["options"]["fleet"],
        json!({ "owner": "w_Ab-1", "leaseMs": 900, "graceMs": 300, "pollMs": 50,
                "answerTtlMs": day_ms / 2, "recordTtlMs": day_ms / 2 })
    );
    assert_eq!(
        ok["redis"],
        json!({ "url": "rediss://user:pw@redis.internal", "prefix": "app:", "connectTimeoutMs": 500, "retryForMs": 3000 })
    );
    // Without a Redis store nothing of the fleet reaches the engine, the owner included.
    let ok: Value =
        serde_json::from_str(&check_interceptor_options(r#"{"batchSize":2}"#, host)).unwrap();
    assert_eq!(
        ok,
        json!({ "ok": true, "options": { "batchSize": 2, "cache": true, "tagSeed": 1 } })
    );
    // A dry run sends nothing and touches no store.
    let ok: Value = serde_json::from_str(&check_interceptor_options(
        r#"{"cache":{"redis":"redis://localhost"},"dryRun":true}"#,
        host,
    ))
    .unwrap();
    assert_eq!(
        ok,
        json!({ "ok": true, "options": { "dryRun": true, "cache": false, "tagSeed": 1 } })
    );
}

#[test]
fn a_bad_redis_cache_is_refused_naming_the_option() {
    let host = || InterceptorOptions {
        fleet_owner: Some("w1".into()),
        ..InterceptorOptions::default()
    };
    let refused = |cache: Value| {
        interceptor_options(&json!({ "cache": cache }), host()).expect_err("refused")
    };
    for (url, why) in [
        ("http://127.0.0.1:6379", "redis:// or rediss://"),
        ("redis://", "a host name"),
        ("redis://:pw@/0", "a host name"),
        ("redis://host:0", "a port from 1 to 65535"),
        ("redis://host:65536", "a port from 1 to 65535"),
        ("redis://host:port", "a port from 1 to 65535"),
        ("redis://host/db0", "a database number after the host"),
        ("redis://[::1", "an IPv6 host in brackets"),
    ] {
        let e = refused(json!({ "redis": url }));
        assert_eq!(e.option, "cache.redis", "{url}");
        assert!(e.message.contains(why), "{url}: {}", e.message);
    }
    for url in [
        "redis://h",
        "redis://h:6379",
        "redis://u:p@h:1/15",
        "rediss://[::1]:6380/0",
        "redis://h/?x=1",
    ] {
        interceptor_options(&json!({ "cache": { "redis": url } }), host())
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
    }
    // A password is never echoed in a message.
    let e = refused(json!({ "redis": { "url": "redis://app:s3cr3t@host:99999" } }));
    assert_eq!(e.option, "cache.redis.url");
    assert!(e.message.contains("app:***@host:99999"), "{}", e.message);
    assert!(!e.message.contains("s3cr3t"), "{}", e.message);

    let e = refused(json!({ "redis": 6379 }));
    assert_eq!(e.option, "cache.redis");
    assert!(e.message.contains("got 6379"), "{}", e.message);
    assert_eq!(refused(json!({ "redis": {} })).option, "cache.redis.url");
    let e = refused(json!({ "redis": { "url": "redis://h", "lease": 5 } }));
    assert_eq!(e.option, "cache.redis.lease");
    assert!(e
        .message
        .starts_with("unknown option; known options: url, prefix"));
    assert_eq!(
        refused(json!({ "redis": { "url": "redis://h", "prefix": "a b" } })),
        OptionError::new(
            "cache.redis.prefix",
            "must be 0 to 64 visible ASCII characters, no spaces, got a b"
        )
    );
    assert_eq!(
        refused(json!({ "redis": { "url": "redis://h", "leaseMs": 2 } })),
        OptionError::new("cache.redis.leaseMs", "must be an integer >= 3, got 2")
    );
    assert_eq!(
        refused(json!({ "redis": { "url": "redis://h", "retryForMs": 0 } })).option,
        "cache.redis.retryForMs"
    );
    assert_eq!(
        refused(json!({ "redis": "redis://h", "path": "x.jsonl" })),
        OptionError::new(
            "cache.redis",
            "cannot be combined with cache.path or cache.storage: pick one journal"
        )
    );
    assert_eq!(
        refused(json!({ "redis": "redis://h", "maxAgeDays": 0 })).option,
        "cache.maxAgeDays"
    );
    // The fleet refuses deadlines (a fallback could pay twice across processes).
    assert_eq!(
        interceptor_options(
            &json!({ "cache": { "redis": "redis://h" }, "deadlineMs": 1000 }),
            host()
        )
        .unwrap_err()
        .option,
        "deadlineMs"
    );
    // A host without a Redis client passes no owner: refused there, saying where it works.
    let e = batchify_err(json!({ "cache": { "redis": "redis://h" } }));
    assert_eq!(e.option, "cache.redis");
    assert!(
        e.message
            .contains("needs Node's batchify() or batchling serve"),
        "{}",
        e.message
    );
}
