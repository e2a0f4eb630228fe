//! `batchling serve`: the rules of the HTTP server that batches what clients in any language
//! send. Which upstream a request goes to (a route's prefix stands for its provider's base URL),
//! who may use the server (the `Host` header, the token), and which headers never cross it. The
//! Node host owns the sockets and hands each request's method, path and two headers here; what
//! comes back is a [`ServeDecision`].
//!
//! Routes: `/<provider>` followed by the path of the provider's default base URL stands for that
//! base URL (`/openai/v1` ↔ `https://api.openai.com/v1`, `/anthropic` ↔
//! `https://api.anthropic.com`, `/gemini/v1beta` ↔ `https://generativelanguage.googleapis.com/v1beta`),
//! so a client sets its SDK's base URL to the server's address plus `/<provider>` plus what it
//! would have used. A declared host (`--host openai=URL`) replaces that provider's upstream; a
//! provider without a default (Azure) is routed only when declared. Nothing else is ever
//! reached: the server is not an open relay.

use serde::{Deserialize, Serialize};

use crate::providers::{HostSpec, ProviderId};

/// The header a client sends the server's token in; removed before the request goes upstream.
pub const TOKEN_HEADER: &str = "x-batchling-token";

/// Headers of a client's request that are not sent upstream: hop-by-hop headers (RFC 9110
/// §7.6.1), those the host's own fetch sets (`host`, `content-length`, `accept-encoding`: the
/// upstream's answer is decoded before it is relayed), and the server's token.
pub const STRIPPED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "accept-encoding",
    TOKEN_HEADER,
];

/// What `batchling serve` is started with (the batching options go to the engine, not here).
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServeConfig {
    /// The address to listen on: "127.0.0.1" (the default), "::1", "localhost", or any other
    /// address (which needs a token).
    pub listen: String,
    /// The port actually bound (the host binds first when asked for port 0).
    pub port: u16,
    /// Clients must send it in [`TOKEN_HEADER`]; required unless `listen` is a loopback address.
    #[serde(default)]
    pub token: Option<String>,
    /// `--host provider=baseUrl`: replaces the provider's upstream (the last one per provider).
    #[serde(default)]
    pub hosts: Vec<HostSpec>,
}

/// One prefix the server answers under.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServeRoute {
    pub provider: ProviderId,
    /// "/openai/v1": no trailing slash.
    pub prefix: String,
    /// "https://api.openai.com/v1": no trailing slash.
    pub upstream: String,
    /// "https://api.openai.com": where a path under `/<provider>` but outside `prefix` goes
    /// (Gemini's `/gemini/v1/…` and `/gemini/upload/…` beside `/gemini/v1beta/…`).
    pub origin: String,
}

/// What the host does with one request.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ServeDecision {
    /// `GET /healthz`: answer 200 (no token needed: a load balancer's probe).
    Health,
    /// `GET /metrics`: answer with the Prometheus text.
    Metrics,
    /// Send it to `url` (through the batching engine, which batches it or passes it through),
    /// with the client's headers less [`STRIPPED_HEADERS`].
    Forward { provider: ProviderId, url: String },
    /// Answer `status` with this error and send nothing upstream.
    Refuse {
        status: u16,
        code: ServeRefusal,
        message: String,
    },
}

/// Why a request was refused; the JSON error's `code`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServeRefusal {
    /// The `Host` header names none of the server's own addresses (DNS rebinding).
    #[serde(rename = "ERR_BATCHLING_SERVE_HOST")]
    ForeignHost,
    /// The token is missing or wrong.
    #[serde(rename = "ERR_BATCHLING_SERVE_TOKEN")]
    BadToken,
    /// No route's prefix starts the path.
    #[serde(rename = "ERR_BATCHLING_SERVE_ROUTE")]
    NoRoute,
}

/// Why the server cannot start with this configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {listen} would let anyone who reaches it spend your API keys: give --token <secret> (clients send it in the {TOKEN_HEADER} header), or listen on 127.0.0.1")]
    OpenRelay { listen: String },
    #[error("--token must not be empty")]
    EmptyToken,
    #[error("--host {provider}={base_url}: {reason}")]
    BadHost {
        provider: ProviderId,
        base_url: String,
        reason: String,
    },
}

