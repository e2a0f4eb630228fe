//! Rendering: a prepared job becomes the body and request its provider's SDK would send.

use serde_json::{Map, Value};

use crate::http::HttpRequest;
use crate::providers::{self, BatchContext, BatchItem};

use super::{default_base_url, JobError, ProviderEndpoint};
use crate::job_format::Prepared;

pub(super) fn build_body(p: &Prepared, placeholder_data: bool) -> Value {
    let mut body = p.format.body(p, placeholder_data);
    if let Some(extra) = &p.job.extra {
        deep_merge(&mut body, extra);
    }
    body
}

pub(super) fn deep_merge(target: &mut Value, extra: &Map<String, Value>) {
    let Value::Object(target) = target else {
        return;
    };
    for (k, v) in extra {
        match (target.get_mut(k), v) {
            (Some(existing @ Value::Object(_)), Value::Object(more)) => deep_merge(existing, more),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Renders the request and checks it is one the batch engine will batch, and fits a batch.
pub(super) fn finish_request(
    p: &Prepared,
    endpoint: &ProviderEndpoint,
) -> Result<HttpRequest, JobError> {
    let provider = p.info.provider;
    let base = if endpoint.base_url.trim().is_empty() {
        default_base_url(provider)
    } else {
        endpoint.base_url.trim().trim_end_matches('/')
    };
    let (url, mut headers) = p.format.target(base, p.model, &endpoint.api_key);
    headers.push(("content-type".into(), "application/json".into()));
    for (k, v) in &endpoint.headers {
        if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
            headers.push((k.clone(), v.clone()));
        }
    }
    let req = HttpRequest {
        method: "POST".into(),
        url,
        headers,
        body: build_body(p, false).to_string(),
    };

    let id = || p.job.id.clone();
    let mut route = providers::classify(&req).map_err(|why| JobError::NotBatchable {
        id: id(),
        reason: format!("POST {} passes through: {why}", req.url),
    })?;
    if route.provider != provider {
        return Err(JobError::NotBatchable {
            id: id(),
            reason: format!(
                "POST {} is recognised as {}, not {provider}",
                req.url, route.provider
            ),
        });
    }
    let adapter = providers::adapter(provider);
    let mut limit = adapter.limits(&route).max_bytes;
    if let Some(max) = p.format.max_request_bytes() {
        limit = limit.min(max);
    }
    // The item owns the body; the adapters size an item from it, not from the route's copy.
    let item = BatchItem {
        custom_id: p.job.id.clone(),
        body: std::mem::take(&mut route.body),
    };
    let ctx = BatchContext {
        route: &route,
        tag: "batchling-size-check",
    };
    let bytes = adapter.item_bytes(&ctx, &item).max(req.body.len());
    if bytes > limit {
        return Err(JobError::RequestTooLarge {
            id: id(),
            bytes,
            limit,
            provider,
        });
    }
    Ok(req)
}
