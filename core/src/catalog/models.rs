//! A registry of the chat models batchling knows: which provider serves each one and what it can
//! do. The job builder ([`crate::jobs`]) checks jobs against it before anything is sent, so a job
//! that the provider would reject fails at once instead of a day later inside a batch.
//!
//! Names are the ones [`super::pricing::PRICES`] lists (its embedding rows aside); prices stay
//! there and [`ModelInfo::price`] looks them up. Limits and capabilities were read from the
//! providers' model pages (OpenAI model pages via the OpenRouter/Box/Vercel model cards that mirror
//! them, platform.claude.com/docs/en/models/*/overview and the Opus 4.7/5 migration guides,
//! ai.google.dev/gemini-api/docs/models/*) as of 2026-11-23. Like prices, they change: a model
//! that is not listed is rejected by [`resolve`] with suggestions rather than guessed at.
//!
//! `max_input_tokens` is the documented context window where input and output share one window
//! (OpenAI, Anthropic) and the documented input limit where they do not (Gemini). It is
//! informational: the core cannot count tokens exactly.

use std::fmt;

use serde::Serialize;

use super::pricing::{self, ModelPrice};
use crate::provider_id::ProviderId;

/// What one model is and can do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// The canonical id; dated variants resolve to it (see [`resolve`]).
    pub name: &'static str,
    pub provider: ProviderId,
    pub max_input_tokens: u64,
    /// The most a request may ask for (`max_tokens` / `max_completion_tokens` /
    /// `maxOutputTokens`). Thinking and reasoning tokens count towards it.
    pub max_output_tokens: u64,
    /// Reads PDF documents.
    pub supports_files: bool,
    /// Reads images (PNG, JPEG, WebP; GIF except on Gemini; HEIC/HEIF on Gemini only).
    pub supports_images: bool,
    /// Returns citations into the documents it was given (Anthropic's citations feature).
    pub supports_citations: bool,
    /// Can be made to answer in a given JSON Schema (OpenAI `response_format: json_schema`,
    /// Anthropic forced tool use, Gemini `responseJsonSchema`).
    pub supports_structured_output: bool,
    /// Accepts `temperature`. OpenAI's reasoning models (o3, o4-mini, gpt-5, -mini, -nano) only
    /// accept the default and Claude Opus 4.7 and newer reject it outright, both with a 400.
    pub supports_temperature: bool,
    /// Thinks (reasons) before answering unless told not to, so thinking tokens eat into the
    /// output cap. For Claude this also means forced tool use (our structured output on
    /// Anthropic) needs thinking switched off explicitly.
    pub thinks_by_default: bool,
    /// Fraction knocked off the synchronous price in batch mode (0.5 = 50%).
    pub batch_discount: f64,
}

impl ModelInfo {
    /// The list price, from [`super::pricing`].
    pub fn price(&self) -> Option<&'static ModelPrice> {
        pricing::price(self.provider, self.name)
    }
}

/// The 50% batch discount all three providers document.
const HALF: f64 = 0.5;

#[allow(clippy::too_many_arguments)]
const fn m(
    name: &'static str,
    provider: ProviderId,
    max_input_tokens: u64,
    max_output_tokens: u64,
    files: bool,
    images: bool,
    citations: bool,
    temperature: bool,
    thinks: bool,
) -> ModelInfo {
    ModelInfo {
        name,
        provider,
        max_input_tokens,
        max_output_tokens,
        supports_files: files,
        supports_images: images,
        supports_citations: citations,
        supports_structured_output: true,
        supports_temperature: temperature,
        thinks_by_default: thinks,
        batch_discount: HALF,
    }
}

use ProviderId::{Anthropic as A, Gemini as G, OpenAi as O};

const Y: bool = true;
const N: bool = false;

