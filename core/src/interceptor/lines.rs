//! Lines that never came back: a batch that ends (completed, expired, cancelled, failed)
//! without a result for some of its requests.
//!
//! - The provider's own counts are checked first: when they say more lines ran than were read,
//!   the results are downloaded again (up to [`REDOWNLOADS`] more times), since a bug in
//!   downloading or paging looks exactly like a missing line and resubmitting such a line would
//!   pay for it twice. Lines the counts still cannot account for are not resubmitted.
//! - The requests that did not run go into a new batch, up to `line_attempts` batches in all;
//!   then their callers get `ERR_BATCHLING_LINES_NOT_RUN`, naming the batches. The job builder's
//!   lines that came back with a retryable error (429, 5xx, overloaded) are resubmitted the same
//!   way (a batchify caller's SDK retries those itself).
//! - Journal: the old batch's `Released` record comes before the new batch's intent, so a re-run
//!   after a crash in between neither resumes the old batch for them nor finds them in two
//!   batches: it submits them once, anew. Requests no one waits for any more (cancelled by their
//!   caller, or `close({ abort: true })`) are never resubmitted, nor are those of a batch the
//!   user cancelled (`batchling batches cancel` journals it: `CacheRecord::Cancelled`).

use std::collections::HashSet;

use crate::http::HttpResponse;

use super::io::{CallId, FailCode, LifecycleEvent};
use super::job::{JobId, JobState, Reading, REDOWNLOADS};
use super::Interceptor;

/// A synthetic answer for a line whose request did not run (an Anthropic `expired` or
/// `canceled` result, an OpenAI `batch_expired` error line): the adapters mark them so.
pub(super) fn not_run(response: &HttpResponse) -> bool {
    response.header("x-batchling-batch-id").is_some()
        && response
            .header("x-should-retry")
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// How the batch of a [`not_run`] line ended, by the line's status (see `EndKind::http_status`).
pub(super) fn not_run_state(response: &HttpResponse) -> &'static str {
    match response.status {
        504 => "expired",
        499 => "cancelled",
        _ => "failed",
    }
}

/// A line that ran into an error worth running again: rate limited, a server error, overloaded.
pub(super) fn retryable(response: &HttpResponse) -> bool {
    matches!(response.status, 408 | 429) || response.status >= 500
}

/// Result lines skipped while reading: unknown custom ids, and second lines for one.
#[derive(Debug, Default)]
pub(super) struct Skipped {
    pub(super) unknown: Vec<String>,
    pub(super) duplicate: Vec<String>,
}

impl Reading {
    /// Count `lines` read by `call` (`None`: inline with the poll, done at once).
    pub(super) fn count(&mut self, call: Option<CallId>, lines: usize) {
        match call {
            Some(call) => *self.call_lines.entry(call).or_default() += lines as u64,
            None => self.lines_read += lines as u64,
        }
    }

    /// A download call is done: its lines count for this attempt (a line for one of them in
    /// another file of the batch is a duplicate).
    pub(super) fn call_done(&mut self, call: CallId) {
        if let Some(ids) = self.in_call.remove(&call) {
            self.this_attempt.extend(ids);
        }
        self.lines_read += self.call_lines.remove(&call).unwrap_or(0);
    }

    /// A download call failed: it is made again from the start.
    pub(super) fn call_failed(&mut self, call: CallId) {
        self.in_call.remove(&call);
        self.call_lines.remove(&call);
    }

    /// Note that `call` (`None`: the poll's inline results) read a line for `custom_id`;
    /// `false` if this attempt already read one (a duplicate).
    pub(super) fn see(&mut self, call: Option<CallId>, custom_id: &str) -> bool {
        if self.this_attempt.contains(custom_id) {
            return false;
        }
        match call {
            Some(call) => self
                .in_call
                .entry(call)
                .or_default()
                .insert(custom_id.to_string()),
            None => self.this_attempt.insert(custom_id.to_string()),
        }
    }
}

/// At most this many custom ids are named in a warning.
const NAMED: usize = 5;

fn some_ids(ids: &[String]) -> String {
    let mut named = ids
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > NAMED {
        named.push_str(&format!(" and {} more", ids.len() - NAMED));
    }
    named
}

impl Interceptor {
    /// Whether a request's body stays with its entry while its batch runs, to be resubmitted.
    pub(super) fn keeps_bodies(&self) -> bool {
        !self.config.dry_run && self.config.resubmit && self.config.line_attempts > 1
    }

    pub(super) fn warn_skipped(&mut self, batch_id: &str, skipped: Skipped) {
        if !skipped.unknown.is_empty() {
            self.warn(format!(
                "batch {batch_id}: {} result line(s) with a custom id not in this batch were ignored ({})",
                skipped.unknown.len(),
                some_ids(&skipped.unknown)
            ));
        }
        if !skipped.duplicate.is_empty() {
            self.warn(format!(
                "batch {batch_id}: {} result line(s) came a second time and were ignored; the first was used ({})",
                skipped.duplicate.len(),
                some_ids(&skipped.duplicate)
            ));
        }
    }

    pub(super) fn download_call_done(&mut self, job_id: JobId, call: CallId) {
        if let Some(JobState::Downloading { reading, .. }) =
            self.jobs.get_mut(&job_id).map(|j| &mut j.state)
        {
            reading.call_done(call);
        }
    }

