//! The normalized records every connector yields: queue intervals, contact events and agent
//! statuses, with UTC times and named numeric extras.

use abi_stable::{
    std_types::{RCowStr, ROption, RString, RVec},
    StableAbi,
};
use serde::{Serialize, Serializer};
use std::fmt;

/// A UTC instant in milliseconds since the Unix epoch: the only way times cross the ABI.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UtcMillis(pub i64);

impl UtcMillis {
    /// The instant as a `jiff::Timestamp`, or `None` when it is outside jiff's range.
    pub fn to_timestamp(self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_millisecond(self.0).ok()
    }

    /// Milliseconds in `minutes` minutes, for interval arithmetic.
    pub const fn minutes(minutes: i64) -> i64 {
        minutes * 60_000
    }
}

impl std::str::FromStr for UtcMillis {
    type Err = jiff::Error;

    /// Parses an RFC 3339 instant with an offset, e.g. `2024-03-04T08:00:00Z`.
    fn from_str(text: &str) -> Result<UtcMillis, jiff::Error> {
        text.parse::<jiff::Timestamp>().map(UtcMillis::from)
    }
}

impl From<jiff::Timestamp> for UtcMillis {
    fn from(timestamp: jiff::Timestamp) -> Self {
        UtcMillis(timestamp.as_millisecond())
    }
}

impl fmt::Display for UtcMillis {
    /// RFC 3339 with a `Z`, the form the WFM API expects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_timestamp() {
            Some(timestamp) => write!(f, "{timestamp}"),
            None => write!(f, "<out of range: {} ms>", self.0),
        }
    }
}

impl fmt::Debug for UtcMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for UtcMillis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The channel a queue serves. An integer newtype rather than an enum so that a channel
/// added in a later version is an unknown value, not undefined behaviour.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Channel(pub u8);

impl Channel {
    pub const CALLS: Channel = Channel(0);
    pub const CHATS: Channel = Channel(1);
    pub const EMAILS: Channel = Channel(2);
    pub const SOCIAL_MEDIA: Channel = Channel(3);
    pub const DOCUMENTS: Channel = Channel(4);
    pub const CASES: Channel = Channel(5);

    const NAMES: [&'static str; 6] = [
        "calls",
        "chats",
        "emails",
        "social_media",
        "documents",
        "cases",
    ];

    /// The WFM API's name for the channel, or `None` for a value this version does not know.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES.get(usize::from(self.0)).copied()
    }

    /// Parses the WFM API's name (`calls`, `chats`, `emails`, `social_media`, `documents`,
    /// `cases`).
    pub fn from_name(name: &str) -> Option<Channel> {
        let index = Self::NAMES.iter().position(|known| *known == name)?;
        Some(Channel(index as u8))
    }

    /// Every channel this version knows, for error messages.
    pub fn known_names() -> &'static [&'static str] {
        &Self::NAMES
    }
}

