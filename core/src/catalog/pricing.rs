//! A small list-price table, the cost of the usage a provider reports, and a rough per-request
//! cost estimate (an upper bound) for dry runs, reports and cost limits.
//!
//! Prices are USD per million tokens at the synchronous (standard) rate; the batch rate is
//! `batch_multiplier` × that (the providers document a flat 50% batch discount, which stacks with
//! the prompt-cache rates). Each row names the page its numbers were read from and `as_of`, the
//! date of that snapshot (the page's own date when it has one, else the day it was read).
//!
//! What a request costs ([`usage_cost`], from [`Usage`] and [`Rates`]):
//! - Anthropic: prompt-cache writes at 1.25× the input price (5-minute cache) or 2× (1-hour
//!   cache, `usage.cache_creation.ephemeral_1h_input_tokens`), cache reads at 0.1×.
//! - OpenAI: `prompt_tokens_details.cached_tokens` at the row's cached-input price.
//! - Gemini: `cachedContentTokenCount` at the row's cached-input price (storage, billed per hour
//!   of a cache's life, is not a request's cost and is left out).
//! - Reasoning and thinking tokens are output tokens (the formats count them so).
//! - Long-context tiers where a row has one: a prompt above `above_input_tokens` is billed at the
//!   tier's input and output prices, its cache rates scaled as its input price.
//!
//! Not modelled: audio and image-output rates, Gemini context-cache storage. Prices change; a
//! model that is not in the table and has no user override ([`PriceOverride`]) gives `None` and
//! the report says "unknown price" rather than guess.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::provider_id::ProviderId;

/// List price of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelPrice {
    pub provider: ProviderId,
    /// Model id, or the family prefix of dated ids ("gpt-4o-mini" covers "gpt-4o-mini-2024-07-18").
    pub model: &'static str,
    pub input_usd_per_mtok: f64,
    /// 0 for embedding models, which bill input only.
    pub output_usd_per_mtok: f64,
    /// Batch price = sync price × this.
    pub batch_multiplier: f64,
    /// The price of cached input tokens where the provider lists one per model (OpenAI, Gemini);
    /// `None`: the provider's rule ([`Rates::of_row`]).
    pub cached_input_usd_per_mtok: Option<f64>,
    /// A higher tier for long prompts, when the provider bills one.
    pub long_context: Option<LongContext>,
    pub source: &'static str,
    pub as_of: &'static str,
}

/// The prices of prompts longer than `above_input_tokens` (all input, cached or not, counted).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LongContext {
    pub above_input_tokens: u64,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
}

/// The rates one request is billed at, sync USD per million tokens, from a table row or a
/// user's override.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    /// Cached input read back (Anthropic cache reads, OpenAI / Gemini cached tokens).
    pub cache_read: f64,
    /// Anthropic prompt-cache writes, 5-minute and 1-hour.
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub batch_multiplier: f64,
    pub long_context: Option<LongContext>,
}

/// The tokens a provider reports for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// All prompt tokens, cached and cache-written ones included.
    pub input_tokens: u64,
    /// Of `input_tokens`: read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Of `input_tokens`: written to a 5-minute (Anthropic's default) and a 1-hour cache.
    pub cache_write_5m_tokens: u64,
    pub cache_write_1h_tokens: u64,
    /// Output tokens, reasoning and thinking included.
    pub output_tokens: u64,
}

/// A user's price for a model (`prices: { "<model>": { … } }` of `batchify()` and `Batch`):
/// list (synchronous) USD per million tokens; the provider's batch discount is applied to it.
/// `provider` names the provider whose API serves a model the registry does not know (a
/// fine-tune id), so the job builder accepts it.
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    #[serde(rename = "inputPerMTok")]
    pub input_per_mtok: f64,
    #[serde(rename = "outputPerMTok")]
    pub output_per_mtok: f64,
    /// OpenAI / Gemini cached input; also Anthropic cache reads when `cacheReadPerMTok` is unset.
    #[serde(
        rename = "cachedInputPerMTok",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cached_input_per_mtok: Option<f64>,
    /// Anthropic 5-minute cache writes (1-hour writes stay 2× input).
    #[serde(
        rename = "cacheWritePerMTok",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_write_per_mtok: Option<f64>,
    #[serde(
        rename = "cacheReadPerMTok",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_read_per_mtok: Option<f64>,
}

/// The user's price overrides by model id.
pub type PriceOverrides = BTreeMap<String, PriceOverride>;

/// Anthropic's prompt-cache multipliers of the input price.
pub const ANTHROPIC_CACHE_WRITE_5M: f64 = 1.25;
pub const ANTHROPIC_CACHE_WRITE_1H: f64 = 2.0;
pub const ANTHROPIC_CACHE_READ: f64 = 0.1;
/// Source of the prompt-cache and long-context rules above.
pub const ANTHROPIC_CACHE_SOURCE: &str =
    "https://platform.claude.com/docs/en/build-with-claude/prompt-caching#pricing";

