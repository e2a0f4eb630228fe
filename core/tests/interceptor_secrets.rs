//! Secrets: no key reaches a journal line, an event or a caller error.

mod support;

use batchling_core::providers::ProviderId;

use support::*;

// ---- secrets -------------------------------------------------------------------------------

#[test]
fn no_key_reaches_a_journal_line_an_event_or_a_caller_error() {
    let mut h = Harness::new(config(2));
    h.fake.fault(
        Some(ProviderId::OpenAi),
        Step::Upload,
        Fault::Status(429, Some("1")),
    );
    h.fake.fault(
        Some(ProviderId::Gemini),
        Step::Poll,
        Fault::Status(500, None),
    );
    h.fake.fault(
        Some(ProviderId::Anthropic),
        Step::Create,
        Fault::Status(529, None),
    );
    h.fake
        .fault(Some(ProviderId::OpenAi), Step::Create, Fault::LostAnswer);
    h.fake.fates.extend([Fate::Complete, Fate::Expire]);
    for (k, p) in [
        (0, ProviderId::OpenAi),
        (1, ProviderId::OpenAi),
        (0, ProviderId::Anthropic),
        (1, ProviderId::Anthropic),
        (0, ProviderId::Gemini),
        (1, ProviderId::Gemini),
    ] {
        h.submit(request(p, k, 0, "s1"));
        h.submit(request(p, k, 0, "s2 #err=400"));
    }
    h.submit(gemini_gen_query_key(GEMINI_KEYS[0], "gemini-2.5-pro", "s3"));
    h.submit(anthropic_msg(
        ANTHROPIC_KEYS[0],
        "claude-sonnet-4-5",
        "s4",
        Some("b1"),
    ));
    // A 401 on a separate key.
    h.fake.fault(
        Some(ProviderId::Gemini),
        Step::Create,
        Fault::Status(401, None),
    );
    h.submit(gemini_gen(GEMINI_KEYS[1], "gemini-2.5-pro", "s5"));
    h.close_and_drain(); // checks every output but the provider calls
    assert!(!h.journal.is_empty() && !h.events.is_empty());

    // A damaged journal and a crash replay: warnings and resumed batches are clean too.
    let (fake, mut journal) = h.crash();
    journal.insert(1, "{\"type\":\"submitted\",\"place\":".into());
    let mut h2 = Harness::restart(config(2), fake, &journal, 1_000_000);
    h2.submit(request(ProviderId::OpenAi, 0, 0, "s1"));
    h2.close_and_drain();
    assert_eq!(h2.warnings().len(), 1);
}