/// Every known model, newest first within each provider. Columns after the limits: PDFs, images,
/// citations, temperature, thinks by default.
pub static MODELS: &[ModelInfo] = &[
    // OpenAI: PDFs and images through chat-completions content parts; no document citations.
    m("gpt-5.5", O, 1_050_000, 128_000, Y, Y, N, Y, N),
    m("gpt-5.4", O, 1_050_000, 128_000, Y, Y, N, Y, N),
    m("gpt-5.4-mini", O, 400_000, 128_000, Y, Y, N, Y, N),
    m("gpt-5.4-nano", O, 400_000, 128_000, Y, Y, N, Y, N),
    m("gpt-5.1", O, 400_000, 128_000, Y, Y, N, Y, N),
    m("gpt-5", O, 400_000, 128_000, Y, Y, N, N, Y),
    m("gpt-5-mini", O, 400_000, 128_000, Y, Y, N, N, Y),
    m("gpt-5-nano", O, 400_000, 128_000, Y, Y, N, N, Y),
    m("gpt-4.1", O, 1_047_576, 32_768, Y, Y, N, Y, N),
    m("gpt-4.1-mini", O, 1_047_576, 32_768, Y, Y, N, Y, N),
    m("gpt-4.1-nano", O, 1_047_576, 32_768, Y, Y, N, Y, N),
    m("gpt-4o", O, 128_000, 16_384, Y, Y, N, Y, N),
    m("gpt-4o-mini", O, 128_000, 16_384, Y, Y, N, Y, N),
    m("o3", O, 200_000, 100_000, Y, Y, N, N, Y),
    m("o4-mini", O, 200_000, 100_000, Y, Y, N, N, Y),
    // Anthropic.
    m("claude-opus-5", A, 1_000_000, 128_000, Y, Y, Y, N, Y),
    m("claude-opus-4-8", A, 1_000_000, 128_000, Y, Y, Y, N, N),
    m("claude-opus-4-7", A, 1_000_000, 128_000, Y, Y, Y, N, N),
    m("claude-opus-4-6", A, 1_000_000, 128_000, Y, Y, Y, Y, N),
    m("claude-opus-4-5", A, 200_000, 64_000, Y, Y, Y, Y, N),
    m("claude-opus-4-1", A, 200_000, 32_000, Y, Y, Y, Y, N),
    m("claude-opus-4", A, 200_000, 32_000, Y, Y, Y, Y, N),
    m("claude-sonnet-4-6", A, 1_000_000, 128_000, Y, Y, Y, Y, N),
    m("claude-sonnet-4-5", A, 200_000, 64_000, Y, Y, Y, Y, N),
    m("claude-sonnet-4", A, 200_000, 64_000, Y, Y, Y, Y, N),
    m("claude-3-7-sonnet", A, 200_000, 64_000, Y, Y, Y, Y, N),
    m("claude-haiku-4-5", A, 200_000, 64_000, Y, Y, Y, Y, N),
    m("claude-3-5-haiku", A, 200_000, 8_192, Y, Y, Y, Y, N),
    // Haiku 3: not among the models Anthropic lists for PDF input or citations.
    m("claude-3-haiku", A, 200_000, 4_096, N, Y, N, Y, N),
    // Gemini: input limit separate from output; PDFs and images inline; no document citations.
    m("gemini-3.5-flash", G, 1_048_576, 65_536, Y, Y, N, Y, Y),
    m(
        "gemini-3.1-pro-preview",
        G,
        1_048_576,
        65_536,
        Y,
        Y,
        N,
        Y,
        Y,
    ),
    m("gemini-2.5-pro", G, 1_048_576, 65_536, Y, Y, N, Y, Y),
    m("gemini-2.5-flash", G, 1_048_576, 65_536, Y, Y, N, Y, Y),
    m("gemini-2.5-flash-lite", G, 1_048_576, 65_536, Y, Y, N, Y, N),
];

/// How many suggestions [`UnknownModel`] carries.
const SUGGESTIONS: usize = 3;

/// A model name [`resolve`] does not know, with the closest known names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownModel {
    pub model: String,
    /// Up to three known names, closest first.
    pub suggestions: Vec<&'static str>,
}

