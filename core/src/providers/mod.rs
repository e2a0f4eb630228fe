//! Provider adapters: one file per provider behind one trait.
//!
//! An adapter is a bag of pure functions over plain data. It never performs I/O, reads a clock or
//! draws random numbers; it turns an intercepted [`HttpRequest`] into a [`Route`], builds the
//! [`HttpRequest`]s of one provider batch (upload, create, find, poll, download) for the host to
//! send, and turns the host's [`HttpResponse`]s back into what the caller's SDK would have got from
//! the synchronous endpoint.
//!
//! The life of a batch, as driven by the batcher:
//!
//! 1. [`classify`] each intercepted request. `Err(PassThrough)` means "send it to the real network
//!    untouched"; `Ok(Route)` means it can be batched. Requests whose route differs in
//!    `provider`, `base_url`, `endpoint`, `model` or `credential_fingerprint` never share a batch.
//! 2. Split a group under [`ProviderAdapter::limits`] using [`ProviderAdapter::item_bytes`].
//! 3. [`ProviderAdapter::build_upload`] (OpenAI, Together, Gemini above its inline limit) →
//!    [`ProviderAdapter::parse_upload`] (→ [`ProviderAdapter::build_upload_finish`] →
//!    [`ProviderAdapter::parse_upload_finish`] when the upload takes a second request, as
//!    Together's presigned and Gemini's resumable ones do), then [`ProviderAdapter::build_create`] →
//!    [`ProviderAdapter::parse_create`].
//!    If the create was sent but no answer came back, [`ProviderAdapter::build_find`] /
//!    [`ProviderAdapter::parse_find`] look for a batch carrying the group's idempotency tag.
//!    `build_find` returns `None` when the provider offers no way to tag a batch (Anthropic): the
//!    batcher then cannot tell whether the batch exists and must not assume it does not.
//!    Then the calls of [`ProviderAdapter::build_after_create`], if any (xAI adds the requests to
//!    the batch it created empty), one after another.
//! 4. [`ProviderAdapter::build_poll`] → [`ProviderAdapter::parse_poll`] until the state is terminal.
//! 5. For [`PollState::Completed`], [`ProviderAdapter::build_download`] each entry of `downloads`
//!    and feed the body to [`ProviderAdapter::parse_results`] (Gemini inline results come in the
//!    poll answer instead); a paged listing names its next page through
//!    [`ProviderAdapter::next_download`]. Every caller whose `custom_id` got no result gets
//!    [`ProviderAdapter::ended_response`].
//!
//! Each provider has one file holding its [`ProviderDescriptor`] (name, built-in hosts, default
//! base URL, completion-window rule, and the adapter of the batch protocol it speaks). The
//! OpenAI-compatible providers (OpenAI, Groq, Doubleword, Azure OpenAI) share one adapter,
//! [`OpenAi`], from `openai_compat`, each with its own [`OpenAiProfile`]; the others implement
//! [`ProviderAdapter`] in their own file. Adding a provider means that one file, one
//! [`ProviderId`] variant and one line in [`PROVIDERS`] (in the variant's position); a provider
//! recognised by its path shape on any host, not only under its hosts, also goes in [`ADAPTERS`].
//!
//! Synthetic error statuses, shared by all adapters so callers see one convention:
//! a request that did not run because its batch **expired** gets 504 (the provider's "deadline
//! exceeded" / "timeout" error), **cancelled** gets 499 (the gRPC/nginx "client closed request"
//! code; nothing more standard exists), and a **failed** batch gets 500. These carry
//! `x-should-retry: false`: the OpenAI and Anthropic SDKs would otherwise retry 5xx, and a retry
//! would silently queue the request into another batch for up to another day.

mod anthropic;
mod azure;
pub(crate) mod common;
mod doubleword;
mod gemini;
mod groq;
pub mod hosts;
mod mistral;
mod openai;
mod openai_compat;
mod together;
mod xai;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::http::{HttpRequest, HttpResponse};
use crate::job_format::JobFormat;
pub use crate::provider_id::ProviderId;

