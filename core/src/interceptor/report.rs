//! The dry-run / close report: per queue, requests, batches, cache hits and estimated cost.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::pricing;
use crate::providers::{ProviderId, Route};

/// One row of the dry-run / close report.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueReport {
    pub provider: ProviderId,
    pub endpoint: String,
    pub model: String,
    pub requests: u64,
    pub batches: u64,
    pub cache_hits: u64,
    /// Estimated from the request bodies (input ≈ JSON chars / 4, output = the max tokens asked
    /// for); `None` when the model's price is unknown.
    pub estimated_sync_usd: Option<f64>,
    pub estimated_batch_usd: Option<f64>,
    /// What the answers received so far cost, from the usage each reported, at the batch price
    /// (prompt-cache reads and writes, cached input and long-context tiers at their rates);
    /// `None` before any priced answer. The estimate is an upper bound of it.
    pub actual_batch_usd: Option<f64>,
    /// The answers `actual_batch_usd` covers.
    pub answers_costed: u64,
    pub price_note: String,
    /// Requests waiting for headroom under their queue's enqueued-token limit now (a provider's
    /// refusal, or `maxEnqueuedTokens`); in a dry run, the requests that would have waited under
    /// `maxEnqueuedTokens`.
    pub waiting_for_headroom: u64,
    /// Requests sent to the normal endpoint after (or, too close, instead of) waiting for a
    /// batch (`deadlineMs`), and their estimated cost at sync prices (`None`: unknown price).
    pub sync_fallbacks: u64,
    pub sync_fallback_usd: Option<f64>,
    /// Requests paid twice: sent sync while in a batch whose line for them then came back
    /// (this run's, and journalled ones answered from the cache).
    pub paid_twice: u64,
    /// Requests sent sync while in a batch that has not ended yet (or, from the journal, whose
    /// end was not seen): they may still be paid twice.
    pub maybe_paid_twice: u64,
    /// Provider-side files (uploaded inputs, output and error files) deleted once their
    /// batch's results were journalled, and deletes that failed (each also a warning).
    pub files_deleted: u64,
    pub file_deletes_failed: u64,
}

/// The rows, one per (provider, endpoint, model), in that order.
#[derive(Debug, Default)]
pub(super) struct Report {
    rows: BTreeMap<(ProviderId, String, String), QueueReport>,
}

impl Report {
    /// A request arrived for `route`: count it and add its estimated cost.
    pub(super) fn count_request(&mut self, route: &Route, prices: &pricing::PriceOverrides) {
        let row = self.row(route);
        row.requests += 1;
        let rates = pricing::rates(route.provider, &route.model, prices);
        let estimate = pricing::estimate_with(rates, &route.model, &route.body);
        match (estimate.sync_usd, estimate.batch_usd) {
            (Some(sync), Some(batch)) => {
                row.estimated_sync_usd = Some(row.estimated_sync_usd.unwrap_or(0.0) + sync);
                row.estimated_batch_usd = Some(row.estimated_batch_usd.unwrap_or(0.0) + batch);
            }
            _ => row.price_note = "unknown price".into(),
        }
    }

    /// A batch's answer for `route` arrived: add what its reported usage cost.
    pub(super) fn count_answer(
        &mut self,
        route: &Route,
        body: &str,
        prices: &pricing::PriceOverrides,
    ) {
        let Some(usd) = answer_cost(route.provider, &route.model, body, prices) else {
            return;
        };
        let row = self.row(route);
        row.actual_batch_usd = Some(row.actual_batch_usd.unwrap_or(0.0) + usd);
        row.answers_costed += 1;
    }

    pub(super) fn count_cache_hit(&mut self, route: &Route) {
        self.row(route).cache_hits += 1;
    }

    pub(super) fn count_batch(&mut self, route: &Route) {
        self.row(route).batches += 1;
    }

