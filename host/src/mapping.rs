//! Mapping and the upload wire format: normalized records become the JSON items of the WFM
//! API (DESIGN section 7, docs/upload-api.md), with queues, activities and agents mapped to
//! the WFM's identifiers, each item with its natural key and fingerprint for
//! reconciliation.
//!
//! **Architecture invariant:** this module is pure: no I/O, no store, no connector. The same
//! records and mapping always give the same items.

use crate::config::{MappingConfig, UnmappedPolicy};
use acdlink_connector_api::{
    AgentStatus, Channel, ContactEvent, QueueInterval, Records, StreamKind,
};
use serde::Serialize;
use serde_json::json;

/// The API endpoint of a stream, below `/external-systems/`.
pub fn endpoint(stream: StreamKind) -> Option<&'static str> {
    match stream {
        StreamKind::PHONELINK_INTERVALS => Some("queue-intervals"),
        StreamKind::PHONELINK_CONTACTS => Some("contact-events"),
        StreamKind::TIMELINK => Some("agent-statuses"),
        _ => None,
    }
}

/// One record as the WFM gets it.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// What the WFM upserts on: queue, channel and interval start; agent and start; the
    /// contact identifier (or, for contacts without one, the whole item).
    pub natural_key: String,
    /// The UTC day (days since 1970-01-01) of the record's time: interval start, contact
    /// time or status start. The store keeps fingerprints per day.
    pub day: i64,
    /// Changes whenever anything the WFM gets changes.
    pub fingerprint: i64,
    /// The item as JSON text, exactly as it goes into a body.
    pub json: String,
}

/// The mapped records of one batch, and what mapping dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapped {
    pub items: Vec<Item>,
    /// Records dropped because their queue has no mapping (policy `drop`).
    pub n_dropped_queues: usize,
    /// Records dropped because their agent has no mapping (policy `drop`).
    pub n_dropped_agents: usize,
}

/// Maps every record of a batch.
pub fn map_records(records: &Records, mapping: &MappingConfig) -> Mapped {
    let mut mapped = Mapped::default();
    match records {
        Records::QueueIntervals(records) => {
            for record in records.iter() {
                match queue_interval(record, mapping) {
                    Some(item) => mapped.items.push(item),
                    None => mapped.n_dropped_queues += 1,
                }
            }
        }
        Records::ContactEvents(records) => {
            for record in records.iter() {
                match contact_event(record, mapping) {
                    Some(item) => mapped.items.push(item),
                    None => mapped.n_dropped_queues += 1,
                }
            }
        }
        Records::AgentStatuses(records) => {
            for record in records.iter() {
                match agent_status(record, mapping) {
                    Some(item) => mapped.items.push(item),
                    None => mapped.n_dropped_agents += 1,
                }
            }
        }
    }
    mapped
}

/// The WFM's (identifier, name, channel) of a source queue, or `None` to drop it.
fn queue<'a>(
    queue_id: &'a str,
    queue_name: &'a str,
    channel: Channel,
    mapping: &'a MappingConfig,
) -> Option<(&'a str, &'a str, String)> {
    match mapping.queues.get(queue_id) {
        Some(target) => Some((
            target.identifier.as_str(),
            target.name.as_deref().unwrap_or(queue_name),
            target
                .channel
                .clone()
                .unwrap_or_else(|| channel.to_string()),
        )),
        None if mapping.unmapped_queues == UnmappedPolicy::Drop => None,
        None => Some((queue_id, queue_name, channel.to_string())),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueIntervalItem<'a> {
    queue_identifier: &'a str,
    queue_name: &'a str,
    channel: &'a str,
    timestamp: &'a str,
    interval_minutes: u32,
    offered: u32,
    handled: u32,
    abandoned: u32,
    handling_time: f64,
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "values")]
    values: Vec<(&'a str, f64)>,
}

