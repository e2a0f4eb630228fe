//! What a `Batch` run leaves on disk, read and written by rules kept here so that the run and
//! `batchling jobs status|results` agree on them: the state file and the results directory.
//!
//! The state file is JSON lines: a header (`{"batchling":"state","version":1,"resultsDir":…,
//! "jobs":N,"jobIds":[…],"sources":[…]}`) rewritten when a run starts, then the engine's journal
//! records ([`crate::cache::CacheRecord`]) appended as they are written, answers excepted (those
//! live in the results directory: `results.jsonl`, and with the per-job layout one JSON file per
//! job, named by [`result_file_name`]). The host does the file I/O; these functions only read
//! and write text.
//!
//! The header does not grow with a source's jobs: `jobIds` lists only the jobs added one by one
//! (a source's jobs are its lines, identified by the source and their position), and `jobs` counts
//! them all. A header without `jobs` (state files from before it) lists every job in `jobIds`.
//!
//! `sources` (absent in state files from before it, and for runs whose jobs were all added one by
//! one) records where the jobs came from: a `.jsonl` file the caller named, or an iterable the run
//! recorded into a file next to the state file, each with its content hash. A resume whose
//! sources differ from the recorded ones is refused ([`check_sources`]): the submitted batches'
//! jobs would no longer be the caller's.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::json_entries::{number, Entries};
use super::refusal;
use crate::cache::CacheRecord;
use crate::providers::common::hex;

/// The state file format this version writes and reads.
pub const STATE_VERSION: u32 = 1;

/// A state file, read: its header and the journal records it keeps.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    pub version: u32,
    /// Where the run writes its results.
    pub results_dir: String,
    /// How many jobs the run has: those in `jobIds` and every source's.
    pub jobs: usize,
    /// The ids of the jobs added one by one, in the order they were added (in state files from
    /// before `jobs`: every job's). A source's jobs are its lines, not listed.
    pub job_ids: Vec<String>,
    /// Each job's result file name in `resultsDir`, in `jobIds` order.
    pub result_files: Vec<String>,
    /// The engine journal lines (blank lines dropped), for the engine to resume from.
    pub journal: Vec<String>,
    /// Distinct provider batches the journal records as submitted.
    pub batches_submitted: usize,
    /// Where the jobs came from, in the order they were added (empty: none recorded).
    pub sources: Vec<JobSource>,
}

/// How a run got a source's jobs.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A `.jsonl` file the caller named.
    File,
    /// An iterable the run recorded, as it read it, into a `.jsonl` file next to the state file.
    Recorded,
}

/// A source of jobs as the state file records it: enough to tell, on a resume, that it is the
/// same content.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSource {
    pub kind: SourceKind,
    /// The file's absolute path.
    pub path: String,
    /// The SHA-256 of the file's bytes, as lowercase hex.
    pub sha256: String,
    /// The file's size.
    pub bytes: u64,
    /// The jobs it holds (non-blank lines).
    pub jobs: u64,
}

/// Why a resume is refused: the source (by path) and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceChanged {
    pub path: String,
    pub reason: String,
}

/// Whether a run reading `current` may resume a state that recorded `recorded`: each recorded
/// source must be read again, at the same position, with the same content. A state with no
/// sources (older files, jobs added one by one) accepts any; sources added after the recorded
/// ones are new jobs, accepted.
pub fn check_sources(recorded: &[JobSource], current: &[JobSource]) -> Result<(), SourceChanged> {
    for (i, was) in recorded.iter().enumerate() {
        let changed = |reason: String| SourceChanged {
            path: was.path.clone(),
            reason,
        };
        let Some(now) = current.get(i) else {
            return Err(changed(format!(
                "the run started with job source {} `{}`, which this run does not read (it reads {} source{})",
                i + 1,
                was.path,
                current.len(),
                if current.len() == 1 { "" } else { "s" }
            )));
        };
        if now.kind != was.kind || now.path != was.path {
            return Err(changed(format!(
                "the run started reading job source {} from `{}`; this run reads `{}`",
                i + 1,
                was.path,
                now.path
            )));
        }
        if now.sha256 != was.sha256 || now.bytes != was.bytes {
            return Err(changed(format!(
                "`{}` changed since the run started: it had {} bytes, {} jobs, sha256 {}; it now has {} bytes, {} jobs, sha256 {}. Restore it, or start a new run with another state file",
                was.path, was.bytes, was.jobs, was.sha256, now.bytes, now.jobs, now.sha256
            )));
        }
    }
    Ok(())
}

