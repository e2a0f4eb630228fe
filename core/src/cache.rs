//! The persistent request cache: fingerprints, and the journal records that let a re-run resume
//! polling a batch instead of paying for it twice.
//!
//! The journal is append-only JSON lines; the host stores them (a file in Node, pluggable storage
//! elsewhere) and hands them back at start. Records never hold an API key or an auth header:
//! requests are identified by a SHA-256 fingerprint that covers the credential only through
//! [`Route::credential_fingerprint`], itself a hash.
//!
//! The cache keeps no answer in memory: per fingerprint it keeps the [`AnswerPlace`] of its
//! result line in the journal, and a hit asks the host to read that line. The core knows every
//! line's place without being told: the host passes the journal in order at start (chunks of
//! whole lines) and appends the lines the core emits in the order emitted, each followed by
//! `\n`, so each line starts where the one before ended. (Places returned by the host would
//! cost a call back into the core per append, for a number the core can count.)

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::providers::common::hex;
use crate::providers::{ProviderId, Route};

/// A request's SHA-256 fingerprint: 32 bytes in the core's maps, 64 hex digits in the journal.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// From 64 hex digits (either case); `None` for anything else.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Where a result line is in the journal the host keeps: its 0-based line number (a key-value
/// journal's key) and its byte offset and length without the `\n` (a file).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerPlace {
    pub line: u64,
    pub offset: u64,
    pub length: u32,
}

/// Hex SHA-256 over everything that decides a request's answer: provider, base URL, endpoint,
/// model, the canonical body (keys sorted, so key order does not matter), and the credential
/// fingerprint (a hash; the key itself never enters).
pub fn fingerprint(route: &Route) -> Fingerprint {
    let mut canonical = String::new();
    write_canonical(&route.body, &mut canonical);
    let mut hasher = Sha256::new();
    for part in [
        route.provider.as_str(),
        &route.base_url,
        &route.endpoint,
        &route.model,
        &route.credential_fingerprint,
        &canonical,
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    Fingerprint(hasher.finalize().into())
}

/// The custom id a request carries inside its provider batch. Derived from the fingerprint, so
/// a re-run can map a resumed batch's results without having stored the id, and valid for every
/// provider (Anthropic allows `^[a-zA-Z0-9_-]{1,64}$`).
pub fn custom_id(fingerprint: &str) -> String {
    format!("bl-{}", &fingerprint[..fingerprint.len().min(48)])
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Where a group of requests went: enough to find, poll and download their batch again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPlace {
    pub provider: ProviderId,
    pub base_url: String,
    pub endpoint: String,
    pub model: String,
    /// The idempotency tag the batch carries (OpenAI metadata, Gemini display name).
    pub tag: String,
    /// The uploaded input file, for a provider whose batches carry no tag and are found by
    /// their input file after a lost create (Together; `LostCreateKey::UploadedFile`). Written in
    /// its intent, which follows the upload; absent everywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_file: Option<String>,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CacheRecord {
    /// Written before a batch create is sent: if the answer is lost (or the process dies), a
    /// re-run looks for a batch carrying `tag` before it creates anything.
    Intent {
        place: BatchPlace,
        fingerprints: Vec<String>,
    },
    /// The provider accepted the batch.
    Submitted {
        place: BatchPlace,
        batch_id: String,
        fingerprints: Vec<String>,
        /// When the provider accepted the batch (wall clock, ms since the epoch), for the age a
        /// resumed batch's error names; absent in lines written before batchling recorded it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<u64>,
    },
    /// These requests' batch ended without running them (expired, cancelled, failed): a re-run
    /// submits them again instead of resuming that batch.
    Released { fingerprints: Vec<String> },
    /// The user cancelled this batch (`batchling batches cancel`): requests of it that did not
    /// run get the cancelled answer (499), now and in every later run; they are never submitted
    /// again (a batch that ends cancelled without this record is taken as the provider's doing,
    /// and its requests are released).
    Cancelled {
        batch_id: String,
        fingerprints: Vec<String>,
    },
    /// A request whose deadline passed went to the provider's normal endpoint. `batch_id`: the
    /// batch it was also in, once that batch existed (`None`: it was in none, or its create had
    /// not been answered yet). Written again with `line_came_back: true` when that batch's line
    /// for it came back: the request was then paid twice.
    SyncFallback {
        fingerprint: String,
        batch_id: Option<String>,
        line_came_back: bool,
    },
    /// The answer for one request, as its caller received it.
    Result {
        fingerprint: String,
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        /// When the answer was journalled (wall clock, ms since the epoch): the age limit counts
        /// from it. Lines written before batchling recorded it have none and are kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<u64>,
    },
}

impl CacheRecord {
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("cache records always serialize")
    }
}

/// A journal line that could not be read. Loading goes on with the next line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedLine {
    /// 1-based.
    pub line_number: usize,
    pub reason: String,
}

/// What a load needs of a result line: the rest (headers, body) is skipped, not built.
#[derive(Deserialize)]
struct ResultProbe<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    fingerprint: Option<&'a str>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    at_ms: Option<u64>,
}

/// An intent or submitted record, and its line (compaction keeps records in journal order).
#[derive(Debug)]
struct Recorded<T> {
    line: u64,
    value: T,
    /// A submitted record's time, if it has one.
    at_ms: Option<u64>,
}

/// How old an answer may get: answers journalled longer ago than `max_age_ms` before `now_ms`
/// (both wall clock, ms since the epoch) are dropped at load, as if never journalled, and the
/// next compaction leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeLimit {
    pub now_ms: u64,
    pub max_age_ms: u64,
}