impl fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.model.trim().is_empty() {
            return f.write_str(
                "no model given; set `model` (e.g. gpt-4.1-mini, claude-haiku-4-5, gemini-2.5-flash)",
            );
        }
        write!(f, "unknown model `{}`", self.model)?;
        if !self.suggestions.is_empty() {
            write!(f, "; did you mean {}?", self.suggestions.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownModel {}

/// The registry entry for `model`: an exact name, or a name followed by a version suffix
/// (`-2024-08-06`, `-20250929`, `-001`, `-latest`, and Anthropic's `-0` alias as in
/// `claude-sonnet-4-0`), the longest such name winning. Gemini names may carry the `models/`
/// resource prefix. Matching is case-sensitive, as the providers' is.
///
/// This is stricter than [`pricing::price`]'s suffix rule on purpose: a bare single digit other
/// than `-0` is not a version suffix, so a future `claude-opus-4-9` is unknown rather than
/// mistaken for `claude-opus-4`.
pub fn resolve(model: &str) -> Result<&'static ModelInfo, UnknownModel> {
    lookup(model)
        .or_else(|| {
            model
                .strip_prefix("models/")
                .and_then(lookup)
                .filter(|i| i.provider == ProviderId::Gemini)
        })
        .ok_or_else(|| UnknownModel {
            model: model.to_string(),
            suggestions: suggest(model),
        })
}

/// What the job builder assumes of a model the registry does not know but the user priced and
/// gave a provider for (a fine-tune id): the provider's widest limits and capabilities, so that
/// the provider, not batchling, decides what the model accepts.
pub fn unlisted(provider: ProviderId) -> Option<&'static ModelInfo> {
    static OPENAI: ModelInfo = m("", O, 1_050_000, 128_000, Y, Y, N, Y, N);
    static ANTHROPIC: ModelInfo = m("", A, 1_000_000, 128_000, Y, Y, Y, Y, N);
    static GEMINI: ModelInfo = m("", G, 1_048_576, 65_536, Y, Y, N, Y, N);
    match provider {
        O => Some(&OPENAI),
        A => Some(&ANTHROPIC),
        G => Some(&GEMINI),
        _ => None,
    }
}

/// All known models.
pub fn all() -> &'static [ModelInfo] {
    MODELS
}

fn lookup(model: &str) -> Option<&'static ModelInfo> {
    if let Some(exact) = MODELS.iter().find(|m| m.name == model) {
        return Some(exact);
    }
    MODELS
        .iter()
        .filter(|m| model.strip_prefix(m.name).is_some_and(is_version_suffix))
        .max_by_key(|m| m.name.len())
}

fn is_version_suffix(rest: &str) -> bool {
    let Some(tail) = rest.strip_prefix('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match tail.len() {
        _ if tail == "latest" || tail == "0" => true,
        // "-001" (Gemini), "-20250929" (Anthropic).
        3 | 8 => digits(tail),
        // "-2024-08-06" (OpenAI).
        10 => {
            let parts: Vec<&str> = tail.split('-').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .zip([4, 2, 2])
                    .all(|(p, n)| p.len() == n && digits(p))
        }
        _ => false,
    }
}

/// The closest known names. Names are compared lower-cased with punctuation dropped (people
/// type "gpt4o", "claude sonnet 4.5"), ranked by edit distance to the nearest prefix of the name
/// (so a truncated name ranks its family first: "gpt4o" → gpt-4o, gpt-4o-mini), then to the whole
/// name, then by edit distance with punctuation kept, then registry order (newest first).
fn suggest(model: &str) -> Vec<&'static str> {
    let query = normalized(model);
    let raw_query: Vec<char> = model.to_lowercase().chars().collect();
    let mut scored: Vec<(usize, usize, usize, usize)> = MODELS
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (prefix, full) = distances(&query, &normalized(m.name));
            let raw_name: Vec<char> = m.name.to_lowercase().chars().collect();
            (prefix, full, distances(&raw_query, &raw_name).1, i)
        })
        .collect();
    scored.sort_unstable();
    scored
        .into_iter()
        .take(SUGGESTIONS)
        .map(|(.., i)| MODELS[i].name)
        .collect()
}