    /// Every results file is read: if the provider counts more lines that ran than were read,
    /// download them again (bounded); else the batch is done.
    pub(super) fn downloads_done(&mut self, now_ms: u64, job_id: JobId) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let JobState::Downloading {
            batch_id,
            downloads_left,
            reading,
            ..
        } = &mut job.state
        else {
            return debug_assert!(false, "downloads done outside Downloading");
        };
        reading.best_read = reading.best_read.max(reading.lines_read);
        let read = reading.best_read;
        if read >= reading.lines_ran
            || reading.redownloads_left == 0
            || reading.downloads.is_empty()
        {
            return self.finish_job(now_ms, job_id);
        }
        reading.redownloads_left -= 1;
        reading.this_attempt.clear();
        reading.in_call.clear();
        reading.call_lines.clear();
        reading.lines_read = 0;
        *downloads_left = reading.downloads.len();
        let downloads = reading.downloads.clone();
        let message = format!(
            "batch {batch_id}: the provider counts {} lines that ran, {read} were read; downloading its results again ({} of {REDOWNLOADS})",
            reading.lines_ran,
            REDOWNLOADS - reading.redownloads_left,
        );
        self.warn(message);
        for download in downloads {
            self.send_call(now_ms, job_id, super::job::Call::Download(download));
        }
    }

    /// Requests of batch `batch_id` (ended as `state`) that did not run: each with its line if
    /// it ran into a retryable error (job builder), `None` if it has no line or one saying it
    /// did not run. Resubmitted in a new batch while attempts are left; else their callers get
    /// the line, or `ERR_BATCHLING_LINES_NOT_RUN`. With resubmission off, `ended` answers them.
    pub(super) fn lines_not_run(
        &mut self,
        now_ms: u64,
        job_id: JobId,
        batch_id: &str,
        state: &str,
        lines: Vec<(String, Option<HttpResponse>)>,
        ended: HttpResponse,
    ) {
        // The old batch no longer holds them: a re-run submits them anew, never resumes it.
        self.persist_released(lines.iter().map(|(fp, _)| fp.clone()).collect());
        if !self.config.resubmit {
            for (fp, line) in lines {
                self.fleet_line_ended(now_ms, &fp, false);
                self.answer_entry(&fp, line.unwrap_or_else(|| ended.clone()), false);
            }
            return;
        }
        let mut again = Vec::new();
        for (fp, line) in lines {
            if self.entries.get(&fp).is_none_or(|e| e.waiters.is_empty()) {
                // No one waits for it any more (cancelled, closed): never resubmitted.
                self.fleet_line_ended(now_ms, &fp, false);
                self.entries.remove(&fp);
                self.not_run.remove(&fp);
                continue;
            }
            let user_cancelled = crate::cache::Fingerprint::parse(&fp)
                .is_some_and(|parsed| self.cache.cancelled(&parsed).is_some());
            if user_cancelled {
                // Its batch was cancelled by the user (`batchling batches cancel`): never
                // resubmitted; its callers get the batch's end (499 for a cancelled batch).
                self.not_run.remove(&fp);
                self.answer_entry(&fp, line.unwrap_or_else(|| ended.clone()), false);
                continue;
            }
            let batches = self.not_run.entry(fp.clone()).or_default();
            batches.push(batch_id.to_string());
            if batches.len() < self.config.line_attempts as usize {
                again.push(fp);
                continue;
            }
            let (tried, tried_ids) = (batches.len(), batches.join(", "));
            self.fleet_line_ended(now_ms, &fp, false);
            match line {
                Some(response) => self.answer_entry(&fp, response, true),
                None => {
                    let message = format!(
                        "not run: this request went into {tried} batches ({tried_ids}) and none ran it (the last ended {state}: {}); lineAttempts is {}",
                        crate::providers::describe_error(&ended),
                        self.config.line_attempts
                    );
                    self.fail_entries(&[fp], FailCode::LinesNotRun, &message);
                }
            }
        }
        if again.is_empty() {
            return;
        }
        self.event(LifecycleEvent::LinesResubmitted {
            job: job_id,
            batch_id: batch_id.to_string(),
            state: state.to_string(),
            requests: again.len(),
        });
        if self.in_fleet() {
            // The member clears each line pointer under its claim, then hands the request back
            // (`Enqueue`) for a new batch: no one resumes the ended batch for it again.
            for fp in again {
                self.fleet_line_ended(now_ms, &fp, true);
            }
            return;
        }
        self.start_jobs(now_ms, again);
    }

    /// Requests the provider's counts say may have run though no line for them was read:
    /// resubmitting could pay twice, so their callers get the batch's end, and the journal
    /// still points at the batch (a re-run reads its results again).
    pub(super) fn lines_unaccounted(
        &mut self,
        batch_id: &str,
        unaccounted: u64,
        fingerprints: Vec<String>,
        ended: HttpResponse,
    ) {
        if fingerprints.is_empty() {
            return;
        }
        self.warn(format!(
            "batch {batch_id}: the provider counts {unaccounted} more line(s) that ran than could be read, so its {} request(s) without a line are not resubmitted (they may have run)",
            fingerprints.len()
        ));
        // Not released: a re-run resumes the batch and reads its results again.
        let unique: HashSet<String> = fingerprints.into_iter().collect();
        for fp in unique {
            self.answer_entry(&fp, ended.clone(), false);
        }
    }
}