    /// A provider file of `route`'s batch was deleted (or its delete failed).
    pub(super) fn count_file_delete(&mut self, route: &Route, deleted: bool) {
        let row = self.row(route);
        if deleted {
            row.files_deleted += 1;
        } else {
            row.file_deletes_failed += 1;
        }
    }

    /// `requests` of `route` wait (or, in a dry run, would wait) for headroom.
    pub(super) fn count_headroom_wait(&mut self, route: &Route, requests: u64) {
        self.row(route).waiting_for_headroom += requests;
    }

    /// A request went to the normal endpoint, at `sync_usd` (`None`: unknown price).
    pub(super) fn count_sync_fallback(&mut self, route: &Route, sync_usd: Option<f64>) {
        let row = self.row(route);
        row.sync_fallbacks += 1;
        if let Some(usd) = sync_usd {
            row.sync_fallback_usd = Some(row.sync_fallback_usd.unwrap_or(0.0) + usd);
        } else {
            row.price_note = "unknown price".into();
        }
    }

    pub(super) fn count_paid_twice(&mut self, route: &Route, requests: u64) {
        self.row(route).paid_twice += requests;
    }

    pub(super) fn count_maybe_paid_twice(&mut self, route: &Route) {
        self.row(route).maybe_paid_twice += 1;
    }

    /// The rows with `waiting` (route, requests) added to their `waiting_for_headroom`, and
    /// `pending` (a sync fallback's route whose batch is still live) to `maybe_paid_twice`.
    pub(super) fn rows_with_waits<'a>(
        &self,
        waiting: impl Iterator<Item = (&'a Route, u64)>,
        pending: impl Iterator<Item = &'a Route>,
    ) -> Vec<QueueReport> {
        let mut rows = self.rows.clone();
        let key = |route: &Route| (route.provider, route.endpoint.clone(), route.model.clone());
        for (route, requests) in waiting {
            if let Some(row) = rows.get_mut(&key(route)) {
                row.waiting_for_headroom += requests;
            }
        }
        for route in pending {
            if let Some(row) = rows.get_mut(&key(route)) {
                row.maybe_paid_twice += 1;
            }
        }
        rows.into_values().collect()
    }

    fn row(&mut self, route: &Route) -> &mut QueueReport {
        self.rows
            .entry((route.provider, route.endpoint.clone(), route.model.clone()))
            .or_insert_with(|| QueueReport {
                provider: route.provider,
                endpoint: route.endpoint.clone(),
                model: route.model.clone(),
                requests: 0,
                batches: 0,
                cache_hits: 0,
                estimated_sync_usd: None,
                estimated_batch_usd: None,
                actual_batch_usd: None,
                answers_costed: 0,
                price_note: String::new(),
                waiting_for_headroom: 0,
                sync_fallbacks: 0,
                sync_fallback_usd: None,
                paid_twice: 0,
                maybe_paid_twice: 0,
                files_deleted: 0,
                file_deletes_failed: 0,
            })
    }
}

/// What a batch answer (a 2xx body) of `model` cost at the batch price, from the usage it
/// reports; `None` when the model's price is unknown or the body reports no usage. The close
/// report's `actual_batch_usd` and `batchling batches`' cost so far both add these up.
pub(crate) fn answer_cost(
    provider: ProviderId,
    model: &str,
    body: &str,
    prices: &pricing::PriceOverrides,
) -> Option<f64> {
    let rates = pricing::rates(provider, model, prices)?;
    let usage = reported_usage(provider, body)?;
    Some(pricing::usage_cost(&rates, &usage))
}

/// The usage an answer body reports, read as the provider's job format reads it (the
/// OpenAI-compatible providers' chat answers as OpenAI's).
fn reported_usage(provider: ProviderId, body: &str) -> Option<pricing::Usage> {
    let format = provider
        .descriptor()
        .jobs
        .or(ProviderId::OpenAi.descriptor().jobs)?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    format.output(&v).usage()
}
