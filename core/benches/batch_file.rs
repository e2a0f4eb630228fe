//! `cargo bench -p batchling-core --bench batch_file`: the OpenAI adapter's batch file work at the
//! provider's maximum batch size (50,000 requests) against plain serde_json doing the same.
//!
//! * build: `OpenAi::build_upload` for one batch of 50,000 chat requests (~300–500-byte bodies)
//!   vs. a baseline that serializes each `{custom_id, method, url, body}` line with serde_json and
//!   joins them.
//! * map: `OpenAi::parse_results` on a 50,000-line output file (shuffled order, ~1.5% error
//!   lines) vs. a baseline that decodes each line into a `serde_json::Value`.
//! * sizing: `OpenAi::item_bytes` over the same 50,000 items (what the interceptor's
//!   `start_jobs` calls once per item before the upload is built), for reference.
//!
//! Criterion first reports each operation on its own. Then a summary runs the adapter and its
//! baseline alternately for `BENCH_ROUNDS` rounds (default 15) and prints medians and ratios
//! measured side by side, and the peak heap of each operation (a counting global allocator,
//! switched on only for the memory pass) relative to the file size.
//! Targets: adapter time within 1.5x of the baseline; peak memory under 3x the file size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use batchling_core::http::HttpRequest;
use batchling_core::providers::{
    BatchContext, BatchItem, OpenAi, ParsedResults, ProviderAdapter, Route,
};
use criterion::{BatchSize, Criterion, Throughput};
use serde::Serialize;
use serde_json::{json, Value};

const N: usize = 50_000;

// ---- counting allocator ---------------------------------------------------------------------

/// Passes everything to the system allocator; while `TRACK` is on it also keeps the live byte
/// count and two peaks: `PEAK_MOVE` counts a `realloc` as alloc-new + copy + free-old (old and
/// new blocks both live for a moment, the worst case), `PEAK_INPLACE` as growing in place (what
/// glibc's `mremap` does for large blocks).
struct Counting;