/// What the results directory says about a run's jobs.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub jobs: usize,
    /// Jobs whose result is `ok`.
    pub completed: usize,
    /// Jobs with a result that is not `ok`.
    pub failed: usize,
    /// Jobs without a result file.
    pub pending: usize,
    /// The sum of the results' `costUsd`.
    pub cost_usd: f64,
    /// `ok` results without a `costUsd` (a model with no known price).
    pub unpriced: usize,
    pub complete: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateHeader<'a> {
    batchling: &'static str,
    version: u32,
    results_dir: &'a str,
    jobs: u64,
    job_ids: &'a [String],
    #[serde(skip_serializing_if = "<[JobSource]>::is_empty")]
    sources: &'a [JobSource],
}

/// The state file's first line for a run writing into `results_dir` whose jobs are `job_ids`
/// (those added one by one) and the jobs of `sources`.
pub fn header_line(results_dir: &str, job_ids: &[String], sources: &[JobSource]) -> String {
    serde_json::to_string(&StateHeader {
        batchling: "state",
        version: STATE_VERSION,
        results_dir,
        jobs: job_ids.len() as u64 + sources.iter().map(|s| s.jobs).sum::<u64>(),
        job_ids,
        sources,
    })
    .expect("a header serializes")
}

/// Reads a state file's text; the error says why it is not one (the host prefixes the path).
pub fn read_state(text: &str) -> Result<RunState, String> {
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let header: Value =
        serde_json::from_str(first).map_err(|e| format!("its first line is not JSON: {e}"))?;
    if header.get("batchling").and_then(Value::as_str) != Some("state") {
        return Err("its first line is not a batchling state header".into());
    }
    let entries: Entries = serde_json::from_str(first).expect("an object already parsed");
    if number(entries.get("version")) != Some(f64::from(STATE_VERSION)) {
        let shown = entries.get("version").map_or("undefined", |v| v.get());
        return Err(format!(
            "unsupported version {shown} (expected {STATE_VERSION})"
        ));
    }
    let results_dir = match header.get("resultsDir").and_then(Value::as_str) {
        Some(dir) if !dir.is_empty() => dir.to_string(),
        _ => return Err("`resultsDir` is missing".into()),
    };
    let job_ids: Vec<String> = header
        .get("jobIds")
        .and_then(|ids| serde_json::from_value(ids.clone()).ok())
        .ok_or("`jobIds` is missing or not a list of strings")?;
    let sources: Vec<JobSource> = match header.get("sources") {
        None => Vec::new(),
        Some(sources) => serde_json::from_value(sources.clone())
            .map_err(|e| format!("`sources` is not a list of job sources: {e}"))?,
    };
    let jobs = match entries.get("jobs") {
        None => job_ids.len(),
        Some(raw) => match number(Some(raw)) {
            Some(n) if n.fract() == 0.0 && n >= job_ids.len() as f64 && n < 9.007e15 => n as usize,
            _ => {
                return Err(format!(
                    "`jobs` must be a whole number >= the {} listed in `jobIds`, got {}",
                    job_ids.len(),
                    raw.get()
                ))
            }
        },
    };
    let journal: Vec<String> = lines
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect();
    Ok(RunState {
        version: STATE_VERSION,
        result_files: job_ids.iter().map(|id| result_file_name(id)).collect(),
        batches_submitted: batches_submitted(&journal),
        results_dir,
        jobs,
        job_ids,
        journal,
        sources,
    })
}

