//! A fleet member ([`crate::fleet::FleetMember`]) for a host: its configuration as JSON, each
//! [`Event`] as JSON in, the [`Output`]s it drained as JSON out. The host executes the store
//! actions (in Redis, `js/src/fleet-redis.ts`) and answers each with a `storeOutcome` event.

use serde::{Deserialize, Serialize};

use super::ms;
use crate::fleet::{Event, FleetConfig, FleetError, FleetMember, Output};
use crate::options::OptionError;

/// The configuration as a host writes it (camelCase); absent timings keep
/// [`FleetConfig::new`]'s defaults.
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetMemberConfig {
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_ttl_ms: Option<u64>,
}

impl FleetMemberConfig {
    pub fn parse(config_json: &str) -> Result<FleetConfig, OptionError> {
        let given: FleetMemberConfig = serde_json::from_str(config_json)
            .map_err(|e| OptionError::new("fleet", format!("the fleet configuration: {e}")))?;
        given.to_config()
    }

    /// The member's configuration, every rule checked (errors name `fleet.<field>`).
    pub fn to_config(&self) -> Result<FleetConfig, OptionError> {
        let given = self.clone();
        let mut config = FleetConfig::new(given.owner);
        let keep = |field: &mut u64, value: Option<u64>| *field = value.unwrap_or(*field);
        keep(&mut config.lease_ms, given.lease_ms);
        keep(&mut config.grace_ms, given.grace_ms);
        keep(&mut config.poll_ms, given.poll_ms);
        keep(&mut config.answer_ttl_ms, given.answer_ttl_ms);
        keep(&mut config.record_ttl_ms, given.record_ttl_ms);
        config.validate()?;
        Ok(config)
    }
}

pub struct FleetHost {
    member: FleetMember,
}

impl FleetHost {
    /// Refused with the option at fault (`fleet` for JSON that is not a configuration).
    pub fn new(config_json: &str) -> Result<FleetHost, OptionError> {
        let config = FleetMemberConfig::parse(config_json)?;
        let member = FleetMember::new(config).map_err(|e| match e {
            FleetError::InvalidOption(e) => e,
            other => OptionError::new("fleet", other.to_string()),
        })?;
        Ok(FleetHost { member })
    }

    /// `{"ok":true,"outputs":[…],"deadline":ms|null}`, or `{"ok":false,"code","error",
    /// "outputs","deadline"}` when the event was refused (JSON that is not an [`Event`]:
    /// `ERR_BATCHLING_FLEET_EVENT`; an event the member refused: [`FleetError::CODE`]). A
    /// refusal still carries what the member emitted meanwhile (its timers may have fired).
    pub fn handle(&mut self, now_ms: f64, event_json: &str) -> String {
        let refused = match serde_json::from_str::<Event>(event_json) {
            Err(e) => Some((
                "ERR_BATCHLING_FLEET_EVENT",
                format!("not a fleet event: {e}"),
            )),
            Ok(event) => match self.member.handle(ms(now_ms), event) {
                Ok(()) => None,
                Err(e) => Some((e.code(), e.to_string())),
            },
        };
        let outputs: Vec<Output> = self.member.drain_outputs().collect();
        let deadline = self.member.next_deadline();
        let answer = match refused {
            None => serde_json::json!({ "ok": true, "outputs": outputs, "deadline": deadline }),
            Some((code, error)) => serde_json::json!({
                "ok": false, "code": code, "error": error, "outputs": outputs, "deadline": deadline,
            }),
        };
        answer.to_string()
    }

    /// When the member wants a `tick`, if it waits on time.
    pub fn next_deadline(&self) -> Option<u64> {
        self.member.next_deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn handle(host: &mut FleetHost, now: f64, event: &str) -> Value {
        serde_json::from_str(&host.handle(now, event)).unwrap()
    }

    #[test]
    fn a_member_is_driven_with_json() {
        let mut host = FleetHost::new(r#"{"owner":"w1","leaseMs":3000}"#).unwrap();
        let out = handle(
            &mut host,
            10.0,
            r#"{"kind":"arrive","request":7,"fingerprint":"fp1"}"#,
        );
        assert_eq!(out["ok"], true, "{out}");
        let claim = &out["outputs"][0];
        assert_eq!(claim["kind"], "store");
        assert_eq!(claim["op"]["kind"], "claim");
        assert_eq!(claim["op"]["key"], "req:fp1");
        assert_eq!(claim["op"]["leaseMs"], 3000);
        let action = claim["action"].as_u64().unwrap();
        assert_eq!(claim["op"]["token"], format!("w1.{action}"));

        let claimed = format!(
            r#"{{"kind":"storeOutcome","action":{action},"outcome":{{"kind":"claimed"}}}}"#
        );
        let out = handle(&mut host, 11.0, &claimed);
        let read = &out["outputs"][0];
        assert_eq!(read["op"]["kind"], "read");
        assert_eq!(read["op"]["keys"][0], "answer:fp1");
        // The renew timer: lease / 3 after the claim.
        assert_eq!(out["deadline"], 1011);
        assert_eq!(host.next_deadline(), Some(1011));
        let read_action = read["action"].as_u64().unwrap();
        let values = format!(
            r#"{{"kind":"storeOutcome","action":{read_action},"outcome":{{"kind":"values","values":[null,null]}}}}"#
        );
        let out = handle(&mut host, 12.0, &values);
        assert_eq!(out["outputs"][0]["kind"], "enqueue");
        assert_eq!(out["outputs"][0]["fingerprint"], "fp1");
    }

    #[test]
    fn bad_configurations_and_events_are_refused_with_what_is_wrong() {
        let e = FleetHost::new(r#"{"owner":"a b"}"#).err().unwrap();
        assert_eq!(e.option, "fleet.owner");
        let e = FleetHost::new(r#"{"owner":"w","leaseMs":1}"#)
            .err()
            .unwrap();
        assert_eq!(e.option, "fleet.leaseMs");
        let e = FleetHost::new(r#"{"owner":"w","lease":1}"#).err().unwrap();
        assert!(e.message.contains("lease"), "{e}");

        let mut host = FleetHost::new(r#"{"owner":"w"}"#).unwrap();
        let out = handle(&mut host, 0.0, r#"{"kind":"arrive"}"#);
        assert_eq!(out["ok"], false);
        assert_eq!(out["code"], "ERR_BATCHLING_FLEET_EVENT");
        let out = handle(
            &mut host,
            0.0,
            r#"{"kind":"storeOutcome","action":99,"outcome":{"kind":"done"}}"#,
        );
        assert_eq!(out["code"], FleetError::CODE);
        assert!(out["error"].as_str().unwrap().contains("99"), "{out}");
        let out = handle(
            &mut host,
            0.0,
            r#"{"kind":"arrive","request":1,"fingerprint":"has space"}"#,
        );
        assert_eq!(out["code"], FleetError::CODE);
    }
}
