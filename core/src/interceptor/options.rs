//! The engine's configuration, and the engine options the host passes as JSON (checked here,
//! named in every error). The options as users write them (`batchify({ retry: { … } })`) are
//! checked and turned into these by [`crate::host::options::interceptor_options`].

use serde::{Deserialize, Serialize};

use crate::catalog::pricing::{PriceOverride, PriceOverrides};
use crate::options::OptionError;
use crate::providers;

use super::Interceptor;

#[derive(Debug, Clone, PartialEq)]
pub struct InterceptorConfig {
    pub batch_size: usize,
    pub batch_window_ms: u64,
    pub poll_interval_ms: u64,
    pub dry_run: bool,
    /// Attempts per provider call (upload, create, poll, download) before its requests fail.
    pub call_attempts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub jitter_seed: u64,
    /// Provider batches allowed in flight at once; further cut batches wait in cut order.
    pub max_concurrent_batches: usize,
    /// Estimated batch-price spend allowed for batches this engine submits. A batch whose
    /// estimate would pass it is not submitted, nor is any batch after it: their requests fail
    /// with `ERR_BATCHLING_COST_LIMIT`. Batches already submitted finish.
    pub cost_limit_usd: Option<f64>,
    /// Batches a request may go through without running (missing from the results, or its
    /// batch expired or was cancelled first), counting the first, before its caller gets
    /// `ERR_BATCHLING_LINES_NOT_RUN`. The job builder's lines that came back with a retryable
    /// error (429, 5xx, overloaded) count the same way.
    pub line_attempts: u32,
    /// Whether such requests are resubmitted at all; `false`: their callers get the batch's
    /// end as an error response at once.
    pub resubmit: bool,
    /// Estimated input tokens allowed in flight at once per (provider, host, model,
    /// credential), as the providers' enqueued-token limits count them: a batch that would pass
    /// it waits until a batch of its queue ends; one above it alone is split.
    pub max_enqueued_tokens: Option<u64>,
    /// A request not answered this long after it arrived is sent to the provider's normal
    /// endpoint and answered from there (see `deadline`); per call, the header
    /// `x-batchling-deadline-ms` sets it.
    pub deadline_ms: Option<u64>,
    /// Sync fallbacks in flight at once; further ones wait for one to end.
    pub max_sync_fallbacks: usize,
    /// Where requests are looked up before recognition by path shape: the user's declared hosts,
    /// then the built-in ones (Groq, Azure, …).
    pub hosts: providers::HostTable,
    /// The user's prices by model id (`prices`), over the catalog's, for estimates, the cost
    /// limit and the reported cost.
    pub prices: PriceOverrides,
    /// How long journalled answers are kept (see [`crate::cache::AgeLimit`]); `None`: for ever.
    /// Applied only with a wall clock.
    pub cache_max_age_ms: Option<u64>,
    /// The wall clock (ms since the epoch) at the host's monotonic `now` (ms): the journal's
    /// times are wall-clock times, the engine's `now` is monotonic. `None`: records carry no time.
    pub wall_clock: Option<WallClock>,
    /// Delete a batch's provider-side files (uploaded input, output and error files) once its
    /// results are journalled (best effort: a failed delete is a warning).
    pub delete_provider_files: bool,
    /// Fleet mode: many processes share one store (Redis) through a [`crate::fleet::FleetMember`]
    /// that this engine owns; the store is then the journal (the file cache is off).
    pub fleet: Option<crate::fleet::FleetConfig>,
}

/// A wall-clock reading and the host's monotonic clock at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    pub wall_ms: u64,
    pub monotonic_ms: u64,
}

impl WallClock {
    /// The wall-clock time at the host's monotonic `now_ms`.
    pub fn at(&self, now_ms: u64) -> u64 {
        (self.wall_ms + now_ms).saturating_sub(self.monotonic_ms)
    }
}

impl Default for InterceptorConfig {
    fn default() -> Self {
        InterceptorConfig {
            batch_size: 100,
            batch_window_ms: 2_000,
            poll_interval_ms: 10_000,
            dry_run: false,
            call_attempts: 8,
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            jitter_seed: 0x5eed,
            max_concurrent_batches: usize::MAX,
            cost_limit_usd: None,
            line_attempts: 3,
            resubmit: true,
            max_enqueued_tokens: None,
            deadline_ms: None,
            max_sync_fallbacks: 8,
            hosts: providers::HostTable::builtin(),
            prices: PriceOverrides::new(),
            cache_max_age_ms: None,
            wall_clock: None,
            delete_provider_files: true,
            fleet: None,
        }
    }
}