static TRACK: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK_MOVE: AtomicIsize = AtomicIsize::new(0);
static PEAK_INPLACE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if TRACK.load(Relaxed) && !p.is_null() {
            let now = CURRENT.fetch_add(layout.size() as isize, Relaxed) + layout.size() as isize;
            PEAK_MOVE.fetch_max(now, Relaxed);
            PEAK_INPLACE.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        if TRACK.load(Relaxed) {
            CURRENT.fetch_sub(layout.size() as isize, Relaxed);
        }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if TRACK.load(Relaxed) && !p.is_null() {
            let now = CURRENT.fetch_add(layout.size() as isize, Relaxed) + layout.size() as isize;
            PEAK_MOVE.fetch_max(now, Relaxed);
            PEAK_INPLACE.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if TRACK.load(Relaxed) && !p.is_null() {
            let old = layout.size() as isize;
            let new = new_size as isize;
            let before = CURRENT.fetch_add(new - old, Relaxed);
            PEAK_MOVE.fetch_max(before + new, Relaxed);
            PEAK_INPLACE.fetch_max(before + new - old, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Mem {
    /// Peak live bytes above the level at the start, realloc counted as a move.
    peak_move: usize,
    /// The same, realloc counted as in place.
    peak_inplace: usize,
    /// Still live when the operation returned (its output).
    retained: usize,
}

/// Runs `f` once with tracking on; the output is dropped after the measurement.
fn measure_mem<T>(f: impl FnOnce() -> T) -> Mem {
    CURRENT.store(0, Relaxed);
    PEAK_MOVE.store(0, Relaxed);
    PEAK_INPLACE.store(0, Relaxed);
    TRACK.store(true, Relaxed);
    let out = black_box(f());
    let retained = CURRENT.load(Relaxed).max(0) as usize;
    TRACK.store(false, Relaxed);
    drop(out);
    Mem {
        peak_move: PEAK_MOVE.load(Relaxed).max(0) as usize,
        peak_inplace: PEAK_INPLACE.load(Relaxed).max(0) as usize,
        retained,
    }
}

// ---- workload -------------------------------------------------------------------------------

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

const WORDS: &[&str] = &[
    "the",
    "invoice",
    "customer",
    "summary",
    "translate",
    "paragraph",
    "review",
    "product",
    "shipping",
    "delayed",
    "refund",
    "café",
    "naïve",
    "résumé",
    "quality",
    "excellent",
    "poor",
    "battery",
    "screen",
    "“quoted”",
    "it's",
    "don't",
    "JSON",
    "field",
    "category",
    "label",
    "sentiment",
    "positive",
    "negative",
    "neutral",
    "\"exact\"",
    "line\nbreak",
    "tab\there",
    "order",
    "#4821",
    "2024-11-03",
    "€19.99",
    "support",
    "ticket",
    "question",
    "answer",
    "日本",
];

const SYSTEM_PROMPTS: &[&str] = &[
    "You are a helpful assistant.",
    "You classify customer reviews. Answer with one word: positive, negative or neutral.",
    "Extract the order number, date and amount from the message and answer as JSON.",
    "Summarise the text in one sentence for a support agent.",
    "Translate the user's message into French. Keep product names unchanged.",
];

const MODEL: &str = "gpt-4o-mini";
const ENDPOINT_URL: &str = "https://api.openai.com/v1/chat/completions";

fn words(rng: &mut Rng, target_len: usize) -> String {
    let mut s = String::new();
    while s.len() < target_len {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(rng.pick(WORDS));
    }
    s
}

/// A chat body of 300–500 serialized bytes with a varied shape.
fn chat_body(rng: &mut Rng) -> Value {
    let target = 300 + rng.below(201);
    let system = rng.pick(SYSTEM_PROMPTS);
    let mut fill = 40;
    loop {
        let mut body = json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": words(&mut Rng(rng.0 ^ fill as u64), fill)},
            ],
            "max_completion_tokens": 64 + rng.0 % 448,
        });
        let obj = body.as_object_mut().unwrap();
        match rng.0 % 4 {
            0 => {
                obj.insert("temperature".into(), json!(0.2));
            }
            1 => {
                obj.insert("response_format".into(), json!({"type": "json_object"}));
            }
            2 => {
                obj.insert("seed".into(), json!(rng.0 % 10_000));
                obj.insert("user".into(), json!("user-1234"));
            }
            _ => {}
        }
        let len = body.to_string().len();
        if len >= target || fill > 1_000 {
            rng.next();
            return body;
        }
        fill += (target - len).max(1);
    }
}

fn custom_id(rng: &mut Rng) -> String {
    format!(
        "bl-{:016x}{:016x}{:016x}",
        rng.next(),
        rng.next(),
        rng.next()
    )
}

/// One output line as the OpenAI Batch API writes it: mostly 200 chat completions, ~1% 400
/// errors, ~0.5% `batch_expired` error lines.
fn output_line(rng: &mut Rng, n: usize, id: &str, body: &Value) -> String {
    let line_id = format!("batch_req_{:024x}", rng.next() as u128 * 7 + n as u128);
    let request_id = format!("req_{:032x}", rng.next() as u128 * 13 + n as u128);
    let roll = rng.below(1000);
    let line = if roll < 5 {
        json!({"id": line_id, "custom_id": id, "response": null, "error": {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired."}})
    } else if roll < 15 {
        json!({"id": line_id, "custom_id": id, "response": {"status_code": 400, "request_id": request_id,
            "body": {"error": {"message": "Invalid 'messages[1].content': string too long.",
            "type": "invalid_request_error", "param": "messages[1].content", "code": "string_above_max_length"}}},
            "error": null})
    } else {
        let answer_len = 20 + rng.below(380);
        let answer = words(rng, answer_len);
        let prompt_tokens = body.to_string().len() / 4;
        let completion_tokens = answer.len() / 4;
        json!({"id": line_id, "custom_id": id, "response": {"status_code": 200, "request_id": request_id,
            "body": {
                "id": format!("chatcmpl-{:029x}", rng.next() as u128 * 3 + n as u128),
                "object": "chat.completion",
                "created": 1_763_880_000 + n,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": answer, "refusal": null, "annotations": []},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
                },
                "service_tier": "default",
                "system_fingerprint": "fp_0ba0d124f1",
            }}, "error": null})
    };
    line.to_string()
}

struct Data {
    route: Route,
    items: Vec<BatchItem>,
    /// Size of the JSONL input file the adapter builds (without multipart framing).
    input_jsonl_bytes: usize,
    output_jsonl: String,
}

impl Data {
    fn new() -> Data {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let bodies: Vec<Value> = (0..N).map(|_| chat_body(&mut rng)).collect();
        let route = OpenAi
            .recognize(&HttpRequest {
                method: "POST".into(),
                url: ENDPOINT_URL.into(),
                headers: vec![
                    ("Authorization".into(), "Bearer sk-bench-0123456789".into()),
                    ("Content-Type".into(), "application/json".into()),
                    ("OpenAI-Organization".into(), "org-bench".into()),
                    ("User-Agent".into(), "OpenAI/JS 7.57.0".into()),
                    ("X-Stainless-Lang".into(), "js".into()),
                ],
                body: bodies[0].to_string(),
            })
            .expect("an OpenAI URL")
            .expect("a batchable request");
        let items: Vec<BatchItem> = bodies
            .into_iter()
            .map(|body| BatchItem {
                custom_id: custom_id(&mut rng),
                body,
            })
            .collect();
        let input_jsonl_bytes = baseline_encode(&route.endpoint, &items).len();

        // Output lines in a shuffled order (the provider does not keep input order).
        let mut order: Vec<usize> = (0..N).collect();
        for i in (1..N).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut output_jsonl = String::new();
        for (n, &i) in order.iter().enumerate() {
            output_jsonl.push_str(&output_line(
                &mut rng,
                n,
                &items[i].custom_id,
                &items[i].body,
            ));
            output_jsonl.push('\n');
        }
        Data {
            route,
            items,
            input_jsonl_bytes,
            output_jsonl,
        }
    }

    fn ctx(&self) -> BatchContext<'_> {
        BatchContext {
            route: &self.route,
            tag: "batchling-0123456789abcdef",
        }
    }
}

// ---- the operations -------------------------------------------------------------------------

fn adapter_build(data: &Data) -> HttpRequest {
    OpenAi
        .build_upload(&data.ctx(), &data.items)
        .expect("OpenAI uploads a file")
}

#[derive(Serialize)]
struct InputLine<'a> {
    custom_id: &'a str,
    method: &'a str,
    url: &'a str,
    body: &'a Value,
}

/// Plain serde_json: each line serialized to its own String, then joined (into a buffer of the
/// exact size, with the trailing newline).
fn baseline_encode(endpoint: &str, items: &[BatchItem]) -> String {
    let lines: Vec<String> = items
        .iter()
        .map(|item| {
            serde_json::to_string(&InputLine {
                custom_id: &item.custom_id,
                method: "POST",
                url: endpoint,
                body: &item.body,
            })
            .expect("serializable")
        })
        .collect();
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in &lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn adapter_map(data: &Data) -> ParsedResults {
    OpenAi.parse_results("batch_0123456789abcdef", &data.output_jsonl)
}

/// Plain serde_json: each non-blank line decoded into a `Value`.
fn baseline_decode(body: &str) -> Vec<Value> {
    body.split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).expect("valid JSON"))
        .collect()
}