impl AgeLimit {
    /// The providers keep a batch's results about 30 days (OpenAI's batch files, Anthropic's
    /// results, Mistral's and Together's files): an answer older than that could not be fetched
    /// again either, so the journal keeps it no longer by default.
    pub const DEFAULT_MAX_AGE_DAYS: f64 = 30.0;
    pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    fn expired(&self, at_ms: u64) -> bool {
        self.now_ms.saturating_sub(at_ms) > self.max_age_ms
    }
}

/// What `batchling cache stats` shows: the journal as the last load folded it.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    /// Lines read, blank and damaged ones included.
    pub lines: u64,
    /// Lines a compaction keeps.
    pub live_lines: u64,
    /// Answers kept (within the age limit, or without a time).
    pub answers: u64,
    /// Answers kept that have no time (journalled before batchling recorded one): never aged out.
    pub undated_answers: u64,
    /// Answers past the age limit: dropped at load, left out by the next compaction.
    pub expired_answers: u64,
    /// Provider batches a re-run would resume (submitted, not yet answered).
    pub live_batches: u64,
    /// Creates whose outcome is unknown (a re-run looks their batch up by its tag).
    pub intents: u64,
    pub damaged_lines: u64,
    /// The oldest and newest kept answer's time (ms since the epoch), among those that have one.
    pub oldest_answer_ms: Option<u64>,
    pub newest_answer_ms: Option<u64>,
    /// The age limit applied, in ms; `None` without one.
    pub max_age_ms: Option<u64>,
}

/// One line of a compacted journal: a record the core rewrote (an intent or a submitted batch
/// with only its live fingerprints), or a result line the host copies from its place.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CompactLine {
    Write(String),
    Copy(AnswerPlace),
}

/// The journal, folded: what is known about each fingerprint. Each fingerprint is in at most
/// one map: an answer is final, a submitted batch supersedes its intent.
#[derive(Debug)]
pub struct Cache {
    /// Where each answer's line is; `None` when the store keeps no answers.
    results: HashMap<Fingerprint, AnswerPlace>,
    /// fingerprint -> (place, batch id); one shared copy per record, not per fingerprint.
    submitted: HashMap<Fingerprint, Arc<Recorded<(BatchPlace, String)>>>,
    /// fingerprint -> place of a create whose outcome is unknown
    intents: HashMap<Fingerprint, Arc<Recorded<BatchPlace>>>,
    /// fingerprint -> batch id, for requests of a batch the user cancelled that have no answer.
    cancelled: HashMap<Fingerprint, Arc<Recorded<String>>>,
    /// fingerprint -> (batch id, line came back) of a request sent to the normal endpoint,
    /// folded over its records (the line: the last one's).
    sync_fallbacks: HashMap<Fingerprint, Recorded<(Option<String>, bool)>>,
    /// Whether answers are indexed: a store that drops result lines (the job runner's state
    /// file) has none to read back, so the cache keeps nothing for them.
    keep_answers: bool,
    /// The next line's place: the journal's line count and byte length.
    end_line: u64,
    end_offset: u64,
    /// The places of a compacted journal, until the host says it is in place.
    compacted: Option<(HashMap<Fingerprint, AnswerPlace>, u64, u64)>,
    /// Answers older than this are dropped at load.
    age_limit: Option<AgeLimit>,
    /// Per kept answer, its time (answers without one are not in it).
    answered_at: HashMap<Fingerprint, u64>,
    /// Answers dropped for their age since the last compaction, and damaged lines.
    expired: u64,
    damaged: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(true)
    }
}

impl Cache {
    pub fn new(keep_answers: bool) -> Self {
        Cache {
            results: HashMap::new(),
            submitted: HashMap::new(),
            intents: HashMap::new(),
            cancelled: HashMap::new(),
            sync_fallbacks: HashMap::new(),
            keep_answers,
            end_line: 0,
            end_offset: 0,
            compacted: None,
            age_limit: None,
            answered_at: HashMap::new(),
            expired: 0,
            damaged: 0,
        }
    }

    /// Drop answers past `limit` from the lines loaded from now on (set before the load).
    pub fn with_age_limit(mut self, limit: Option<AgeLimit>) -> Self {
        self.age_limit = limit;
        self
    }

    /// Fold a chunk of journal lines, in order: whole lines, each ended by `\n` but a last
    /// unterminated one (the host ends it before appending). Damaged lines (torn writes after a
    /// crash, manual edits) are reported and skipped; every good line still counts.
    pub fn load(&mut self, text: &str) -> Vec<DamagedLine> {
        let mut damaged = Vec::new();
        for line in text.split_terminator('\n') {
            let place = self.next_place(line);
            if line.trim().is_empty() {
                continue;
            }
            if let Err(reason) = self.load_line(line, place) {
                self.damaged += 1;
                damaged.push(DamagedLine {
                    line_number: place.line as usize + 1,
                    reason,
                });
            }
        }
        damaged
    }

    /// The place of the line that comes next, which it takes.
    fn next_place(&mut self, line: &str) -> AnswerPlace {
        let place = AnswerPlace {
            line: self.end_line,
            offset: self.end_offset,
            length: line.len() as u32,
        };
        self.end_line += 1;
        self.end_offset += line.len() as u64 + 1;
        place
    }

