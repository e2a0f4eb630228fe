//! Attachments: what a job's file is (PDF, image, text) by its media type and first bytes, how
//! many input tokens it is estimated at, and the base64 its bytes travel in.

/// Input tokens assumed per image in estimates (Anthropic bills about width × height / 750,
/// ≈1,600 for a 1.15-megapixel image; OpenAI and Gemini bill less). A rough upper figure.
pub const IMAGE_TOKENS_EST: u64 = 1_600;
/// Input tokens assumed per PDF page in estimates (Anthropic: 1,500–3,000 text tokens per page
/// plus the page image; Gemini bills far less). A rough upper figure.
pub const PDF_PAGE_TOKENS_EST: u64 = 3_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Pdf,
    Image(&'static str),
    Text,
}

pub(crate) const TEXT_APPLICATION_TYPES: &[&str] = &[
    "application/json",
    "application/ld+json",
    "application/x-ndjson",
    "application/jsonl",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/javascript",
    "application/typescript",
    "application/sql",
    "application/x-sh",
];

pub(crate) const IMAGE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/heic",
    "image/heif",
];

/// The files a host may attach to a job by path, by extension (lower case, with the dot) and the
/// media type it sends them as. The job builder reads every one of these media types; it still
/// checks the bytes and whether the model and provider can read them.
pub const FILE_TYPES: &[(&str, &str)] = &[
    (".pdf", "application/pdf"),
    (".png", "image/png"),
    (".jpg", "image/jpeg"),
    (".jpeg", "image/jpeg"),
    (".gif", "image/gif"),
    (".webp", "image/webp"),
    (".txt", "text/plain"),
    (".md", "text/markdown"),
    (".csv", "text/csv"),
    (".json", "application/json"),
    (".html", "text/html"),
];

/// The media type of a file with `extension` (".pdf", any case), from [`FILE_TYPES`].
pub fn media_type_for_extension(extension: &str) -> Option<&'static str> {
    FILE_TYPES
        .iter()
        .find(|(ext, _)| ext.eq_ignore_ascii_case(extension))
        .map(|(_, media_type)| *media_type)
}

pub(crate) fn classify_media(media_type: &str) -> Option<FileKind> {
    let mt = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mt = if mt == "image/jpg" {
        "image/jpeg".to_string()
    } else {
        mt
    };
    if mt == "application/pdf" {
        return Some(FileKind::Pdf);
    }
    if let Some(t) = IMAGE_TYPES.iter().find(|t| **t == mt) {
        return Some(FileKind::Image(t));
    }
    if mt.starts_with("text/") || TEXT_APPLICATION_TYPES.contains(&mt.as_str()) {
        return Some(FileKind::Text);
    }
    None
}

/// Page count from the PDF's `/Type /Page` objects; when those sit in compressed object streams,
/// a guess of one page per 50 kB.
pub(crate) fn pdf_pages(pdf: &[u8]) -> u64 {
    let mut pages = 0u64;
    let mut i = 0;
    while let Some(at) = find(&pdf[i..], b"/Type") {
        let mut j = i + at + b"/Type".len();
        while j < pdf.len() && pdf[j].is_ascii_whitespace() {
            j += 1;
        }
        if pdf[j..].starts_with(b"/Page")
            && !pdf
                .get(j + b"/Page".len())
                .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            pages += 1;
        }
        i = j;
    }
    if pages == 0 {
        (pdf.len() as u64).div_ceil(50_000).max(1)
    } else {
        pages
    }
}

/// Input tokens of a request-body string that is an attachment: base64 (or a `data:…;base64,`
/// URL) of a PDF ([`PDF_PAGE_TOKENS_EST`] per page) or an image ([`IMAGE_TOKENS_EST`]). `None`
/// for anything else, which is billed as text. Short strings are never attachments.
pub(crate) fn attachment_tokens_est(s: &str) -> Option<u64> {
    const MIN_ATTACHMENT_CHARS: usize = 512;
    if s.len() < MIN_ATTACHMENT_CHARS {
        return None;
    }
    let data = match s.strip_prefix("data:") {
        Some(url) => url.split_once(";base64,")?.1,
        None => s,
    };
    base64_check(data).ok()?;
    let head = base64_decode_prefix(data, 16);
    if head.starts_with(b"%PDF") {
        Some(pdf_pages(&base64_decode_prefix(data, usize::MAX)) * PDF_PAGE_TOKENS_EST)
    } else {
        sniff_image(&head).map(|_| IMAGE_TOKENS_EST)
    }
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

pub(crate) fn sniff_image(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"\xFF\xD8\xFF") {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

// Base64 (standard alphabet, padded).

pub(crate) fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// `Err(offset)` of the first byte that makes `s` invalid padded base64.
pub(crate) fn base64_check(s: &str) -> Result<(), usize> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return Err(b.len());
    }
    let pad = b.iter().rev().take(2).take_while(|&&c| c == b'=').count();
    let body = &b[..b.len() - pad];
    if let Some(at) = body.iter().position(|&c| b64_value(c).is_none()) {
        return Err(at);
    }
    Ok(())
}

/// Decodes at most `max_bytes` (rounded up to whole 3-byte groups) of already-checked base64.
pub(crate) fn base64_decode_prefix(s: &str, max_bytes: usize) -> Vec<u8> {
    let groups = s.len() / 4;
    let want = max_bytes.div_ceil(3).min(groups);
    let mut out = Vec::with_capacity(want * 3);
    for chunk in s.as_bytes().chunks_exact(4).take(want) {
        let v: Vec<u8> = chunk.iter().filter_map(|&c| b64_value(c)).collect();
        let n = v.len();
        let word = v
            .iter()
            .chain(std::iter::repeat(&0))
            .take(4)
            .fold(0u32, |acc, &x| (acc << 6) | u32::from(x));
        let bytes = [(word >> 16) as u8, (word >> 8) as u8, word as u8];
        out.extend_from_slice(&bytes[..n.saturating_sub(1)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attachable_file_type_is_one_the_job_builder_reads() {
        for (ext, media_type) in FILE_TYPES {
            assert!(
                ext.starts_with('.') && *ext == ext.to_ascii_lowercase(),
                "{ext}"
            );
            assert!(classify_media(media_type).is_some(), "{ext} {media_type}");
        }
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n\
    2 0 obj <</Type /Pages /Kids [3 0 R 4 0 R] /Count 2>> endobj\n\
    3 0 obj <</Type /Page /Parent 2 0 R>> endobj\n4 0 obj <</Type/Page /Parent 2 0 R>> endobj\n\
    trailer <</Root 1 0 R>>\n%%EOF\n";

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
}
