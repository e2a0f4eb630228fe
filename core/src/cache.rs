//! The persistent request cache: fingerprints, and the journal records that let a re-run resume
//! polling a batch instead of paying for it twice.
//!
//! The journal is append-only JSON lines; the host stores them (a file in Node, pluggable storage
//! elsewhere) and hands them back at start. Records never hold an API key or an auth header:
//! requests are identified by a SHA-256 fingerprint that covers the credential only through
//! [`Route::credential_fingerprint`], itself a hash.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::HttpResponse;
use crate::providers::common::hex;
use crate::providers::{ProviderId, Route};

/// Hex SHA-256 over everything that decides a request's answer: provider, base URL, endpoint,
/// model, the canonical body (keys sorted, so key order does not matter), and the credential
/// fingerprint (a hash; the key itself never enters).
pub fn fingerprint(route: &Route) -> String {
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
    hex(&hasher.finalize())
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
    },
    /// These requests' batch ended without running them (expired, cancelled, failed): a re-run
    /// submits them again instead of resuming that batch.
    Released { fingerprints: Vec<String> },
    /// The answer for one request, as its caller received it.
    Result {
        fingerprint: String,
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
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

/// The journal, folded: what is known about each fingerprint.
#[derive(Debug, Default)]
pub struct Cache {
    results: HashMap<String, HttpResponse>,
    /// fingerprint -> (place, batch id); one shared copy per record, not per fingerprint.
    submitted: HashMap<String, Arc<(BatchPlace, String)>>,
    /// fingerprint -> place of a create whose outcome is unknown
    intents: HashMap<String, Arc<BatchPlace>>,
}

impl Cache {
    /// Fold journal lines in order. Damaged lines (torn writes after a crash, manual edits) are
    /// reported and skipped; every good line still counts.
    pub fn load<'a>(&mut self, lines: impl IntoIterator<Item = &'a str>) -> Vec<DamagedLine> {
        let mut damaged = Vec::new();
        for (index, line) in lines.into_iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<CacheRecord>(line) {
                Ok(record) => self.apply_owned(record),
                Err(e) => damaged.push(DamagedLine {
                    line_number: index + 1,
                    reason: e.to_string(),
                }),
            }
        }
        damaged
    }

    /// [`Cache::apply`] of a record read from the journal: a result's body is moved, not copied.
    fn apply_owned(&mut self, record: CacheRecord) {
        match record {
            CacheRecord::Result {
                fingerprint,
                status,
                headers,
                body,
            } => {
                self.intents.remove(&fingerprint);
                self.submitted.remove(&fingerprint);
                let response = HttpResponse {
                    status,
                    headers,
                    body,
                };
                self.results.insert(fingerprint, response);
            }
            other => self.apply(&other),
        }
    }

    pub fn apply(&mut self, record: &CacheRecord) {
        match record {
            CacheRecord::Intent {
                place,
                fingerprints,
            } => {
                let place = Arc::new(place.clone());
                for fp in fingerprints {
                    if !self.submitted.contains_key(fp) && !self.results.contains_key(fp) {
                        self.intents.insert(fp.clone(), Arc::clone(&place));
                    }
                }
            }
            CacheRecord::Submitted {
                place,
                batch_id,
                fingerprints,
            } => {
                let batch = Arc::new((place.clone(), batch_id.clone()));
                for fp in fingerprints {
                    self.intents.remove(fp);
                    self.submitted.insert(fp.clone(), Arc::clone(&batch));
                }
            }
            CacheRecord::Released { fingerprints } => {
                for fp in fingerprints {
                    self.intents.remove(fp);
                    self.submitted.remove(fp);
                }
            }
            CacheRecord::Result {
                fingerprint,
                status,
                headers,
                body,
            } => {
                self.intents.remove(fingerprint);
                self.submitted.remove(fingerprint);
                self.results.insert(
                    fingerprint.clone(),
                    HttpResponse {
                        status: *status,
                        headers: headers.clone(),
                        body: body.clone(),
                    },
                );
            }
        }
    }

    pub fn result(&self, fingerprint: &str) -> Option<&HttpResponse> {
        self.results.get(fingerprint)
    }

    pub fn submitted(&self, fingerprint: &str) -> Option<&(BatchPlace, String)> {
        self.submitted.get(fingerprint).map(|batch| &**batch)
    }

    pub fn intent(&self, fingerprint: &str) -> Option<&BatchPlace> {
        self.intents.get(fingerprint).map(|place| &**place)
    }

    pub fn forget_intent(&mut self, fingerprint: &str) {
        self.intents.remove(fingerprint);
    }
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
        assert!(!fingerprint(&a).contains("k1"));
    }

    #[test]
    fn custom_ids_fit_every_provider() {
        let id = custom_id(&fingerprint(&route(serde_json::json!({}), "k")));
        assert!(id.len() <= 64);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn damaged_lines_are_reported_and_the_rest_kept() {
        let place = BatchPlace {
            provider: ProviderId::OpenAi,
            base_url: "b".into(),
            endpoint: "e".into(),
            model: "m".into(),
            tag: "t".into(),
            uploaded_file: None,
        };
        let submitted = CacheRecord::Submitted {
            place: place.clone(),
            batch_id: "batch_1".into(),
            fingerprints: vec!["f1".into(), "f2".into()],
        }
        .to_line();
        let result = CacheRecord::Result {
            fingerprint: "f2".into(),
            status: 200,
            headers: vec![],
            body: "{}".into(),
        }
        .to_line();
        let torn = &result[..result.len() / 2];
        let journal = [submitted.as_str(), "not json", torn, result.as_str()];
        let mut cache = Cache::default();
        let damaged = cache.load(journal);
        assert_eq!(
            damaged.iter().map(|d| d.line_number).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(cache.submitted("f1").unwrap().1, "batch_1");
        assert!(cache.submitted("f2").is_none(), "a result supersedes");
        assert_eq!(cache.result("f2").unwrap().status, 200);
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
            fingerprints: vec![fingerprint(&route(serde_json::json!({}), "sk-secret"))],
        }
        .to_line();
        assert!(!line.contains("sk-secret"));
    }

    #[test]
    fn an_intent_line_without_an_uploaded_file_loads_and_one_with_it_round_trips() {
        // Journals written before the field existed have no `uploaded_file`.
        let old = r#"{"type":"intent","place":{"provider":"together","base_url":"b","endpoint":"e","model":"m","tag":"t"},"fingerprints":["f1"]}"#;
        let mut cache = Cache::default();
        assert!(cache.load([old]).is_empty());
        assert_eq!(cache.intent("f1").unwrap().uploaded_file, None);
        let mut place = cache.intent("f1").unwrap().clone();
        place.uploaded_file = Some("file-9".into());
        let line = CacheRecord::Intent {
            place,
            fingerprints: vec!["f1".into()],
        }
        .to_line();
        assert!(!old.contains("uploaded_file") && line.contains(r#""uploaded_file":"file-9""#));
        assert!(cache.load([line.as_str()]).is_empty());
        let later = cache.intent("f1").unwrap();
        assert_eq!(
            later.uploaded_file.as_deref(),
            Some("file-9"),
            "the later intent wins"
        );
    }
}