fn normalized(s: &str) -> Vec<char> {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// (min over prefixes p of `name`: lev(query, p), lev(query, name)).
fn distances(query: &[char], name: &[char]) -> (usize, usize) {
    // Row i holds lev(query[..i], name[..j]) for every j; the last row gives both answers.
    let mut prev: Vec<usize> = (0..=name.len()).collect();
    for (i, qc) in query.iter().enumerate() {
        let mut cur = Vec::with_capacity(name.len() + 1);
        cur.push(i + 1);
        for (j, nc) in name.iter().enumerate() {
            let sub = prev[j] + usize::from(qc != nc);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    let full = prev[name.len()];
    (prev.into_iter().min().unwrap_or(full), full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_dated_names_resolve() {
        assert_eq!(resolve("gpt-4o").unwrap().name, "gpt-4o");
        for (dated, base) in [
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
            ("gpt-5.4-mini-2026-03-17", "gpt-5.4-mini"),
            ("o3-2025-04-16", "o3"),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-opus-4-20250514", "claude-opus-4"),
            ("claude-opus-4-1-20250805", "claude-opus-4-1"),
            ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
            ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
            ("claude-sonnet-4-0", "claude-sonnet-4"),
            ("claude-3-haiku-20240307", "claude-3-haiku"),
            ("gemini-2.5-flash-001", "gemini-2.5-flash"),
            ("models/gemini-2.5-pro", "gemini-2.5-pro"),
            ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ] {
            assert_eq!(resolve(dated).unwrap().name, base, "{dated}");
        }
    }

    #[test]
    fn other_suffixes_and_families_do_not_resolve() {
        for name in [
            "gpt-5-pro",
            "gpt-4o-audio-preview",
            "gpt-5.9",
            "claude-opus-4-9",
            "gemini-2.5-flash-image",
            "gemini-2.5-flash-preview-05-20",
            "models/gpt-4o",
            "GPT-4o",
            "gpt-4o-2024-8-06",
            "text-embedding-3-small",
            "",
        ] {
            assert!(resolve(name).is_err(), "{name}");
        }
    }

    #[test]
    fn unknown_model_suggests_the_closest_names() {
        let e = resolve("gpt4o").unwrap_err();
        assert_eq!(e.suggestions, vec!["gpt-4o", "gpt-4o-mini", "gpt-4.1"]);
        assert_eq!(
            e.to_string(),
            "unknown model `gpt4o`; did you mean gpt-4o, gpt-4o-mini, gpt-4.1?"
        );
        assert_eq!(
            resolve("claude-sonet-4-5").unwrap_err().suggestions[0],
            "claude-sonnet-4-5"
        );
        assert_eq!(
            resolve("gemini-flash").unwrap_err().suggestions,
            vec![
                "gemini-3.5-flash",
                "gemini-2.5-flash",
                "gemini-2.5-flash-lite"
            ]
        );
        assert_eq!(resolve("GPT-4o").unwrap_err().suggestions[0], "gpt-4o");
        assert_eq!(
            resolve("claude sonnet 4.5").unwrap_err().suggestions[0],
            "claude-sonnet-4-5"
        );
        assert_eq!(
            resolve("claude-opus-4-9").unwrap_err().suggestions,
            vec!["claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6"]
        );
        assert!(resolve("")
            .unwrap_err()
            .to_string()
            .starts_with("no model given"));
    }

    #[test]
    fn distances_are_levenshtein() {
        let c = |s: &str| s.chars().collect::<Vec<char>>();
        assert_eq!(distances(&c("kitten"), &c("sitting")), (2, 3));
        assert_eq!(distances(&c("kitten"), &c("kitten-long")), (0, 5));
        assert_eq!(distances(&[], &c("abc")), (0, 3));
        assert_eq!(normalized("Claude Sonnet-4.5"), c("claudesonnet45"));
    }

    #[test]
    fn registry_is_consistent_with_pricing() {
        let mut names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MODELS.len(), "duplicate names");
        for m in MODELS {
            let p = m
                .price()
                .unwrap_or_else(|| panic!("{} has no price", m.name));
            assert_eq!(p.model, m.name);
            assert_eq!(p.provider, m.provider);
            assert_eq!(m.batch_discount, 1.0 - p.batch_multiplier, "{}", m.name);
            assert!(m.max_output_tokens >= 4_096 && m.max_output_tokens <= m.max_input_tokens);
            assert_eq!(resolve(m.name).unwrap().name, m.name);
        }
        // Every priced chat model is in the registry.
        for p in pricing::PRICES
            .iter()
            .filter(|p| p.output_usd_per_mtok > 0.0)
        {
            assert!(
                MODELS
                    .iter()
                    .any(|m| m.name == p.model && m.provider == p.provider),
                "{} is priced but not registered",
                p.model
            );
        }
    }

    #[test]
    fn capabilities_of_a_few_models() {
        let haiku3 = resolve("claude-3-haiku").unwrap();
        assert!(!haiku3.supports_files && !haiku3.supports_citations && haiku3.supports_images);
        assert!(resolve("claude-sonnet-4-6").unwrap().supports_citations);
        assert!(!resolve("gpt-4o").unwrap().supports_citations);
        assert!(!resolve("o3").unwrap().supports_temperature);
        assert!(!resolve("claude-opus-4-7").unwrap().supports_temperature);
        assert!(resolve("claude-opus-5").unwrap().thinks_by_default);
        assert_eq!(resolve("gpt-4o-mini").unwrap().max_output_tokens, 16_384);
        assert_eq!(resolve("gemini-2.5-flash").unwrap().provider, G);
    }
}
