//! The `Batch` job builder's option rules: which keys each of its calls takes and the values they
//! allow. The host passes the caller's object as JSON with the markers [`super::options`] reads
//! (objects nested past what a call checks sent as their shape only) and turns a refusal into
//! its invalid-option error. The rules read values with [`super::options`]' readers, so messages
//! name the option and show the offending value as JavaScript's `String()` does.

use serde_json::{Map, Value};

use super::options::{count, envelope, js, js_string, known_keys, marker, Fields, Js};
use crate::options::OptionError;
use crate::providers::PROVIDERS;

/// Keys of `new Batch(options)`.
pub const OPTION_KEYS: &[&str] = &[
    "stateFile",
    "resultsDir",
    "resultFiles",
    "maxConcurrent",
    "itemsPerBatch",
    "pollIntervalMs",
    "providers",
    "retry",
    "lineAttempts",
    "prices",
];

/// The values of `resultFiles`: `results.jsonl` only, or also one file per job.
const RESULT_FILES: &[&str] = &["jsonl", "per-job"];

/// Keys of `defaults()`, which every job may also set.
pub const DEFAULT_KEYS: &[&str] = &["model", "temperature", "maxTokens", "system", "extra"];

/// Keys of `addJob()`.
pub const JOB_KEYS: &[&str] = &[
    "id",
    "messages",
    "file",
    "prompt",
    "model",
    "temperature",
    "maxTokens",
    "system",
    "extra",
    "responseModel",
];

type Checked = Result<(), OptionError>;

/// What a builder call is checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchCall {
    /// `new Batch(options)`.
    Options,
    /// `defaults(defaults)`.
    Defaults,
    /// `addCostLimit(limit)`.
    CostLimit,
    /// `addJob(job)`, with the id it gets (the caller's or a generated one).
    Job,
    /// The `prices` option of `new Batch(options)`.
    Prices,
}

impl BatchCall {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "options" => Self::Options,
            "defaults" => Self::Defaults,
            "costLimit" => Self::CostLimit,
            "job" => Self::Job,
            "prices" => Self::Prices,
            _ => return None,
        })
    }
}

/// Checks the JSON of one builder call's argument. `job_id` names the job in `addJob`'s messages.
pub fn check(call: BatchCall, value_json: &str, job_id: &str) -> Checked {
    let value: Value = serde_json::from_str(value_json)
        .map_err(|e| OptionError::new("options", format!("not JSON: {e}")))?;
    let value = as_stringified(&value).unwrap_or(Value::Null);
    let value = js(Some(&value));
    match call {
        BatchCall::Options => check_options(value),
        BatchCall::Defaults => {
            let fields = object_or(
                value,
                "defaults",
                "pass { model?, temperature?, maxTokens?, system?, extra? }",
            )?;
            known_keys(&fields, DEFAULT_KEYS, "defaults.")
        }
        BatchCall::CostLimit => {
            let usd = Fields::of(value).map_or(Js::Undefined, |limit| limit.get("usd"));
            match usd {
                Js::Number(n) if n.as_f64().is_some_and(|usd| usd >= 0.0) => Ok(()),
                other => Err(OptionError::new(
                    "costLimit.usd",
                    format!("must be a finite number >= 0, got {}", js_string(other)),
                )),
            }
        }
        BatchCall::Job => check_job(value, job_id),
        BatchCall::Prices => super::options::prices(value).map(|_| ()),
    }
}

