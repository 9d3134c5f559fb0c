//! The demo connector: deterministic, realistic synthetic contact-centre data for any time
//! window, for the embedded demo, for tests and for benchmarks.
//!
//! # Brief overview
//!
//! [`DemoConnector`] models a contact centre with `queues` queues and `agents` agents in a
//! configured time zone. Everything is a pure function of the settings (including `seed`)
//! and the time, so the same window always yields the same records, whether read in one
//! batch or in many, built in or through the plugin library:
//!
//! - PhoneLink intervals ([`phonelink`]): per queue and interval, offered contacts follow a
//!   daily curve (peaks late morning and early afternoon, quiet at night) and a weekly
//!   curve (busy Monday, quiet Sunday), with per-queue size, handled and abandoned rates,
//!   handle times and after-call work, hold and service-level extras.
//! - PhoneLink contacts: the same volumes as one record per contact.
//! - TimeLink ([`timelink`]): agents work shifts and move through login, available,
//!   on-call, after-call work, breaks and lunch, and logout.
//!
//! All three streams are windowed; reads page with a cursor that encodes the position, so
//! memory stays flat whatever the window.

mod model;
pub mod phonelink;
pub mod timelink;

use acdlink_connector_api::{
    sdk::{Connector, OpenContext},
    CheckReport, ConnectorError, DiscoveredItem, DiscoveredQueue, Discovery, Manifest, ReadBatch,
    ReadMode, ReadRequest, StreamKind, TimeWindow,
};
use model::Model;
use serde::Deserialize;

/// The demo connector's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Number of queues (1 to 10 000).
    pub queues: u32,
    /// Number of agents (0 to 100 000).
    pub agents: u32,
    /// Changes every generated number; the same seed gives the same data.
    pub seed: u64,
    /// Interval length of the PhoneLink streams: 15, 30 or 60.
    pub interval_minutes: u32,
    /// Average contacts offered per queue on a weekday.
    pub daily_volume: u32,
    /// Late corrections, as an ACD makes them: per queue identifier, extra abandoned
    /// contacts in every interval. Changing them changes exactly that queue's intervals,
    /// which is how reconciliation is shown.
    pub corrections: std::collections::BTreeMap<String, u32>,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            queues: 8,
            agents: 40,
            seed: 1,
            interval_minutes: 15,
            daily_volume: 800,
            corrections: std::collections::BTreeMap::new(),
        }
    }
}

/// The demo connector; see the crate docs.
pub struct DemoConnector {
    model: Model,
}

impl Connector for DemoConnector {
    type Settings = DemoSettings;

    fn manifest() -> Manifest {
        Manifest::new(
            "demo",
            "Demo contact centre",
            "acdlink",
            env!("CARGO_PKG_VERSION"),
        )
        .description(
            "Deterministic synthetic PhoneLink and TimeLink data for demos, tests and benchmarks",
        )
        .stream(StreamKind::PHONELINK_INTERVALS, ReadMode::WINDOWED)
        .stream(StreamKind::PHONELINK_CONTACTS, ReadMode::WINDOWED)
        .stream(StreamKind::TIMELINK, ReadMode::WINDOWED)
        .setting("queues", "number of queues (default 8)", false)
        .setting("agents", "number of agents (default 40)", false)
        .setting("seed", "seed of the generated numbers (default 1)", false)
        .setting(
            "interval_minutes",
            "PhoneLink interval length: 15, 30 or 60 (default 15)",
            false,
        )
        .setting(
            "daily_volume",
            "average contacts per queue on a weekday (default 800)",
            false,
        )
        .setting(
            "corrections",
            "per queue identifier, extra abandoned contacts in every interval (default none)",
            false,
        )
    }

    /// The contact centre lives in the connector's time zone: its curves and shifts
    /// follow local time there.
    fn open(settings: DemoSettings, context: &OpenContext) -> Result<Self, ConnectorError> {
        if !(1..=10_000).contains(&settings.queues) {
            return Err(ConnectorError::config(format!(
                "invalid setting `queues`: expected 1 to 10000, found {}",
                settings.queues
            )));
        }
        if settings.agents > 100_000 {
            return Err(ConnectorError::config(format!(
                "invalid setting `agents`: expected 0 to 100000, found {}",
                settings.agents
            )));
        }
        if ![15, 30, 60].contains(&settings.interval_minutes) {
            return Err(ConnectorError::config(format!(
                "invalid setting `interval_minutes`: expected 15, 30 or 60, found {}",
                settings.interval_minutes
            )));
        }
        Ok(DemoConnector {
            model: Model::new(settings, context.timezone.clone()),
        })
    }

    fn check(&mut self) -> Result<CheckReport, ConnectorError> {
        let settings = &self.model.settings;
        Ok(CheckReport {
            message: format!(
                "demo source ready: {} queues, {} agents, {}-minute intervals, time zone {}",
                settings.queues,
                settings.agents,
                settings.interval_minutes,
                self.model.zone.name()
            )
            .into(),
        })
    }

    fn discover(&mut self) -> Result<Discovery, ConnectorError> {
        let model = &self.model;
        Ok(Discovery {
            queues: model
                .queues
                .iter()
                .map(|queue| DiscoveredQueue {
                    id: queue.id.as_str().into(),
                    name: queue.name.as_str().into(),
                    channel: queue.channel,
                })
                .collect(),
            agents: (0..model.settings.agents)
                .map(|agent| DiscoveredItem {
                    id: timelink::agent_id(agent).into(),
                    name: format!("Agent {}", agent + 1).into(),
                })
                .collect(),
            activities: timelink::ACTIVITIES
                .iter()
                .map(|activity| DiscoveredItem {
                    id: activity.id.into(),
                    name: activity.name.into(),
                })
                .collect(),
        })
    }

    fn read(&mut self, request: &ReadRequest) -> Result<ReadBatch, ConnectorError> {
        let window: TimeWindow = request.window.into_option().ok_or_else(|| {
            ConnectorError::unsupported(
                "the demo connector reads windows only, and the request has no window",
            )
        })?;
        let max_records = request.max_records.max(1) as usize;
        let cursor = request
            .cursor
            .as_ref()
            .map(|cursor| cursor.as_str())
            .into_option();
        match request.stream {
            StreamKind::PHONELINK_INTERVALS => {
                phonelink::read_intervals(&self.model, window, cursor, max_records)
            }
            StreamKind::PHONELINK_CONTACTS => {
                phonelink::read_contacts(&self.model, window, cursor, max_records)
            }
            StreamKind::TIMELINK => {
                timelink::read_statuses(&self.model, window, cursor, max_records)
            }
            other => Err(ConnectorError::unsupported(format!(
                "the demo connector cannot read stream {other}"
            ))),
        }
    }
}

acdlink_connector_api::register_builtin!(DemoConnector);

/// Parses a cursor of `N` colon-separated numbers written by this crate.
fn parse_cursor<const N: usize>(cursor: &str) -> Result<[u64; N], ConnectorError> {
    let invalid = || {
        ConnectorError::internal(format!(
            "invalid demo cursor {cursor:?}: expected {N} numbers separated by `:`"
        ))
    };
    let mut numbers = [0u64; N];
    let mut parts = cursor.split(':');
    for number in numbers.iter_mut() {
        *number = parts
            .next()
            .and_then(|part| part.parse().ok())
            .ok_or_else(invalid)?;
    }
    if parts.next().is_some() {
        return Err(invalid());
    }
    Ok(numbers)
}
