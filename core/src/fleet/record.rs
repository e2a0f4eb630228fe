//! What a batch's record in the store says: an intent (the create may or may not have reached
//! the provider) or a submitted batch. JSON, camelCase, tagged by `state`:
//! `{"state":"intent","fingerprints":["…"]}`,
//! `{"state":"submitted","batchId":"…","fingerprints":["…"]}`. It never holds a key or a header:
//! fingerprints are hashes.

use serde::{Deserialize, Serialize};

use super::error::FleetError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum BatchRecord {
    /// Written (fenced) before the create is sent.
    Intent { fingerprints: Vec<String> },
    /// The provider accepted the batch.
    #[serde(rename_all = "camelCase")]
    Submitted {
        batch_id: String,
        fingerprints: Vec<String>,
    },
}

impl BatchRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("batch records always serialize")
    }

    pub fn parse(key: &str, text: &str) -> Result<BatchRecord, FleetError> {
        serde_json::from_str(text).map_err(|e| FleetError::MalformedRecord {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }
}
