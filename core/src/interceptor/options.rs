//! The engine's configuration, and the options the host passes as JSON (checked here, named in
//! every error).

use crate::batcher::ConfigError;
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
    /// Where requests are looked up before recognition by path shape: the user's declared hosts,
    /// then the built-in ones (Groq, Azure, …).
    pub hosts: providers::HostTable,
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
            hosts: providers::HostTable::builtin(),
        }
    }
}

impl InterceptorConfig {
    /// Every rule an option must meet, checked before an engine is built.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let at_least_one = |field: &'static str| ConfigError {
            field,
            message: "must be at least 1".into(),
        };
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
            return Err(ConfigError {
                field: "costLimit.usd",
                message: "must be a finite number >= 0".into(),
            });
        }
        if self.call_attempts == 0 {
            return Err(at_least_one("retry.attempts"));
        }
        Ok(())
    }
}

/// Options as JSON from the host (camelCase), with the defaults of [`InterceptorConfig`].
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterceptorOptions {
    pub batch_size: Option<usize>,
    pub batch_window_ms: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub dry_run: Option<bool>,
    pub cache: Option<bool>,
    pub retry_attempts: Option<u32>,
    pub retry_backoff_ms: Option<u64>,
    pub retry_max_backoff_ms: Option<u64>,
    pub jitter_seed: Option<u64>,
    pub tag_seed: Option<u64>,
    pub max_concurrent_batches: Option<usize>,
    pub cost_limit_usd: Option<f64>,
    /// Hosts the user declared (`[{baseUrl, provider, completionWindow?, maxRequests?,
    /// maxFileBytes?}]`).
    #[cfg_attr(test, ts(type = "Array<HostSpec>"))]
    pub hosts: Option<Vec<serde_json::Value>>,
}

impl Interceptor {
    /// Build from the host's JSON options; errors name the option.
    pub fn from_options_json(json: &str) -> Result<Self, ConfigError> {
        let options: InterceptorOptions = serde_json::from_str(json).map_err(|e| ConfigError {
            field: "options",
            message: e.to_string(),
        })?;
        let defaults = InterceptorConfig::default();
        let hosts =
            providers::HostTable::with_declared_json(options.hosts.as_deref().unwrap_or(&[]))
                .map_err(|e| ConfigError {
                    field: "hosts",
                    message: format!("hosts[{}]: {}", e.index, e.message),
                })?;
        let config = InterceptorConfig {
            batch_size: options.batch_size.unwrap_or(defaults.batch_size),
            batch_window_ms: options.batch_window_ms.unwrap_or(defaults.batch_window_ms),
            poll_interval_ms: options
                .poll_interval_ms
                .unwrap_or(defaults.poll_interval_ms),
            dry_run: options.dry_run.unwrap_or(false),
            call_attempts: options.retry_attempts.unwrap_or(defaults.call_attempts),
            backoff_ms: options.retry_backoff_ms.unwrap_or(defaults.backoff_ms),
            max_backoff_ms: options
                .retry_max_backoff_ms
                .unwrap_or(defaults.max_backoff_ms),
            jitter_seed: options.jitter_seed.unwrap_or(defaults.jitter_seed),
            max_concurrent_batches: options
                .max_concurrent_batches
                .unwrap_or(defaults.max_concurrent_batches),
            cost_limit_usd: options.cost_limit_usd,
            hosts,
        };
        Interceptor::new(
            config,
            options.cache.unwrap_or(true),
            options.tag_seed.unwrap_or(0),
        )
    }
}