impl PriceOverride {
    /// The names of its price fields, as users write them, and their values.
    pub fn fields(&self) -> [(&'static str, Option<f64>); 5] {
        [
            ("inputPerMTok", Some(self.input_per_mtok)),
            ("outputPerMTok", Some(self.output_per_mtok)),
            ("cachedInputPerMTok", self.cached_input_per_mtok),
            ("cacheWritePerMTok", self.cache_write_per_mtok),
            ("cacheReadPerMTok", self.cache_read_per_mtok),
        ]
    }
}

impl Rates {
    /// A table row's rates, with its provider's cache rules: Anthropic's multipliers; OpenAI
    /// and Gemini the row's cached-input price (the input price when the row has none, so the
    /// cost is never understated). Only Anthropic bills cache writes apart from input.
    pub fn of_row(p: &ModelPrice) -> Rates {
        let (read, write_5m, write_1h) = cache_rates(
            p.provider,
            p.input_usd_per_mtok,
            p.cached_input_usd_per_mtok,
            None,
        );
        Rates {
            input: p.input_usd_per_mtok,
            output: p.output_usd_per_mtok,
            cache_read: read,
            cache_write_5m: write_5m,
            cache_write_1h: write_1h,
            batch_multiplier: p.batch_multiplier,
            long_context: p.long_context,
        }
    }

    /// A user's override for a model of `provider`, the provider's rules filling what it leaves
    /// out, at the provider's batch discount.
    pub fn of_override(provider: ProviderId, o: &PriceOverride) -> Rates {
        let provider = o.provider.unwrap_or(provider);
        let (read, mut write_5m, write_1h) = cache_rates(
            provider,
            o.input_per_mtok,
            o.cache_read_per_mtok.or(o.cached_input_per_mtok),
            o.cache_write_per_mtok,
        );
        if let Some(w) = o.cache_write_per_mtok {
            write_5m = w;
        }
        Rates {
            input: o.input_per_mtok,
            output: o.output_per_mtok,
            cache_read: read,
            cache_write_5m: write_5m,
            cache_write_1h: write_1h,
            batch_multiplier: BATCH,
            long_context: None,
        }
    }

    /// The rates a prompt of `input_tokens` is billed at: the long-context tier's above its
    /// threshold (cache rates scaled as the input price), else these.
    pub fn for_prompt(&self, input_tokens: u64) -> Rates {
        match self.long_context {
            Some(tier) if input_tokens > tier.above_input_tokens && self.input > 0.0 => {
                let scale = tier.input_usd_per_mtok / self.input;
                Rates {
                    input: tier.input_usd_per_mtok,
                    output: tier.output_usd_per_mtok,
                    cache_read: self.cache_read * scale,
                    cache_write_5m: self.cache_write_5m * scale,
                    cache_write_1h: self.cache_write_1h * scale,
                    long_context: None,
                    ..*self
                }
            }
            _ => *self,
        }
    }
}

/// (cache read, 5-minute write, 1-hour write) for `provider` at `input` USD/MTok.
fn cache_rates(
    provider: ProviderId,
    input: f64,
    cached: Option<f64>,
    write: Option<f64>,
) -> (f64, f64, f64) {
    match provider {
        ProviderId::Anthropic => (
            cached.unwrap_or(input * ANTHROPIC_CACHE_READ),
            write.unwrap_or(input * ANTHROPIC_CACHE_WRITE_5M),
            input * ANTHROPIC_CACHE_WRITE_1H,
        ),
        _ => (cached.unwrap_or(input), input, input),
    }
}

/// The rates for `model` of `provider`: the user's override for it (exact id, Gemini's
/// `models/` prefix ignored), else the table's row ([`price`]).
pub fn rates(provider: ProviderId, model: &str, overrides: &PriceOverrides) -> Option<Rates> {
    let bare = model.strip_prefix("models/").unwrap_or(model);
    if let Some(o) = overrides.get(model).or_else(|| overrides.get(bare)) {
        return Some(Rates::of_override(provider, o));
    }
    price(provider, model).map(Rates::of_row)
}

/// What `usage` costs at `rates`, in USD at the batch price: uncached input at the input price,
/// cache reads and writes at theirs, output (reasoning included) at the output price, all at
/// the long-context tier when the prompt is above its threshold.
pub fn usage_cost(rates: &Rates, usage: &Usage) -> f64 {
    let r = rates.for_prompt(usage.input_tokens);
    let cached =
        usage.cache_read_tokens + usage.cache_write_5m_tokens + usage.cache_write_1h_tokens;
    let uncached = usage.input_tokens.saturating_sub(cached);
    let sync = uncached as f64 * r.input
        + usage.cache_read_tokens as f64 * r.cache_read
        + usage.cache_write_5m_tokens as f64 * r.cache_write_5m
        + usage.cache_write_1h_tokens as f64 * r.cache_write_1h
        + usage.output_tokens as f64 * r.output;
    sync / 1_000_000.0 * r.batch_multiplier
}

/// A rough cost estimate of one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostEstimate {
    pub input_tokens_est: u64,
    pub output_tokens_est: u64,
    /// `None` when the model's price is unknown.
    pub sync_usd: Option<f64>,
    pub batch_usd: Option<f64>,
}