    fn load_line(&mut self, line: &str, place: AnswerPlace) -> Result<(), String> {
        let probe: ResultProbe = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if probe.kind != "result" {
            let record: CacheRecord = serde_json::from_str(line).map_err(|e| e.to_string())?;
            return self.apply_at(&record, place.line);
        }
        let (Some(fp), Some(_status)) = (probe.fingerprint, probe.status) else {
            return Err("a result line needs a fingerprint and a status".into());
        };
        let fp = parse_fingerprint(fp)?;
        self.answered(fp, place, probe.at_ms);
        Ok(())
    }

    /// A record the core emits: it is appended at the journal's end.
    pub fn append(&mut self, record: &CacheRecord, line: &str) {
        let place = self.next_place(line);
        // The core's own records always name valid fingerprints.
        let _ = self.apply_at(record, place.line);
        if let CacheRecord::Result {
            fingerprint, at_ms, ..
        } = record
        {
            if let Ok(fp) = parse_fingerprint(fingerprint) {
                self.answered(fp, place, *at_ms);
            }
        }
    }

    /// An answer came: it supersedes the batch (or intent) it was in. One past the age limit
    /// is not indexed: a re-run asks again, and compaction leaves its line out.
    fn answered(&mut self, fp: Fingerprint, place: AnswerPlace, at_ms: Option<u64>) {
        self.intents.remove(&fp);
        self.submitted.remove(&fp);
        self.cancelled.remove(&fp);
        let expired =
            matches!((self.age_limit, at_ms), (Some(limit), Some(at)) if limit.expired(at));
        if expired {
            self.results.remove(&fp);
            self.answered_at.remove(&fp);
            self.expired += 1;
            return;
        }
        if self.keep_answers {
            self.results.insert(fp, place);
            match at_ms {
                Some(at) => self.answered_at.insert(fp, at),
                None => self.answered_at.remove(&fp),
            };
        }
    }

    /// Fold an intent, submitted or released record (a result is indexed by its place).
    fn apply_at(&mut self, record: &CacheRecord, line: u64) -> Result<(), String> {
        match record {
            CacheRecord::Intent {
                place,
                fingerprints,
            } => {
                let fps = parse_all(fingerprints)?;
                let place = Arc::new(Recorded {
                    line,
                    value: place.clone(),
                    at_ms: None,
                });
                for fp in fps {
                    if !self.submitted.contains_key(&fp) && !self.results.contains_key(&fp) {
                        self.intents.insert(fp, Arc::clone(&place));
                    }
                }
            }
            CacheRecord::Submitted {
                place,
                batch_id,
                fingerprints,
                at_ms,
            } => {
                let fps = parse_all(fingerprints)?;
                let batch = Arc::new(Recorded {
                    line,
                    value: (place.clone(), batch_id.clone()),
                    at_ms: *at_ms,
                });
                for fp in fps {
                    self.intents.remove(&fp);
                    if !self.results.contains_key(&fp) {
                        self.submitted.insert(fp, Arc::clone(&batch));
                    }
                }
            }
            CacheRecord::Released { fingerprints } => {
                for fp in parse_all(fingerprints)? {
                    self.intents.remove(&fp);
                    self.submitted.remove(&fp);
                }
            }
            CacheRecord::Cancelled {
                batch_id,
                fingerprints,
            } => {
                let fps = parse_all(fingerprints)?;
                let batch = Arc::new(Recorded {
                    line,
                    value: batch_id.clone(),
                    at_ms: None,
                });
                for fp in fps {
                    if !self.results.contains_key(&fp) {
                        self.cancelled.insert(fp, Arc::clone(&batch));
                    }
                }
            }
            CacheRecord::SyncFallback {
                fingerprint,
                batch_id,
                line_came_back,
            } => {
                let fp = parse_fingerprint(fingerprint)?;
                let known = self.sync_fallbacks.entry(fp).or_insert(Recorded {
                    line,
                    value: (None, false),
                    at_ms: None,
                });
                known.line = line;
                known.value.0 = batch_id.clone().or(known.value.0.take());
                known.value.1 |= line_came_back;
            }
            CacheRecord::Result { .. } => {}
        }
        Ok(())
    }

    /// A journalled sync fallback of this fingerprint: (its batch id, whether that batch's line
    /// came back too).
    pub fn sync_fallback(&self, fingerprint: &Fingerprint) -> Option<&(Option<String>, bool)> {
        self.sync_fallbacks.get(fingerprint).map(|rec| &rec.value)
    }

    /// The sync fallbacks a fold still needs: those of a fingerprint with an answer (a re-run
    /// answered from it counts whether it was paid twice) or still in an intent or a batch. The
    /// others are read by nothing.
    fn live_sync_fallbacks(
        &self,
    ) -> impl Iterator<Item = (&Fingerprint, &Recorded<(Option<String>, bool)>)> {
        self.sync_fallbacks.iter().filter(|(fp, _)| {
            self.results.contains_key(fp)
                || self.submitted.contains_key(fp)
                || self.intents.contains_key(fp)
        })
    }

    /// Where the answer for this fingerprint is, if the journal holds one.
    pub fn result(&self, fingerprint: &Fingerprint) -> Option<AnswerPlace> {
        self.results.get(fingerprint).copied()
    }

    pub fn submitted(&self, fingerprint: &Fingerprint) -> Option<&(BatchPlace, String)> {
        self.submitted.get(fingerprint).map(|batch| &batch.value)
    }

    /// When the batch this fingerprint was submitted in was accepted, if its record says.
    pub fn submitted_at(&self, fingerprint: &Fingerprint) -> Option<u64> {
        self.submitted
            .get(fingerprint)
            .and_then(|batch| batch.at_ms)
    }

