//! Model prices for cost estimates (dry-run report, cost limits). Placeholder table until the
//! full registry lands; every row names its source and date.

use crate::providers::ProviderId;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub provider: ProviderId,
    pub model: &'static str,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub batch_discount: f64,
    pub source: &'static str,
    pub as_of: &'static str,
}

const OPENAI: &str = "https://openai.com/api/pricing";
const ANTHROPIC: &str = "https://www.anthropic.com/pricing#api";
const GEMINI: &str = "https://ai.google.dev/gemini-api/docs/pricing";

macro_rules! price {
    ($p:ident, $m:expr, $i:expr, $o:expr, $src:expr) => {
        ModelPrice {
            provider: ProviderId::$p,
            model: $m,
            input_usd_per_mtok: $i,
            output_usd_per_mtok: $o,
            batch_discount: 0.5,
            source: $src,
            as_of: "2025-08-01",
        }
    };
}

pub static PRICES: &[ModelPrice] = &[
    price!(OpenAi, "gpt-4o", 2.50, 10.00, OPENAI),
    price!(OpenAi, "gpt-4o-mini", 0.15, 0.60, OPENAI),
    price!(OpenAi, "gpt-4.1", 2.00, 8.00, OPENAI),
    price!(OpenAi, "gpt-4.1-mini", 0.40, 1.60, OPENAI),
    price!(OpenAi, "gpt-4.1-nano", 0.10, 0.40, OPENAI),
    price!(OpenAi, "text-embedding-3-small", 0.02, 0.0, OPENAI),
    price!(OpenAi, "text-embedding-3-large", 0.13, 0.0, OPENAI),
    price!(Anthropic, "claude-3-5-haiku", 0.80, 4.00, ANTHROPIC),
    price!(Anthropic, "claude-sonnet-4", 3.00, 15.00, ANTHROPIC),
    price!(Anthropic, "claude-opus-4", 15.00, 75.00, ANTHROPIC),
    price!(Gemini, "gemini-2.5-flash", 0.30, 2.50, GEMINI),
    price!(Gemini, "gemini-2.5-pro", 1.25, 10.00, GEMINI),
];

/// Exact name first, then the longest known prefix (dated ids such as "gpt-4o-mini-2024-07-18").
pub fn price(provider: ProviderId, model: &str) -> Option<&'static ModelPrice> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    PRICES
        .iter()
        .filter(|p| p.provider == provider && model.starts_with(p.model))
        .max_by_key(|p| p.model.len())
}

#[derive(Debug, Clone, PartialEq)]
pub struct CostEstimate {
    pub input_tokens_est: u64,
    pub output_tokens_est: u64,
    pub sync_usd: Option<f64>,
    pub batch_usd: Option<f64>,
}

/// Output tokens assumed when a request names no limit.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 256;

/// Input ≈ JSON length / 4 tokens; output = the request's max-tokens field, else a default.
pub fn estimate(provider: ProviderId, model: &str, body: &serde_json::Value) -> CostEstimate {
    let input_tokens_est = (body.to_string().len() as u64).div_ceil(4);
    let max = |v: &serde_json::Value| v.as_u64();
    let output_tokens_est = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(max))
        .or_else(|| body.pointer("/generationConfig/maxOutputTokens").and_then(max))
        .unwrap_or(DEFAULT_OUTPUT_TOKENS);
    let (sync_usd, batch_usd) = match price(provider, model) {
        Some(p) => {
            let sync = (input_tokens_est as f64 * p.input_usd_per_mtok
                + output_tokens_est as f64 * p.output_usd_per_mtok)
                / 1e6;
            (Some(sync), Some(sync * p.batch_discount))
        }
        None => (None, None),
    };
    CostEstimate {
        input_tokens_est,
        output_tokens_est,
        sync_usd,
        batch_usd,
    }
}