/// Output tokens assumed when a request sets no output cap. A round number on purpose: it is a
/// guess, not a measurement.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 1_000;
/// Characters per token for the input estimate (the usual rule of thumb for English text; JSON
/// punctuation makes it an overestimate for the prompt text alone).
pub const CHARS_PER_TOKEN: u64 = 4;

const BATCH: f64 = 0.5;

const OPENAI_SNAPSHOT: &str =
    "https://raw.githubusercontent.com/api-evangelist/openai/main/plans/openai-plans-pricing.yml";
const OPENAI_TABLE: &str = "https://deploybase.ai/articles/openai-pricing";
const OPENAI_EMBEDDINGS: &str = "https://chatgptpricing-akr.pages.dev/api-pricing";
const ANTHROPIC_PRICING: &str = "https://platform.claude.com/docs/en/about-claude/pricing";
const ANTHROPIC_OPUS_5: &str =
    "https://platform.claude.com/docs/about-claude/models/whats-new-opus-5";
const ANTHROPIC_PROVIDERS_MD: &str =
    "https://platform.claude.com/docs/en/about-claude/pricing (via providers.md §11)";
const GEMINI_SNAPSHOT: &str =
    "https://raw.githubusercontent.com/api-evangelist/gemini/main/plans/gemini-plans-pricing.yml";
const GEMINI_PROVIDERS_MD: &str =
    "https://ai.google.dev/gemini-api/docs/pricing (via providers.md §11)";

const fn row(
    provider: ProviderId,
    model: &'static str,
    input_usd_per_mtok: f64,
    output_usd_per_mtok: f64,
    source: &'static str,
    as_of: &'static str,
) -> ModelPrice {
    ModelPrice {
        provider,
        model,
        input_usd_per_mtok,
        output_usd_per_mtok,
        batch_multiplier: BATCH,
        cached_input_usd_per_mtok: None,
        long_context: None,
        source,
        as_of,
    }
}

impl ModelPrice {
    /// This row with the provider's listed price of cached input.
    const fn cached(mut self, usd_per_mtok: f64) -> Self {
        self.cached_input_usd_per_mtok = Some(usd_per_mtok);
        self
    }

    /// This row with a long-context tier: prompts above `above` tokens at these prices.
    const fn long(mut self, above: u64, input: f64, output: f64) -> Self {
        self.long_context = Some(LongContext {
            above_input_tokens: above,
            input_usd_per_mtok: input,
            output_usd_per_mtok: output,
        });
        self
    }
}

use ProviderId::{Anthropic as A, Gemini as G, OpenAi as O};