    /// Whether the journal still points a request at this batch, submitted (by its id) or
    /// only intended (by its tag: a create whose outcome a run never learnt), and not answered.
    pub fn has_pending_in(&self, batch_id: &str, tag: &str) -> bool {
        self.submitted
            .values()
            .any(|batch| batch.value.1 == batch_id)
            || self.intents.values().any(|place| place.value.tag == tag)
    }

    pub fn intent(&self, fingerprint: &Fingerprint) -> Option<&BatchPlace> {
        self.intents.get(fingerprint).map(|place| &place.value)
    }

    /// The batch the user cancelled this request with, while it has no answer.
    pub fn cancelled(&self, fingerprint: &Fingerprint) -> Option<&str> {
        self.cancelled
            .get(fingerprint)
            .map(|batch| batch.value.as_str())
    }

    pub fn forget_intent(&mut self, fingerprint: &str) {
        if let Some(fp) = Fingerprint::parse(fingerprint) {
            self.intents.remove(&fp);
        }
    }

    /// The lines a fold of the journal still needs: one per answer, one per intent or
    /// submitted record that some fingerprint still points at, one per live sync fallback.
    pub fn live_lines(&self) -> u64 {
        let intents: HashSet<*const Recorded<BatchPlace>> =
            self.intents.values().map(Arc::as_ptr).collect();
        let submitted: HashSet<*const Recorded<(BatchPlace, String)>> =
            self.submitted.values().map(Arc::as_ptr).collect();
        let cancelled: HashSet<*const Recorded<String>> =
            self.cancelled.values().map(Arc::as_ptr).collect();
        let fallbacks = self.live_sync_fallbacks().count();
        (self.results.len() + intents.len() + submitted.len() + cancelled.len() + fallbacks) as u64
    }

    /// The journal's lines (blank and damaged ones included).
    pub fn journal_lines(&self) -> u64 {
        self.end_line
    }

    /// Whether the journal is worth rewriting: more than half its lines are superseded
    /// (intents by their batch, batches by their answers, released, damaged).
    /// Answers past the age limit are dropped whenever there are any.
    pub fn should_compact(&self) -> bool {
        self.end_line > 2 * self.live_lines() || self.expired > 0
    }

    /// The journal as loaded (and appended to) so far.
    pub fn stats(&self) -> CacheStats {
        let batches: HashSet<*const Recorded<(BatchPlace, String)>> =
            self.submitted.values().map(Arc::as_ptr).collect();
        let intents: HashSet<*const Recorded<BatchPlace>> =
            self.intents.values().map(Arc::as_ptr).collect();
        CacheStats {
            lines: self.end_line,
            live_lines: self.live_lines(),
            answers: self.results.len() as u64,
            undated_answers: (self.results.len() - self.answered_at.len()) as u64,
            expired_answers: self.expired,
            live_batches: batches.len() as u64,
            intents: intents.len() as u64,
            damaged_lines: self.damaged,
            oldest_answer_ms: self.answered_at.values().min().copied(),
            newest_answer_ms: self.answered_at.values().max().copied(),
            max_age_ms: self.age_limit.map(|limit| limit.max_age_ms),
        }
    }

    /// The journal rewritten with only what is live, in journal order (a fold of it gives this
    /// cache back). The new places are kept until [`Cache::compacted`]: until the host has
    /// replaced its journal with these lines, the old places stay right.
    pub fn compaction(&mut self) -> Vec<CompactLine> {
        // (journal line, what to write)
        let mut live: Vec<(u64, CompactLine, Option<Fingerprint>)> = Vec::new();
        let mut intents: HashMap<
            *const Recorded<BatchPlace>,
            (&Recorded<BatchPlace>, Vec<String>),
        > = HashMap::new();
        for (fp, rec) in &self.intents {
            intents
                .entry(Arc::as_ptr(rec))
                .or_insert_with(|| (&**rec, Vec::new()))
                .1
                .push(fp.to_string());
        }
        for (rec, mut fingerprints) in intents.into_values() {
            fingerprints.sort();
            let line = CacheRecord::Intent {
                place: rec.value.clone(),
                fingerprints,
            }
            .to_line();
            live.push((rec.line, CompactLine::Write(line), None));
        }
        type Batch = Recorded<(BatchPlace, String)>;
        let mut batches: HashMap<*const Batch, (&Batch, Vec<String>)> = HashMap::new();
        for (fp, rec) in &self.submitted {
            batches
                .entry(Arc::as_ptr(rec))
                .or_insert_with(|| (&**rec, Vec::new()))
                .1
                .push(fp.to_string());
        }
        for (rec, mut fingerprints) in batches.into_values() {
            fingerprints.sort();
            let line = CacheRecord::Submitted {
                place: rec.value.0.clone(),
                batch_id: rec.value.1.clone(),
                fingerprints,
                at_ms: rec.at_ms,
            }
            .to_line();
            live.push((rec.line, CompactLine::Write(line), None));
        }
        let mut cancels: HashMap<*const Recorded<String>, (&Recorded<String>, Vec<String>)> =
            HashMap::new();
        for (fp, rec) in &self.cancelled {
            cancels
                .entry(Arc::as_ptr(rec))
                .or_insert_with(|| (&**rec, Vec::new()))
                .1
                .push(fp.to_string());
        }
        for (rec, mut fingerprints) in cancels.into_values() {
            fingerprints.sort();
            let line = CacheRecord::Cancelled {
                batch_id: rec.value.clone(),
                fingerprints,
            }
            .to_line();
            live.push((rec.line, CompactLine::Write(line), None));
        }
        for (fp, rec) in self.live_sync_fallbacks() {
            let line = CacheRecord::SyncFallback {
                fingerprint: fp.to_string(),
                batch_id: rec.value.0.clone(),
                line_came_back: rec.value.1,
            }
            .to_line();
            live.push((rec.line, CompactLine::Write(line), None));
        }
        for (fp, place) in &self.results {
            live.push((place.line, CompactLine::Copy(*place), Some(*fp)));
        }
        live.sort_by_key(|(line, ..)| *line);
        let (mut end_line, mut end_offset) = (0u64, 0u64);
        let mut results = HashMap::with_capacity(self.results.len());
        let mut lines = Vec::with_capacity(live.len());
        for (_, line, fp) in live {
            let length = match &line {
                CompactLine::Write(text) => text.len() as u32,
                CompactLine::Copy(place) => place.length,
            };
            if let Some(fp) = fp {
                let place = AnswerPlace {
                    line: end_line,
                    offset: end_offset,
                    length,
                };
                results.insert(fp, place);
            }
            end_line += 1;
            end_offset += length as u64 + 1;
            lines.push(line);
        }
        self.compacted = Some((results, end_line, end_offset));
        lines
    }

