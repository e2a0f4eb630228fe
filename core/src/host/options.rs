//! The options as users write them in JS (`new RequestBatcher({ … })`, `batchify({ … })`): the
//! one place for their rules (known keys, integer ranges, shapes), turned into the engine
//! options the bindings' constructors take, or refused with an [`OptionError`] that names the
//! option as the user spelt it.
//!
//! The host passes the user's options as JSON, with the values JSON cannot carry replaced by a
//! marker object (the host keeps the real values):
//! - `{"$type":"function"}`: a function (`batchHandler`, `onEvent`, …);
//! - `{"$type":"undefined"}`: a key present with the value `undefined` (it counts as a key, so a
//!   misspelt one is still reported, but its value is absent);
//! - `{"$type":"object"}`: an object the host keeps as it is (a cache's `storage`);
//! - `{"$type":"number"|"bigint"|"symbol","text":…}`: `NaN`, `Infinity`, a BigInt or a Symbol,
//!   with `String(value)` for the message.
//!
//! Messages quote a wrong value as JS's `String(value)` would (a function as "a function").
//! The readers (`Js`, `Fields`), the rule helpers (`known_keys`, `count`, `js_string`) and
//! the answer's envelope are shared with the `Batch` builder's rules ([`super::batch_options`]).
//! [`check_batcher_options`] and [`check_interceptor_options`] answer with a JSON envelope:
//! `{"ok":true,"options":{…}}` or `{"ok":false,"code":"ERR_BATCHLING_INVALID_OPTION",
//! "option":"retry.attempts","message":"must be an integer >= 1, got 0"}`.

use serde::Serialize;
use serde_json::{json, Map, Number, Value};

use crate::batcher::HostBatcherOptions;
use crate::catalog::pricing::{PriceOverride, PriceOverrides};
use crate::host::fleet::FleetMemberConfig;
use crate::interceptor::InterceptorOptions;
use crate::options::OptionError;
use crate::provider_id::ProviderId;

/// `RequestBatcher`'s options, in the order an unknown key's message lists them.
pub const BATCHER_KEYS: [&str; 10] = [
    "maxBatchSize",
    "maxDelayMs",
    "batchHandler",
    "keyGenerator",
    "errorHandler",
    "maxQueueSize",
    "maxConcurrentBatches",
    "retry",
    "timeoutMs",
    "jitterSeed",
];

/// `batchify()`'s options.
pub const BATCHIFY_KEYS: [&str; 15] = [
    "batchSize",
    "batchWindowMs",
    "pollIntervalMs",
    "dryRun",
    "cache",
    "retry",
    "onEvent",
    "hosts",
    "lineAttempts",
    "resubmit",
    "maxEnqueuedTokens",
    "deadlineMs",
    "maxSyncFallbacks",
    "prices",
    "deleteProviderFiles",
];

/// The keys of one model's price (`prices: { "<model>": { … } }`, both `batchify()` and `Batch`).
pub const PRICE_KEYS: [&str; 6] = [
    "provider",
    "inputPerMTok",
    "outputPerMTok",
    "cachedInputPerMTok",
    "cacheWritePerMTok",
    "cacheReadPerMTok",
];

/// The keys of a `retry` object (both hosts).
pub const RETRY_KEYS: [&str; 3] = ["attempts", "backoffMs", "maxBackoffMs"];

/// The keys of one declared host (`batchify({ hosts: [ … ] })`).
pub const HOST_KEYS: [&str; 6] = [
    "baseUrl",
    "provider",
    "completionWindow",
    "maxRequests",
    "maxFileBytes",
    "maxInlineBytes",
];