fn batches_submitted(journal: &[String]) -> usize {
    let mut batches = HashSet::new();
    for line in journal {
        // A damaged line is skipped, as the engine skips it.
        if let Ok(CacheRecord::Submitted {
            place, batch_id, ..
        }) = serde_json::from_str(line)
        {
            batches.insert((place.provider, batch_id));
        }
    }
    batches.len()
}

/// Whether the state file keeps an engine journal line: every record but answers, which the
/// run keeps in its results directory instead.
pub fn state_keeps(line: &str) -> bool {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_str::<Tag>(line) {
        Ok(tag) => tag.kind.as_deref() != Some("result"),
        Err(_) => true,
    }
}

/// A job's result file name: the id with anything but `A-Z a-z 0-9 . _ -` replaced by `_` (one
/// per UTF-16 unit, as a JS host counts them) and, when that changed it, `-` and the first 8 hex
/// digits of the id's SHA-256 so that two ids never share a file; then `.json`.
pub fn result_file_name(id: &str) -> String {
    let mut safe = String::with_capacity(id.len());
    for c in id.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            safe.push(c);
        } else {
            for _ in 0..c.len_utf16() {
                safe.push('_');
            }
        }
    }
    if safe != id {
        let digest = hex(&Sha256::digest(id.as_bytes()));
        safe.push('-');
        safe.push_str(&digest[..8]);
    }
    safe.push_str(".json");
    safe
}

/// A result file's text as the run's result: files from before the spec's names (`id`,
/// `responseText`) read under the new ones (`jobId` first, then `response`, then the rest). The
/// value text is kept as written.
pub fn read_result(text: &str) -> Result<Box<RawValue>, String> {
    let raw: Box<RawValue> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(entries) = Entries::of(&raw) else {
        return Ok(raw);
    };
    let (Some(id), None) = (entries.get("id"), entries.get("jobId")) else {
        return Ok(raw);
    };
    let mut out = format!("{{\"jobId\":{}", id.get());
    let response = entries.get("responseText").map_or("null", |r| r.get());
    out.push_str(&format!(",\"response\":{response}"));
    for (key, value) in &entries.0 {
        if key != "id" && key != "responseText" {
            out.push_str(&format!(",{}:{}", json!(key), value.get()));
        }
    }
    out.push('}');
    Ok(RawValue::from_string(out).expect("rebuilt from valid JSON values"))
}

/// Why a result file could not be read: the job's position in the run and the parser's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableResult {
    pub index: usize,
    pub reason: String,
}

/// Each job's result as read ([`read_result`]), in job order; `None`: no result file yet.
pub type RunResults = Vec<Option<Box<RawValue>>>;

/// The run's summary from its result files' texts, in job order (`None`: no file yet), and the
/// results read, aligned with the input.
pub fn summarize_results(
    texts: &[Option<String>],
) -> Result<(RunSummary, RunResults), UnreadableResult> {
    let mut summary = RunSummary {
        jobs: texts.len(),
        completed: 0,
        failed: 0,
        pending: 0,
        cost_usd: 0.0,
        unpriced: 0,
        complete: false,
    };
    let mut results = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        let Some(text) = text else {
            summary.pending += 1;
            results.push(None);
            continue;
        };
        let result = read_result(text).map_err(|reason| UnreadableResult { index, reason })?;
        let entries = Entries::of(&result).unwrap_or_default();
        let ok = entries.get("ok").is_some_and(|v| v.get().trim() == "true");
        let cost = number(entries.get("costUsd"));
        if ok {
            summary.completed += 1;
        } else {
            summary.failed += 1;
        }
        match cost {
            Some(usd) => summary.cost_usd += usd,
            None if ok => summary.unpriced += 1,
            None => {}
        }
        results.push(Some(result));
    }
    summary.complete = summary.pending == 0;
    Ok((summary, results))
}

