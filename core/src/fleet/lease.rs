//! The claims a member holds, and until when each is surely still its own.
//!
//! A claim set or renewed by an action sent at `t` is the member's until at least `t + lease_ms`
//! in the store (the store starts the expiry when it executes the action, never before it is
//! sent). So `valid_until_ms` counts from the send, never from the outcome: a late outcome
//! (a slow network, a paused process) only shortens what the member believes.

use std::collections::{HashMap, HashSet};

use super::io::ActionId;
use super::keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The `Claim` action that took it. A renew sent before it says nothing about it.
    pub since: ActionId,
    pub valid_until_ms: u64,
}

#[derive(Debug, Default)]
pub struct Claims {
    held: HashMap<String, Claim>,
}

impl Claims {
    pub fn insert(&mut self, fingerprint: &str, since: ActionId, valid_until_ms: u64) {
        self.held.insert(
            fingerprint.to_string(),
            Claim {
                since,
                valid_until_ms,
            },
        );
    }

    pub fn holds(&self, fingerprint: &str) -> bool {
        self.held.contains_key(fingerprint)
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn remove(&mut self, fingerprint: &str) -> bool {
        self.held.remove(fingerprint).is_some()
    }

    /// Forget the claim; the action that took it (its token's part), if it was held.
    pub fn take(&mut self, fingerprint: &str) -> Option<ActionId> {
        self.held.remove(fingerprint).map(|c| c.since)
    }

    pub fn since(&self, fingerprint: &str) -> Option<ActionId> {
        self.held.get(fingerprint).map(|c| c.since)
    }

    /// The earliest time one of these claims may lapse (`None`: one is not held).
    pub fn earliest_lapse(&self, fingerprints: &[String]) -> Option<u64> {
        fingerprints
            .iter()
            .map(|fp| self.held.get(fp).map(|c| c.valid_until_ms))
            .min()
            .flatten()
    }

    /// Every held fingerprint, sorted (so renews are deterministic).
    pub fn fingerprints(&self) -> Vec<String> {
        let mut all: Vec<String> = self.held.keys().cloned().collect();
        all.sort();
        all
    }

    /// A renew sent at `sent_ms` as action `renew` for `asked` kept `kept` (claim keys). Extends
    /// the kept claims; returns the fingerprints it proves lost. Claims taken after the renew
    /// was sent are not its business.
    pub fn renewed(
        &mut self,
        renew: ActionId,
        sent_ms: u64,
        lease_ms: u64,
        asked: &[String],
        kept: &HashSet<&str>,
    ) -> Vec<String> {
        let mut lost = Vec::new();
        for fp in asked {
            let Some(claim) = self.held.get_mut(fp) else {
                continue;
            };
            if claim.since > renew {
                continue;
            }
            if kept.contains(keys::claim(fp).as_str()) {
                claim.valid_until_ms = claim.valid_until_ms.max(sent_ms + lease_ms);
            } else {
                self.held.remove(fp);
                lost.push(fp.clone());
            }
        }
        lost
    }
}
