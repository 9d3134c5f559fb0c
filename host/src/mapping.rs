//! Mapping and the upload wire format: normalized records become the JSON items of the WFM
//! API (DESIGN section 7, docs/upload-api.md), with queues, activities and agents mapped to
//! the WFM's identifiers, each item with its natural key and fingerprint for
//! reconciliation.
//!
//! **Architecture invariant:** this module is pure: no I/O, no store, no connector. The same
//! records and mapping always give the same items.

use crate::config::{MappingConfig, UnmappedPolicy};
use acdlink_connector_api::{
    AgentStatus, Channel, ContactEvent, Extra, QueueInterval, Records, StreamKind, UtcMillis,
};
use serde::Serialize;
use serde_json::json;
use std::borrow::Cow;

/// The API endpoint of a stream, below `/external-systems/`.
pub fn endpoint(stream: StreamKind) -> Option<&'static str> {
    match stream {
        StreamKind::PHONELINK_INTERVALS => Some("queue-intervals"),
        StreamKind::PHONELINK_CONTACTS => Some("contact-events"),
        StreamKind::TIMELINK => Some("agent-statuses"),
        _ => None,
    }
}

/// One record as the WFM gets it; its JSON text is in the [`Mapped`] it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// FNV-1a of the natural key, which is what the WFM upserts on: queue, channel and
    /// interval start (`{queue}|{channel}|{timestamp}`); agent and start
    /// (`{agent}|{timestamp}`); the contact identifier (`{queue}|{contact}`), or for
    /// contacts without one the item's JSON text.
    pub key: u64,
    /// The UTC day (days since 1970-01-01) of the record's time: interval start, contact
    /// time or status start. The store keeps fingerprints per day.
    pub day: i64,
    /// Changes whenever anything the WFM gets changes.
    pub fingerprint: i64,
    /// Where the item's JSON text is in [`Mapped::text`].
    text: std::ops::Range<usize>,
}

/// The mapped records of one batch, and what mapping dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapped {
    pub items: Vec<Item>,
    /// The items' JSON texts, back to back (one buffer instead of one per item).
    text: Vec<u8>,
    /// Records dropped because their queue has no mapping (policy `drop`).
    pub n_dropped_queues: usize,
    /// Records dropped because their agent has no mapping (policy `drop`).
    pub n_dropped_agents: usize,
}

impl Mapped {
    /// The item's JSON text, exactly as it goes into a body.
    pub fn json(&self, item: &Item) -> &[u8] {
        &self.text[item.text.clone()]
    }

    /// Serializes one item's JSON to the end of the text and returns its range.
    fn push_json(&mut self, item: &impl Serialize) -> std::ops::Range<usize> {
        let start = self.text.len();
        serde_json::to_writer(&mut self.text, item).expect("items always serialize to JSON");
        start..self.text.len()
    }

    fn push(&mut self, key: u64, time_ms: i64, text: std::ops::Range<usize>) {
        self.items.push(Item {
            key,
            day: time_ms.div_euclid(86_400_000),
            fingerprint: Fnv::hash(&self.text[text.clone()]) as i64,
            text,
        });
    }
}