// ---- JSON in, JSON out, for the bindings --------------------------------------------------

/// `{"ok":true,"line":…}`: the header line ([`header_line`]); `job_ids_json` is a JSON array of
/// strings, `sources_json` one of [`JobSource`]s.
pub fn header_line_json(results_dir: &str, job_ids_json: &str, sources_json: &str) -> String {
    let ids = match serde_json::from_str::<Vec<String>>(job_ids_json) {
        Ok(ids) => ids,
        Err(e) => return refusal("ERR_BATCHLING_INVALID_STATE", format!("bad job ids: {e}")),
    };
    match serde_json::from_str::<Vec<JobSource>>(sources_json) {
        Ok(sources) => {
            json!({ "ok": true, "line": header_line(results_dir, &ids, &sources) }).to_string()
        }
        Err(e) => refusal("ERR_BATCHLING_INVALID_STATE", format!("bad sources: {e}")),
    }
}

/// [`check_sources`] on two JSON arrays of [`JobSource`]s: `{"ok":true}` or
/// `{"ok":false,"code":"ERR_BATCHLING_SOURCE_CHANGED","path":…,"error":…}`.
pub fn check_sources_json(recorded_json: &str, current_json: &str) -> String {
    let parse = |text: &str| serde_json::from_str::<Vec<JobSource>>(text);
    let (recorded, current) = match (parse(recorded_json), parse(current_json)) {
        (Ok(recorded), Ok(current)) => (recorded, current),
        (Err(e), _) | (_, Err(e)) => {
            return refusal("ERR_BATCHLING_INVALID_STATE", format!("bad sources: {e}"))
        }
    };
    match check_sources(&recorded, &current) {
        Ok(()) => json!({ "ok": true }).to_string(),
        Err(changed) => json!({
            "ok": false,
            "code": "ERR_BATCHLING_SOURCE_CHANGED",
            "path": changed.path,
            "error": changed.reason,
        })
        .to_string(),
    }
}

/// `{"ok":true,"state":RunState}` or `{"ok":false,"code":"ERR_BATCHLING_INVALID_STATE","error":…}`.
pub fn read_state_json(text: &str) -> String {
    match read_state(text) {
        Ok(state) => json!({ "ok": true, "state": state }).to_string(),
        Err(error) => refusal("ERR_BATCHLING_INVALID_STATE", error),
    }
}

