//! The `Batch` job builder's option rules: which keys each of its calls takes and the values they
//! allow. The host passes the caller's object as JSON (JS `undefined` values left out, non-finite
//! numbers as their `String()`) and turns a refusal into its invalid-option error. Messages name
//! the option and show the offending value as JavaScript's `String()` does.

use serde_json::json;
use serde_json::value::RawValue;

use super::json_entries::{js_string, number, Entries};
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
];

/// The values of `resultFiles`, as JSON: `results.jsonl` only, or also one file per job.
const RESULT_FILES: &[&str] = &[r#""jsonl""#, r#""per-job""#];

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
}

impl BatchCall {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "options" => Self::Options,
            "defaults" => Self::Defaults,
            "costLimit" => Self::CostLimit,
            "job" => Self::Job,
            _ => return None,
        })
    }
}

/// Checks the JSON of one builder call's argument. `job_id` names the job in `addJob`'s messages.
pub fn check(call: BatchCall, value_json: &str, job_id: &str) -> Checked {
    let raw: &RawValue = serde_json::from_str(value_json)
        .map_err(|e| OptionError::new("options", format!("not JSON: {e}")))?;
    match call {
        BatchCall::Options => check_options(raw),
        BatchCall::Defaults => {
            let entries = object_or(
                raw,
                "defaults",
                "pass { model?, temperature?, maxTokens?, system?, extra? }",
            )?;
            known_keys(&entries, DEFAULT_KEYS, "defaults.")
        }
        BatchCall::CostLimit => {
            let usd = Entries::of(raw).and_then(|e| e.get("usd"));
            match number(usd) {
                Some(value) if value.is_finite() && value >= 0.0 => Ok(()),
                _ => Err(OptionError::new(
                    "costLimit.usd",
                    format!("must be a finite number >= 0, got {}", js_string(usd)),
                )),
            }
        }
        BatchCall::Job => check_job(raw, job_id),
    }
}

fn check_options(raw: &RawValue) -> Checked {
    let entries = object_or(
        raw,
        "options",
        "pass { stateFile, resultsDir, maxConcurrent? }",
    )?;
    known_keys(&entries, OPTION_KEYS, "")?;
    for name in ["stateFile", "resultsDir"] {
        let path = entries
            .get(name)
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
        if path.is_none_or(|p| p.is_empty()) {
            return Err(OptionError::new(name, "must be a non-empty path string"));
        }
    }
    for name in ["maxConcurrent", "itemsPerBatch", "pollIntervalMs"] {
        count(name, entries.get(name), 1)?;
    }
    if let Some(layout) = entries.get("resultFiles") {
        if !RESULT_FILES.contains(&layout.get()) {
            return Err(OptionError::new(
                "resultFiles",
                format!(
                    "must be \"jsonl\" (results.jsonl only, the default) or \"per-job\" (also one JSON file per job), got {}",
                    js_string(Some(layout))
                ),
            ));
        }
    }
    if let Some(providers) = entries.get("providers") {
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
    Ok(())
}

fn check_job(raw: &RawValue, id: &str) -> Checked {
    let entries = object_or(raw, "job", "pass { messages } or { file, prompt }")?;
    known_keys(&entries, JOB_KEYS, "job.")?;
    let has_messages = entries.get("messages").is_some();
    let (file, prompt) = (entries.get("file"), entries.get("prompt"));
    let has_file = file.is_some() || prompt.is_some();
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
    let is_string = |v: Option<&RawValue>| v.is_some_and(|v| v.get().starts_with('"'));
    if has_file && !(is_string(file) && is_string(prompt)) {
        return Err(OptionError::new(
            "job",
            format!("job `{id}`: a file job needs both `file` (a path) and `prompt`"),
        ));
    }
    Ok(())
}

/// The entries of an object (an array counts, by its indices, as a JS host's `Object.keys`
/// sees it), or the refusal `message` for `option`.
fn object_or<'a>(
    raw: &'a RawValue,
    option: &str,
    message: &str,
) -> Result<Entries<'a>, OptionError> {
    if let Some(entries) = Entries::of(raw) {
        return Ok(entries);
    }
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
        return Ok(Entries(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
        ));
    }
    Err(OptionError::new(option, message))
}

/// Refuses misspelt options instead of silently ignoring them. `prefix` names nested objects.
fn known_keys(entries: &Entries, known: &[&str], prefix: &str) -> Checked {
    match entries.keys().find(|key| !known.contains(key)) {
        Some(key) => Err(OptionError::new(
            format!("{prefix}{key}"),
            format!("unknown option; known options: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// An optional whole number >= `min` that a JS number holds exactly (a safe integer).
fn count(name: &str, value: Option<&RawValue>, min: u32) -> Checked {
    let Some(raw) = value else { return Ok(()) };
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    match number(Some(raw)) {
        Some(n) if n.fract() == 0.0 && n.abs() <= MAX_SAFE && n >= f64::from(min) => Ok(()),
        _ => Err(OptionError::new(
            name,
            format!("must be an integer >= {min}, got {}", js_string(Some(raw))),
        )),
    }
}

/// `{"ok":true}` or `{"ok":false,"code":"ERR_BATCHLING_INVALID_OPTION","option":…,"message":…}`;
/// `call` is "options", "defaults", "costLimit" or "job".
pub fn check_json(call: &str, value_json: &str, job_id: &str) -> String {
    let Some(call) = BatchCall::parse(call) else {
        return json!({
            "ok": false,
            "code": "ERR_BATCHLING_INVALID_OPTION",
            "option": "call",
            "message": format!("unknown builder call `{call}`"),
        })
        .to_string();
    };
    match check(call, value_json, job_id) {
        Ok(()) => json!({ "ok": true }).to_string(),
        Err(e) => json!({
            "ok": false,
            "code": "ERR_BATCHLING_INVALID_OPTION",
            "option": e.option,
            "message": e.message,
        })
        .to_string(),
    }
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