impl ServeError {
    pub const CODE: &'static str = "ERR_BATCHLING_SERVE_CONFIG";
}

/// The server's rules, built once at start-up.
#[derive(Debug, Clone)]
pub struct ServeRouter {
    routes: Vec<ServeRoute>,
    /// `host[:port]` values the `Host` header may take (lower-case); empty: any (a token guards).
    own_hosts: Vec<String>,
    token: Option<String>,
}

fn is_loopback(listen: &str) -> bool {
    let bare = listen.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost" || bare == "::1" || bare.starts_with("127.")
}

/// `https://api.openai.com/v1` → (`https://api.openai.com`, `/v1`); `None` without a scheme.
fn split_base(url: &str) -> Option<(&str, &str)> {
    let after_scheme = url.find("://")? + 3;
    let path_start = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    if path_start == after_scheme {
        return None;
    }
    Some((&url[..path_start], url[path_start..].trim_end_matches('/')))
}

impl ServeRouter {
    pub fn new(config: &ServeConfig) -> Result<ServeRouter, ServeError> {
        let loopback = is_loopback(&config.listen);
        match config.token.as_deref() {
            Some("") => return Err(ServeError::EmptyToken),
            None if !loopback => {
                return Err(ServeError::OpenRelay {
                    listen: config.listen.clone(),
                })
            }
            _ => {}
        }
        let mut routes = Vec::new();
        for provider in ProviderId::ALL {
            let descriptor = provider.descriptor();
            let declared = config.hosts.iter().rev().find(|h| h.provider == provider);
            if let Some(host) = declared {
                let valid =
                    host.base_url.starts_with("http://") || host.base_url.starts_with("https://");
                if !valid || split_base(&host.base_url).is_none() {
                    return Err(ServeError::BadHost {
                        provider,
                        base_url: host.base_url.clone(),
                        reason: "the base URL must be an absolute http(s) URL, e.g. http://127.0.0.1:8080/v1".into(),
                    });
                }
            }
            let default = descriptor.default_base_url;
            // The prefix keeps the default base URL's path, so a client's base URL is the one it
            // would use without the server, moved under `/<provider>`.
            let Some(shape) = default.or(declared.map(|h| h.base_url.as_str())) else {
                continue;
            };
            let Some((_, shape_path)) = split_base(shape) else {
                continue;
            };
            let upstream = declared
                .map(|h| h.base_url.trim_end_matches('/').to_string())
                .or(default.map(str::to_string));
            let Some(upstream) = upstream else { continue };
            let Some((origin, _)) = split_base(&upstream) else {
                continue;
            };
            routes.push(ServeRoute {
                provider,
                prefix: format!("/{}{}", descriptor.name, shape_path),
                origin: origin.to_string(),
                upstream,
            });
        }
        let own_hosts = if loopback {
            let port = config.port;
            let mut names = vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ];
            if port == 80 {
                names.extend(["127.0.0.1", "localhost", "[::1]"].map(String::from));
            }
            names
        } else {
            Vec::new()
        };
        Ok(ServeRouter {
            routes,
            own_hosts,
            token: config.token.clone(),
        })
    }

    pub fn routes(&self) -> &[ServeRoute] {
        &self.routes
    }

    /// Decide one request: `path` is the request target as received (path and query),
    /// `host` the `Host` header and `token` the [`TOKEN_HEADER`] header, if present.
    pub fn decide(
        &self,
        method: &str,
        path: &str,
        host: Option<&str>,
        token: Option<&str>,
    ) -> ServeDecision {
        if !self.own_hosts.is_empty() {
            let host = host.unwrap_or("").to_ascii_lowercase();
            if !self.own_hosts.contains(&host) {
                return ServeDecision::Refuse {
                    status: 403,
                    code: ServeRefusal::ForeignHost,
                    message: format!(
                        "the Host header {host:?} is not this server's address (expected {}): requests from pages served elsewhere are refused",
                        self.own_hosts[0]
                    ),
                };
            }
        }
        let bare_path = path.split('?').next().unwrap_or("");
        if method == "GET" && bare_path == "/healthz" {
            return ServeDecision::Health;
        }
        if let Some(expected) = &self.token {
            if !token.is_some_and(|t| same_secret(t, expected)) {
                return ServeDecision::Refuse {
                    status: 401,
                    code: ServeRefusal::BadToken,
                    message: format!(
                        "this server needs its token in the {TOKEN_HEADER} header{}",
                        if token.is_some() {
                            " (the one sent is wrong)"
                        } else {
                            ""
                        }
                    ),
                };
            }
        }
        if method == "GET" && bare_path == "/metrics" {
            return ServeDecision::Metrics;
        }
        // `..` segments would climb out of the upstream's base path.
        let climbs = bare_path
            .split('/')
            .any(|segment| segment == ".." || segment.eq_ignore_ascii_case("%2e%2e"));
        for route in self.routes.iter().filter(|_| !climbs) {
            let name_end = route.prefix[1..]
                .find('/')
                .map_or(route.prefix.len(), |i| i + 1);
            let Some(under_name) = under(path, &route.prefix[..name_end]) else {
                continue;
            };
            let url = match under(path, &route.prefix) {
                Some(rest) => format!("{}{}", route.upstream, rest),
                // Under `/<provider>` but outside its base path: the same upstream host.
                None if under_name.starts_with('/') => format!("{}{}", route.origin, under_name),
                None => continue,
            };
            return ServeDecision::Forward {
                provider: route.provider,
                url,
            };
        }
        let known: Vec<&str> = self.routes.iter().map(|r| r.prefix.as_str()).collect();
        ServeDecision::Refuse {
            status: 404,
            code: ServeRefusal::NoRoute,
            message: format!(
                "no route for {method} {bare_path}: set your client's base URL to this server plus one of {}",
                known.join(", ")
            ),
        }
    }
}