pub use anthropic::{
    Anthropic, ANTHROPIC_MAX_REQUEST_BYTES, ANTHROPIC_VERSION, DEFAULT_ANTHROPIC_MAX_TOKENS,
    DEFAULT_ANTHROPIC_MAX_TOKENS_THINKING,
};
pub use gemini::{Gemini, GEMINI_MAX_FILE_BYTES, GEMINI_MAX_INLINE_REQUEST_BYTES};
pub use hosts::{HostMatch, HostSettings, HostSpec, HostTable};
pub use mistral::Mistral;
pub use openai_compat::{OpenAi, Profile as OpenAiProfile};
pub use together::Together;
pub use xai::Xai;

impl ProviderId {
    /// Every provider, in [`PROVIDERS`] order (which is the variants' order).
    pub const ALL: [ProviderId; PROVIDERS.len()] = {
        let mut all = [ProviderId::OpenAi; PROVIDERS.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = PROVIDERS[i].id;
            i += 1;
        }
        all
    };

    /// What batchling knows about this provider.
    pub fn descriptor(self) -> &'static ProviderDescriptor {
        PROVIDERS[self as usize]
    }

    /// The provider's name in options, routes and messages ("openai"), as serde spells it.
    pub fn as_str(self) -> &'static str {
        self.descriptor().name
    }

    /// The provider whose batch protocol this one speaks (its adapter's [`ProviderAdapter::id`]).
    pub fn protocol(self) -> ProviderId {
        self.descriptor().adapter.id()
    }
}

/// One provider, as plain data: what its file declares about it (see the module docs).
pub struct ProviderDescriptor {
    pub id: ProviderId,
    /// Lower-case name, the serde name of [`ProviderDescriptor::id`].
    pub name: &'static str,
    /// The adapter of the batch protocol the provider speaks; the OpenAI-compatible providers
    /// share [`OpenAi`].
    pub adapter: &'static dyn ProviderAdapter,
    /// For the OpenAI-compatible providers: the endpoints they batch, their default limits and
    /// completion window, and any recognition of their own (Azure's deployment URLs).
    pub openai_profile: Option<&'static OpenAiProfile>,
    /// Built-in hosts, base URL patterns ([`HostTable::builtin`]; a leading "*." stands for one or
    /// more subdomain labels). Empty when the provider's path shape or headers identify it on any
    /// host (OpenAI, Anthropic, Gemini); a provider that serves another's path shapes is reached
    /// only through its hosts.
    pub hosts: &'static [&'static str],
    /// Where its SDK sends requests by default; `None` when there is no global endpoint (Azure:
    /// every resource has its own host).
    pub default_base_url: Option<&'static str>,
    /// Why a declared completion window is one the provider is documented to refuse, or `None`
    /// when it may be sent.
    pub window_error: fn(window: &str) -> Option<String>,
    /// The environment variable the provider's API key is read from when the caller gives none
    /// (the name its own SDK or documentation reads): the job builder's providers and
    /// `batchling batches status|cancel` read it. Every provider has one.
    pub api_key_env: Option<&'static str>,
    /// The environment variable the job builder reads a base URL from; `None` for providers it
    /// does not serve.
    pub base_url_env: Option<&'static str>,
    /// How the job builder ([`crate::jobs`]) renders a job for the provider and reads its
    /// answer; `None` for providers it does not serve.
    pub(crate) jobs: Option<&'static dyn JobFormat>,
}

/// The provider registry: one descriptor per [`ProviderId`] variant, in the variants' order.
pub const PROVIDERS: &[&ProviderDescriptor] = &[
    &openai::DESCRIPTOR,
    &anthropic::DESCRIPTOR,
    &gemini::DESCRIPTOR,
    &groq::DESCRIPTOR,
    &doubleword::DESCRIPTOR,
    &azure::DESCRIPTOR,
    &mistral::DESCRIPTOR,
    &together::DESCRIPTOR,
    &xai::DESCRIPTOR,
];