/// 2^53 - 1: the largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A user's value as JS sees it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Js<'a> {
    Undefined,
    Null,
    Bool(bool),
    Number(&'a Number),
    String(&'a str),
    Array(&'a [Value]),
    Object(&'a Map<String, Value>),
    Function,
    /// An object the host keeps (no keys the rules look at).
    HostObject,
    /// A value JSON cannot hold, as `String(value)` writes it.
    Other(&'a str),
}

pub(super) fn js(value: Option<&Value>) -> Js<'_> {
    let Some(value) = value else {
        return Js::Undefined;
    };
    match value {
        Value::Null => Js::Null,
        Value::Bool(b) => Js::Bool(*b),
        Value::Number(n) => Js::Number(n),
        Value::String(s) => Js::String(s),
        Value::Array(items) => Js::Array(items),
        Value::Object(map) => match marker(map) {
            Some("function") => Js::Function,
            Some("undefined") => Js::Undefined,
            Some("object") => Js::HostObject,
            Some(_) => Js::Other(map.get("text").and_then(Value::as_str).unwrap_or("")),
            None => Js::Object(map),
        },
    }
}

/// The `$type` of a marker object, if `map` is one.
pub(super) fn marker(map: &Map<String, Value>) -> Option<&str> {
    let kind = map.get("$type")?.as_str()?;
    let other_keys = map.keys().filter(|k| *k != "$type" && *k != "text").count();
    (other_keys == 0).then_some(kind)
}

/// A value JS's `typeof` calls "object" (and not null): its own keys, in order.
pub(super) enum Fields<'a> {
    Map(&'a Map<String, Value>),
    /// An array: its keys are its indexes.
    List(&'a [Value]),
    None,
}

impl<'a> Fields<'a> {
    pub(super) fn of(value: Js<'a>) -> Option<Fields<'a>> {
        match value {
            Js::Object(map) => Some(Fields::Map(map)),
            Js::Array(items) => Some(Fields::List(items)),
            Js::HostObject => Some(Fields::None),
            _ => None,
        }
    }

    pub(super) fn get(&self, key: &str) -> Js<'a> {
        match self {
            Fields::Map(map) => js(map.get(key)),
            Fields::List(items) => js(key.parse::<usize>().ok().and_then(|i| items.get(i))),
            Fields::None => Js::Undefined,
        }
    }

    /// The first key not in `known`.
    fn unknown_key(&self, known: &[&str]) -> Option<String> {
        match self {
            Fields::Map(map) => map.keys().find(|k| !known.contains(&k.as_str())).cloned(),
            Fields::List(items) => (0..items.len())
                .map(|i| i.to_string())
                .find(|k| !known.contains(&k.as_str())),
            Fields::None => None,
        }
    }
}

/// Refuse misspelt options instead of silently ignoring them. `prefix` names nested objects.
pub(super) fn known_keys(
    fields: &Fields<'_>,
    known: &[&str],
    prefix: &str,
) -> Result<(), OptionError> {
    match fields.unknown_key(known) {
        Some(key) => Err(OptionError::new(
            format!("{prefix}{key}"),
            format!("unknown option; known options: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A whole number >= `min`, and a safe integer so the engine gets it exactly.
pub(super) fn count(
    option: &str,
    value: Js<'_>,
    min: u64,
    required: bool,
) -> Result<Option<f64>, OptionError> {
    if let Js::Undefined = value {
        if !required {
            return Ok(None);
        }
    }
    if let Some(n) = safe_integer(value).filter(|n| *n >= min as f64) {
        return Ok(Some(n));
    }
    let what = match value {
        Js::Undefined => "is required".to_string(),
        other => format!("got {}", js_string(other)),
    };
    Err(OptionError::new(
        option,
        format!("must be an integer >= {min}, {what}"),
    ))
}

/// `Number.isSafeInteger(value) ? value : None`.
fn safe_integer(value: Js<'_>) -> Option<f64> {
    let Js::Number(n) = value else { return None };
    let n = n.as_f64()?;
    (n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER).then_some(n)
}

/// An optional (or, with `required`, mandatory) function.
fn function(option: &str, value: Js<'_>, required: bool, message: &str) -> Result<(), OptionError> {
    match value {
        Js::Function => Ok(()),
        Js::Undefined if !required => Ok(()),
        _ => Err(OptionError::new(option, message)),
    }
}

/// A checked count as the integer type an engine option takes (`max` is that type's largest).
fn fit<T: TryFrom<u64>>(option: &str, value: f64, max: u64) -> Result<T, OptionError> {
    T::try_from(value as u64).map_err(|_| {
        OptionError::new(
            option,
            format!("must be at most {max}, got {}", js_number(value)),
        )
    })
}

/// The `retry` object: `attempts` (>= `min_attempts`; `required` or not), `backoffMs`,
/// `maxBackoffMs`.
struct Retry {
    attempts: Option<f64>,
    backoff_ms: Option<f64>,
    max_backoff_ms: Option<f64>,
}

fn retry(
    value: Js<'_>,
    min_attempts: u64,
    required: bool,
    shape: &str,
) -> Result<Option<Retry>, OptionError> {
    if let Js::Undefined = value {
        return Ok(None);
    }
    let fields = Fields::of(value).ok_or_else(|| OptionError::new("retry", shape))?;
    known_keys(&fields, &RETRY_KEYS, "retry.")?;
    Ok(Some(Retry {
        attempts: count(
            "retry.attempts",
            fields.get("attempts"),
            min_attempts,
            required,
        )?,
        backoff_ms: count("retry.backoffMs", fields.get("backoffMs"), 0, false)?,
        max_backoff_ms: count("retry.maxBackoffMs", fields.get("maxBackoffMs"), 0, false)?,
    }))
}

/// `RequestBatcher`'s options (`maxBatchSize`, `maxDelayMs`, `batchHandler`, …) as the generic
/// engine takes them, every rule checked (the engine's own too, e.g. `retry.maxBackoffMs` at
/// least `retry.backoffMs`).
pub fn batcher_options(user: &Value) -> Result<HostBatcherOptions, OptionError> {
    let o = Fields::of(js(Some(user))).ok_or_else(|| {
        OptionError::new(
            "options",
            "pass an options object: new RequestBatcher({ maxBatchSize, maxDelayMs, batchHandler })",
        )
    })?;
    let max_batch_size = count("maxBatchSize", o.get("maxBatchSize"), 1, true)?;
    let max_delay_ms = count("maxDelayMs", o.get("maxDelayMs"), 0, true)?;
    function(
        "batchHandler",
        o.get("batchHandler"),
        true,
        "must be a function (items) => results",
    )?;
    function(
        "keyGenerator",
        o.get("keyGenerator"),
        false,
        "must be a function (item) => key",
    )?;
    function(
        "errorHandler",
        o.get("errorHandler"),
        false,
        "must be a function (error, items) => void",
    )?;
    let max_queue_size = count("maxQueueSize", o.get("maxQueueSize"), 1, false)?;
    let max_concurrent_batches = count(
        "maxConcurrentBatches",
        o.get("maxConcurrentBatches"),
        1,
        false,
    )?;
    let timeout_ms = count("timeoutMs", o.get("timeoutMs"), 1, false)?;
    let jitter_seed = match o.get("jitterSeed") {
        Js::Undefined => None,
        seed => match safe_integer(seed).filter(|n| *n >= 0.0) {
            Some(n) => Some(n),
            None => {
                return Err(OptionError::new(
                    "jitterSeed",
                    format!("must be a non-negative integer, got {}", js_string(seed)),
                ))
            }
        },
    };
    let retry = retry(
        o.get("retry"),
        0,
        true,
        "must be an object { attempts, backoffMs?, maxBackoffMs? }",
    )?;
    known_keys(&o, &BATCHER_KEYS, "")?;
    let options = HostBatcherOptions {
        max_batch_size: max_batch_size.unwrap_or_default(),
        max_delay_ms: max_delay_ms.unwrap_or_default(),
        max_queue_size,
        max_concurrent_batches,
        retry_attempts: retry.as_ref().and_then(|r| r.attempts),
        retry_backoff_ms: retry.as_ref().and_then(|r| r.backoff_ms),
        retry_max_backoff_ms: retry.as_ref().and_then(|r| r.max_backoff_ms),
        timeout_ms,
        jitter_seed,
    };
    options.clone().into_config()?;
    Ok(options)
}

/// `batchify()`'s options (`batchSize`, `retry`, `hosts`, …) over the engine options the host
/// sets itself (`cache`, `tagSeed`, limits), every rule checked (the engine's too: a declared
/// host's URL, provider and window).
pub fn interceptor_options(
    user: &Value,
    host: InterceptorOptions,
) -> Result<InterceptorOptions, OptionError> {
    interceptor_options_and_store(user, host).map(|(options, _)| options)
}

/// [`interceptor_options`], and the Redis store the host opens when `cache: { redis }` turns
/// fleet mode on (then `fleet` is set, with the host's `fleetOwner` as its owner and
/// `cache.maxAgeDays` as the answers' and records' TTL, and the file cache is off). `cache.redis`
/// is refused where the host passes no `fleetOwner` (a runtime without a Redis client); a dry
/// run touches no store (no `fleet`, no store).
pub fn interceptor_options_and_store(
    user: &Value,
    host: InterceptorOptions,
) -> Result<(InterceptorOptions, Option<RedisStore>), OptionError> {
    let o = Fields::of(js(Some(user))).ok_or_else(|| {
        OptionError::new(
            "options",
            "pass an options object, e.g. batchify({ batchSize: 100 })",
        )
    })?;
    known_keys(&o, &BATCHIFY_KEYS, "")?;
    let batch_size = count("batchSize", o.get("batchSize"), 1, false)?;
    let batch_window_ms = count("batchWindowMs", o.get("batchWindowMs"), 0, false)?;
    let poll_interval_ms = count("pollIntervalMs", o.get("pollIntervalMs"), 1, false)?;
    let max_enqueued_tokens = count("maxEnqueuedTokens", o.get("maxEnqueuedTokens"), 1, false)?;
    let deadline_ms = count("deadlineMs", o.get("deadlineMs"), 1, false)?;
    let max_sync_fallbacks = count("maxSyncFallbacks", o.get("maxSyncFallbacks"), 1, false)?;
    let dry_run = match o.get("dryRun") {
        Js::Undefined => None,
        Js::Bool(b) => Some(b),
        other => {
            return Err(OptionError::new(
                "dryRun",
                format!("must be a boolean, got {}", js_string(other)),
            ))
        }
    };
    let cache = cache(o.get("cache"))?;
    let cache_max_age_days = cache.max_age_days;
    let delete_provider_files = match o.get("deleteProviderFiles") {
        Js::Undefined => None,
        Js::Bool(b) => Some(b),
        other => {
            return Err(OptionError::new(
                "deleteProviderFiles",
                format!("must be a boolean, got {}", js_string(other)),
            ))
        }
    };
    let retry = retry(
        o.get("retry"),
        1,
        false,
        "must be an object { attempts?, backoffMs?, maxBackoffMs? }",
    )?;
    function(
        "onEvent",
        o.get("onEvent"),
        false,
        "must be a function (event) => void",
    )?;
    let hosts = match o.get("hosts") {
        Js::Undefined => None,
        declared => Some(hosts(declared)?),
    };
    let line_attempts = count("lineAttempts", o.get("lineAttempts"), 1, false)?
        .map(|n| fit("lineAttempts", n, u32::MAX.into()))
        .transpose()?;
    let resubmit = match o.get("resubmit") {
        Js::Undefined => None,
        Js::Bool(b) => Some(b),
        other => {
            return Err(OptionError::new(
                "resubmit",
                format!("must be a boolean, got {}", js_string(other)),
            ))
        }
    };
    let prices = prices(o.get("prices"))?;
    let retry = retry.unwrap_or(Retry {
        attempts: None,
        backoff_ms: None,
        max_backoff_ms: None,
    });
    let mut options = InterceptorOptions {
        batch_size: batch_size
            .map(|n| fit("batchSize", n, usize::MAX as u64))
            .transpose()?
            .or(host.batch_size),
        batch_window_ms: batch_window_ms
            .map(|n| fit("batchWindowMs", n, u64::MAX))
            .transpose()?
            .or(host.batch_window_ms),
        poll_interval_ms: poll_interval_ms
            .map(|n| fit("pollIntervalMs", n, u64::MAX))
            .transpose()?
            .or(host.poll_interval_ms),
        dry_run: dry_run.or(host.dry_run),
        retry_attempts: retry
            .attempts
            .map(|n| fit("retry.attempts", n, u32::MAX.into()))
            .transpose()?
            .or(host.retry_attempts),
        retry_backoff_ms: retry
            .backoff_ms
            .map(|n| fit("retry.backoffMs", n, u64::MAX))
            .transpose()?
            .or(host.retry_backoff_ms),
        retry_max_backoff_ms: retry
            .max_backoff_ms
            .map(|n| fit("retry.maxBackoffMs", n, u64::MAX))
            .transpose()?
            .or(host.retry_max_backoff_ms),
        max_enqueued_tokens: max_enqueued_tokens
            .map(|n| fit("maxEnqueuedTokens", n, u64::MAX))
            .transpose()?
            .or(host.max_enqueued_tokens),
        deadline_ms: deadline_ms
            .map(|n| fit("deadlineMs", n, u64::MAX))
            .transpose()?
            .or(host.deadline_ms),
        max_sync_fallbacks: max_sync_fallbacks
            .map(|n| fit("maxSyncFallbacks", n, usize::MAX as u64))
            .transpose()?
            .or(host.max_sync_fallbacks),
        hosts: hosts.or(host.hosts),
        line_attempts: line_attempts.or(host.line_attempts),
        resubmit: resubmit.or(host.resubmit),
        prices: prices.or(host.prices),
        cache_max_age_days: cache_max_age_days.or(host.cache_max_age_days),
        delete_provider_files: delete_provider_files.or(host.delete_provider_files),
        ..host
    };
    let store = match cache.redis {
        None => None,
        Some(redis) => {
            // Redis is the journal: no file or storage cache beside it.
            options.cache = Some(false);
            if options.dry_run == Some(true) {
                // A dry run sends nothing, so it claims nothing: it touches no store.
                None
            } else {
                let owner = options.fleet_owner.clone().ok_or_else(|| {
                    OptionError::new(
                        "cache.redis",
                        "is not available here: the fleet journal in Redis needs Node's batchify() or batchling serve (browsers, Workers and Batch have no Redis client)",
                    )
                })?;
                let days =
                    cache_max_age_days.unwrap_or(crate::cache::AgeLimit::DEFAULT_MAX_AGE_DAYS);
                let ttl_ms = (days * crate::cache::AgeLimit::DAY_MS as f64).round() as u64;
                options.fleet = Some(FleetMemberConfig {
                    owner,
                    lease_ms: redis.lease_ms,
                    grace_ms: redis.grace_ms,
                    poll_ms: redis.poll_ms,
                    answer_ttl_ms: Some(ttl_ms.max(1)),
                    record_ttl_ms: Some(ttl_ms.max(1)),
                });
                Some(redis.store)
            }
        }
    };
    options.fleet_owner = None;
    options.to_config()?;
    Ok((options, store))
}

/// The `cache` option as checked: its `maxAgeDays`, if given, and the Redis store it names.
struct CacheChoice {
    max_age_days: Option<f64>,
    redis: Option<RedisChoice>,
}

/// `cache.redis` as checked: where the store is, and the fleet timings asked for.
struct RedisChoice {
    store: RedisStore,
    lease_ms: Option<u64>,
    grace_ms: Option<u64>,
    poll_ms: Option<u64>,
}

/// The Redis store a `cache: { redis }` names, checked, for the host to open
/// (`openFleetRedis` in `js/src/fleet-redis.ts`); absent fields keep the host's defaults.
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisStore {
    /// `redis://[user:password@]host[:port][/db]` or `rediss://…`.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_for_ms: Option<u64>,
}

/// `true`, `false`, `{ path: string }`, `{ storage }` (an object; `prefix` is the store's) or
/// `{ redis }` (a URL, or `{ url, prefix?, connectTimeoutMs?, retryForMs?, leaseMs?, graceMs?,
/// pollMs? }`), each with `maxAgeDays`, or `{ maxAgeDays }` alone.
fn cache(value: Js<'_>) -> Result<CacheChoice, OptionError> {
    let refused = || {
        OptionError::new(
            "cache",
            "must be true, false, { path: string }, { storage } or { redis: \"redis://host:port/db\" }, each with maxAgeDays? (a number of days)",
        )
    };
    let cache = match value {
        Js::Undefined | Js::Bool(_) => {
            return Ok(CacheChoice {
                max_age_days: None,
                redis: None,
            })
        }
        other => Fields::of(other).ok_or_else(refused)?,
    };
    let max_age_days = match cache.get("maxAgeDays") {
        Js::Undefined => None,
        Js::Number(days) if days.as_f64().is_some_and(|d| d.is_finite() && d > 0.0) => {
            days.as_f64()
        }
        other => {
            return Err(OptionError::new(
                "cache.maxAgeDays",
                format!("must be a number of days above 0, got {}", js_string(other)),
            ))
        }
    };
    let redis = match cache.get("redis") {
        Js::Undefined => None,
        given => {
            if !matches!(
                (cache.get("path"), cache.get("storage")),
                (Js::Undefined, Js::Undefined)
            ) {
                return Err(OptionError::new(
                    "cache.redis",
                    "cannot be combined with cache.path or cache.storage: pick one journal",
                ));
            }
            Some(redis(given)?)
        }
    };
    let located = match (cache.get("path"), cache.get("storage")) {
        _ if redis.is_some() => true,
        (Js::String(path), _) => !path.is_empty(),
        (Js::Undefined, Js::Undefined) => max_age_days.is_some(),
        (_, storage) => Fields::of(storage).is_some(),
    };
    if located {
        Ok(CacheChoice {
            max_age_days,
            redis,
        })
    } else {
        Err(refused())
    }
}

/// The keys of a `cache.redis` object.
pub const REDIS_KEYS: [&str; 7] = [
    "url",
    "prefix",
    "connectTimeoutMs",
    "retryForMs",
    "leaseMs",
    "graceMs",
    "pollMs",
];

/// `cache.redis`: a URL, or `{ url, prefix?, connectTimeoutMs?, retryForMs?, leaseMs?, graceMs?,
/// pollMs? }`.
fn redis(value: Js<'_>) -> Result<RedisChoice, OptionError> {
    let (option, url, fields) = match value {
        // A URL alone: no other field (every one absent).
        Js::String(url) => ("cache.redis", url, Fields::None),
        other => {
            let fields = match other {
                Js::Object(_) => Fields::of(other),
                _ => None,
            }
            .ok_or_else(|| {
                OptionError::new(
                    "cache.redis",
                    format!(
                        "must be a URL like \"redis://127.0.0.1:6379/0\" or an object {{ url, prefix?, connectTimeoutMs?, retryForMs?, leaseMs?, graceMs?, pollMs? }}, got {}",
                        js_string(other)
                    ),
                )
            })?;
            known_keys(&fields, &REDIS_KEYS, "cache.redis.")?;
            let url = match fields.get("url") {
                Js::String(url) => url,
                other => {
                    return Err(OptionError::new(
                        "cache.redis.url",
                        format!(
                            "must be a URL like \"redis://127.0.0.1:6379/0\", got {}",
                            js_string(other)
                        ),
                    ))
                }
            };
            ("cache.redis.url", url, fields)
        }
    };
    check_redis_url(url).map_err(|problem| OptionError::new(option, problem))?;
    let prefix = match fields.get("prefix") {
        Js::Undefined => None,
        Js::String(p) if p.len() <= 64 && p.bytes().all(|b| (0x21..=0x7e).contains(&b)) => {
            Some(p.to_string())
        }
        other => {
            return Err(OptionError::new(
                "cache.redis.prefix",
                format!(
                    "must be 0 to 64 visible ASCII characters, no spaces, got {}",
                    js_string(other)
                ),
            ))
        }
    };
    let ms = |key: &str, min: u64| -> Result<Option<u64>, OptionError> {
        let option = format!("cache.redis.{key}");
        count(&option, fields.get(key), min, false)?
            .map(|n| fit(&option, n, u64::MAX))
            .transpose()
    };
    Ok(RedisChoice {
        store: RedisStore {
            url: url.to_string(),
            prefix,
            connect_timeout_ms: ms("connectTimeoutMs", 1)?,
            retry_for_ms: ms("retryForMs", 1)?,
        },
        lease_ms: ms("leaseMs", 3)?,
        grace_ms: ms("graceMs", 1)?,
        poll_ms: ms("pollMs", 1)?,
    })
}

/// A Redis URL: `redis://` or `rediss://`, a host, an optional port (1-65535) and an optional
/// database number. The problem, quoting the URL with its password hidden, if it is not one.
fn check_redis_url(url: &str) -> Result<(), String> {
    let shown = || {
        // Never echo a password: `user:secret@host` is shown as `user:***@host`.
        match url.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((user, host)) => {
                    let user = user.split_once(':').map_or(user, |(name, _)| name);
                    format!("{scheme}://{user}:***@{host}")
                }
                None => url.to_string(),
            },
            None => url.to_string(),
        }
    };
    let bad = |why: &str| {
        Err(format!(
            "must be a URL like \"redis://127.0.0.1:6379/0\" ({why}), got {:?}",
            shown()
        ))
    };
    let Some(rest) = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
    else {
        return bad("redis:// or rediss://");
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return bad("an IPv6 host in brackets"),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty()
        || host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b"/?#@[]".contains(&b))
    {
        return bad("a host name");
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p >= 1) {
            return bad("a port from 1 to 65535");
        }
    }
    let db = path.split(['?', '#']).next().unwrap_or("");
    let db = db.strip_prefix('/').unwrap_or(db);
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return bad("a database number after the host");
    }
    Ok(())
}

/// The shape of the declared hosts, as the engine options carry them (keys whose value is
/// `undefined` dropped). The engine checks URLs, providers and windows.
fn hosts(value: Js<'_>) -> Result<Vec<Value>, OptionError> {
    let Js::Array(items) = value else {
        return Err(OptionError::new(
            "hosts",
            "must be an array like [{ baseUrl: \"https://host/v1\", provider: \"openai\" }]",
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("hosts[{i}]");
        let host = Fields::of(js(Some(item))).ok_or_else(|| {
            OptionError::new(
                name.as_str(),
                "must be an object { baseUrl, provider, completionWindow?, maxRequests?, maxFileBytes?, maxInlineBytes? }",
            )
        })?;
        known_keys(&host, &HOST_KEYS, &format!("{name}."))?;
        for key in ["baseUrl", "provider"] {
            match host.get(key) {
                Js::String(s) if !s.is_empty() => {}
                other => {
                    return Err(OptionError::new(
                        format!("{name}.{key}"),
                        format!("must be a non-empty string, got {}", js_string(other)),
                    ))
                }
            }
        }
        match host.get("completionWindow") {
            Js::Undefined => {}
            Js::String(s) if !s.is_empty() => {}
            other => {
                return Err(OptionError::new(
                    format!("{name}.completionWindow"),
                    format!(
                        "must be a duration string like \"24h\", got {}",
                        js_string(other)
                    ),
                ))
            }
        }
        count(
            &format!("{name}.maxRequests"),
            host.get("maxRequests"),
            1,
            false,
        )?;
        count(
            &format!("{name}.maxFileBytes"),
            host.get("maxFileBytes"),
            1,
            false,
        )?;
        count(
            &format!("{name}.maxInlineBytes"),
            host.get("maxInlineBytes"),
            1,
            false,
        )?;
        let mut spec = Map::new();
        if let Fields::Map(map) = host {
            for (key, value) in map {
                if !matches!(js(Some(value)), Js::Undefined) {
                    spec.insert(key.clone(), value.clone());
                }
            }
        }
        out.push(Value::Object(spec));
    }
    Ok(out)
}

/// The `prices` option: `{ "<model>": { provider?, inputPerMTok, outputPerMTok,
/// cachedInputPerMTok?, cacheWritePerMTok?, cacheReadPerMTok? } }`, every price a finite number
/// >= 0 and `provider` a provider's name; messages name the model and the field.
pub(super) fn prices(value: Js<'_>) -> Result<Option<PriceOverrides>, OptionError> {
    const SHAPE: &str = "must be an object { \"<model>\": { provider?, inputPerMTok, outputPerMTok, cachedInputPerMTok?, cacheWritePerMTok?, cacheReadPerMTok? } } (list USD per million tokens)";
    let map = match value {
        Js::Undefined => return Ok(None),
        Js::Object(map) => map,
        _ => return Err(OptionError::new("prices", SHAPE)),
    };
    let mut out = PriceOverrides::new();
    for (model, entry) in map {
        let name = format!("prices.{model}");
        let fields = match js(Some(entry)) {
            Js::Object(fields) => Fields::Map(fields),
            other => {
                return Err(OptionError::new(
                    name,
                    format!(
                        "must be an object {{ provider?, inputPerMTok, outputPerMTok, cachedInputPerMTok?, cacheWritePerMTok?, cacheReadPerMTok? }}, got {}",
                        js_string(other)
                    ),
                ))
            }
        };
        known_keys(&fields, &PRICE_KEYS, &format!("{name}."))?;
        let number = |key: &str, required: bool| -> Result<Option<f64>, OptionError> {
            match fields.get(key) {
                Js::Undefined if !required => Ok(None),
                Js::Number(n) if n.as_f64().is_some() => Ok(n.as_f64()),
                other => Err(OptionError::new(
                    format!("{name}.{key}"),
                    format!(
                        "must be a number >= 0 (list USD per million tokens){}, got {}",
                        if required { ", and is required" } else { "" },
                        js_string(other)
                    ),
                )),
            }
        };
        let provider = match fields.get("provider") {
            Js::Undefined => None,
            other => {
                let named = match other {
                    Js::String(s) => {
                        serde_json::from_value::<ProviderId>(Value::String(s.into())).ok()
                    }
                    _ => None,
                };
                Some(named.ok_or_else(|| {
                    let names: Vec<&str> =
                        crate::providers::PROVIDERS.iter().map(|d| d.name).collect();
                    OptionError::new(
                        format!("{name}.provider"),
                        format!(
                            "must be one of {}, got {}",
                            names.join(", "),
                            js_string(other)
                        ),
                    )
                })?)
            }
        };
        let price = PriceOverride {
            provider,
            input_per_mtok: number("inputPerMTok", true)?.unwrap_or_default(),
            output_per_mtok: number("outputPerMTok", true)?.unwrap_or_default(),
            cached_input_per_mtok: number("cachedInputPerMTok", false)?,
            cache_write_per_mtok: number("cacheWritePerMTok", false)?,
            cache_read_per_mtok: number("cacheReadPerMTok", false)?,
        };
        crate::interceptor::check_price(model, &price)?;
        out.insert(model.clone(), price);
    }
    Ok(Some(out))
}

/// `String(value)` in JS (a function as "a function").
pub(super) fn js_string(value: Js<'_>) -> String {
    match value {
        Js::Undefined => "undefined".into(),
        Js::Null => "null".into(),
        Js::Bool(b) => b.to_string(),
        Js::Number(n) => match n.as_f64() {
            Some(f) if !(n.is_u64() || n.is_i64()) => js_number(f),
            _ => n.to_string(),
        },
        Js::String(s) => s.into(),
        Js::Array(items) => items
            .iter()
            .map(|item| match js(Some(item)) {
                Js::Undefined | Js::Null => String::new(),
                other => js_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Js::Object(_) | Js::HostObject => "[object Object]".into(),
        Js::Function => "a function".into(),
        Js::Other(text) => text.into(),
    }
}

/// A number as JS's `String(number)` writes it (shortest round-trip digits; exponent form from
/// 1e21 up and below 1e-6).
pub fn js_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    let sign = if n < 0.0 { "-" } else { "" };
    let sci = format!("{:e}", n.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} writes an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i64;
    // The decimal point sits after `point` digits.
    let point = exponent.parse::<i64>().expect("the exponent is an integer") + 1;
    let body = if k <= point && point <= 21 {
        format!("{digits}{}", "0".repeat((point - k) as usize))
    } else if 0 < point && point <= 21 {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    } else if -6 < point && point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else {
        let e = point - 1;
        let exp_sign = if e >= 0 { "+" } else { "-" };
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        format!("{mantissa}e{exp_sign}{}", e.abs())
    };
    format!("{sign}{body}")
}

/// The answer a binding returns: `{"ok":true}` (with the checked `options` when there are
/// some) or the refusal `{"ok":false,"code":"ERR_BATCHLING_INVALID_OPTION","option":…,"message":…}`.
pub(super) fn envelope(result: Result<Option<Value>, OptionError>) -> String {
    match result {
        Ok(Some(options)) => json!({ "ok": true, "options": options }).to_string(),
        Ok(None) => json!({ "ok": true }).to_string(),
        Err(e) => json!({
            "ok": false,
            "code": OptionError::CODE,
            "option": e.option,
            "message": e.message,
        })
        .to_string(),
    }
}

fn parse(json: &str) -> Result<Value, OptionError> {
    serde_json::from_str(json).map_err(|e| OptionError::new("options", e.to_string()))
}

/// [`batcher_options`] for a binding: the user's options as JSON (markers for functions and
/// the like) in, the envelope out with the options `NativeBatcher`'s constructor takes.
pub fn check_batcher_options(user_json: &str) -> String {
    envelope(parse(user_json).and_then(|user| {
        let options = batcher_options(&user)?;
        Ok(Some(
            serde_json::to_value(options).expect("options serialize"),
        ))
    }))
}

/// [`interceptor_options`] for a binding: the user's options and the host's own engine options
/// (`{"cache":true,"tagSeed":…,"maxConcurrentBatches"?,"costLimitUsd"?,"fleetOwner"?}`) as JSON
/// in, the envelope out with the JSON options `NativeInterceptor`'s constructor takes, and with
/// `cache: { redis }` the store to open (`"redis":{url,prefix?,connectTimeoutMs?,retryForMs?}`).
pub fn check_interceptor_options(user_json: &str, host_json: &str) -> String {
    let checked = parse(user_json).and_then(|user| {
        let host: InterceptorOptions = serde_json::from_str(host_json)
            .map_err(|e| OptionError::new("options", e.to_string()))?;
        interceptor_options_and_store(&user, host)
    });
    match checked {
        Ok((options, Some(redis))) => {
            json!({ "ok": true, "options": options, "redis": redis }).to_string()
        }
        Ok((options, None)) => envelope(Ok(Some(
            serde_json::to_value(options).expect("options serialize"),
        ))),
        Err(e) => envelope(Err(e)),
    }
}