/// What follows `prefix` in `path` when `prefix` ends there at a segment boundary
/// (`/openai/v10` is not under `/openai/v1`).
fn under<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')).then_some(rest)
}

/// Compare without stopping at the first difference (the time taken does not tell how much of a
/// guessed token was right).
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, token: Option<&str>, hosts: &[(ProviderId, &str)]) -> ServeConfig {
        ServeConfig {
            listen: listen.into(),
            port: 8787,
            token: token.map(String::from),
            hosts: hosts
                .iter()
                .map(|(provider, base_url)| HostSpec {
                    base_url: base_url.to_string(),
                    provider: *provider,
                    completion_window: None,
                    max_requests: None,
                    max_file_bytes: None,
                    max_inline_bytes: None,
                })
                .collect(),
        }
    }

    fn local() -> ServeRouter {
        ServeRouter::new(&config("127.0.0.1", None, &[])).unwrap()
    }

    fn forward(router: &ServeRouter, path: &str) -> Option<(ProviderId, String)> {
        match router.decide("POST", path, Some("127.0.0.1:8787"), None) {
            ServeDecision::Forward { provider, url } => Some((provider, url)),
            _ => None,
        }
    }

    #[test]
    fn prefixes_stand_for_the_default_base_urls() {
        let router = local();
        assert_eq!(
            forward(&router, "/openai/v1/chat/completions"),
            Some((
                ProviderId::OpenAi,
                "https://api.openai.com/v1/chat/completions".into()
            ))
        );
        assert_eq!(
            forward(&router, "/anthropic/v1/messages?beta=true"),
            Some((
                ProviderId::Anthropic,
                "https://api.anthropic.com/v1/messages?beta=true".into()
            ))
        );
        assert_eq!(
            forward(&router, "/gemini/v1beta/models/gemini-2.5-flash:generateContent"),
            Some((
                ProviderId::Gemini,
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent".into()
            ))
        );
        assert_eq!(
            forward(&router, "/groq/openai/v1/chat/completions"),
            Some((
                ProviderId::Groq,
                "https://api.groq.com/openai/v1/chat/completions".into()
            ))
        );
        // Outside the base path, under the provider's name: the same upstream host, never another.
        assert_eq!(
            forward(&router, "/gemini/v1/models/gemini-2.5-flash:generateContent"),
            Some((
                ProviderId::Gemini,
                "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-flash:generateContent".into()
            ))
        );
        assert_eq!(
            forward(&router, "/gemini/upload/v1beta/files"),
            Some((
                ProviderId::Gemini,
                "https://generativelanguage.googleapis.com/upload/v1beta/files".into()
            ))
        );
        assert_eq!(
            forward(&router, "/openai/v10/models"),
            Some((
                ProviderId::OpenAi,
                "https://api.openai.com/v10/models".into()
            ))
        );
        // Azure has no global endpoint: no route until one is declared.
        assert!(!router
            .routes()
            .iter()
            .any(|r| r.provider == ProviderId::Azure));
    }

    #[test]
    fn a_declared_host_replaces_the_upstream_under_the_same_prefix() {
        let router = ServeRouter::new(&config(
            "127.0.0.1",
            None,
            &[
                (ProviderId::OpenAi, "http://127.0.0.1:9000/v1/"),
                (ProviderId::Azure, "https://me.openai.azure.com/openai"),
            ],
        ))
        .unwrap();
        assert_eq!(
            forward(&router, "/openai/v1/batches/b1"),
            Some((
                ProviderId::OpenAi,
                "http://127.0.0.1:9000/v1/batches/b1".into()
            ))
        );
        assert_eq!(
            forward(&router, "/azure/openai/deployments/d/chat/completions?api-version=2025-04-01-preview"),
            Some((
                ProviderId::Azure,
                "https://me.openai.azure.com/openai/deployments/d/chat/completions?api-version=2025-04-01-preview".into()
            ))
        );
    }

    #[test]
    fn nothing_outside_the_routes_is_reached() {
        let router = local();
        for path in [
            "/",
            "/v1/chat/completions",
            "/openaiv1/chat/completions",
            "/openai/v1/%2E%2E/x",
            "/openai",
            "/http://evil.example/v1/chat/completions",
            "/openai/v1/../../evil",
            "//evil.example/openai/v1",
        ] {
            match router.decide("POST", path, Some("127.0.0.1:8787"), None) {
                ServeDecision::Refuse {
                    status,
                    code,
                    message,
                } => {
                    assert_eq!((status, code), (404, ServeRefusal::NoRoute), "{path}");
                    assert!(message.contains("/openai/v1"), "{message}");
                }
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_loopback_server_refuses_foreign_host_headers() {
        let router = local();
        for host in [Some("evil.example:8787"), Some("127.0.0.1:9999"), None] {
            assert!(matches!(
                router.decide("POST", "/openai/v1/chat/completions", host, None),
                ServeDecision::Refuse {
                    status: 403,
                    code: ServeRefusal::ForeignHost,
                    ..
                }
            ));
        }
        for host in ["localhost:8787", "LOCALHOST:8787", "[::1]:8787"] {
            assert!(matches!(
                router.decide("GET", "/healthz", Some(host), None),
                ServeDecision::Health
            ));
        }
    }

    #[test]
    fn any_other_address_needs_a_token_which_every_call_but_healthz_carries() {
        assert_eq!(
            ServeRouter::new(&config("0.0.0.0", None, &[])).unwrap_err(),
            ServeError::OpenRelay {
                listen: "0.0.0.0".into()
            }
        );
        assert_eq!(
            ServeRouter::new(&config("0.0.0.0", Some(""), &[])).unwrap_err(),
            ServeError::EmptyToken
        );
        let router = ServeRouter::new(&config("0.0.0.0", Some("s3cret"), &[])).unwrap();
        let host = Some("batch.internal:8787");
        assert_eq!(
            router.decide("GET", "/healthz", host, None),
            ServeDecision::Health
        );
        for token in [None, Some("s3cre"), Some("s3cretX")] {
            assert!(matches!(
                router.decide("GET", "/metrics", host, token),
                ServeDecision::Refuse {
                    status: 401,
                    code: ServeRefusal::BadToken,
                    ..
                }
            ));
        }
        assert_eq!(
            router.decide("GET", "/metrics", host, Some("s3cret")),
            ServeDecision::Metrics
        );
        assert!(matches!(
            router.decide("POST", "/openai/v1/chat/completions", host, Some("s3cret")),
            ServeDecision::Forward { .. }
        ));
    }

    #[test]
    fn a_declared_host_must_be_an_absolute_url() {
        let err = ServeRouter::new(&config(
            "127.0.0.1",
            None,
            &[(ProviderId::OpenAi, "127.0.0.1:9000/v1")],
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("--host openai=127.0.0.1:9000/v1"),
            "{err}"
        );
    }
}