/// Named extras as a JSON object.
fn values<S: serde::Serializer>(values: &[(&str, f64)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(values.iter().map(|(name, value)| (*name, *value)))
}

fn queue_interval(record: &QueueInterval, mapping: &MappingConfig) -> Option<Item> {
    let (identifier, name, channel) = queue(
        &record.queue_id,
        &record.queue_name,
        record.channel,
        mapping,
    )?;
    let timestamp = record.start.to_string();
    let json = to_json(&QueueIntervalItem {
        queue_identifier: identifier,
        queue_name: name,
        channel: &channel,
        timestamp: &timestamp,
        interval_minutes: record.interval_minutes,
        offered: record.offered,
        handled: record.handled,
        abandoned: record.abandoned,
        handling_time: record.handle_time_secs,
        values: record
            .extras
            .iter()
            .map(|extra| (extra.name.as_str(), extra.value))
            .collect(),
    });
    Some(item(
        format!("{identifier}|{channel}|{timestamp}"),
        record.start.0,
        json,
    ))
}

#[derive(Serialize)]
struct ContactProperties {
    offered: bool,
    handled: bool,
    duration: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactEventItem<'a> {
    properties: ContactProperties,
    queue_name: &'a str,
    queue_identifier: &'a str,
    timestamp: &'a str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_identifier: Option<&'a str>,
}

fn contact_event(record: &ContactEvent, mapping: &MappingConfig) -> Option<Item> {
    let (identifier, name, channel) = queue(
        &record.queue_id,
        &record.queue_name,
        record.channel,
        mapping,
    )?;
    let contact_id = record
        .contact_id
        .as_ref()
        .map(|contact_id| contact_id.as_str())
        .into_option();
    let json = to_json(&ContactEventItem {
        properties: ContactProperties {
            offered: record.offered,
            handled: record.handled,
            duration: record.duration_secs,
        },
        queue_name: name,
        queue_identifier: identifier,
        timestamp: &record.timestamp.to_string(),
        channel: &channel,
        contact_identifier: contact_id,
    });
    let natural_key = match contact_id {
        Some(contact_id) => format!("{identifier}|{contact_id}"),
        // Without an identifier the WFM appends: the item itself is its key.
        None => json.clone(),
    };
    Some(item(natural_key, record.timestamp.0, json))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentStatusItem<'a> {
    agent_identifier: &'a str,
    activity_identifier: &'a str,
    start_time: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<String>,
}

fn agent_status(record: &AgentStatus, mapping: &MappingConfig) -> Option<Item> {
    let agent = match mapping.agents.get(record.agent_id.as_str()) {
        Some(agent) => agent.as_str(),
        None if mapping.unmapped_agents == UnmappedPolicy::Drop => return None,
        None => record.agent_id.as_str(),
    };
    let activity = mapping
        .activities
        .get(record.activity_id.as_str())
        .or(mapping.default_activity.as_ref())
        .map_or(record.activity_id.as_str(), String::as_str);
    let start = record.start.to_string();
    let json = to_json(&AgentStatusItem {
        agent_identifier: agent,
        activity_identifier: activity,
        start_time: &start,
        end_time: record.end.into_option().map(|end| end.to_string()),
    });
    Some(item(format!("{agent}|{start}"), record.start.0, json))
}

fn to_json(item: &impl Serialize) -> String {
    serde_json::to_string(item).expect("items always serialize to JSON")
}

fn item(natural_key: String, time_ms: i64, json: String) -> Item {
    Item {
        fingerprint: fnv1a(json.as_bytes()),
        day: time_ms.div_euclid(86_400_000),
        natural_key,
        json,
    }
}

impl Item {
    /// The store's form of this item's fingerprint: its day, a 64-bit hash of its natural
    /// key, and the hash of its content.
    pub fn stored_fingerprint(&self) -> crate::store::Fingerprint {
        crate::store::Fingerprint {
            day: self.day,
            key: fnv1a(self.natural_key.as_bytes()) as u64,
            hash: self.fingerprint,
        }
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every build and on every platform (the
/// standard library's hasher may change between Rust versions, and fingerprints are kept
/// in the store across upgrades).
fn fnv1a(bytes: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// One request body: `{"data": [...], "meta": {...}}`, written from the items' JSON text.
pub fn body<T: std::borrow::Borrow<Item>>(
    items: &[T],
    integration_configuration_id: i64,
    external_system: Option<&str>,
) -> Vec<u8> {
    let mut meta = json!({ "integrationConfigurationId": integration_configuration_id });
    if let Some(system) = external_system {
        meta["externalSystem"] = json!(system);
    }
    let length: usize = items.iter().map(|item| item.borrow().json.len() + 1).sum();
    let mut body = Vec::with_capacity(length + 100);
    body.extend_from_slice(b"{\"data\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item.borrow().json.as_bytes());
    }
    body.extend_from_slice(b"],\"meta\":");
    body.extend_from_slice(meta.to_string().as_bytes());
    body.push(b'}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueMapping;
    use acdlink_connector_api::{Extra, ROption, RVec, UtcMillis};

    fn parsed(item: &Item) -> serde_json::Value {
        serde_json::from_str(&item.json).expect("items are JSON")
    }

    fn interval(queue_id: &str) -> QueueInterval {
        QueueInterval {
            queue_id: queue_id.into(),
            queue_name: "Sales".into(),
            channel: Channel::CALLS,
            start: UtcMillis(1_709_542_800_000),
            interval_minutes: 15,
            offered: 10,
            handled: 9,
            abandoned: 1,
            handle_time_secs: 2400.0,
            extras: RVec::from(vec![Extra::fixed(Extra::HOLD_SECS, 120.0)]),
        }
    }

    fn status(agent: &str, activity: &str) -> AgentStatus {
        AgentStatus {
            agent_id: agent.into(),
            activity_id: activity.into(),
            activity_name: ROption::RNone,
            start: UtcMillis(1_709_542_800_000),
            end: ROption::RSome(UtcMillis(1_709_543_100_000)),
        }
    }

    #[test]
    fn queue_intervals_become_wfm_items_with_mapped_queues() {
        let mut mapping = MappingConfig::default();
        mapping.queues.insert(
            "Q1".to_string(),
            QueueMapping {
                identifier: "1337_99".to_string(),
                name: Some("Level-1-Support".to_string()),
                channel: None,
            },
        );
        let mapped = map_records(
            &Records::QueueIntervals(RVec::from(vec![interval("Q1"), interval("Q2")])),
            &mapping,
        );
        assert_eq!(mapped.items.len(), 2);
        assert_eq!(
            parsed(&mapped.items[0]),
            json!({
                "queueIdentifier": "1337_99", "queueName": "Level-1-Support", "channel": "calls",
                "timestamp": "2024-03-04T09:00:00Z", "intervalMinutes": 15,
                "offered": 10, "handled": 9, "abandoned": 1, "handlingTime": 2400.0,
                "values": { "hold_secs": 120.0 }
            })
        );
        assert_eq!(
            mapped.items[0].natural_key,
            "1337_99|calls|2024-03-04T09:00:00Z"
        );
        assert_eq!(
            parsed(&mapped.items[1])["queueIdentifier"],
            "Q2",
            "unmapped queues pass by default"
        );

        mapping.unmapped_queues = UnmappedPolicy::Drop;
        let mapped = map_records(
            &Records::QueueIntervals(RVec::from(vec![interval("Q1"), interval("Q2")])),
            &mapping,
        );
        assert_eq!((mapped.items.len(), mapped.n_dropped_queues), (1, 1));
    }

    #[test]
    fn agent_statuses_map_agents_and_activities_with_a_default() {
        let mut mapping = MappingConfig {
            default_activity: Some("present".to_string()),
            ..MappingConfig::default()
        };
        mapping
            .agents
            .insert("4711".to_string(), "tina@example.com".to_string());
        mapping
            .activities
            .insert("AUX-2".to_string(), "lunch".to_string());
        let records = Records::AgentStatuses(RVec::from(vec![
            status("4711", "AUX-2"),
            status("4711", "AUX-9"),
            status("0815", "ACD"),
        ]));
        let mapped = map_records(&records, &mapping);
        let pairs: Vec<(String, String)> = mapped
            .items
            .iter()
            .map(|item| {
                let item = parsed(item);
                let text = |key: &str| item[key].as_str().unwrap().to_string();
                (text("agentIdentifier"), text("activityIdentifier"))
            })
            .collect();
        let expected = [
            ("tina@example.com", "lunch"),
            ("tina@example.com", "present"),
            ("0815", "present"),
        ];
        assert_eq!(
            pairs,
            expected.map(|(agent, activity)| (agent.to_string(), activity.to_string()))
        );
        assert_eq!(parsed(&mapped.items[0])["endTime"], "2024-03-04T09:05:00Z");

        mapping.unmapped_agents = UnmappedPolicy::Drop;
        assert_eq!(map_records(&records, &mapping).n_dropped_agents, 1);
    }

    #[test]
    fn fingerprints_change_with_content_and_bodies_carry_meta() {
        let mapping = MappingConfig::default();
        let first = map_records(
            &Records::QueueIntervals(RVec::from(vec![interval("Q1")])),
            &mapping,
        );
        let mut corrected = interval("Q1");
        corrected.handled = 10;
        let second = map_records(
            &Records::QueueIntervals(RVec::from(vec![corrected])),
            &mapping,
        );
        assert_eq!(first.items[0].natural_key, second.items[0].natural_key);
        assert_ne!(first.items[0].fingerprint, second.items[0].fingerprint);

        let body: serde_json::Value =
            serde_json::from_slice(&body(&first.items, 1234, Some("Avaya CMS Hamburg"))).unwrap();
        assert_eq!(
            body["meta"],
            json!({ "integrationConfigurationId": 1234, "externalSystem": "Avaya CMS Hamburg" })
        );
        assert_eq!(body["data"].as_array().unwrap().len(), 1);
    }
}
