//! The one error of the fleet protocol: what a host got wrong when it drove a [`super::FleetMember`].

use crate::options::OptionError;

use super::io::ActionId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// A [`super::FleetConfig`] value is out of range.
    #[error(transparent)]
    InvalidOption(#[from] OptionError),
    /// An outcome for an action this member never emitted, or already answered.
    #[error("store outcome for unknown action {0}")]
    UnknownAction(ActionId),
    /// An outcome of the wrong kind for its action (e.g. `Claimed` for a `Read`).
    #[error("store outcome {outcome} does not answer action {action} ({expected})")]
    OutcomeMismatch {
        action: ActionId,
        expected: &'static str,
        outcome: &'static str,
    },
    /// A `Read` answered with another number of values than keys asked for.
    #[error("read {action} asked for {asked} keys and got {got} values")]
    ReadLength {
        action: ActionId,
        asked: usize,
        got: usize,
    },
    /// A fingerprint the member cannot build a key from.
    #[error("invalid fingerprint {0:?}: 1 to 256 visible ASCII characters, no spaces")]
    InvalidFingerprint(String),
    /// A key in an outcome that is not one the member builds (`req:<fingerprint>` for renews).
    #[error("malformed key {key:?}: {reason}")]
    MalformedKey { key: String, reason: &'static str },
    /// A batch record read from the store that is not one the member writes.
    #[error("malformed record at {key:?}: {reason}")]
    MalformedRecord { key: String, reason: String },
    /// A provider event (`BatchCreated`, `CreateUnknown`, `BatchFound`) for a tag this member
    /// has no create or look-up in flight for.
    #[error("no batch with tag {0:?} is being created or looked up")]
    UnknownTag(String),
}

impl FleetError {
    /// The stable code a host's refusal carries (an invalid option keeps its own).
    pub const CODE: &'static str = "ERR_BATCHLING_FLEET";

    pub fn code(&self) -> &'static str {
        match self {
            FleetError::InvalidOption(_) => OptionError::CODE,
            _ => Self::CODE,
        }
    }
}