/// Maps every record of a batch.
pub fn map_records(records: &Records, mapping: &MappingConfig) -> Mapped {
    let mut mapped = Mapped::default();
    match records {
        Records::QueueIntervals(records) => {
            mapped.items.reserve(records.len());
            mapped.text.reserve(records.len() * 280);
            for record in records.iter() {
                if queue_interval(record, mapping, &mut mapped).is_none() {
                    mapped.n_dropped_queues += 1;
                }
            }
        }
        Records::ContactEvents(records) => {
            for record in records.iter() {
                if contact_event(record, mapping, &mut mapped).is_none() {
                    mapped.n_dropped_queues += 1;
                }
            }
        }
        Records::AgentStatuses(records) => {
            for record in records.iter() {
                if agent_status(record, mapping, &mut mapped).is_none() {
                    mapped.n_dropped_agents += 1;
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
) -> Option<(&'a str, &'a str, Cow<'a, str>)> {
    let channel_name = || match channel.name() {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(channel.to_string()),
    };
    match mapping.queues.get(queue_id) {
        Some(target) => Some((
            target.identifier.as_str(),
            target.name.as_deref().unwrap_or(queue_name),
            target
                .channel
                .as_deref()
                .map_or_else(channel_name, Cow::Borrowed),
        )),
        None if mapping.unmapped_queues == UnmappedPolicy::Drop => None,
        None => Some((queue_id, queue_name, channel_name())),
    }
}

/// An instant as RFC 3339 text, the way [`UtcMillis`]'s `Display` writes it, on the stack.
/// Whole seconds of years 1970 to 9998 (every interval start) are written here directly;
/// anything else goes through `Display`.
struct Timestamp {
    text: [u8; 40],
    len: usize,
}

impl Timestamp {
    fn new(instant: UtcMillis) -> Timestamp {
        let mut timestamp = Timestamp {
            text: [0; 40],
            len: 0,
        };
        const MAX_MS: i64 = 253_370_764_799_000; // 9998-12-31T23:59:59Z
        if instant.0 % 1000 == 0 && (0..=MAX_MS).contains(&instant.0) {
            let seconds = instant.0 / 1000;
            let (year, month, day) = civil_from_days(seconds / 86_400);
            let second_of_day = seconds % 86_400;
            let fields = [
                (year, 4, b'-'),
                (month, 2, b'-'),
                (day, 2, b'T'),
                (second_of_day / 3600, 2, b':'),
                (second_of_day / 60 % 60, 2, b':'),
                (second_of_day % 60, 2, b'Z'),
            ];
            for (value, width, separator) in fields {
                let mut rest = value;
                for position in (0..width).rev() {
                    timestamp.text[timestamp.len + position] = b'0' + (rest % 10) as u8;
                    rest /= 10;
                }
                timestamp.len += width;
                timestamp.text[timestamp.len] = separator;
                timestamp.len += 1;
            }
        } else {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut timestamp.text[..]);
            let _ = write!(cursor, "{instant}");
            timestamp.len = cursor.position() as usize;
        }
        timestamp
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).expect("ASCII")
    }
}

/// The (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), for days from 1970 on.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
    #[serde(skip_serializing_if = "<[_]>::is_empty", serialize_with = "values")]
    values: &'a [Extra],
}

/// Named extras as a JSON object.
fn values<S: serde::Serializer>(values: &[Extra], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(
        values
            .iter()
            .map(|extra| (extra.name.as_str(), extra.value)),
    )
}

fn queue_interval(
    record: &QueueInterval,
    mapping: &MappingConfig,
    mapped: &mut Mapped,
) -> Option<()> {
    let (identifier, name, channel) = queue(
        &record.queue_id,
        &record.queue_name,
        record.channel,
        mapping,
    )?;
    let timestamp = Timestamp::new(record.start);
    let start = mapped.text.len();
    write_queue_interval(
        &mut mapped.text,
        &QueueIntervalItem {
            queue_identifier: identifier,
            queue_name: name,
            channel: &channel,
            timestamp: timestamp.as_str(),
            interval_minutes: record.interval_minutes,
            offered: record.offered,
            handled: record.handled,
            abandoned: record.abandoned,
            handling_time: record.handle_time_secs,
            values: &record.extras,
        },
    );
    let text = start..mapped.text.len();
    let key = Fnv::new()
        .write(identifier.as_bytes())
        .write(b"|")
        .write(channel.as_bytes())
        .write(b"|")
        .write(timestamp.as_str().as_bytes())
        .finish();
    mapped.push(key, record.start.0, text);
    Some(())
}

/// Writes a queue interval exactly as serializing [`QueueIntervalItem`] with serde_json
/// does (a test holds them equal; fingerprints are hashes of this text), with the keys as
/// literals: the derived serializer escapes every key of every item, which was a good part
/// of a backfill's time.
fn write_queue_interval(out: &mut Vec<u8>, item: &QueueIntervalItem<'_>) {
    fn json(out: &mut Vec<u8>, value: &impl Serialize) {
        serde_json::to_writer(&mut *out, value).expect("numbers and strings serialize");
    }
    out.extend_from_slice(b"{\"queueIdentifier\":");
    json(out, &item.queue_identifier);
    out.extend_from_slice(b",\"queueName\":");
    json(out, &item.queue_name);
    out.extend_from_slice(b",\"channel\":");
    json(out, &item.channel);
    out.extend_from_slice(b",\"timestamp\":");
    json(out, &item.timestamp);
    out.extend_from_slice(b",\"intervalMinutes\":");
    json(out, &item.interval_minutes);
    out.extend_from_slice(b",\"offered\":");
    json(out, &item.offered);
    out.extend_from_slice(b",\"handled\":");
    json(out, &item.handled);
    out.extend_from_slice(b",\"abandoned\":");
    json(out, &item.abandoned);
    out.extend_from_slice(b",\"handlingTime\":");
    json(out, &item.handling_time);
    if !item.values.is_empty() {
        out.extend_from_slice(b",\"values\":{");
        for (index, extra) in item.values.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            json(out, &extra.name.as_str());
            out.push(b':');
            json(out, &extra.value);
        }
        out.push(b'}');
    }
    out.push(b'}');
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

fn contact_event(
    record: &ContactEvent,
    mapping: &MappingConfig,
    mapped: &mut Mapped,
) -> Option<()> {
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
    let timestamp = Timestamp::new(record.timestamp);
    let text = mapped.push_json(&ContactEventItem {
        properties: ContactProperties {
            offered: record.offered,
            handled: record.handled,
            duration: record.duration_secs,
        },
        queue_name: name,
        queue_identifier: identifier,
        timestamp: timestamp.as_str(),
        channel: &channel,
        contact_identifier: contact_id,
    });
    let key = match contact_id {
        Some(contact_id) => Fnv::new()
            .write(identifier.as_bytes())
            .write(b"|")
            .write(contact_id.as_bytes())
            .finish(),
        // Without an identifier the WFM appends: the item itself is its key.
        None => Fnv::hash(&mapped.text[text.clone()]),
    };
    mapped.push(key, record.timestamp.0, text);
    Some(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentStatusItem<'a> {
    agent_identifier: &'a str,
    activity_identifier: &'a str,
    start_time: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<&'a str>,
}

fn agent_status(record: &AgentStatus, mapping: &MappingConfig, mapped: &mut Mapped) -> Option<()> {
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
    let start = Timestamp::new(record.start);
    let end = record.end.into_option().map(Timestamp::new);
    let text = mapped.push_json(&AgentStatusItem {
        agent_identifier: agent,
        activity_identifier: activity,
        start_time: start.as_str(),
        end_time: end.as_ref().map(Timestamp::as_str),
    });
    let key = Fnv::new()
        .write(agent.as_bytes())
        .write(b"|")
        .write(start.as_str().as_bytes())
        .finish();
    mapped.push(key, record.start.0, text);
    Some(())
}

impl Item {
    /// The store's form of this item's fingerprint: its day, a 64-bit hash of its natural
    /// key, and the hash of its content.
    pub fn stored_fingerprint(&self) -> crate::store::Fingerprint {
        crate::store::Fingerprint {
            day: self.day,
            key: self.key,
            hash: self.fingerprint,
        }
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every build and on every platform (the
/// standard library's hasher may change between Rust versions, and fingerprints are kept
/// in the store across upgrades). Fed in pieces, it gives the hash of their concatenation.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(mut self, bytes: &[u8]) -> Fnv {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    fn finish(self) -> u64 {
        self.0
    }

    fn hash(bytes: &[u8]) -> u64 {
        Fnv::new().write(bytes).finish()
    }
}

/// One request body: `{"data": [...], "meta": {...}}`, written from the items' JSON text.
pub fn body<T: std::borrow::Borrow<Item>>(
    mapped: &Mapped,
    items: &[T],
    integration_configuration_id: i64,
    external_system: Option<&str>,
) -> Vec<u8> {
    let mut meta = json!({ "integrationConfigurationId": integration_configuration_id });
    if let Some(system) = external_system {
        meta["externalSystem"] = json!(system);
    }
    let length: usize = items.iter().map(|item| item.borrow().text.len() + 1).sum();
    let mut body = Vec::with_capacity(length + 100);
    body.extend_from_slice(b"{\"data\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(mapped.json(item.borrow()));
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

    fn parsed(mapped: &Mapped, item: &Item) -> serde_json::Value {
        serde_json::from_slice(mapped.json(item)).expect("items are JSON")
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
            parsed(&mapped, &mapped.items[0]),
            json!({
                "queueIdentifier": "1337_99", "queueName": "Level-1-Support", "channel": "calls",
                "timestamp": "2024-03-04T09:00:00Z", "intervalMinutes": 15,
                "offered": 10, "handled": 9, "abandoned": 1, "handlingTime": 2400.0,
                "values": { "hold_secs": 120.0 }
            })
        );
        assert_eq!(
            mapped.items[0].key,
            Fnv::hash(b"1337_99|calls|2024-03-04T09:00:00Z"),
            "the hash of the natural key, as stores from earlier versions kept it"
        );
        assert_eq!(
            parsed(&mapped, &mapped.items[1])["queueIdentifier"],
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
                let item = parsed(&mapped, item);
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
        assert_eq!(
            parsed(&mapped, &mapped.items[0])["endTime"],
            "2024-03-04T09:05:00Z"
        );

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
        assert_eq!(first.items[0].key, second.items[0].key);
        assert_ne!(first.items[0].fingerprint, second.items[0].fingerprint);

        let body: serde_json::Value =
            serde_json::from_slice(&body(&first, &first.items, 1234, Some("Avaya CMS Hamburg")))
                .unwrap();
        assert_eq!(
            body["meta"],
            json!({ "integrationConfigurationId": 1234, "externalSystem": "Avaya CMS Hamburg" })
        );
        assert_eq!(body["data"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn timestamps_are_written_as_display_writes_them() {
        let instants = [
            0,
            1_709_542_800_000,
            951_782_400_000,     // 2000-02-29
            4_107_542_399_000,   // 2100-02-28T23:59:59
            253_370_764_799_000, // 9998-12-31T23:59:59
            1_709_542_800_123,   // milliseconds: through Display
            -86_400_000,         // before 1970: through Display
            253_370_764_800_000, // 9999 and later: through Display
        ];
        for day in (0..2_932_532).step_by(997) {
            let ms = day * 86_400_000 + (day % 86_400) * 1000;
            assert_eq!(
                Timestamp::new(UtcMillis(ms)).as_str(),
                UtcMillis(ms).to_string(),
                "{ms}"
            );
        }
        for ms in instants {
            assert_eq!(
                Timestamp::new(UtcMillis(ms)).as_str(),
                UtcMillis(ms).to_string(),
                "{ms}"
            );
        }
    }

    #[test]
    fn queue_intervals_are_written_as_serde_writes_them() {
        let extras = [
            Extra::fixed(Extra::HOLD_SECS, 120.5),
            Extra::fixed(Extra::AFTER_CALL_WORK_SECS, f64::NAN),
        ];
        for (name, handling_time, values) in [
            ("Sales", 2400.0, &extras[..]),
            ("Kasse \"Süd\"\\\n\u{1}", 0.1 + 0.2, &extras[..1]),
            ("", f64::INFINITY, &[][..]),
        ] {
            let item = QueueIntervalItem {
                queue_identifier: "Q\t1",
                queue_name: name,
                channel: "calls",
                timestamp: "2024-03-04T09:00:00Z",
                interval_minutes: 15,
                offered: u32::MAX,
                handled: 0,
                abandoned: 7,
                handling_time,
                values,
            };
            let mut written = Vec::new();
            write_queue_interval(&mut written, &item);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&item).unwrap()
            );
        }
    }
}
