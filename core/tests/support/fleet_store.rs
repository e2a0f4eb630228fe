//! The fleet's store, simulated for the core's fleet tests (`fleet_simulation.rs`,
//! `interceptor_fleet.rs`): keys with an expiry on virtual time, each `StoreAction` executed
//! atomically with the semantics Redis gives it (`js/src/fleet-redis.ts`).

// Each test file compiles this on its own and uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;

use batchling_core::fleet::{StoreAction, StoreOutcome};

#[derive(Default)]
pub struct FleetStore {
    map: HashMap<String, (String, Option<u64>)>,
}

impl FleetStore {
    pub fn get(&mut self, key: &str, now: u64) -> Option<String> {
        if let Some((_, Some(expiry))) = self.map.get(key) {
            if *expiry <= now {
                self.map.remove(key);
            }
        }
        self.map.get(key).map(|(v, _)| v.clone())
    }

    pub fn exec(&mut self, now: u64, op: &StoreAction, answer: Option<&String>) -> StoreOutcome {
        match op {
            StoreAction::Claim {
                key,
                token,
                lease_ms,
            } => match self.get(key, now) {
                Some(owner) => StoreOutcome::HeldBy { owner },
                None => {
                    self.map
                        .insert(key.clone(), (token.clone(), Some(now + lease_ms)));
                    StoreOutcome::Claimed
                }
            },
            StoreAction::Renew { claims, lease_ms } => {
                let mut keys = Vec::new();
                for c in claims {
                    if self.get(&c.key, now).as_ref() == Some(&c.token) {
                        self.map.get_mut(&c.key).unwrap().1 = Some(now + lease_ms);
                        keys.push(c.key.clone());
                    }
                }
                StoreOutcome::Renewed { keys }
            }
            StoreAction::WriteIfOwner {
                claims,
                records,
                ttl_ms,
            } => {
                let lost: Vec<String> = claims
                    .iter()
                    .filter(|c| self.get(&c.key, now).as_ref() != Some(&c.token))
                    .map(|c| c.key.clone())
                    .collect();
                if !lost.is_empty() {
                    return StoreOutcome::NotOwner { lost };
                }
                for r in records {
                    self.map
                        .insert(r.key.clone(), (r.value.clone(), Some(now + ttl_ms)));
                }
                StoreOutcome::Written
            }
            StoreAction::Read { keys } => StoreOutcome::Values {
                values: keys.iter().map(|k| self.get(k, now)).collect(),
            },
            StoreAction::Release { key, token } => {
                if self.get(key, now).as_ref() == Some(token) {
                    self.map.remove(key);
                }
                StoreOutcome::Done
            }
            StoreAction::PutAnswer { key, ttl_ms, .. } => {
                let value = answer.expect("a putAnswer carries the answer").clone();
                self.map.insert(key.clone(), (value, Some(now + ttl_ms)));
                StoreOutcome::Done
            }
        }
    }

    /// Every value in the store, for the secrets check.
    pub fn values(&self) -> impl Iterator<Item = (&String, &String)> {
        self.map.iter().map(|(k, (v, _))| (k, v))
    }
}
