//! The one error an option the user (or the host) got wrong raises, in every engine and every
//! host: which option, spelt as the user writes it (`retry.attempts`, `hosts[0].provider`), and
//! what is allowed. The rules for the options as users write them are in
//! [`crate::host::options`]; each engine's own invariants stay with its config.

use serde::Serialize;

/// An option that is missing, of the wrong type or out of range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[error("invalid option `{option}`: {message}")]
pub struct OptionError {
    /// The option's name as the user writes it, nested ones with dots and indexes.
    pub option: String,
    /// What is wrong and what is allowed, e.g. `must be an integer >= 1, got 0`.
    pub message: String,
}

impl OptionError {
    /// The stable code users match on.
    pub const CODE: &'static str = "ERR_BATCHLING_INVALID_OPTION";

    pub fn new(option: impl Into<String>, message: impl Into<String>) -> Self {
        OptionError {
            option: option.into(),
            message: message.into(),
        }
    }
}