/// The builder's rules read the caller's values as `JSON.stringify` keeps them: keys whose value
/// is `undefined`, a function or a Symbol left out (array items as `null`), NaN and Infinity as
/// their `String()`. BigInts, which `JSON.stringify` refuses, stay markers (not numbers).
fn as_stringified(value: &Value) -> Option<Value> {
    match value {
        Value::Object(map) => match marker(map) {
            Some("number") => map.get("text").cloned(),
            Some("bigint") => Some(value.clone()),
            Some(_) => None,
            None => Some(Value::Object(
                map.iter()
                    .filter_map(|(key, item)| Some((key.clone(), as_stringified(item)?)))
                    .collect::<Map<_, _>>(),
            )),
        },
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|item| as_stringified(item).unwrap_or(Value::Null))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn check_options(value: Js<'_>) -> Checked {
    let options = object_or(
        value,
        "options",
        "pass { stateFile, resultsDir, maxConcurrent? }",
    )?;
    known_keys(&options, OPTION_KEYS, "")?;
    for name in ["stateFile", "resultsDir"] {
        if !matches!(options.get(name), Js::String(path) if !path.is_empty()) {
            return Err(OptionError::new(name, "must be a non-empty path string"));
        }
    }
    for name in [
        "maxConcurrent",
        "itemsPerBatch",
        "pollIntervalMs",
        "lineAttempts",
    ] {
        count(name, options.get(name), 1, false)?;
    }
    match options.get("resultFiles") {
        Js::Undefined => {}
        Js::String(layout) if RESULT_FILES.contains(&layout) => {}
        other => {
            return Err(OptionError::new(
                "resultFiles",
                format!(
                    "must be \"jsonl\" (results.jsonl only, the default) or \"per-job\" (also one JSON file per job), got {}",
                    js_string(other)
                ),
            ))
        }
    }
    // Its entries sit past the depth this check is sent; the `prices` call checks them.
    if !matches!(options.get("prices"), Js::Undefined | Js::Object(_)) {
        super::options::prices(options.get("prices"))?;
    }
    match options.get("providers") {
        Js::Undefined => {}
        providers => {
            let providers = object_or(
                providers,
                "providers",
                "must be an object: { openai?: { apiKey?, baseURL? }, … }",
            )?;
            let served: Vec<&str> = PROVIDERS
                .iter()
                .filter(|d| d.jobs.is_some())
                .map(|d| d.name)
                .collect();
            known_keys(&providers, &served, "providers.")?;
        }
    }
    Ok(())
}

fn check_job(value: Js<'_>, id: &str) -> Checked {
    let job = object_or(value, "job", "pass { messages } or { file, prompt }")?;
    known_keys(&job, JOB_KEYS, "job.")?;
    let given = |key: &str| !matches!(job.get(key), Js::Undefined);
    let has_messages = given("messages");
    let has_file = given("file") || given("prompt");
    if has_messages && has_file {
        return Err(OptionError::new(
            "job",
            format!("job `{id}`: give either messages or file + prompt, not both"),
        ));
    }
    if !has_messages && !has_file {
        return Err(OptionError::new(
            "job",
            format!("job `{id}`: give messages, or file + prompt"),
        ));
    }
    let is_string = |key: &str| matches!(job.get(key), Js::String(_));
    if has_file && !(is_string("file") && is_string("prompt")) {
        return Err(OptionError::new(
            "job",
            format!("job `{id}`: a file job needs both `file` (a path) and `prompt`"),
        ));
    }
    Ok(())
}

/// The fields of an object (an array counts, by its indices, as a JS host's `Object.keys` sees
/// it), or the refusal `message` for `option`.
fn object_or<'a>(value: Js<'a>, option: &str, message: &str) -> Result<Fields<'a>, OptionError> {
    Fields::of(value).ok_or_else(|| OptionError::new(option, message))
}