/// Plain serde_json, streaming: each line decoded into a `Value` and dropped before the next,
/// as `parse_results` itself does; no page faults for a 350 MiB tree of all lines.
fn baseline_decode_streaming(body: &str) -> usize {
    let mut lines = 0;
    for line in body.split('\n').filter(|l| !l.trim().is_empty()) {
        black_box(serde_json::from_str::<Value>(line).expect("valid JSON"));
        lines += 1;
    }
    lines
}

fn adapter_sizing(data: &Data) -> usize {
    let ctx = data.ctx();
    data.items.iter().map(|i| OpenAi.item_bytes(&ctx, i)).sum()
}

// ---- criterion ------------------------------------------------------------------------------

fn criterion_benches(c: &mut Criterion, data: &Data) {
    let mut g = c.benchmark_group("build_50k");
    g.throughput(Throughput::Bytes(data.input_jsonl_bytes as u64));
    g.bench_function("adapter_build_upload", |b| {
        b.iter_with_large_drop(|| adapter_build(black_box(data)))
    });
    g.bench_function("baseline_serde_encode", |b| {
        b.iter_with_large_drop(|| baseline_encode(&data.route.endpoint, black_box(&data.items)))
    });
    g.bench_function("adapter_item_bytes_sum", |b| {
        b.iter(|| adapter_sizing(black_box(data)))
    });
    g.finish();

    let mut g = c.benchmark_group("map_50k");
    g.throughput(Throughput::Bytes(data.output_jsonl.len() as u64));
    g.bench_function("adapter_parse_results", |b| {
        b.iter_batched(
            || (),
            |()| adapter_map(black_box(data)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline_serde_decode", |b| {
        b.iter_batched(
            || (),
            |()| baseline_decode(black_box(&data.output_jsonl)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline_serde_decode_streaming", |b| {
        b.iter(|| baseline_decode_streaming(black_box(&data.output_jsonl)))
    });
    g.finish();
}

// ---- side-by-side summary -------------------------------------------------------------------

/// Runs `f` and returns the time it took, dropping the output outside the timed span.
fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    let out = black_box(f());
    let took = start.elapsed();
    drop(out);
    took
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// "12.3 MiB", or "45.6 KiB" under 1 MiB.
fn size(b: usize) -> String {
    if b < 1024 * 1024 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", mib(b))
    }
}

fn summary(data: &Data, rounds: usize) {
    // Sanity: the adapter's JSONL equals the baseline's, so both do the same work.
    let upload = adapter_build(data);
    let baseline = baseline_encode(&data.route.endpoint, &data.items);
    assert!(
        upload.body.contains(&baseline),
        "the upload carries the baseline JSONL"
    );
    assert_eq!(adapter_sizing(data), baseline.len());
    let parsed = adapter_map(data);
    assert_eq!(parsed.items.len(), N);
    assert!(parsed.malformed.is_empty());
    let upload_bytes = upload.body.len();
    drop((upload, baseline, parsed));

    // Warm-up, then alternate so both sides see the same machine state.
    for _ in 0..2 {
        time(|| adapter_build(data));
        time(|| baseline_encode(&data.route.endpoint, &data.items));
        time(|| adapter_map(data));
        time(|| baseline_decode(&data.output_jsonl));
        time(|| baseline_decode_streaming(&data.output_jsonl));
    }
    let (mut ab, mut be, mut am, mut bd, mut sz) = (vec![], vec![], vec![], vec![], vec![]);
    let mut bs = vec![];
    for _ in 0..rounds {
        ab.push(time(|| adapter_build(data)));
        be.push(time(|| baseline_encode(&data.route.endpoint, &data.items)));
        sz.push(time(|| adapter_sizing(data)));
        am.push(time(|| adapter_map(data)));
        bd.push(time(|| baseline_decode(&data.output_jsonl)));
        bs.push(time(|| baseline_decode_streaming(&data.output_jsonl)));
    }
    let (ab, be, am, bd, sz) = (median(ab), median(be), median(am), median(bd), median(sz));
    let bs = median(bs);

    let in_bytes = data.input_jsonl_bytes;
    let out_bytes = data.output_jsonl.len();
    println!();
    println!("== batch_file summary: {N} requests, median of {rounds} alternating rounds ==");
    println!(
        "input JSONL {:.2} MiB ({} B, {:.0} B/line; multipart upload body {} B); output JSONL {:.2} MiB ({} B, {:.0} B/line)",
        mib(in_bytes),
        in_bytes,
        in_bytes as f64 / N as f64,
        upload_bytes,
        mib(out_bytes),
        out_bytes,
        out_bytes as f64 / N as f64
    );
    println!(
        "{:<44} {:>10} {:>10} {:>8}",
        "operation", "median ms", "MB/s", "ratio"
    );
    let row = |name: &str, d: Duration, bytes: usize, ratio: Option<f64>| {
        println!(
            "{:<44} {:>10.1} {:>10.0} {:>8}",
            name,
            ms(d),
            bytes as f64 / 1e6 / d.as_secs_f64(),
            ratio.map_or(String::new(), |r| format!("{r:.2}x"))
        );
    };
    row(
        "build: baseline serde_json encode + join",
        be,
        in_bytes,
        None,
    );
    row(
        "build: adapter build_upload",
        ab,
        in_bytes,
        Some(ab.as_secs_f64() / be.as_secs_f64()),
    );
    row(
        "sizing: adapter item_bytes x 50k (ref.)",
        sz,
        in_bytes,
        Some(sz.as_secs_f64() / be.as_secs_f64()),
    );
    row(
        "map: baseline serde_json decode to Value",
        bd,
        out_bytes,
        None,
    );
    row(
        "map: adapter parse_results",
        am,
        out_bytes,
        Some(am.as_secs_f64() / bd.as_secs_f64()),
    );
    row(
        "map: baseline decode, each Value dropped",
        bs,
        out_bytes,
        None,
    );
    row(
        "map: adapter parse_results vs streaming",
        am,
        out_bytes,
        Some(am.as_secs_f64() / bs.as_secs_f64()),
    );
    println!("(ratio = adapter / the baseline row above it; target <= 1.50x)");

    // Memory, one run each with the counting allocator on.
    println!();
    println!(
        "{:<44} {:>11} {:>11} {:>11} {:>8}",
        "peak heap above start", "peak(move)", "peak(inpl)", "retained", "x file"
    );
    let mem_row = |name: &str, m: Mem, file: usize| {
        println!(
            "{:<44} {:>11} {:>11} {:>11} {:>7.2}x",
            name,
            size(m.peak_move),
            size(m.peak_inplace),
            size(m.retained),
            m.peak_move as f64 / file as f64
        );
    };
    mem_row(
        "build: baseline serde_json encode + join",
        measure_mem(|| baseline_encode(&data.route.endpoint, &data.items)),
        in_bytes,
    );
    mem_row(
        "build: adapter build_upload",
        measure_mem(|| adapter_build(data)),
        in_bytes,
    );
    mem_row(
        "map: baseline serde_json decode to Value",
        measure_mem(|| baseline_decode(&data.output_jsonl)),
        out_bytes,
    );
    mem_row(
        "map: baseline decode, each Value dropped",
        measure_mem(|| baseline_decode_streaming(&data.output_jsonl)),
        out_bytes,
    );
    mem_row(
        "map: adapter parse_results",
        measure_mem(|| adapter_map(data)),
        out_bytes,
    );
    println!("(x file = peak(move) / that file's size: input JSONL for build, output JSONL for map; target < 3x.");
    println!(" peak(move) counts a realloc as alloc+copy+free, peak(inpl) as growing in place; inputs not counted)");
}

fn main() {
    let data = Data::new();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    criterion_benches(&mut c, &data);
    c.final_summary();
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    // `cargo bench -- --test` only checks that the bench runs; `--profile-time` is for a
    // profiler, which wants the chosen function alone.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--profile-time") {
        return;
    }
    let test_mode = args.iter().any(|a| a == "--test");
    summary(&data, if test_mode { 1 } else { rounds });
}