// [`ProviderId::descriptor`] indexes the registry by variant.
const _: () = {
    let mut i = 0;
    while i < PROVIDERS.len() {
        assert!(
            PROVIDERS[i].id as usize == i,
            "PROVIDERS must list the ProviderId variants in order"
        );
        i += 1;
    }
};

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an intercepted request is, once recognised.
#[derive(Clone, PartialEq)]
pub struct Route {
    pub provider: ProviderId,
    /// The batch endpoint: "/v1/chat/completions", "/v1/responses", "/v1/embeddings",
    /// "/v1/messages" or "generateContent".
    pub endpoint: String,
    pub model: String,
    /// Where the batch API lives, taken from the request URL so custom base URLs, proxies and
    /// local test servers work: OpenAI "https://api.openai.com/v1", Anthropic
    /// "https://api.anthropic.com", Gemini "https://generativelanguage.googleapis.com/v1beta".
    /// No trailing slash.
    pub base_url: String,
    /// The caller's headers every batch call must carry (auth, organisation, project,
    /// anthropic-version, anthropic-beta, proxy auth, ...). Names are lower-case, sorted; transport
    /// and SDK telemetry headers are dropped. Gemini's `?key=` query credential appears here as
    /// `x-goog-api-key`, which the Gemini API treats the same.
    pub forward_headers: Vec<(String, String)>,
    /// Hex SHA-256 over provider, base URL (with Azure's api-version) and every forwarded header.
    /// Requests with different fingerprints never share a batch. Credentials appear only here
    /// (hashed) and in `forward_headers`; `Debug` redacts them.
    pub credential_fingerprint: String,
    /// The request body with `stream` / `stream_options` removed; every other field untouched, in
    /// the caller's key order.
    pub body: serde_json::Value,
    /// The matched host's batch settings (completion window, limits); default when the request was
    /// recognised by path shape alone.
    pub settings: HostSettings,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .forward_headers
            .iter()
            .map(|(k, v)| {
                let shown = if common::is_secret_header(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("Route")
            .field("provider", &self.provider)
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("forward_headers", &headers)
            .field("credential_fingerprint", &self.credential_fingerprint)
            .field("body", &self.body)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Why a request is not batched. It passes through untouched to the real network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassThrough {
    /// No adapter recognises the URL (includes Azure classic deployments on a host not known as
    /// Azure, Vertex AI, whose batch APIs differ, and endpoints a known host does not batch).
    UnknownUrl,
    /// A batchable path, but not a POST (e.g. listing stored chat completions).
    NotPost,
    /// `stream: true`, or Gemini's `:streamGenerateContent`.
    Streaming,
    /// The body is not a JSON object (multipart, form, binary, malformed).
    NotJson,
    /// No usable model name in the body (or URL, for Gemini).
    NoModel,
}

impl PassThrough {
    pub fn as_str(self) -> &'static str {
        match self {
            PassThrough::UnknownUrl => "unknown_url",
            PassThrough::NotPost => "not_post",
            PassThrough::Streaming => "streaming",
            PassThrough::NotJson => "not_json",
            PassThrough::NoModel => "no_model",
        }
    }
}

impl fmt::Display for PassThrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much one provider batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_requests: usize,
    /// Budget for the sum of [`ProviderAdapter::item_bytes`]. Already net of the envelope
    /// (multipart framing, JSON wrapper), so the batcher only sums items.
    pub max_bytes: usize,
}

/// One queued request going into a provider batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub custom_id: String,
    /// [`Route::body`] of the request.
    pub body: serde_json::Value,
}

/// Everything an adapter needs to build the calls of one provider batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchContext<'a> {
    /// The group's route; all items share provider, endpoint, model, base URL and headers.
    pub route: &'a Route,
    /// Unique idempotency tag for this batch (e.g. "batchling-<hex>"), stored where the provider
    /// lets us (OpenAI metadata, Gemini displayName) so a batch whose create answer was lost can be
    /// found again.
    pub tag: &'a str,
}

