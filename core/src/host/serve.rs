//! `batchling serve` for a host: the router built from the server's configuration as JSON, each
//! request's decision as JSON.

use super::refusal;
use crate::serve::{
    ServeConfig, ServeDecision, ServeError, ServeRouter, STRIPPED_HEADERS, TOKEN_HEADER,
};

/// `{"ok":true,"routes":[…],"strippedHeaders":[…],"tokenHeader":…}`, or a refusal
/// (`ERR_BATCHLING_SERVE_CONFIG`) naming what to change.
pub fn check_json(config_json: &str) -> String {
    match router(config_json) {
        Ok(router) => serde_json::json!({
            "ok": true,
            "routes": router.routes(),
            "strippedHeaders": STRIPPED_HEADERS,
            "tokenHeader": TOKEN_HEADER,
        })
        .to_string(),
        Err(message) => refusal(ServeError::CODE, message),
    }
}

fn router(config_json: &str) -> Result<ServeRouter, String> {
    let config: ServeConfig =
        serde_json::from_str(config_json).map_err(|e| format!("the serve configuration: {e}"))?;
    ServeRouter::new(&config).map_err(|e| e.to_string())
}

/// The router of a checked configuration.
pub struct ServeHost {
    router: ServeRouter,
}

impl ServeHost {
    /// Refused with the same message as [`check_json`].
    pub fn new(config_json: &str) -> Result<ServeHost, String> {
        Ok(ServeHost {
            router: router(config_json)?,
        })
    }

    /// A [`ServeDecision`] as JSON; empty `host` / `token` mean the header was absent.
    pub fn decide(&self, method: &str, path: &str, host: &str, token: &str) -> String {
        let present = |v: &str| (!v.is_empty()).then(|| v.to_string());
        let (host, token) = (present(host), present(token));
        let decision: ServeDecision =
            self.router
                .decide(method, path, host.as_deref(), token.as_deref());
        serde_json::to_string(&decision).expect("decisions serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_is_checked_and_requests_decided_as_json() {
        let refused: serde_json::Value =
            serde_json::from_str(&check_json(r#"{"listen":"0.0.0.0","port":1}"#)).unwrap();
        assert_eq!(refused["ok"], false);
        assert_eq!(refused["code"], ServeError::CODE);
        assert!(refused["error"].as_str().unwrap().contains("--token"));
        let typo: serde_json::Value =
            serde_json::from_str(&check_json(r#"{"listen":"127.0.0.1","port":1,"tokn":"x"}"#))
                .unwrap();
        assert!(typo["error"].as_str().unwrap().contains("tokn"), "{typo}");

        let config = r#"{"listen":"127.0.0.1","port":8787,"hosts":[{"provider":"openai","baseUrl":"http://127.0.0.1:9/v1"}]}"#;
        let checked: serde_json::Value = serde_json::from_str(&check_json(config)).unwrap();
        assert_eq!(checked["routes"][0]["prefix"], "/openai/v1");
        assert_eq!(checked["routes"][0]["upstream"], "http://127.0.0.1:9/v1");
        let host = ServeHost::new(config).unwrap();
        let decision: serde_json::Value = serde_json::from_str(&host.decide(
            "POST",
            "/openai/v1/chat/completions",
            "127.0.0.1:8787",
            "",
        ))
        .unwrap();
        assert_eq!(decision["kind"], "forward");
        assert_eq!(decision["url"], "http://127.0.0.1:9/v1/chat/completions");
        let refused: serde_json::Value =
            serde_json::from_str(&host.decide("POST", "/openai/v1/x", "", "")).unwrap();
        assert_eq!(refused["kind"], "refuse");
        assert_eq!(refused["code"], "ERR_BATCHLING_SERVE_HOST");
    }
}
