//! The store's keys, built by the core so every host lays them out alike (a host only prefixes
//! them, e.g. with `batchling:`), and the checks on what goes into them.

use super::error::FleetError;

/// The claim on a request: value = the owner id, expiry = the lease.
pub fn claim(fingerprint: &str) -> String {
    format!("req:{fingerprint}")
}

/// Which batch (by tag) holds the request's line: value = the tag. Written with the intent;
/// set to [`NO_LINE`] once that batch ended without an answer for it.
pub fn line(fingerprint: &str) -> String {
    format!("line:{fingerprint}")
}

/// A line pointer's value once its batch ended without running the request's line (or with a
/// transient error on it): no batch holds it, and it is batched anew. Tags are never empty.
pub const NO_LINE: &str = "";

/// A batch's record ([`super::record::BatchRecord`] as JSON).
pub fn batch(tag: &str) -> String {
    format!("batch:{tag}")
}

/// The request's answer, as the host stores it (the core only asks whether it is there).
pub fn answer(fingerprint: &str) -> String {
    format!("answer:{fingerprint}")
}

/// The fingerprint a claim key is for.
pub fn claim_fingerprint(key: &str) -> Result<&str, FleetError> {
    match key.strip_prefix("req:") {
        Some(fp) if !fp.is_empty() => Ok(fp),
        _ => Err(FleetError::MalformedKey {
            key: key.to_string(),
            reason: "a claim key is req:<fingerprint>",
        }),
    }
}

/// 1 to 256 visible ASCII characters: a key part that needs no escaping in any store.
pub fn check_fingerprint(fingerprint: &str) -> Result<(), FleetError> {
    let ok =
        (1..=256).contains(&fingerprint.len()) && fingerprint.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(FleetError::InvalidFingerprint(fingerprint.to_string()))
    }
}