impl InterceptorConfig {
    /// Every rule an option must meet, checked before an engine is built.
    pub(super) fn validate(&self) -> Result<(), OptionError> {
        let at_least_one = |option: &str| OptionError::new(option, "must be at least 1");
        if self.poll_interval_ms == 0 {
            return Err(at_least_one("pollIntervalMs"));
        }
        if self.max_concurrent_batches == 0 {
            return Err(at_least_one("maxConcurrent"));
        }
        if self
            .cost_limit_usd
            .is_some_and(|usd| !usd.is_finite() || usd < 0.0)
        {
            return Err(OptionError::new(
                "costLimit.usd",
                "must be a finite number >= 0",
            ));
        }
        if self.max_enqueued_tokens == Some(0) {
            return Err(at_least_one("maxEnqueuedTokens"));
        }
        if self.deadline_ms == Some(0) {
            return Err(at_least_one("deadlineMs"));
        }
        if self.max_sync_fallbacks == 0 {
            return Err(at_least_one("maxSyncFallbacks"));
        }
        for (model, price) in &self.prices {
            check_price(model, price)?;
        }
        if self.call_attempts == 0 {
            return Err(at_least_one("retry.attempts"));
        }
        if self.batch_size == 0 {
            return Err(at_least_one("batchSize"));
        }
        if self.line_attempts == 0 {
            return Err(at_least_one("lineAttempts"));
        }
        if let Some(fleet) = &self.fleet {
            fleet.validate()?;
            // A deadline's fallback sends the request to the normal endpoint while its line may
            // run in a batch another process polls: the fleet could pay twice, unseen.
            if self.deadline_ms.is_some() {
                return Err(OptionError::new(
                    "deadlineMs",
                    "cannot be used with fleet yet: leave deadlineMs out in fleet mode",
                ));
            }
        }
        Ok(())
    }
}

/// A model's price (`prices`): a model id, every price a finite number >= 0; the error names the
/// model and the field.
pub fn check_price(model: &str, price: &PriceOverride) -> Result<(), OptionError> {
    if model.trim().is_empty() {
        return Err(OptionError::new("prices", "a model id must not be empty"));
    }
    for (field, value) in price.fields() {
        if let Some(v) = value.filter(|v| !v.is_finite() || *v < 0.0) {
            return Err(OptionError::new(
                format!("prices.{model}.{field}"),
                format!(
                    "must be a finite number >= 0 (USD per million tokens), got {}",
                    crate::host::options::js_number(v)
                ),
            ));
        }
    }
    Ok(())
}

/// Options as JSON from the host (camelCase), with the defaults of [`InterceptorConfig`].
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterceptorOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_window_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_backoff_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_max_backoff_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_seed: Option<u64>,
    /// Whether the journal store keeps answers (a host option; default true). The job runner's
    /// state file does not (answers go to its results): the cache then indexes none, so a run's
    /// memory does not grow with its answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_answers: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_batches: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_limit_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resubmit: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_enqueued_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sync_fallbacks: Option<usize>,
    /// Hosts the user declared (`[{baseUrl, provider, completionWindow?, maxRequests?,
    /// maxFileBytes?, maxInlineBytes?}]`; `maxInlineBytes` for Gemini hosts only).
    #[cfg_attr(test, ts(type = "Array<HostSpec>"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<serde_json::Value>>,
    /// The user's prices by model id (`{ "<model>": { provider?, inputPerMTok, … } }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prices: Option<PriceOverrides>,
    /// Days a journalled answer is kept (`cache: { maxAgeDays }`; default 30, the providers'
    /// result retention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_max_age_days: Option<f64>,
    /// `deleteProviderFiles` (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_provider_files: Option<bool>,
    /// The host's clocks at one instant (host options): wall (ms since the epoch) and the
    /// monotonic `now` it passes the engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_wall_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_monotonic_ms: Option<u64>,
    /// Fleet mode (`{ owner, leaseMs?, graceMs?, pollMs?, answerTtlMs?, recordTtlMs? }`): the
    /// engine's requests go through a fleet member and the host's store; the store is the
    /// journal, so `cache` must be left out (or `false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::host::fleet::FleetMemberConfig>,
    /// A host option: the fleet owner id this engine would take (a fresh random id of
    /// `A-Z a-z 0-9 _ -` per engine) if the user's `cache: { redis }` turns fleet mode on. A host
    /// that cannot reach Redis passes none, and `cache.redis` is refused there. Consumed by the
    /// option check ([`crate::host::options::interceptor_options`]); the engine ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_owner: Option<String>,
}

