//! A small list-price table and a rough per-request cost estimate, for dry runs and reports.
//!
//! Prices are USD per million tokens at the synchronous (standard) rate; the batch rate is
//! `batch_multiplier` × that (all three providers document a flat 50% batch discount). Each row
//! names the page its numbers were read from and `as_of`, the date of that snapshot (the page's
//! own date when it has one, else the day it was read). Only the base tier is modelled: no
//! long-prompt (>200K) uplift, cache reads/writes, audio or image rates. Prices change; a model
//! that is not in the table gives `None` and the report says "unknown price" rather than guess.

use serde::Serialize;

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
    pub source: &'static str,
    pub as_of: &'static str,
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
        source,
        as_of,
    }
}

use ProviderId::{Anthropic as A, Gemini as G, OpenAi as O};

pub static PRICES: &[ModelPrice] = &[
    // OpenAI.
    row(O, "gpt-5.5", 5.00, 30.00, OPENAI_SNAPSHOT, "2026-05-04"),
    row(O, "gpt-5.4", 2.50, 15.00, OPENAI_SNAPSHOT, "2026-05-04"),
    row(O, "gpt-5.4-mini", 0.75, 4.50, OPENAI_SNAPSHOT, "2026-05-04"),
    row(O, "gpt-5.4-nano", 0.20, 1.25, OPENAI_SNAPSHOT, "2026-05-04"),
    row(O, "gpt-5.1", 1.25, 10.00, OPENAI_TABLE, "2026-03-21"),
    row(O, "gpt-5", 1.25, 10.00, OPENAI_TABLE, "2026-03-21"),
    row(O, "gpt-5-mini", 0.25, 2.00, OPENAI_TABLE, "2026-03-21"),
    row(O, "gpt-5-nano", 0.05, 0.40, OPENAI_TABLE, "2026-03-21"),
    row(O, "gpt-4.1", 2.00, 8.00, OPENAI_TABLE, "2026-03-21"),
    row(O, "gpt-4.1-mini", 0.40, 1.60, OPENAI_TABLE, "2026-03-21"),
    row(O, "gpt-4.1-nano", 0.10, 0.40, OPENAI_TABLE, "2026-03-21"),
    row(O, "gpt-4o", 2.50, 10.00, OPENAI_TABLE, "2026-03-21"),
    row(O, "gpt-4o-mini", 0.15, 0.60, OPENAI_TABLE, "2026-03-21"),
    row(O, "o3", 2.00, 8.00, OPENAI_TABLE, "2026-03-21"),
    row(O, "o4-mini", 1.10, 4.40, OPENAI_TABLE, "2026-03-21"),
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
    ),
    row(
        A,
        "claude-sonnet-4",
        3.00,
        15.00,
        ANTHROPIC_PRICING,
        "2026-11-23",
    ),
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
    ),
    row(
        G,
        "gemini-3.1-pro-preview",
        2.00,
        12.00,
        GEMINI_SNAPSHOT,
        "2026-09-20",
    ),
    row(
        G,
        "gemini-2.5-pro",
        1.25,
        10.00,
        GEMINI_PROVIDERS_MD,
        "2026-09-20",
    ),
    row(
        G,
        "gemini-2.5-flash",
        0.30,
        2.50,
        GEMINI_PROVIDERS_MD,
        "2026-09-20",
    ),
    row(
        G,
        "gemini-2.5-flash-lite",
        0.10,
        0.40,
        GEMINI_PROVIDERS_MD,
        "2026-09-20",
    ),
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

/// Estimates one request's cost. Input tokens ≈ length of the JSON body / [`CHARS_PER_TOKEN`];
/// output tokens = the request's output cap (`max_tokens`, `max_completion_tokens`,
/// `max_output_tokens`, `generationConfig.maxOutputTokens`) × the number of choices asked for,
/// else [`DEFAULT_OUTPUT_TOKENS`]; 0 for embeddings. With a cap this is an upper bound.
pub fn estimate(provider: ProviderId, model: &str, body: &serde_json::Value) -> CostEstimate {
    let input_tokens_est = input_tokens_est(body);
    let found = price(provider, model);
    let is_embedding =
        model.contains("embedding") || found.is_some_and(|p| p.output_usd_per_mtok == 0.0);
    let output_tokens_est = if is_embedding {
        0
    } else {
        output_cap(body).unwrap_or(DEFAULT_OUTPUT_TOKENS) * choices(body)
    };
    let sync_usd = found.map(|p| {
        (input_tokens_est as f64 * p.input_usd_per_mtok
            + output_tokens_est as f64 * p.output_usd_per_mtok)
            / 1_000_000.0
    });
    CostEstimate {
        input_tokens_est,
        output_tokens_est,
        sync_usd,
        batch_usd: sync_usd.zip(found).map(|(usd, p)| usd * p.batch_multiplier),
    }
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
}