/// `texts_json`: a JSON array with each job's result file text, or null where there is none.
/// `{"ok":true,"summary":RunSummary,"results":[JobResult | null, …]}` or
/// `{"ok":false,"code":"ERR_BATCHLING_INVALID_RESULT","index":…,"error":…}`.
pub fn summarize_results_json(texts_json: &str) -> String {
    let texts: Vec<Option<String>> = match serde_json::from_str(texts_json) {
        Ok(texts) => texts,
        Err(e) => return refusal("ERR_BATCHLING_INVALID_RESULT", format!("bad input: {e}")),
    };
    #[derive(Serialize)]
    struct Answer<'a> {
        ok: bool,
        summary: &'a RunSummary,
        results: &'a [Option<Box<RawValue>>],
    }
    match summarize_results(&texts) {
        Ok((summary, results)) => serde_json::to_string(&Answer {
            ok: true,
            summary: &summary,
            results: &results,
        })
        .expect("a summary serializes"),
        Err(e) => json!({
            "ok": false,
            "code": "ERR_BATCHLING_INVALID_RESULT",
            "index": e.index,
            "error": e.reason,
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBMITTED: &str = r#"{"type":"submitted","place":{"provider":"openai","base_url":"u","endpoint":"/v1/chat/completions","model":"m","tag":"t"},"batch_id":"b1","fingerprints":["f"]}"#;

    #[test]
    fn a_header_reads_back_with_its_journal_and_counts_distinct_batches() {
        let ids = vec!["a".to_string(), "b/c".to_string()];
        let text = format!(
            "{}\n{SUBMITTED}\n\n{SUBMITTED}\n{{torn\n",
            header_line("/r", &ids, &[])
        );
        let state = read_state(&text).unwrap();
        assert_eq!(state.results_dir, "/r");
        assert_eq!(state.job_ids, ids);
        assert_eq!(state.jobs, 2);
        assert_eq!(state.journal.len(), 3);
        assert_eq!(state.batches_submitted, 1);
        assert_eq!(state.result_files[0], "a.json");
        assert!(state.sources.is_empty());
        assert!(!text.contains("sources"), "no sources: no key, as before");
        assert!(state.result_files[1].starts_with("b_c-"));
    }

    fn source(path: &str, sha: &str, bytes: u64) -> JobSource {
        JobSource {
            kind: SourceKind::File,
            path: path.into(),
            sha256: sha.into(),
            bytes,
            jobs: 2,
        }
    }

    #[test]
    fn sources_read_back_and_an_old_header_has_none() {
        let sources = vec![source("/in/jobs.jsonl", "ab", 10)];
        let line = header_line("/r", &["a".into()], &sources);
        assert!(line.contains(r#""sources":[{"kind":"file","path":"/in/jobs.jsonl","sha256":"ab","bytes":10,"jobs":2}]"#));
        let state = read_state(&line).unwrap();
        assert_eq!(state.sources, sources);
        // The source's jobs are counted, not listed: one id and 3 jobs.
        assert!(line.contains(r#""jobs":3,"jobIds":["a"]"#), "{line}");
        assert_eq!((state.jobs, state.job_ids.len()), (3, 1));
        let old = r#"{"batchling":"state","version":1,"resultsDir":"/r","jobIds":["a"]}"#;
        assert_eq!(read_state(old).unwrap().sources, vec![]);
        assert_eq!(
            read_state(old).unwrap().jobs,
            1,
            "an old header lists every job"
        );
        assert!(
            read_state(&old.replace("]}", r#"],"sources":[{"kind":"tape"}]}"#))
                .unwrap_err()
                .starts_with("`sources` is not a list of job sources: ")
        );
    }

    #[test]
    fn a_resume_needs_the_recorded_sources_unchanged() {
        let was = vec![source("/in/a.jsonl", "aa", 10)];
        assert_eq!(check_sources(&[], &was), Ok(()), "an old state takes any");
        assert_eq!(check_sources(&was, &was), Ok(()));
        let more = vec![was[0].clone(), source("/in/b.jsonl", "bb", 3)];
        assert_eq!(check_sources(&was, &more), Ok(()), "a new source adds jobs");
        let edited = check_sources(&was, &[source("/in/a.jsonl", "cc", 11)]).unwrap_err();
        assert_eq!(edited.path, "/in/a.jsonl");
        assert!(edited.reason.starts_with("`/in/a.jsonl` changed since the run started: it had 10 bytes, 2 jobs, sha256 aa; it now has 11 bytes"), "{}", edited.reason);
        let moved = check_sources(&was, &[source("/in/c.jsonl", "aa", 10)]).unwrap_err();
        assert!(moved
            .reason
            .contains("from `/in/a.jsonl`; this run reads `/in/c.jsonl`"));
        let recorded = JobSource {
            kind: SourceKind::Recorded,
            ..was[0].clone()
        };
        assert!(
            check_sources(&was, &[recorded]).is_err(),
            "a file is not a recording"
        );
        let gone = check_sources(&was, &[]).unwrap_err();
        assert!(gone
            .reason
            .contains("which this run does not read (it reads 0 sources)"));
        let answer: Value = serde_json::from_str(&check_sources_json(
            &serde_json::to_string(&was).unwrap(),
            "[]",
        ))
        .unwrap();
        assert_eq!(answer["code"], "ERR_BATCHLING_SOURCE_CHANGED");
        assert_eq!(answer["path"], "/in/a.jsonl");
    }

    #[test]
    fn a_file_that_is_not_a_state_says_why() {
        let err = |text: &str| read_state(text).unwrap_err();
        assert!(err("{not json").starts_with("its first line is not JSON: "));
        assert_eq!(
            err(r#"{"hello":1}"#),
            "its first line is not a batchling state header"
        );
        assert_eq!(
            err(r#"{"batchling":"state","version":2}"#),
            "unsupported version 2 (expected 1)"
        );
        assert_eq!(
            err(r#"{"batchling":"state"}"#),
            "unsupported version undefined (expected 1)"
        );
        assert_eq!(
            err(r#"{"batchling":"state","version":1,"resultsDir":"r"}"#),
            "`jobIds` is missing or not a list of strings"
        );
        assert_eq!(
            err(r#"{"batchling":"state","version":1,"jobIds":[]}"#),
            "`resultsDir` is missing"
        );
        assert_eq!(
            err(r#"{"batchling":"state","version":1,"resultsDir":"r","jobs":1.5,"jobIds":["a"]}"#),
            "`jobs` must be a whole number >= the 1 listed in `jobIds`, got 1.5"
        );
        assert_eq!(
            err(r#"{"batchling":"state","version":1,"resultsDir":"r","jobs":0,"jobIds":["a"]}"#),
            "`jobs` must be a whole number >= the 1 listed in `jobIds`, got 0"
        );
    }

    #[test]
    fn the_state_keeps_every_record_but_answers() {
        assert!(state_keeps(SUBMITTED));
        assert!(state_keeps(r#"{"type":"released","fingerprints":[]}"#));
        assert!(state_keeps("{torn"));
        assert!(!state_keeps(
            r#"{"type":"result","fingerprint":"f","status":200,"headers":[],"body":"{}"}"#
        ));
    }

    #[test]
    fn result_file_names_are_safe_and_distinct() {
        assert_eq!(result_file_name("job-1.a_b"), "job-1.a_b.json");
        let a = result_file_name("a/b");
        let b = result_file_name("a?b");
        assert!(a.starts_with("a_b-") && b.starts_with("a_b-") && a != b);
        // One `_` per UTF-16 unit: an emoji is two.
        assert!(result_file_name("x😀").starts_with("x__-"));
    }

    #[test]
    fn old_result_files_read_under_the_new_names_with_values_as_written() {
        let old = r#"{"id":"j","responseText":"hi","ok":true,"costUsd":0.000015}"#;
        assert_eq!(
            read_result(old).unwrap().get(),
            r#"{"jobId":"j","response":"hi","ok":true,"costUsd":0.000015}"#
        );
        let new = r#"{"jobId":"j","ok":false,"costUsd":1e-7}"#;
        assert_eq!(read_result(new).unwrap().get(), new);
    }

    #[test]
    fn a_summary_counts_outcomes_cost_and_pending() {
        let texts = vec![
            Some(r#"{"jobId":"a","ok":true,"costUsd":0.5}"#.to_string()),
            Some(r#"{"jobId":"b","ok":false,"costUsd":0.25}"#.to_string()),
            Some(r#"{"jobId":"c","ok":true,"costUsd":null}"#.to_string()),
            None,
        ];
        let (summary, results) = summarize_results(&texts).unwrap();
        assert_eq!(
            (summary.completed, summary.failed, summary.pending),
            (2, 1, 1)
        );
        assert_eq!((summary.cost_usd, summary.unpriced), (0.75, 1));
        assert!(!summary.complete);
        assert!(results[3].is_none());
        let bad = summarize_results(&[None, Some("{oops".into())]).unwrap_err();
        assert_eq!(bad.index, 1);
    }
}
