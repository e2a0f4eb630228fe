//! Which provider a URL belongs to when its path cannot tell.
//!
//! Many providers serve the same path shapes (`POST …/chat/completions` is OpenAI, Groq, Mistral,
//! Together, xAI, Doubleword, …) but batch differently, so a request is first looked up here by
//! its origin and path prefix. A [`HostTable`] holds the user's declared hosts (first, so a user
//! can point any provider's protocol at a proxy, a local server or a new OpenAI-compatible host)
//! and then the built-in hosts. A URL no entry matches falls back to recognition by path shape
//! alone ([`super::classify_with`]), where `…/chat/completions` means the OpenAI protocol.

use serde::Deserialize;

use super::ProviderId;

/// Per-host batch settings. `None` means "the provider's default".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostSettings {
    /// The `completion_window` a batch create asks for, e.g. "24h" or Groq's "7d".
    pub completion_window: Option<String>,
    /// Requests per batch, at most.
    pub max_requests: Option<usize>,
    /// Bytes of one batch's input file (or inline body), at most.
    pub max_file_bytes: Option<usize>,
    /// Gemini: the largest inline create body; a batch whose body would be larger goes as an
    /// uploaded JSONL file. At most Gemini's documented 20 MB.
    pub max_inline_bytes: Option<usize>,
    /// Azure OpenAI: the `api-version` query value of the intercepted request, carried to every
    /// batch call. Filled per request by the adapter, never declared; part of the route's
    /// credential fingerprint, so requests of different API versions never share a batch.
    pub api_version: Option<String>,
}

/// One entry: requests whose URL starts with `base_url` (at a path-segment boundary) speak
/// `provider`'s batch protocol, and their batch calls go to that base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub provider: ProviderId,
    pattern: UrlPattern,
    pub settings: HostSettings,
}

/// A recognised host: what an adapter's [`super::ProviderAdapter::recognize_at`] gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMatch<'a> {
    pub provider: ProviderId,
    /// The request URL's own origin plus the entry's path prefix, no trailing slash: the base
    /// every batch call of this host is built on (e.g. "https://api.groq.com/openai/v1").
    pub base_url: String,
    /// What follows `base_url` in the request URL, query removed (e.g. "/chat/completions").
    pub rest_path: &'a str,
    /// The request URL's query string without the `?`, if any (Azure's `api-version`).
    pub query: Option<&'a str>,
    pub settings: &'a HostSettings,
}

/// The user's declaration of a host, as the JS `hosts` option passes it (camelCase).
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    pub base_url: String,
    pub provider: ProviderId,
    #[serde(default)]
    pub completion_window: Option<String>,
    #[serde(default)]
    pub max_requests: Option<usize>,
    #[serde(default)]
    pub max_file_bytes: Option<usize>,
    /// Gemini hosts only: see [`HostSettings::max_inline_bytes`].
    #[serde(default)]
    pub max_inline_bytes: Option<usize>,
}

/// Why a declared host was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpecError {
    /// 0-based position in the declared list.
    pub index: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlPattern {
    scheme: String,
    /// Lower-case host; a leading "*." matches one or more subdomain labels.
    host: String,
    /// `None`: the scheme's default port.
    port: Option<u16>,
    /// "" or "/a/b", no trailing slash.
    path: String,
}

/// A URL split into the parts matching looks at.
struct UrlParts<'a> {
    scheme: &'a str,
    host: String,
    port: Option<u16>,
    /// Everything from the first '/' after the authority up to the query, "" if none.
    path: &'a str,
    query: Option<&'a str>,
    /// `scheme://authority`, as written in the URL.
    origin: &'a str,
}

fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return None;
    }
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let origin = &url[..scheme.len() + 3 + authority_len];
    let after = &rest[authority_len..];
    let after = after.split('#').next().unwrap_or("");
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (after, None),
    };
    // Credentials in the authority are never part of a match.
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    // "[::1]:8080" keeps its brackets; otherwise the port follows the last ':'.
    let (host, port_text) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let close = v6.find(']')? + 1;
            let after = &host_port[close + 1..];
            (&host_port[..close + 1], after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    let port = match port_text {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    if host.is_empty() {
        return None;
    }
    let port = match (scheme.to_ascii_lowercase().as_str(), port) {
        ("https", Some(443)) | ("http", Some(80)) => None,
        (_, p) => p,
    };
    Some(UrlParts {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
        path,
        query,
        origin,
    })
}

impl UrlPattern {
    fn parse(base_url: &str) -> Result<Self, String> {
        let parts = split_url(base_url.trim()).ok_or_else(|| {
            format!("{base_url:?} is not an absolute URL like \"https://api.example.com/v1\"")
        })?;
        let scheme = parts.scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "{base_url:?}: the scheme must be http or https, not {scheme:?}"
            ));
        }
        if parts.query.is_some() {
            return Err(format!(
                "{base_url:?}: a base URL has no query string (batchling keeps each request's own)"
            ));
        }
        let wildcard_ok = match parts.host.strip_prefix("*.") {
            Some(rest) => !rest.is_empty() && !rest.contains('*'),
            None => !parts.host.contains('*'),
        };
        if !wildcard_ok {
            return Err(format!(
                "{base_url:?}: only a leading \"*.\" may stand for subdomains"
            ));
        }
        Ok(UrlPattern {
            scheme,
            host: parts.host,
            port: parts.port,
            path: parts.path.trim_end_matches('/').to_string(),
        })
    }

    fn host_matches(&self, host: &str) -> bool {
        match self.host.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            None => self.host == host,
        }
    }

    /// `Some(rest_path)` when `url` is under this pattern.
    fn matches<'u>(&self, url: &UrlParts<'u>) -> Option<&'u str> {
        if !url.scheme.eq_ignore_ascii_case(&self.scheme)
            || url.port != self.port
            || !self.host_matches(&url.host)
        {
            return None;
        }
        let rest = url.path.strip_prefix(self.path.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }
}