/// `{"ok":true}` or `{"ok":false,"code":"ERR_BATCHLING_INVALID_OPTION","option":…,"message":…}`;
/// `call` is "options", "defaults", "costLimit" or "job".
pub fn check_json(call: &str, value_json: &str, job_id: &str) -> String {
    envelope(match BatchCall::parse(call) {
        Some(call) => check(call, value_json, job_id).map(|()| None),
        None => Err(OptionError::new(
            "call",
            format!("unknown builder call `{call}`"),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(call: BatchCall, json: &str) -> (String, String) {
        let e = check(call, json, "j").unwrap_err();
        (e.option, e.message)
    }

    #[test]
    fn constructor_options_name_the_option_and_the_value() {
        let ok =
            r#"{"stateFile":"s","resultsDir":"r","maxConcurrent":3,"providers":{"openai":{}}}"#;
        assert_eq!(check(BatchCall::Options, ok, ""), Ok(()));
        assert_eq!(
            refused(BatchCall::Options, "{}"),
            ("stateFile".into(), "must be a non-empty path string".into())
        );
        assert_eq!(
            refused(
                BatchCall::Options,
                r#"{"stateFile":"s","resultsDir":"r","itemsPerBatch":1.5}"#
            ),
            (
                "itemsPerBatch".into(),
                "must be an integer >= 1, got 1.5".into()
            )
        );
        assert_eq!(
            refused(
                BatchCall::Options,
                r#"{"stateFile":"s","resultsDir":"r","maxConcurrent":"NaN"}"#
            )
            .1,
            "must be an integer >= 1, got NaN"
        );
        let (option, message) = refused(
            BatchCall::Options,
            r#"{"stateFile":"s","resultsDir":"r","providers":{"mistral":{}}}"#,
        );
        assert_eq!(option, "providers.mistral");
        assert_eq!(
            message,
            "unknown option; known options: openai, anthropic, gemini"
        );
        for layout in ["jsonl", "per-job"] {
            let ok = format!(r#"{{"stateFile":"s","resultsDir":"r","resultFiles":"{layout}"}}"#);
            assert_eq!(check(BatchCall::Options, &ok, ""), Ok(()));
        }
        let (option, message) = refused(
            BatchCall::Options,
            r#"{"stateFile":"s","resultsDir":"r","resultFiles":"perjob"}"#,
        );
        assert_eq!(option, "resultFiles");
        assert!(message
            .starts_with(r#"must be "jsonl" (results.jsonl only, the default) or "per-job""#));
        assert!(message.ends_with("got perjob"), "{message}");
        assert_eq!(
            refused(BatchCall::Options, "null"),
            (
                "options".into(),
                "pass { stateFile, resultsDir, maxConcurrent? }".into()
            )
        );
    }

    #[test]
    fn markers_read_as_json_stringify_keeps_them() {
        let base = r#""stateFile":"s","resultsDir":"r""#;
        // `undefined`, a function or a Symbol: left out, as `JSON.stringify` does.
        for kept in [r#"{"$type":"undefined"}"#, r#"{"$type":"function"}"#] {
            let json = format!(r#"{{{base},"typo":{kept},"maxConcurrent":{kept}}}"#);
            assert_eq!(check(BatchCall::Options, &json, ""), Ok(()));
        }
        assert_eq!(
            refused(BatchCall::Options, r#"{"$type":"function"}"#).0,
            "options"
        );
        let json = format!(r#"{{{base},"maxConcurrent":{{"$type":"number","text":"-Infinity"}}}}"#);
        assert_eq!(
            refused(BatchCall::Options, &json).1,
            "must be an integer >= 1, got -Infinity"
        );
        let json = format!(r#"{{{base},"maxConcurrent":{{"$type":"bigint","text":"2"}}}}"#);
        assert_eq!(
            refused(BatchCall::Options, &json).1,
            "must be an integer >= 1, got 2"
        );
        assert_eq!(
            refused(
                BatchCall::CostLimit,
                r#"{"usd":[1,{"$type":"function"},{"$type":"undefined"}]}"#
            )
            .1,
            "must be a finite number >= 0, got 1,,"
        );
    }

    #[test]
    fn cost_limits_defaults_and_jobs() {
        assert_eq!(check(BatchCall::CostLimit, r#"{"usd":0}"#, ""), Ok(()));
        assert_eq!(
            refused(BatchCall::CostLimit, r#"{"usd":-1}"#).1,
            "must be a finite number >= 0, got -1"
        );
        assert_eq!(
            refused(BatchCall::CostLimit, "null").1,
            "must be a finite number >= 0, got undefined"
        );
        assert_eq!(
            refused(BatchCall::Defaults, r#"{"modle":"x"}"#).0,
            "defaults.modle"
        );
        assert_eq!(
            refused(BatchCall::Job, r#"{"mesages":[]}"#).0,
            "job.mesages"
        );
        assert_eq!(
            refused(BatchCall::Job, r#"{"messages":[],"file":"f","prompt":"p"}"#).1,
            "job `j`: give either messages or file + prompt, not both"
        );
        assert_eq!(
            refused(BatchCall::Job, r#"{"file":"f"}"#).1,
            "job `j`: a file job needs both `file` (a path) and `prompt`"
        );
        assert_eq!(
            refused(BatchCall::Job, "{}").1,
            "job `j`: give messages, or file + prompt"
        );
    }
}
