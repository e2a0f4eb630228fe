//! Unit tests of private helpers (the behaviour tests live in `core/tests/jobs.rs`).

use serde_json::json;

use super::*;

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .chain(std::iter::repeat(&0))
            .take(3)
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((word >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n\
2 0 obj <</Type /Pages /Kids [3 0 R 4 0 R] /Count 2>> endobj\n\
3 0 obj <</Type /Page /Parent 2 0 R>> endobj\n4 0 obj <</Type/Page /Parent 2 0 R>> endobj\n\
trailer <</Root 1 0 R>>\n%%EOF\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";

fn file(name: &str, media_type: &str, bytes: &[u8]) -> FileInput {
    FileInput {
        name: name.into(),
        media_type: media_type.into(),
        data_base64: b64(bytes),
    }
}

fn chat(id: &str, model: &str) -> JobSpec {
    JobSpec {
        id: id.into(),
        model: model.into(),
        messages: Some(vec![
            Message {
                role: "user".into(),
                content: "2+2?".into(),
            },
            Message {
                role: "assistant".into(),
                content: "4".into(),
            },
            Message {
                role: "user".into(),
                content: "times 3?".into(),
            },
        ]),
        file: None,
        prompt: None,
        system: Some("Be brief.".into()),
        temperature: None,
        max_tokens: None,
        response_schema: None,
        extra: None,
    }
}

fn ask(id: &str, model: &str, f: Option<FileInput>, prompt: &str) -> JobSpec {
    JobSpec {
        messages: None,
        file: f,
        prompt: Some(prompt.into()),
        system: None,
        ..chat(id, model)
    }
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "pages": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "note": {"type": ["string", "null"]},
        },
        "required": ["title", "pages", "tags", "note"],
        "additionalProperties": false,
    })
}

fn structured(model: &str) -> JobSpec {
    JobSpec {
        response_schema: Some(schema()),
        temperature: None,
        ..ask("s1", model, None, "Describe the report.")
    }
}

#[test]
fn capability_errors_on_a_limited_model() {
    static TEXT_ONLY: ModelInfo = ModelInfo {
        name: "text-only",
        provider: ProviderId::OpenAi,
        max_input_tokens: 16_000,
        max_output_tokens: 4_096,
        supports_files: false,
        supports_images: false,
        supports_citations: false,
        supports_structured_output: false,
        supports_temperature: true,
        thinks_by_default: false,
        batch_discount: 0.5,
    };
    let check = |job: &JobSpec| prepare(job, &TEXT_ONLY).err().unwrap();
    let e = check(&ask(
        "i",
        "text-only",
        Some(file("a.png", "image/png", PNG)),
        "?",
    ));
    assert_eq!(
        e.to_string(),
        "job `i`: file `a.png`: model `text-only` cannot read images; use a model that reads \
         images, e.g. gpt-5.5"
    );
    let e = check(&structured("text-only"));
    assert_eq!(
        e,
        JobError::StructuredOutputUnsupported {
            id: "s1".into(),
            model: "text-only".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "job `s1`: model `text-only` does not support structured output; drop `responseSchema` \
         or pick a model that supports it"
    );
}

#[test]
fn pdf_page_count() {
    assert_eq!(pdf_pages(PDF), 2);
    assert_eq!(pdf_pages(&[b'x'; 120_000]), 3);
}

#[test]
fn base64_helpers() {
    for n in 0..10 {
        let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 1) as u8).collect();
        let enc = b64(&bytes);
        assert_eq!(base64_check(&enc), Ok(()), "{enc}");
        assert_eq!(base64_decode_prefix(&enc, usize::MAX), bytes);
        assert_eq!(base64_decode_prefix(&enc, 1).len(), n.min(3));
    }
    assert_eq!(base64_check("QQ="), Err(3));
    assert_eq!(base64_check("Q=Q="), Err(1));
    assert_eq!(base64_check("QQ\nA"), Err(2));
}