    /// The host replaced its journal with the lines [`Cache::compaction`] gave: answers are
    /// read from their new places from now on.
    pub fn compacted(&mut self) -> bool {
        let Some((results, end_line, end_offset)) = self.compacted.take() else {
            return false;
        };
        self.results = results;
        self.end_line = end_line;
        self.end_offset = end_offset;
        self.expired = 0;
        self.damaged = 0;
        true
    }
}

fn parse_fingerprint(text: &str) -> Result<Fingerprint, String> {
    Fingerprint::parse(text).ok_or_else(|| format!("fingerprint {text:?} is not 64 hex digits"))
}

fn parse_all(fingerprints: &[String]) -> Result<Vec<Fingerprint>, String> {
    fingerprints
        .iter()
        .map(|fp| parse_fingerprint(fp))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(body: serde_json::Value, key: &str) -> Route {
        Route {
            provider: ProviderId::OpenAi,
            endpoint: "/v1/chat/completions".into(),
            model: "gpt-4o-mini".into(),
            base_url: "https://api.openai.com/v1".into(),
            forward_headers: vec![("authorization".into(), format!("Bearer {key}"))],
            credential_fingerprint: hex(&Sha256::digest(key.as_bytes())),
            body,
            settings: Default::default(),
        }
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_values_or_credentials() {
        let a = route(serde_json::json!({"model": "m", "temperature": 0.5}), "k1");
        let b = route(serde_json::json!({"temperature": 0.5, "model": "m"}), "k1");
        let c = route(serde_json::json!({"model": "m", "temperature": 0.6}), "k1");
        let d = route(serde_json::json!({"model": "m", "temperature": 0.5}), "k2");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_ne!(fingerprint(&a), fingerprint(&d));
        assert!(!fingerprint(&a).to_string().contains("k1"));
    }

    #[test]
    fn custom_ids_fit_every_provider() {
        let id = custom_id(&fingerprint(&route(serde_json::json!({}), "k")).to_string());
        assert!(id.len() <= 64);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn fingerprints_are_32_bytes_shown_and_read_as_hex() {
        let fp = fingerprint(&route(serde_json::json!({"a": 1}), "k"));
        let text = fp.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(Fingerprint::parse(&text), Some(fp));
        assert_eq!(Fingerprint::parse(&text.to_uppercase()), Some(fp));
        assert_eq!(Fingerprint::parse(&text[..63]), None);
        assert_eq!(Fingerprint::parse(&format!("{}g", &text[..63])), None);
    }

    fn fp(n: u8) -> String {
        Fingerprint([n; 32]).to_string()
    }

    fn place() -> BatchPlace {
        BatchPlace {
            provider: ProviderId::OpenAi,
            base_url: "b".into(),
            endpoint: "e".into(),
            model: "m".into(),
            tag: "t".into(),
            uploaded_file: None,
        }
    }

    fn intent(fps: &[u8]) -> String {
        CacheRecord::Intent {
            place: place(),
            fingerprints: fps.iter().map(|n| fp(*n)).collect(),
        }
        .to_line()
    }

    fn submitted(batch: &str, fps: &[u8]) -> String {
        CacheRecord::Submitted {
            place: place(),
            batch_id: batch.into(),
            fingerprints: fps.iter().map(|n| fp(*n)).collect(),
            at_ms: None,
        }
        .to_line()
    }

    fn result(n: u8, body: &str) -> String {
        CacheRecord::Result {
            fingerprint: fp(n),
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            at_ms: None,
        }
        .to_line()
    }

    fn released(fps: &[u8]) -> String {
        CacheRecord::Released {
            fingerprints: fps.iter().map(|n| fp(*n)).collect(),
        }
        .to_line()
    }

    fn journal(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    fn key(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    /// The line at a place, as a file host reads it.
    fn read(text: &str, place: AnswerPlace) -> &str {
        &text[place.offset as usize..place.offset as usize + place.length as usize]
    }

    #[test]
    fn damaged_lines_are_reported_and_the_rest_kept() {
        let good = result(2, "{}");
        let torn = &good[..good.len() / 2];
        let text = journal(&[
            submitted("batch_1", &[1, 2]),
            "not json".into(),
            torn.into(),
            good.clone(),
        ]);
        let mut cache = Cache::default();
        let damaged = cache.load(&text);
        assert_eq!(
            damaged.iter().map(|d| d.line_number).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(cache.submitted(&key(1)).unwrap().1, "batch_1");
        assert!(cache.submitted(&key(2)).is_none(), "a result supersedes");
        assert_eq!(read(&text, cache.result(&key(2)).unwrap()), good);
    }

    #[test]
    fn a_result_is_indexed_by_its_place_in_chunks_and_after_appends() {
        let lines = [
            intent(&[1, 2, 3]),
            submitted("batch_1", &[1, 2, 3]),
            result(1, r#"{"answer":"é one"}"#),
            String::new(),
            result(2, "{\"answer\":\"two\\n\"}"),
        ];
        let text = journal(&lines);
        // Loaded in two chunks, split between lines as a streaming host does.
        let split = text.find(&lines[2]).unwrap();
        let mut cache = Cache::default();
        assert!(cache.load(&text[..split]).is_empty());
        assert!(cache.load(&text[split..]).is_empty());
        let one = cache.result(&key(1)).unwrap();
        assert_eq!((one.line, read(&text, one)), (2, lines[2].as_str()));
        let two = cache.result(&key(2)).unwrap();
        assert_eq!((two.line, read(&text, two)), (4, lines[4].as_str()));
        assert_eq!(cache.submitted(&key(3)).unwrap().1, "batch_1");
        assert!(cache.result(&key(3)).is_none());

        // The core's own appends continue where the journal ends.
        let three = result(3, "{}");
        let record: CacheRecord = serde_json::from_str(&three).unwrap();
        cache.append(&record, &three);
        let appended = format!("{text}{three}\n");
        let place = cache.result(&key(3)).unwrap();
        assert_eq!((place.line, read(&appended, place)), (5, three.as_str()));
        assert!(cache.submitted(&key(3)).is_none());
    }

    #[test]
    fn a_torn_last_line_without_a_newline_still_takes_its_place() {
        let good = result(1, "{}");
        let text = format!("{good}\n{}", &good[..10]);
        let mut cache = Cache::default();
        let damaged = cache.load(&text);
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].line_number, 2);
        // The host ends the torn line with a newline before it appends.
        let two = result(2, "{}");
        cache.append(&serde_json::from_str(&two).unwrap(), &two);
        let ended = format!("{text}\n{two}\n");
        assert_eq!(read(&ended, cache.result(&key(2)).unwrap()), two);
        assert_eq!(read(&ended, cache.result(&key(1)).unwrap()), good);
    }

    #[test]
    fn a_store_without_answers_indexes_none_but_still_folds_batches() {
        let text = journal(&[submitted("batch_1", &[1, 2]), result(1, "{}")]);
        let mut cache = Cache::new(false);
        assert!(cache.load(&text).is_empty());
        assert!(cache.result(&key(1)).is_none());
        assert!(cache.submitted(&key(1)).is_none(), "its answer came");
        assert_eq!(cache.submitted(&key(2)).unwrap().1, "batch_1");
    }

    #[test]
    fn a_result_line_with_a_bad_fingerprint_is_damaged() {
        let line = r#"{"type":"result","fingerprint":"f1","status":200,"headers":[],"body":"{}"}"#;
        let mut cache = Cache::default();
        assert_eq!(cache.load(line).len(), 1);
        let no_status = format!(
            r#"{{"type":"result","fingerprint":"{}","body":"{{}}"}}"#,
            fp(1)
        );
        assert_eq!(cache.load(&no_status).len(), 1);
        assert!(cache.result(&key(1)).is_none());
    }

    /// The compacted journal as a file host writes it.
    fn write_compacted(old: &str, lines: &[CompactLine]) -> String {
        lines
            .iter()
            .map(|line| match line {
                CompactLine::Write(text) => format!("{text}\n"),
                CompactLine::Copy(place) => format!("{}\n", read(old, *place)),
            })
            .collect()
    }

    #[test]
    fn compaction_keeps_every_answer_and_live_batch_and_drops_the_superseded() {
        let text = journal(&[
            intent(&[1, 2, 3]),
            submitted("batch_1", &[1, 2, 3]),
            result(1, "{\"n\":1}"),
            result(2, "{\"n\":2}"),
            intent(&[4, 5]),
            intent(&[6, 7]),
            submitted("batch_2", &[6, 7]),
            released(&[7]),
            "torn{".into(),
            result(6, "{\"n\":6}"),
            intent(&[8]),
            submitted("batch_3", &[8]),
            result(8, "{\"n\":8}"),
        ]);
        let mut cache = Cache::default();
        assert_eq!(cache.load(&text).len(), 1);
        // Live: 4 answers (1, 2, 6, 8), batch_1 (for 3), the intent of 4 and 5.
        assert_eq!(cache.live_lines(), 6);
        assert_eq!(cache.journal_lines(), 13);
        assert!(cache.should_compact());
        let lines = cache.compaction();
        assert_eq!(lines.len(), 6);
        // Until the host says the new journal is in place, the old places hold.
        let old_place = cache.result(&key(6)).unwrap();
        assert_eq!(read(&text, old_place), result(6, "{\"n\":6}"));
        let new = write_compacted(&text, &lines);
        assert!(cache.compacted());
        assert!(!cache.compacted(), "once");

        // Every answer is read from its new place.
        for n in [1, 2, 6, 8] {
            let place = cache.result(&key(n)).unwrap();
            assert_eq!(read(&new, place), result(n, &format!("{{\"n\":{n}}}")));
        }
        // A fold of the new journal gives the same cache.
        let mut again = Cache::default();
        assert!(again.load(&new).is_empty());
        for n in 1..=8 {
            assert_eq!(again.result(&key(n)), cache.result(&key(n)), "result {n}");
            assert_eq!(
                again.submitted(&key(n)),
                cache.submitted(&key(n)),
                "submitted {n}"
            );
            assert_eq!(again.intent(&key(n)), cache.intent(&key(n)), "intent {n}");
        }
        assert_eq!(again.submitted(&key(3)).unwrap().1, "batch_1");
        assert!(again.intent(&key(4)).is_some() && again.intent(&key(5)).is_some());
        assert!(again.submitted(&key(7)).is_none() && again.intent(&key(7)).is_none());
        assert!(!again.should_compact(), "nothing left to drop");
        // The rewritten batch names only its live fingerprint.
        assert!(!new.contains(&submitted("batch_1", &[1, 2, 3])));
        assert!(new.contains(&submitted("batch_1", &[3])));

        // Appends go after the compacted journal.
        let nine = result(9, "{}");
        cache.append(&serde_json::from_str(&nine).unwrap(), &nine);
        let grown = format!("{new}{nine}\n");
        assert_eq!(read(&grown, cache.result(&key(9)).unwrap()), nine);
    }

    fn sync_fallback(n: u8, batch: Option<&str>, came_back: bool) -> String {
        CacheRecord::SyncFallback {
            fingerprint: fp(n),
            batch_id: batch.map(str::to_string),
            line_came_back: came_back,
        }
        .to_line()
    }

    #[test]
    fn compaction_folds_the_sync_fallbacks_still_read_and_drops_the_others() {
        let text = journal(&[
            intent(&[1, 2, 3]),
            submitted("batch_1", &[1, 2, 3]),
            sync_fallback(1, Some("batch_1"), false),
            result(1, "{}"),
            sync_fallback(1, Some("batch_1"), true),
            sync_fallback(2, Some("batch_1"), false),
            sync_fallback(4, None, false),
            result(3, "{}"),
            intent(&[5, 6]),
            released(&[5]),
            released(&[6]),
        ]);
        let mut cache = Cache::default();
        assert!(cache.load(&text).is_empty());
        // 1: answered, paid twice; 2: still in its batch; 4: neither answer nor batch.
        assert_eq!(cache.live_lines(), 2 + 1 + 2);
        assert!(cache.should_compact());
        let lines = cache.compaction();
        let new = write_compacted(&text, &lines);
        assert!(cache.compacted());
        assert!(new.contains(&sync_fallback(1, Some("batch_1"), true)));
        assert!(new.contains(&sync_fallback(2, Some("batch_1"), false)));
        assert!(!new.contains(&fp(4)), "read by nothing: dropped");
        let mut again = Cache::default();
        assert!(again.load(&new).is_empty());
        for n in 1..=4 {
            assert_eq!(
                again.sync_fallback(&key(n)),
                cache.sync_fallback(&key(n)).filter(|_| n != 4)
            );
        }
        assert_eq!(
            again.sync_fallback(&key(1)),
            Some(&(Some("batch_1".into()), true))
        );
        assert_eq!(again.submitted(&key(2)).unwrap().1, "batch_1");
        assert!(!again.should_compact());
    }

    #[test]
    fn a_journal_of_mostly_answers_is_not_compacted() {
        let mut lines = vec![intent(&[1, 2, 3]), submitted("b", &[1, 2, 3])];
        lines.extend((1..=3).map(|n| result(n, "{}")));
        let mut cache = Cache::default();
        assert!(cache.load(&journal(&lines)).is_empty());
        assert!(!cache.should_compact());
    }

    fn dated_result(n: u8, at_ms: Option<u64>) -> String {
        CacheRecord::Result {
            fingerprint: fp(n),
            status: 200,
            headers: vec![],
            body: format!("{{\"n\":{n}}}"),
            at_ms,
        }
        .to_line()
    }

    #[test]
    fn answers_past_the_age_limit_are_dropped_and_undated_ones_kept() {
        const DAY: u64 = AgeLimit::DAY_MS;
        let now = 100 * DAY;
        let text = journal(&[
            intent(&[1, 2, 3, 4]),
            submitted("batch_1", &[1, 2, 3, 4]),
            dated_result(1, Some(now - 31 * DAY)),
            dated_result(2, Some(now - 29 * DAY)),
            dated_result(3, None),
            dated_result(4, Some(now - 40 * DAY)),
        ]);
        let limit = AgeLimit {
            now_ms: now,
            max_age_ms: 30 * DAY,
        };
        let mut cache = Cache::default().with_age_limit(Some(limit));
        assert!(cache.load(&text).is_empty());
        assert!(cache.result(&key(1)).is_none(), "31 days old");
        assert!(cache.result(&key(2)).is_some(), "29 days old");
        assert!(cache.result(&key(3)).is_some(), "no time: kept");
        assert!(cache.result(&key(4)).is_none());
        // An expired answer still ends its batch: a re-run asks anew, it resumes nothing.
        assert!(cache.submitted(&key(1)).is_none() && cache.intent(&key(1)).is_none());
        let stats = cache.stats();
        assert_eq!(
            stats,
            CacheStats {
                lines: 6,
                live_lines: 2,
                answers: 2,
                undated_answers: 1,
                expired_answers: 2,
                live_batches: 0,
                intents: 0,
                damaged_lines: 0,
                oldest_answer_ms: Some(now - 29 * DAY),
                newest_answer_ms: Some(now - 29 * DAY),
                max_age_ms: Some(30 * DAY),
            }
        );
        // One expired answer is reason enough to rewrite, and the rewrite leaves it out.
        let mut few = Cache::default().with_age_limit(Some(limit));
        let lines = [
            dated_result(1, Some(now - 31 * DAY)),
            dated_result(2, Some(now)),
            dated_result(3, Some(now)),
            dated_result(5, Some(now)),
        ];
        assert!(few.load(&journal(&lines)).is_empty());
        assert!(few.should_compact());
        let text = journal(&lines);
        let new = write_compacted(&text, &few.compaction());
        assert!(few.compacted());
        assert!(!new.contains(&lines[0]) && new.contains(&lines[1]));
        assert_eq!(few.stats().expired_answers, 0, "gone from the journal");
        assert!(!few.should_compact());
        // Without a limit, every answer stays.
        let mut all = Cache::default();
        assert!(all.load(&journal(&lines)).is_empty());
        assert!(all.result(&key(1)).is_some() && !all.should_compact());
    }

    #[test]
    fn compaction_drops_old_answers_and_keeps_user_cancels_and_sync_fallbacks() {
        const DAY: u64 = AgeLimit::DAY_MS;
        let now = 100 * DAY;
        let cancelled = CacheRecord::Cancelled {
            batch_id: "batch_1".into(),
            fingerprints: vec![fp(2)],
        }
        .to_line();
        let text = journal(&[
            intent(&[1, 2, 3]),
            submitted("batch_1", &[1, 2, 3]),
            dated_result(1, Some(now - 40 * DAY)),
            cancelled.clone(),
            sync_fallback(3, Some("batch_1"), false),
            dated_result(3, Some(now - DAY)),
            sync_fallback(3, Some("batch_1"), true),
        ]);
        let limit = AgeLimit {
            now_ms: now,
            max_age_ms: 30 * DAY,
        };
        let mut cache = Cache::default().with_age_limit(Some(limit));
        assert!(cache.load(&text).is_empty());
        assert!(cache.result(&key(1)).is_none(), "40 days old");
        assert_eq!(cache.cancelled(&key(2)), Some("batch_1"));
        assert!(cache.should_compact(), "an expired answer");
        let new = write_compacted(&text, &cache.compaction());
        assert!(cache.compacted());
        assert!(!new.contains(&dated_result(1, Some(now - 40 * DAY))));
        assert!(new.contains(&cancelled));
        assert!(new.contains(&sync_fallback(3, Some("batch_1"), true)));
        let mut again = Cache::default().with_age_limit(Some(limit));
        assert!(again.load(&new).is_empty());
        assert!(again.result(&key(1)).is_none() && again.submitted(&key(1)).is_none());
        assert_eq!(again.cancelled(&key(2)), Some("batch_1"));
        assert!(again.result(&key(3)).is_some());
        assert_eq!(
            again.sync_fallback(&key(3)),
            Some(&(Some("batch_1".into()), true))
        );
        assert!(!again.should_compact());
    }

    #[test]
    fn a_batchs_time_survives_compaction_and_old_lines_without_one_load() {
        let line = CacheRecord::Submitted {
            place: place(),
            batch_id: "batch_9".into(),
            fingerprints: vec![fp(1), fp(2)],
            at_ms: Some(1234),
        }
        .to_line();
        let text = journal(&[line, result(1, "{}"), submitted("batch_8", &[3])]);
        let mut cache = Cache::default();
        assert!(cache.load(&text).is_empty());
        assert_eq!(cache.submitted_at(&key(2)), Some(1234));
        assert_eq!(cache.submitted_at(&key(3)), None, "written without a time");
        assert!(cache.has_pending_in("batch_9", "-") && cache.has_pending_in("batch_8", "-"));
        assert!(!cache.has_pending_in("batch_7", "-"));
        assert!(cache.load(&format!("{}\n", intent(&[4]))).is_empty());
        assert!(cache.has_pending_in("batch_7", "t"), "an intent of its tag");
        let new = write_compacted(&text, &cache.compaction());
        let mut again = Cache::default();
        assert!(again.load(&new).is_empty());
        assert_eq!(again.submitted_at(&key(2)), Some(1234));
    }

    #[test]
    fn records_hold_no_credentials() {
        let line = CacheRecord::Intent {
            place: BatchPlace {
                provider: ProviderId::Anthropic,
                base_url: "https://api.anthropic.com".into(),
                endpoint: "/v1/messages".into(),
                model: "claude".into(),
                tag: "batchling-1".into(),
                uploaded_file: None,
            },
            fingerprints: vec![fingerprint(&route(serde_json::json!({}), "sk-secret")).to_string()],
        }
        .to_line();
        assert!(!line.contains("sk-secret"));
    }

    #[test]
    fn an_intent_line_without_an_uploaded_file_loads_and_one_with_it_round_trips() {
        // Journals written before the field existed have no `uploaded_file`.
        let old = format!(
            r#"{{"type":"intent","place":{{"provider":"together","base_url":"b","endpoint":"e","model":"m","tag":"t"}},"fingerprints":["{}"]}}"#,
            fp(1)
        );
        let mut cache = Cache::default();
        assert!(cache.load(&old).is_empty());
        assert_eq!(cache.intent(&key(1)).unwrap().uploaded_file, None);
        let mut place = cache.intent(&key(1)).unwrap().clone();
        place.uploaded_file = Some("file-9".into());
        let line = CacheRecord::Intent {
            place,
            fingerprints: vec![fp(1)],
        }
        .to_line();
        assert!(!old.contains("uploaded_file") && line.contains(r#""uploaded_file":"file-9""#));
        assert!(cache.load(&format!("\n{line}")).is_empty());
        let later = cache.intent(&key(1)).unwrap();
        assert_eq!(
            later.uploaded_file.as_deref(),
            Some("file-9"),
            "the later intent wins"
        );
    }
}