impl HostEntry {
    pub fn new(
        base_url: &str,
        provider: ProviderId,
        settings: HostSettings,
    ) -> Result<Self, String> {
        Ok(HostEntry {
            provider,
            pattern: UrlPattern::parse(base_url)?,
            settings,
        })
    }
}

/// The rule of a provider that takes any declared completion window.
pub(crate) fn any_window(_window: &str) -> Option<String> {
    None
}

/// "36h" → 36, "7d" → 168; `None` for anything else.
pub(crate) fn window_hours(window: &str) -> Option<u64> {
    let w = window.trim();
    let (digits, per) = match (w.strip_suffix('h'), w.strip_suffix('d')) {
        (Some(n), _) => (n, 1),
        (_, Some(n)) => (n, 24),
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(per)
}

/// The hosts a request is looked up in: declared ones first, then the built-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTable {
    entries: Vec<HostEntry>,
}

impl Default for HostTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl HostTable {
    /// The hosts of every provider's descriptor ([`super::ProviderDescriptor::hosts`]), in
    /// registry order. OpenAI, Anthropic and Gemini need no entry (their path shapes or headers
    /// identify them on any host); the others share OpenAI's path shapes and would otherwise be
    /// taken for OpenAI.
    pub fn builtin() -> Self {
        HostTable {
            entries: super::PROVIDERS
                .iter()
                .flat_map(|d| d.hosts.iter().map(move |url| (*url, d.id)))
                .map(|(url, provider)| {
                    HostEntry::new(url, provider, HostSettings::default())
                        .expect("built-in host patterns parse")
                })
                .collect(),
        }
    }

    /// The built-ins after `declared`, which win where both match.
    pub fn with_declared(declared: &[HostSpec]) -> Result<Self, HostSpecError> {
        let builtin = Self::builtin().entries;
        let mut entries = Vec::with_capacity(declared.len() + builtin.len());
        for (index, spec) in declared.iter().enumerate() {
            let err = |message: String| HostSpecError { index, message };
            if spec.max_requests == Some(0) {
                return Err(err("maxRequests must be at least 1".into()));
            }
            if spec.max_file_bytes == Some(0) {
                return Err(err("maxFileBytes must be at least 1".into()));
            }
            if let Some(n) = spec.max_inline_bytes {
                if spec.provider != ProviderId::Gemini {
                    return Err(err(format!(
                        "maxInlineBytes applies to gemini hosts only (inline batches), not {}",
                        spec.provider
                    )));
                }
                let cap = super::GEMINI_MAX_INLINE_REQUEST_BYTES;
                if n == 0 || n > cap {
                    return Err(err(format!(
                        "maxInlineBytes must be between 1 and {cap} (Gemini's inline limit), got {n}"
                    )));
                }
            }
            if let Some(w) = &spec.completion_window {
                if w.trim().is_empty() {
                    return Err(err(
                        "completionWindow must be a duration like \"24h\"".into()
                    ));
                }
            }
            // A window the provider is documented to refuse (its descriptor's rule).
            if let Some(message) = spec
                .completion_window
                .as_deref()
                .and_then(spec.provider.descriptor().window_error)
            {
                return Err(err(message));
            }
            let settings = HostSettings {
                completion_window: spec.completion_window.clone(),
                max_requests: spec.max_requests,
                max_file_bytes: spec.max_file_bytes,
                max_inline_bytes: spec.max_inline_bytes,
                api_version: None,
            };
            entries.push(HostEntry::new(&spec.base_url, spec.provider, settings).map_err(err)?);
        }
        entries.extend(builtin);
        Ok(HostTable { entries })
    }

    /// [`HostTable::with_declared`] from the host's JSON (one object per host), so an error names
    /// the entry even when it does not parse (unknown provider, misspelt field).
    pub fn with_declared_json(declared: &[serde_json::Value]) -> Result<Self, HostSpecError> {
        let specs = declared
            .iter()
            .enumerate()
            .map(|(index, v)| {
                HostSpec::deserialize(v).map_err(|e| HostSpecError {
                    index,
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::with_declared(&specs)
    }

    /// The entry `url` falls under: among matches, a declared entry before a built-in, then the
    /// longest path prefix.
    pub fn lookup<'a>(&'a self, url: &'a str) -> Option<HostMatch<'a>> {
        self.lookup_all(url).into_iter().next()
    }

    /// Every entry `url` falls under, best first (as [`HostTable::lookup`] ranks them): one host
    /// may serve several providers under nested base URLs (a gateway's `/v1` for OpenAI and its
    /// root for Anthropic).
    pub fn lookup_all<'a>(&'a self, url: &'a str) -> Vec<HostMatch<'a>> {
        let Some(parts) = split_url(url) else {
            return Vec::new();
        };
        let mut found: Vec<(&HostEntry, &str)> = self
            .entries
            .iter()
            .filter_map(|entry| entry.pattern.matches(&parts).map(|rest| (entry, rest)))
            .collect();
        // Stable: among equally long prefixes the earlier entry (declared before built-in) wins.
        found.sort_by_key(|(entry, _)| std::cmp::Reverse(entry.pattern.path.len()));
        found
            .into_iter()
            .map(|(entry, rest_path)| HostMatch {
                provider: entry.provider,
                base_url: format!("{}{}", parts.origin, entry.pattern.path),
                rest_path,
                query: parts.query,
                settings: &entry.settings,
            })
            .collect()
    }
}