impl InterceptorOptions {
    /// The engine's configuration, every rule checked; errors name the option.
    pub fn to_config(&self) -> Result<InterceptorConfig, OptionError> {
        let defaults = InterceptorConfig::default();
        let hosts = providers::HostTable::with_declared_json(self.hosts.as_deref().unwrap_or(&[]))
            .map_err(|e| OptionError::new("hosts", format!("hosts[{}]: {}", e.index, e.message)))?;
        let config = InterceptorConfig {
            batch_size: self.batch_size.unwrap_or(defaults.batch_size),
            batch_window_ms: self.batch_window_ms.unwrap_or(defaults.batch_window_ms),
            poll_interval_ms: self.poll_interval_ms.unwrap_or(defaults.poll_interval_ms),
            dry_run: self.dry_run.unwrap_or(false),
            call_attempts: self.retry_attempts.unwrap_or(defaults.call_attempts),
            backoff_ms: self.retry_backoff_ms.unwrap_or(defaults.backoff_ms),
            max_backoff_ms: self.retry_max_backoff_ms.unwrap_or(defaults.max_backoff_ms),
            jitter_seed: self.jitter_seed.unwrap_or(defaults.jitter_seed),
            max_concurrent_batches: self
                .max_concurrent_batches
                .unwrap_or(defaults.max_concurrent_batches),
            cost_limit_usd: self.cost_limit_usd,
            line_attempts: self.line_attempts.unwrap_or(defaults.line_attempts),
            resubmit: self.resubmit.unwrap_or(defaults.resubmit),
            max_enqueued_tokens: self.max_enqueued_tokens,
            deadline_ms: self.deadline_ms,
            max_sync_fallbacks: self
                .max_sync_fallbacks
                .unwrap_or(defaults.max_sync_fallbacks),
            hosts,
            prices: self.prices.clone().unwrap_or_default(),
            cache_max_age_ms: max_age_ms(self.cache_max_age_days)?,
            wall_clock: self.clock_wall_ms.map(|wall_ms| WallClock {
                wall_ms,
                monotonic_ms: self.clock_monotonic_ms.unwrap_or(0),
            }),
            delete_provider_files: self.delete_provider_files.unwrap_or(true),
            fleet: self
                .fleet
                .as_ref()
                .map(crate::host::fleet::FleetMemberConfig::to_config)
                .transpose()?,
        };
        config.validate()?;
        Ok(config)
    }
}

/// `cache.maxAgeDays` (default 30) in ms: a number of days above 0.
fn max_age_ms(days: Option<f64>) -> Result<Option<u64>, OptionError> {
    let days = days.unwrap_or(crate::cache::AgeLimit::DEFAULT_MAX_AGE_DAYS);
    if !days.is_finite() || days <= 0.0 {
        return Err(OptionError::new(
            "cache.maxAgeDays",
            format!("must be a number of days above 0, got {days}"),
        ));
    }
    Ok(Some(
        (days * crate::cache::AgeLimit::DAY_MS as f64).round() as u64
    ))
}

impl Interceptor {
    /// Build from the host's JSON options; errors name the option.
    pub fn from_options_json(json: &str) -> Result<Self, OptionError> {
        let options: InterceptorOptions =
            serde_json::from_str(json).map_err(|e| OptionError::new("options", e.to_string()))?;
        // In fleet mode the store is the journal: the file cache is off unless asked for, and
        // asking for both is refused (which journal would answer is ambiguous).
        let caching = options.cache.unwrap_or(options.fleet.is_none());
        Interceptor::new(
            options.to_config()?,
            caching,
            options.keep_answers.unwrap_or(true),
            options.tag_seed.unwrap_or(0),
        )
    }
}