/// Why a batch ended without (more) results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndKind {
    Failed,
    Expired,
    Cancelled,
}

impl EndKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndKind::Failed => "failed",
            EndKind::Expired => "expired",
            EndKind::Cancelled => "cancelled",
        }
    }

    /// The HTTP status of the synthetic error for a request that did not run (see module docs).
    pub fn http_status(self) -> u16 {
        match self {
            EndKind::Expired => 504,
            EndKind::Cancelled => 499,
            EndKind::Failed => 500,
        }
    }
}

impl fmt::Display for EndKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PollState {
    /// Not terminal yet.
    Running,
    /// Results are available: fetch each of `downloads` with [`ProviderAdapter::build_download`]
    /// (OpenAI output and error file ids, Anthropic's results URL, a Gemini responses file), and/or
    /// take `inline` (Gemini inline batches carry results in the poll answer; line numbers in
    /// `inline.malformed` are 1-based positions in the inlined list).
    Completed {
        downloads: Vec<String>,
        inline: Option<ParsedResults>,
    },
    /// Terminal with no results at all. Every request gets [`ProviderAdapter::ended_response`].
    Ended { kind: EndKind, message: String },
    /// Refused for the provider's limit on enqueued tokens before any line ran (OpenAI and
    /// Azure: `failed` with error code `token_limit_exceeded`): its requests can be submitted
    /// again without paying twice. `limit_tokens`: the limit the message states, if it does.
    OverEnqueuedLimit {
        message: String,
        limit_tokens: Option<u64>,
    },
}

/// One poll answer, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct PollReport {
    /// The provider's raw state, e.g. "in_progress", "ended", "BATCH_STATE_RUNNING".
    pub state_label: String,
    pub total: u64,
    /// Requests that ran and succeeded, and those that ran into an error (Anthropic: also the
    /// expired and cancelled ones, which have a result line each): `completed + failed` is the
    /// number of result lines the batch's results hold, checked against the lines read.
    pub completed: u64,
    pub failed: u64,
    pub state: PollState,
    /// With [`PollState::Completed`]: `Some(kind)` when the batch stopped early (OpenAI expired or
    /// cancelled with partial output, an Anthropic batch whose cancel was initiated), so requests
    /// without a result line did not run for that reason. `None` when the batch completed
    /// normally; a missing line is then a provider anomaly (treat as [`EndKind::Failed`]).
    pub end_kind_if_partial: Option<EndKind>,
}

/// The synthetic response for one caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    pub custom_id: String,
    pub response: HttpResponse,
}

/// A result line that could not be used. Parsing goes on with the next line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based.
    pub line_number: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedResults {
    pub items: Vec<ItemResult>,
    pub malformed: Vec<MalformedLine>,
}

/// What a batch whose create answer was lost is looked up by in the provider's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostCreateKey {
    /// The idempotency tag the batch carries (the default).
    Tag,
    /// The id of its uploaded input file, unique per upload (Together: batches carry no tag).
    /// Known only once the upload is done, so the interceptor journals its intent then, with
    /// the file id, and a run that stopped earlier cannot have sent a create.
    UploadedFile,
}

/// A provider batch as returned by create / find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBatch {
    /// OpenAI "batch_…", Anthropic "msgbatch_…", Gemini "batches/…" (the full resource name).
    pub id: String,
    pub state_label: String,
}

/// A 2xx answer we could not understand (or a non-2xx handed to a `parse_*` function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub message: String,
}