impl Default for Channel {
    fn default() -> Self {
        Channel::CALLS
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "channel({})", self.0),
        }
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A named numeric value beyond the fixed fields (after-call work, hold time, answered
/// within service level, ...), so that vendors add value types without an ABI change.
///
/// The name is an `RCowStr<'static>`: a connector with fixed names borrows a `&'static str`
/// (no allocation per record; plugins are never unloaded, so the borrow stays valid), and a
/// connector with configured names owns an `RString`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Serialize)]
pub struct Extra {
    pub name: RCowStr<'static>,
    pub value: f64,
}

impl Extra {
    /// Well-known name: after-call work in seconds, summed over the interval.
    pub const AFTER_CALL_WORK_SECS: &'static str = "after_call_work_secs";
    /// Well-known name: hold time in seconds, summed over the interval.
    pub const HOLD_SECS: &'static str = "hold_secs";
    /// Well-known name: contacts answered within the service-level threshold.
    pub const ANSWERED_IN_SERVICE_LEVEL: &'static str = "answered_in_service_level";
    /// Well-known name: waiting time of all offered contacts in seconds.
    pub const WAIT_SECS: &'static str = "wait_secs";

    /// An extra with a fixed name (no allocation).
    pub const fn fixed(name: &'static str, value: f64) -> Extra {
        Extra {
            name: RCowStr::Borrowed(abi_stable::std_types::RStr::from_str(name)),
            value,
        }
    }

    /// An extra with a name only known at run time (for example from configuration).
    pub fn named(name: impl Into<String>, value: f64) -> Extra {
        Extra {
            name: RCowStr::Owned(RString::from(name.into())),
            value,
        }
    }
}

/// PhoneLink, interval form: the contact volumes of one queue and channel in one interval.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Serialize)]
pub struct QueueInterval {
    /// Stable identifier of the queue: the WFM creates a queue per (identifier, name).
    pub queue_id: RString,
    pub queue_name: RString,
    pub channel: Channel,
    /// Start of the interval, UTC.
    pub start: UtcMillis,
    /// Length of the interval in minutes (15, 30 or 60 in practice).
    pub interval_minutes: u32,
    pub offered: u32,
    pub handled: u32,
    pub abandoned: u32,
    /// Total handle time of the handled contacts, in seconds.
    pub handle_time_secs: f64,
    pub extras: RVec<Extra>,
}

/// PhoneLink, contact form: one contact, which the WFM aggregates itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Serialize)]
pub struct ContactEvent {
    pub queue_id: RString,
    pub queue_name: RString,
    pub channel: Channel,
    /// When the contact arrived, UTC.
    pub timestamp: UtcMillis,
    pub offered: bool,
    pub handled: bool,
    /// Handle time in seconds (0 for an abandoned contact).
    pub duration_secs: f64,
    /// The source's identifier of the contact; when present the WFM upserts on it.
    pub contact_id: ROption<RString>,
}

/// TimeLink: one agent in one activity from `start` to `end`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Serialize)]
pub struct AgentStatus {
    pub agent_id: RString,
    /// The source's activity code, e.g. a work mode plus an AUX reason code.
    pub activity_id: RString,
    pub activity_name: ROption<RString>,
    pub start: UtcMillis,
    /// Absent while the status is still open.
    pub end: ROption<UtcMillis>,
}

/// The records of one batch; a batch holds records of the requested stream only.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub enum Records {
    QueueIntervals(RVec<QueueInterval>),
    ContactEvents(RVec<ContactEvent>),
    AgentStatuses(RVec<AgentStatus>),
}

impl Records {
    /// The number of records in the batch.
    pub fn len(&self) -> usize {
        match self {
            Records::QueueIntervals(records) => records.len(),
            Records::ContactEvents(records) => records.len(),
            Records::AgentStatuses(records) => records.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stream these records belong to.
    pub fn stream(&self) -> crate::StreamKind {
        match self {
            Records::QueueIntervals(_) => crate::StreamKind::PHONELINK_INTERVALS,
            Records::ContactEvents(_) => crate::StreamKind::PHONELINK_CONTACTS,
            Records::AgentStatuses(_) => crate::StreamKind::TIMELINK,
        }
    }

    /// An empty batch of the given stream's records.
    pub fn empty(stream: crate::StreamKind) -> Option<Records> {
        match stream {
            crate::StreamKind::PHONELINK_INTERVALS => Some(Records::QueueIntervals(RVec::new())),
            crate::StreamKind::PHONELINK_CONTACTS => Some(Records::ContactEvents(RVec::new())),
            crate::StreamKind::TIMELINK => Some(Records::AgentStatuses(RVec::new())),
            _ => None,
        }
    }

    /// Each record as a JSON value, in order (for output and for comparisons in tests).
    pub fn to_json_values(&self) -> Vec<serde_json::Value> {
        fn all<T: Serialize>(records: &[T]) -> Vec<serde_json::Value> {
            records
                .iter()
                .map(|record| {
                    serde_json::to_value(record).expect("records always serialize to JSON")
                })
                .collect()
        }
        match self {
            Records::QueueIntervals(records) => all(records),
            Records::ContactEvents(records) => all(records),
            Records::AgentStatuses(records) => all(records),
        }
    }
}