/// The table. Cached-input prices (`.cached`) are OpenAI's and Google's listed per-model prices
/// (Gemini's: 10% of the input price); long-context tiers (`.long`) are Gemini 2.5 Pro's and 3.1
/// Pro's (prompts over 200K tokens) and Claude Sonnet 4 / 4.5's 1M-context pricing, read from the
/// same pages on the same dates as their rows.
pub static PRICES: &[ModelPrice] = &[
    // OpenAI.
    row(O, "gpt-5.5", 5.00, 30.00, OPENAI_SNAPSHOT, "2026-05-04").cached(0.5),
    row(O, "gpt-5.4", 2.50, 15.00, OPENAI_SNAPSHOT, "2026-05-04").cached(0.25),
    row(O, "gpt-5.4-mini", 0.75, 4.50, OPENAI_SNAPSHOT, "2026-05-04").cached(0.075),
    row(O, "gpt-5.4-nano", 0.20, 1.25, OPENAI_SNAPSHOT, "2026-05-04").cached(0.02),
    row(O, "gpt-5.1", 1.25, 10.00, OPENAI_TABLE, "2026-03-21").cached(0.125),
    row(O, "gpt-5", 1.25, 10.00, OPENAI_TABLE, "2026-03-21").cached(0.125),
    row(O, "gpt-5-mini", 0.25, 2.00, OPENAI_TABLE, "2026-03-21").cached(0.025),
    row(O, "gpt-5-nano", 0.05, 0.40, OPENAI_TABLE, "2026-03-21").cached(0.005),
    row(O, "gpt-4.1", 2.00, 8.00, OPENAI_TABLE, "2026-03-21").cached(0.5),
    row(O, "gpt-4.1-mini", 0.40, 1.60, OPENAI_TABLE, "2026-03-21").cached(0.1),
    row(O, "gpt-4.1-nano", 0.10, 0.40, OPENAI_TABLE, "2026-03-21").cached(0.025),
    row(O, "gpt-4o", 2.50, 10.00, OPENAI_TABLE, "2026-03-21").cached(1.25),
    row(O, "gpt-4o-mini", 0.15, 0.60, OPENAI_TABLE, "2026-03-21").cached(0.075),
    row(O, "o3", 2.00, 8.00, OPENAI_TABLE, "2026-03-21").cached(0.5),
    row(O, "o4-mini", 1.10, 4.40, OPENAI_TABLE, "2026-03-21").cached(0.275),
    row(
        O,
        "text-embedding-3-small",
        0.02,
        0.0,
        OPENAI_EMBEDDINGS,
        "2026-11-23",
    ),
    row(
        O,
        "text-embedding-3-large",
        0.13,
        0.0,
        OPENAI_EMBEDDINGS,
        "2026-11-23",
    ),
    // Anthropic. Dated ids ("claude-sonnet-4-5-20250929") and "-latest" / "-0" aliases resolve by prefix.
    row(
        A,
        "claude-opus-5",
        5.00,
        25.00,
        ANTHROPIC_OPUS_5,
        "2026-11-23",
    ),
    row(
        A,
        "claude-opus-4-8",
        5.00,
        25.00,
        ANTHROPIC_PROVIDERS_MD,
        "2026-11-23",
    ),
    row(
        A,
        "claude-opus-4-7",
        5.00,
        25.00,
        ANTHROPIC_PROVIDERS_MD,
        "2026-11-23",
    ),
    row(
        A,
        "claude-opus-4-6",
        5.00,
        25.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
    row(
        A,
        "claude-opus-4-5",
        5.00,
        25.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
    row(
        A,
        "claude-opus-4-1",
        15.00,
        75.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
    row(
        A,
        "claude-opus-4",
        15.00,
        75.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
    row(
        A,
        "claude-sonnet-4-6",
        3.00,
        15.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
    row(
        A,
        "claude-sonnet-4-5",
        3.00,
        15.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    )
    .long(200_000, 6.00, 22.50),
    row(
        A,
        "claude-sonnet-4",
        3.00,
        15.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    )
    .long(200_000, 6.00, 22.50),
    row(
        A,
        "claude-3-7-sonnet",
        3.00,
        15.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
    row(
        A,
        "claude-haiku-4-5",
        1.00,
        5.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
    row(
        A,
        "claude-3-5-haiku",
        0.80,
        4.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
    row(
        A,
        "claude-3-haiku",
        0.25,
        1.25,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
    // Gemini (prompts up to 200K tokens; text input).
    row(
        G,
        "gemini-3.5-flash",
        1.50,
        9.00,
        GEMINI_SNAPSHOT,
        "2026-09-20",
    )
    .cached(0.15),
    row(
        G,
        "gemini-3.1-pro-preview",
        2.00,
        12.00,
        GEMINI_SNAPSHOT,
        "2026-09-20",
    )
    .cached(0.20)
    .long(200_000, 4.00, 18.00),
    row(
        G,
        "gemini-2.5-pro",
        1.25,
        10.00,
        GEMINI_PROVIDERS_MD,
        "2026-09-20",
    )
    .cached(0.125)
    .long(200_000, 2.50, 15.00),
    row(
        G,
        "gemini-2.5-flash",
        0.30,
        2.50,
        GEMINI_PROVIDERS_MD,
        "2026-09-20",
    )
    .cached(0.03),
    row(
        G,
        "gemini-2.5-flash-lite",
        0.10,
        0.40,
        GEMINI_PROVIDERS_MD,
        "2026-09-20",
    )
    .cached(0.01),
];

/// The price row for `model`: an exact match, else the longest row name that `model` extends
/// with only a version or date suffix ("-2024-07-18", "-20250929", "-001", "-latest").
/// Other suffixes do not match: "gpt-5-pro" must not be priced as "gpt-5", nor
/// "gemini-2.5-flash-image" as "gemini-2.5-flash".
pub fn price(provider: ProviderId, model: &str) -> Option<&'static ModelPrice> {
    // Gemini model names may come as resource names.
    let model = model.strip_prefix("models/").unwrap_or(model);
    let rows = PRICES.iter().filter(|p| p.provider == provider);
    if let Some(exact) = rows.clone().find(|p| p.model == model) {
        return Some(exact);
    }
    rows.filter(|p| model.strip_prefix(p.model).is_some_and(is_version_suffix))
        .max_by_key(|p| p.model.len())
}

fn is_version_suffix(rest: &str) -> bool {
    let Some(tail) = rest.strip_prefix('-') else {
        return false;
    };
    tail == "latest" || (!tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == '-'))
}

/// Estimates one request's cost at the table's price ([`estimate_with`]).
pub fn estimate(provider: ProviderId, model: &str, body: &serde_json::Value) -> CostEstimate {
    estimate_with(rates(provider, model, &PriceOverrides::new()), model, body)
}

/// Estimates one request's cost at `rates`. Input tokens ≈ length of the JSON body /
/// [`CHARS_PER_TOKEN`]; output tokens = the request's output cap (`max_tokens`,
/// `max_completion_tokens`, `max_output_tokens`, `generationConfig.maxOutputTokens`) × the
/// number of choices asked for, else [`DEFAULT_OUTPUT_TOKENS`]; 0 for embeddings. With a cap this
/// is an upper bound: every input token is charged at the highest rate it could be billed at (a
/// body with `cache_control` blocks at the cache-write rate, as if nothing were cached yet), at
/// the long-context tier when the estimate is above its threshold.
pub fn estimate_with(rates: Option<Rates>, model: &str, body: &serde_json::Value) -> CostEstimate {
    let input_tokens_est = input_tokens_est(body);
    let is_embedding = model.contains("embedding") || rates.is_some_and(|r| r.output == 0.0);
    let output_tokens_est = if is_embedding {
        0
    } else {
        output_cap(body).unwrap_or(DEFAULT_OUTPUT_TOKENS) * choices(body)
    };
    let sync_usd = rates.map(|r| input_output_usd(&r, body, input_tokens_est, output_tokens_est));
    CostEstimate {
        input_tokens_est,
        output_tokens_est,
        sync_usd,
        batch_usd: sync_usd.zip(rates).map(|(usd, r)| usd * r.batch_multiplier),
    }
}

/// The sync price of `input` and `output` tokens of `body` at the highest rates they could be
/// billed at (see [`estimate_with`]).
pub fn input_output_usd(rates: &Rates, body: &serde_json::Value, input: u64, output: u64) -> f64 {
    let r = rates.for_prompt(input);
    let input_rate = match cache_control_ttl(body) {
        None => r.input,
        Some(CacheTtl::FiveMinutes) => r.input.max(r.cache_write_5m),
        Some(CacheTtl::OneHour) => r.input.max(r.cache_write_1h),
    };
    (input as f64 * input_rate + output as f64 * r.output) / 1_000_000.0
}

enum CacheTtl {
    FiveMinutes,
    OneHour,
}

/// Whether `body` asks for prompt caching (Anthropic `cache_control` blocks), and the longest
/// cache life asked for.
fn cache_control_ttl(body: &serde_json::Value) -> Option<CacheTtl> {
    fn walk(v: &serde_json::Value, found: &mut Option<CacheTtl>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(control) = map.get("cache_control") {
                    let hour = control.get("ttl").and_then(serde_json::Value::as_str) == Some("1h");
                    if hour {
                        *found = Some(CacheTtl::OneHour);
                    } else if found.is_none() {
                        *found = Some(CacheTtl::FiveMinutes);
                    }
                }
                map.values().for_each(|i| walk(i, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, found)),
            _ => {}
        }
    }
    let mut found = None;
    walk(body, &mut found);
    found
}

/// The JSON text / [`CHARS_PER_TOKEN`], except that embedded images and PDFs (base64 strings,
/// which would count as about a token per 4 characters of their encoding) count as the provider
/// bills them: a flat figure per image, per page for PDFs.
fn input_tokens_est(body: &serde_json::Value) -> u64 {
    fn attachments(v: &serde_json::Value, chars: &mut u64, tokens: &mut u64) {
        match v {
            serde_json::Value::String(s) => {
                if let Some(t) = crate::attachments::attachment_tokens_est(s) {
                    // Base64 needs no escapes: its JSON text is itself. A data URL's head stays text.
                    let data = s.split_once(";base64,").map_or(s.as_str(), |(_, d)| d);
                    *chars -= data.len() as u64;
                    *tokens += t;
                }
            }
            serde_json::Value::Array(items) => {
                items.iter().for_each(|i| attachments(i, chars, tokens))
            }
            serde_json::Value::Object(map) => {
                map.values().for_each(|i| attachments(i, chars, tokens))
            }
            _ => {}
        }
    }
    let mut chars = body.to_string().len() as u64;
    let mut tokens = 0;
    attachments(body, &mut chars, &mut tokens);
    chars.div_ceil(CHARS_PER_TOKEN) + tokens
}

fn output_cap(body: &serde_json::Value) -> Option<u64> {
    [
        "/max_completion_tokens",
        "/max_output_tokens",
        "/max_tokens",
        "/generationConfig/maxOutputTokens",
        "/generation_config/max_output_tokens",
    ]
    .iter()
    .find_map(|p| body.pointer(p).and_then(serde_json::Value::as_u64))
}

/// OpenAI chat `n` and Gemini `candidateCount` ask for several completions, each billed.
fn choices(body: &serde_json::Value) -> u64 {
    [
        "/n",
        "/generationConfig/candidateCount",
        "/generation_config/candidate_count",
    ]
    .iter()
    .find_map(|p| body.pointer(p).and_then(serde_json::Value::as_u64))
    .unwrap_or(1)
    .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_and_prefix_lookup() {
        assert_eq!(price(O, "gpt-4o").unwrap().input_usd_per_mtok, 2.50);
        assert_eq!(
            price(O, "gpt-4o-mini-2024-07-18").unwrap().model,
            "gpt-4o-mini"
        );
        assert_eq!(price(O, "gpt-4o-2024-08-06").unwrap().model, "gpt-4o");
        assert_eq!(
            price(O, "gpt-4.1-mini-2025-04-14").unwrap().model,
            "gpt-4.1-mini"
        );
        assert_eq!(
            price(O, "gpt-5.4-mini-2026-03-17").unwrap().model,
            "gpt-5.4-mini"
        );
        assert_eq!(
            price(A, "claude-sonnet-4-5-20250929").unwrap().model,
            "claude-sonnet-4-5"
        );
        assert_eq!(
            price(A, "claude-opus-4-20250514")
                .unwrap()
                .output_usd_per_mtok,
            75.0
        );
        assert_eq!(
            price(A, "claude-opus-4-5-20251101")
                .unwrap()
                .output_usd_per_mtok,
            25.0
        );
        assert_eq!(
            price(A, "claude-3-5-haiku-latest").unwrap().model,
            "claude-3-5-haiku"
        );
        assert_eq!(
            price(A, "claude-sonnet-4-0").unwrap().model,
            "claude-sonnet-4"
        );
        assert_eq!(
            price(G, "models/gemini-2.5-flash").unwrap().model,
            "gemini-2.5-flash"
        );
        assert_eq!(
            price(G, "gemini-2.5-flash-lite")
                .unwrap()
                .input_usd_per_mtok,
            0.10
        );
        assert_eq!(
            price(G, "gemini-2.5-flash-001").unwrap().model,
            "gemini-2.5-flash"
        );
    }

    #[test]
    fn no_wrong_family_matches() {
        assert!(price(O, "gpt-5-pro").is_none());
        assert!(price(O, "gpt-4o-audio-preview").is_none());
        assert!(price(O, "gpt-5.9").is_none());
        assert!(price(G, "gemini-2.5-flash-image").is_none());
        assert!(price(A, "gpt-4o").is_none(), "provider must match");
        assert!(price(O, "").is_none());
    }

    #[test]
    fn every_row_is_documented() {
        for p in PRICES {
            assert!(p.source.starts_with("https://"), "{}", p.model);
            assert_eq!(p.as_of.len(), 10, "{}", p.model);
            assert_eq!(p.batch_multiplier, 0.5);
            assert!(p.input_usd_per_mtok > 0.0);
        }
    }

    #[test]
    fn embedded_images_and_pdfs_count_as_billed_not_as_base64_text() {
        use crate::attachments::{IMAGE_TOKENS_EST, PDF_PAGE_TOKENS_EST};
        // 9-byte PNG / PDF headers, then zero bytes: valid base64 of 30 kB files.
        let png = format!("iVBORw0KGgoA{}", "AAAA".repeat(10_000));
        let pdf = format!("JVBERi0xLjQK{}", "AAAA".repeat(10_000));
        let text = |body: &serde_json::Value| (body.to_string().len() as u64).div_ceil(4);
        let openai = json!({"model":"gpt-4o","messages":[{"role":"user","content":[
            {"type":"text","text":"what is this?"},
            {"type":"image_url","image_url":{"url": format!("data:image/png;base64,{png}")}}]}]});
        let without = json!({"model":"gpt-4o","messages":[{"role":"user","content":[
            {"type":"text","text":"what is this?"},
            {"type":"image_url","image_url":{"url": "data:image/png;base64,"}}]}]});
        assert_eq!(
            estimate(O, "gpt-4o", &openai).input_tokens_est,
            text(&without) + IMAGE_TOKENS_EST
        );
        let anthropic = json!({"model":"claude-haiku-4-5","messages":[{"role":"user","content":[
            {"type":"document","source":{"type":"base64","media_type":"application/pdf","data": pdf}}]}]});
        let e = estimate(A, "claude-haiku-4-5", &anthropic).input_tokens_est;
        assert!(
            (PDF_PAGE_TOKENS_EST..PDF_PAGE_TOKENS_EST + 100).contains(&e),
            "{e}"
        );
        // Long text that happens to be base64-clean but is no image stays text.
        let plain =
            json!({"model":"gpt-4o","messages":[{"role":"user","content":"A".repeat(4_000)}]});
        assert_eq!(estimate(O, "gpt-4o", &plain).input_tokens_est, text(&plain));
    }

    #[test]
    fn estimate_uses_caps_and_prices() {
        let body = json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_completion_tokens":100});
        let len = body.to_string().len() as u64;
        let e = estimate(O, "gpt-4o-mini", &body);
        assert_eq!(e.input_tokens_est, len.div_ceil(4));
        assert_eq!(e.output_tokens_est, 100);
        let sync = (e.input_tokens_est as f64 * 0.15 + 100.0 * 0.60) / 1e6;
        assert!((e.sync_usd.unwrap() - sync).abs() < 1e-12);
        assert!((e.batch_usd.unwrap() - sync / 2.0).abs() < 1e-12);

        let g = estimate(
            G,
            "gemini-2.5-flash",
            &json!({"contents":[],"generationConfig":{"maxOutputTokens":50,"candidateCount":2}}),
        );
        assert_eq!(g.output_tokens_est, 100);
        let a = estimate(A, "claude-haiku-4-5", &json!({"max_tokens":7}));
        assert_eq!(a.output_tokens_est, 7);
        let d = estimate(O, "gpt-4.1", &json!({"input":"x"}));
        assert_eq!(d.output_tokens_est, DEFAULT_OUTPUT_TOKENS);
        let emb = estimate(O, "text-embedding-3-small", &json!({"input":"abcd"}));
        assert_eq!(emb.output_tokens_est, 0);
        assert!(emb.sync_usd.unwrap() > 0.0);
    }

    #[test]
    fn unknown_price_is_none() {
        let e = estimate(O, "my-finetune", &json!({"max_tokens":5}));
        assert_eq!((e.sync_usd, e.batch_usd), (None, None));
        assert_eq!(e.output_tokens_est, 5);
        assert!(e.input_tokens_est > 0);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn anthropic_cache_writes_and_reads_at_their_multipliers() {
        // Haiku 4.5: $1 in, $5 out; 5-minute writes $1.25, 1-hour writes $2, reads $0.10.
        let r = rates(A, "claude-haiku-4-5", &PriceOverrides::new()).unwrap();
        let usage = Usage {
            input_tokens: 100 + 2_000 + 3_000 + 10_000,
            cache_read_tokens: 10_000,
            cache_write_5m_tokens: 2_000,
            cache_write_1h_tokens: 3_000,
            output_tokens: 400,
        };
        let sync = 100.0 * 1.0 + 2_000.0 * 1.25 + 3_000.0 * 2.0 + 10_000.0 * 0.10 + 400.0 * 5.0;
        assert!(close(usage_cost(&r, &usage), sync / 1e6 * 0.5));
        // The same tokens all billed as plain input cost far more.
        let flat = Usage {
            cache_read_tokens: 0,
            cache_write_5m_tokens: 0,
            cache_write_1h_tokens: 0,
            ..usage
        };
        assert!(usage_cost(&r, &flat) > usage_cost(&r, &usage));
    }

    #[test]
    fn openai_and_gemini_cached_input_at_the_listed_price() {
        let none = PriceOverrides::new();
        // gpt-4o-mini: $0.15 in, $0.075 cached, $0.60 out (reasoning is in the output count).
        let r = rates(O, "gpt-4o-mini-2024-07-18", &none).unwrap();
        let usage = Usage {
            input_tokens: 5_000,
            cache_read_tokens: 3_968,
            output_tokens: 700,
            ..Usage::default()
        };
        let sync = 1_032.0 * 0.15 + 3_968.0 * 0.075 + 700.0 * 0.60;
        assert!(close(usage_cost(&r, &usage), sync / 1e6 * 0.5));
        // gpt-5: cached input is a tenth of the input price.
        let r = rates(O, "gpt-5", &none).unwrap();
        assert!(close(r.cache_read, 0.125));
        // Gemini 2.5 Flash: $0.30 in, $0.03 cached, $2.50 out.
        let r = rates(G, "gemini-2.5-flash", &none).unwrap();
        let usage = Usage {
            input_tokens: 1_000,
            cache_read_tokens: 600,
            output_tokens: 10,
            ..Usage::default()
        };
        let sync = 400.0 * 0.30 + 600.0 * 0.03 + 10.0 * 2.50;
        assert!(close(usage_cost(&r, &usage), sync / 1e6 * 0.5));
        // Every OpenAI and Gemini chat row lists its cached price, below the input price.
        for p in PRICES
            .iter()
            .filter(|p| p.provider != A && p.output_usd_per_mtok > 0.0)
        {
            let cached = p.cached_input_usd_per_mtok.expect(p.model);
            assert!(cached < p.input_usd_per_mtok, "{}", p.model);
        }
    }

    #[test]
    fn long_context_tier_above_its_threshold() {
        let none = PriceOverrides::new();
        // Gemini 2.5 Pro: $1.25 / $10 up to 200K prompt tokens, $2.50 / $15 above; cached
        // input $0.125, doubled above.
        let r = rates(G, "gemini-2.5-pro", &none).unwrap();
        let short = Usage {
            input_tokens: 200_000,
            output_tokens: 1_000,
            ..Usage::default()
        };
        assert!(close(
            usage_cost(&r, &short),
            (200_000.0 * 1.25 + 1_000.0 * 10.0) / 1e6 * 0.5
        ));
        let long = Usage {
            input_tokens: 300_000,
            cache_read_tokens: 100_000,
            output_tokens: 1_000,
            ..Usage::default()
        };
        assert!(close(
            usage_cost(&r, &long),
            (200_000.0 * 2.50 + 100_000.0 * 0.25 + 1_000.0 * 15.0) / 1e6 * 0.5
        ));
        // Claude Sonnet 4.5 above 200K: $6 / $22.50, cache rates from $6.
        let r = rates(A, "claude-sonnet-4-5-20250929", &none).unwrap();
        let long = Usage {
            input_tokens: 250_000,
            cache_read_tokens: 200_000,
            output_tokens: 100,
            ..Usage::default()
        };
        assert!(close(
            usage_cost(&r, &long),
            (50_000.0 * 6.0 + 200_000.0 * 0.6 + 100.0 * 22.5) / 1e6 * 0.5
        ));
    }

    #[test]
    fn overrides_win_and_fill_in_the_provider_rules() {
        let mut prices = PriceOverrides::new();
        prices.insert(
            "ft:gpt-4o-mini:acme::abc".into(),
            PriceOverride {
                provider: Some(O),
                input_per_mtok: 0.30,
                output_per_mtok: 1.20,
                cached_input_per_mtok: Some(0.15),
                cache_write_per_mtok: None,
                cache_read_per_mtok: None,
            },
        );
        prices.insert(
            "claude-haiku-4-5".into(),
            PriceOverride {
                provider: None,
                input_per_mtok: 2.0,
                output_per_mtok: 10.0,
                cached_input_per_mtok: None,
                cache_write_per_mtok: None,
                cache_read_per_mtok: None,
            },
        );
        assert!(price(O, "ft:gpt-4o-mini:acme::abc").is_none());
        let r = rates(O, "ft:gpt-4o-mini:acme::abc", &prices).unwrap();
        assert_eq!((r.input, r.output, r.cache_read), (0.30, 1.20, 0.15));
        assert_eq!(r.batch_multiplier, 0.5);
        // Anthropic's multipliers apply to the user's input price.
        let r = rates(A, "claude-haiku-4-5", &prices).unwrap();
        assert!(close(r.cache_write_5m, 2.5) && close(r.cache_write_1h, 4.0));
        assert!(close(r.cache_read, 0.2));
        // Without a cached price, cached OpenAI input costs the input price (never understated).
        let plain = PriceOverride {
            provider: None,
            input_per_mtok: 1.0,
            output_per_mtok: 2.0,
            cached_input_per_mtok: None,
            cache_write_per_mtok: None,
            cache_read_per_mtok: None,
        };
        assert_eq!(Rates::of_override(O, &plain).cache_read, 1.0);
    }

    #[test]
    fn estimate_stays_an_upper_bound_with_cache_control() {
        let text = "x".repeat(8_000);
        let plain = json!({"model":"claude-haiku-4-5","max_tokens":100,
            "system":[{"type":"text","text":text}],
            "messages":[{"role":"user","content":"hi"}]});
        let mut cached = plain.clone();
        cached["system"][0]["cache_control"] = json!({"type":"ephemeral"});
        let mut hour = plain.clone();
        hour["system"][0]["cache_control"] = json!({"type":"ephemeral","ttl":"1h"});
        let e = |b: &serde_json::Value| estimate(A, "claude-haiku-4-5", b);
        let (p, c, h) = (e(&plain), e(&cached), e(&hour));
        let expect = |body: &serde_json::Value, rate: f64| {
            let input = e(body).input_tokens_est as f64;
            (input * rate + 100.0 * 5.0) / 1e6 * 0.5
        };
        assert!(close(p.batch_usd.unwrap(), expect(&plain, 1.0)));
        assert!(close(c.batch_usd.unwrap(), expect(&cached, 1.25)));
        assert!(close(h.batch_usd.unwrap(), expect(&hour, 2.0)));
        // Whatever the provider then reports for that body costs no more than the estimate.
        let r = rates(A, "claude-haiku-4-5", &PriceOverrides::new()).unwrap();
        let worst = Usage {
            input_tokens: c.input_tokens_est,
            cache_write_5m_tokens: c.input_tokens_est,
            output_tokens: 100,
            ..Usage::default()
        };
        assert!(usage_cost(&r, &worst) <= c.batch_usd.unwrap() + 1e-15);
        // A long prompt is estimated at its long-context tier.
        let long = json!({"contents":[{"parts":[{"text":"y".repeat(1_000_000)}]}],
            "generationConfig":{"maxOutputTokens":10}});
        let g = estimate(G, "gemini-2.5-pro", &long);
        assert!(close(
            g.batch_usd.unwrap(),
            (g.input_tokens_est as f64 * 2.50 + 10.0 * 15.0) / 1e6 * 0.5
        ));
    }
}