impl ProtocolError {
    pub fn new(message: impl Into<String>) -> Self {
        ProtocolError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProtocolError {}

/// One provider's batch protocol. Implementations are stateless unit structs.
pub trait ProviderAdapter: Sync {
    fn id(&self) -> ProviderId;

    /// `None`: not this provider's URL shape. `Some(Err(_))`: this provider's URL, but it must pass
    /// through (GET, streaming, non-JSON, no model).
    ///
    /// The default claims nothing: providers whose paths look like another's (Mistral, Together,
    /// xAI serve OpenAI's shapes) are reached only through their hosts, by
    /// [`ProviderAdapter::recognize_at`].
    fn recognize(&self, req: &HttpRequest) -> Option<Result<Route, PassThrough>> {
        let _ = req;
        None
    }

    /// Recognise a request whose URL falls under a known host (built-in or declared, see
    /// [`HostTable`]): the host decides the provider, `host.rest_path` is what follows its base.
    /// A path this provider does not batch is `Err(PassThrough::UnknownUrl)`. The default suits
    /// providers whose path shape alone identifies them anywhere.
    fn recognize_at(&self, req: &HttpRequest, host: &HostMatch) -> Result<Route, PassThrough> {
        let _ = host;
        self.recognize(req).unwrap_or(Err(PassThrough::UnknownUrl))
    }

    fn limits(&self, route: &Route) -> BatchLimits;

    /// Bytes this item adds to the batch payload, for splitting under [`BatchLimits::max_bytes`].
    fn item_bytes(&self, ctx: &BatchContext, item: &BatchItem) -> usize;

    /// The upload step, if the provider needs one (OpenAI). The default, `None`, suits inline
    /// providers, whose create carries the requests.
    fn build_upload(&self, ctx: &BatchContext, items: &[BatchItem]) -> Option<HttpRequest> {
        let _ = (ctx, items);
        None
    }

    /// The uploaded file's id. Only called after an upload [`ProviderAdapter::build_upload`]
    /// built.
    fn parse_upload(&self, resp: &HttpResponse) -> Result<String, ProtocolError> {
        let _ = resp;
        Err(ProtocolError::new(format!(
            "{} batches have no upload step",
            self.id()
        )))
    }

    /// `uploaded_file` is the id from [`ProviderAdapter::parse_upload`] when there was an upload.
    fn build_create(
        &self,
        ctx: &BatchContext,
        items: &[BatchItem],
        uploaded_file: Option<&str>,
    ) -> HttpRequest;

    fn parse_create(&self, resp: &HttpResponse) -> Result<RemoteBatch, ProtocolError>;

    /// Calls that must follow a successful create (or a create found again by its tag) before
    /// the batch holds its requests: xAI creates an empty batch, then takes the requests in
    /// "add requests" calls of at most 25 MB each. The batcher sends them one after another,
    /// each retried like any other step, and starts polling (and journals the batch as
    /// submitted) only once all of them succeeded. Any 2xx answer counts as success. Default:
    /// none, the create carried everything.
    fn build_after_create(
        &self,
        ctx: &BatchContext,
        items: &[BatchItem],
        batch_id: &str,
    ) -> Vec<HttpRequest> {
        let _ = (ctx, items, batch_id);
        Vec::new()
    }

    /// After an ambiguous create (sent, no answer): list recent batches to find one carrying
    /// `ctx.tag`. `None` when the provider has nowhere to store a tag, so no lookup can tell.
    fn build_find(&self, ctx: &BatchContext) -> Option<HttpRequest>;

    /// `Ok(None)`: no batch in the listing carries `tag` (the key named by
    /// [`ProviderAdapter::lost_create_key`]).
    fn parse_find(
        &self,
        resp: &HttpResponse,
        tag: &str,
    ) -> Result<Option<RemoteBatch>, ProtocolError>;

    fn build_poll(&self, ctx: &BatchContext, batch_id: &str) -> HttpRequest;

    /// The provider's cancel call for a batch (`batchling batches cancel`), or `None` where the
    /// provider offers none. The batch then ends as cancelled, with what ran before it.
    fn build_cancel(&self, _ctx: &BatchContext, _batch_id: &str) -> Option<HttpRequest> {
        None
    }

    /// `custom_ids_in_order` are the batch's items in submission order; Gemini inline results
    /// without a key are matched by position.
    fn parse_poll(
        &self,
        resp: &HttpResponse,
        custom_ids_in_order: &[String],
    ) -> Result<PollReport, ProtocolError>;

    /// `url_or_file` is an entry of [`PollState::Completed::downloads`].
    fn build_download(&self, ctx: &BatchContext, url_or_file: &str) -> HttpRequest;

    /// The request that deletes one of a batch's files at the provider: an uploaded input file
    /// or an entry of [`PollState::Completed::downloads`]. `None` where it is no file of the
    /// user's storage (a results URL, a results listing) or the provider has no files
    /// (Anthropic): the default.
    fn build_delete_file(&self, _ctx: &BatchContext, _file: &str) -> Option<HttpRequest> {
        None
    }

    /// A downloaded JSONL results body → synthetic synchronous responses. Never panics; a bad line
    /// is reported in `malformed` and the rest still parse. `batch_id` is named in synthesized
    /// error messages.
    fn parse_results(&self, batch_id: &str, body: &str) -> ParsedResults;

    /// Whether a download's body is a file of independent lines (JSONL) that
    /// [`ProviderAdapter::parse_results`] reads a part at a time: the host then hands it over in
    /// chunks of whole lines as it arrives (results files run to hundreds of MB) and each chunk's
    /// callers are answered at once. Default: `false`, the body comes whole (a paged listing
    /// whose [`ProviderAdapter::next_download`] reads the whole page).
    fn streams_results(&self) -> bool {
        false
    }

    /// Whether a batch in this state may still end [`PollState::OverEnqueuedLimit`] (`None`:
    /// just created, not polled yet). While it may, the engine keeps the bodies to submit them
    /// again. Default: `false` (the provider refuses over-limit batches at create, with 429).
    fn may_refuse_enqueued(&self, _state_label: Option<&str>) -> bool {
        false
    }

    /// Whether a 429 answer to a batch create means the provider's queue of enqueued work is
    /// full (Anthropic's processing-queue limit, Gemini's `RESOURCE_EXHAUSTED`): while a batch of
    /// the same queue is in flight, the engine then waits for one to end instead of retrying.
    fn create_429_is_queue_limit(&self) -> bool {
        false
    }

    /// For results served in pages (xAI's `pagination_token`): the download after this one, an
    /// entry to pass to [`ProviderAdapter::build_download`], or `None` when `body` was the last
    /// page. The batcher fetches it (with retries) before it answers the requests that got no
    /// result. Default: `None`, every download is complete in itself.
    fn next_download(&self, batch_id: &str, body: &str) -> Option<String> {
        let _ = (batch_id, body);
        None
    }

    /// The synthetic error for a caller whose request has no result because the batch ended
    /// (`kind`) or its line is missing. Uses the provider's synchronous error envelope, so the SDK
    /// throws its usual error class, and names the batch id and state.
    fn ended_response(&self, batch_id: &str, kind: EndKind, message: &str) -> HttpResponse;

    /// Dry run: a synthetic 200 in the endpoint's shape, with `x-batchling-dry-run: 1`.
    fn dry_run_response(&self, route: &Route, custom_id: &str) -> HttpResponse;

    /// A second request that completes the upload, built from the first one's answer; `None`
    /// (the default) when the upload is one request. Together answers its upload POST with a
    /// `302` whose `Location` is a presigned storage URL taking the file's bytes: the engine hands
    /// a redirect (3xx) answer of the upload to [`ProviderAdapter::parse_upload`] instead of
    /// treating it as a failure, then sends this request (rebuilt from the same answer on each
    /// retry) before the create. Its answer only needs to be 2xx. An upload request that wants
    /// its redirect back carries [`REDIRECT_MANUAL_HEADER`].
    fn build_upload_finish(
        &self,
        ctx: &BatchContext,
        items: &[BatchItem],
        upload_answer: &HttpResponse,
    ) -> Option<HttpRequest> {
        let _ = (ctx, items, upload_answer);
        None
    }

    /// The uploaded file's id from the answer of [`ProviderAdapter::build_upload_finish`]'s
    /// request, when only that answer names it (Gemini's resumable upload: the start answers with
    /// a session URL, the finalize with the File). `Ok(None)`, the default, keeps the id
    /// [`ProviderAdapter::parse_upload`] read.
    fn parse_upload_finish(&self, resp: &HttpResponse) -> Result<Option<String>, ProtocolError> {
        let _ = resp;
        Ok(None)
    }

    /// What [`ProviderAdapter::parse_find`] looks for in the listing after a lost create.
    fn lost_create_key(&self) -> LostCreateKey {
        LostCreateKey::Tag
    }
}

/// A request header the core sets on a provider call whose redirect (3xx) it must receive rather
/// than have followed (Together's upload). The host removes it and sends the call with
/// `redirect: "manual"`. Callers' own `x-batchling-*` headers are never forwarded, so only the
/// core sets it.
pub const REDIRECT_MANUAL_HEADER: &str = "x-batchling-redirect";

/// The adapters tried, in this order, on a URL under no known host. Order matters: the adapters
/// whose recognition needs a provider signature (headers, `:generateContent`) go before the
/// generic OpenAI shape. Together recognises nothing by shape (its URLs look like OpenAI's): only
/// its hosts reach it. So do Mistral and xAI.
pub static ADAPTERS: [&dyn ProviderAdapter; 6] =
    [&Anthropic, &Gemini, &OpenAi, &Mistral, &Together, &Xai];

/// The adapter that builds and reads `p`'s batch calls.
pub fn adapter(p: ProviderId) -> &'static dyn ProviderAdapter {
    p.descriptor().adapter
}

/// Recognise an intercepted request. Recognition is by URL path shape plus provider signature, on
/// any host:
///
/// - OpenAI: POST `<base>/chat/completions`, `<base>/responses` or `<base>/embeddings` with a JSON
///   body naming a `model`, unless it carries Anthropic or Gemini headers.
/// - Anthropic: POST `<base>/v1/messages` with an `anthropic-version` or `x-api-key` header.
/// - Gemini: POST `<prefix>/models/{model}:generateContent`.
///
/// The built-in hosts of [`HostTable::builtin`] (Groq, Azure, …) are looked up first.
pub fn classify(req: &HttpRequest) -> Result<Route, PassThrough> {
    static BUILTIN: std::sync::OnceLock<HostTable> = std::sync::OnceLock::new();
    classify_with(req, BUILTIN.get_or_init(HostTable::builtin))
}

/// [`classify`] with the hosts of `hosts` (declared ones first): a URL under a host is that
/// host's provider's or nobody's; any other URL is recognised by path shape. Under nested hosts
/// (one gateway serving OpenAI at `/v1` and Anthropic at its root), the best match that batches
/// the request takes it; when none does, the best match's reason to pass it through stands.
pub fn classify_with(req: &HttpRequest, hosts: &HostTable) -> Result<Route, PassThrough> {
    let mut refused = None;
    for host in hosts.lookup_all(&req.url) {
        match adapter(host.provider).recognize_at(req, &host) {
            Ok(route) => return Ok(route),
            Err(reason) => {
                refused.get_or_insert(reason);
            }
        }
    }
    if let Some(reason) = refused {
        return Err(reason);
    }
    ADAPTERS
        .iter()
        .find_map(|a| a.recognize(req))
        .unwrap_or(Err(PassThrough::UnknownUrl))
}

/// A short human-readable reason from a provider's non-2xx answer: `error.message` (the field all
/// three envelopes share), else the start of the body.
pub fn describe_error(resp: &HttpResponse) -> String {
    common::describe_error(resp)
}

#[cfg(test)]
mod tests;
