//! The FFI-safe root module and connector trait object that cross the plugin boundary, and
//! the request and batch types of a read.

// `#[sabi_trait]` expands to impl blocks inside a const item, which this lint flags; the
// code is abi_stable's, not ours.
#![allow(non_local_definitions)]

use crate::{ConnectorError, Manifest, Records, StreamKind, UtcMillis};
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};
use std::fmt;

/// A half-open time window `[from, to)` in UTC.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    pub from: UtcMillis,
    pub to: UtcMillis,
}

impl TimeWindow {
    pub fn new(from: UtcMillis, to: UtcMillis) -> TimeWindow {
        TimeWindow { from, to }
    }

    /// Whether `instant` lies inside `[from, to)`.
    pub fn contains(&self, instant: UtcMillis) -> bool {
        self.from <= instant && instant < self.to
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.from, self.to)
    }
}

impl fmt::Debug for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One request for one bounded batch.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ReadRequest {
    pub stream: StreamKind,
    /// For a windowed stream, the window to read; for an incremental stream, `None`.
    pub window: ROption<TimeWindow>,
    /// For an incremental stream, the last state the host had committed when this read
    /// began, the same on every page of the read (`None` on the very first read); for a
    /// windowed stream, `None` (the host owns the checkpoint).
    pub state: ROption<RVec<u8>>,
    /// The cursor of the previous batch of this read, `None` for its first batch.
    pub cursor: ROption<RString>,
    /// The most records the batch may hold (at least 1).
    pub max_records: u32,
}

impl ReadRequest {
    /// The first request of a windowed read.
    pub fn windowed(stream: StreamKind, window: TimeWindow, max_records: u32) -> ReadRequest {
        ReadRequest {
            stream,
            window: ROption::RSome(window),
            state: ROption::RNone,
            cursor: ROption::RNone,
            max_records,
        }
    }

    /// The first request of an incremental read from the last committed `state`.
    pub fn incremental(
        stream: StreamKind,
        state: Option<Vec<u8>>,
        max_records: u32,
    ) -> ReadRequest {
        ReadRequest {
            stream,
            window: ROption::RNone,
            state: state.map(RVec::from).into(),
            cursor: ROption::RNone,
            max_records,
        }
    }
}

/// A record the connector could not turn into a normalized record, reported instead of
/// being dropped silently (for connectors whose policy is to import the good rows).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Where in the source: `file.csv:12:4`, `row 17, column handled`, ...
    pub position: RString,
    /// What was expected and what was found.
    pub message: RString,
}

/// What the host does with a batch's records. Integer newtype, like
/// [`StreamKind`](crate::StreamKind), so that values added later are unknown, not UB.
///
/// Holding is for incremental streams whose source comes in units that must be read whole
/// before any of it may go out (a file that is rejected if one row is bad, or skipped if
/// its content was imported before): the connector pages through the unit as it reads it,
/// `HOLD`, and ends the hold with the unit's last page, `SEND` to release what it held or
/// `DISCARD` to drop it.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Delivery(pub u8);

impl Delivery {
    /// Store and send the records; if earlier pages of this read hold records, they are
    /// released with this batch, in the same transaction as its `state`.
    pub const SEND: Delivery = Delivery(0);
    /// Store the records, but send nothing yet. No `state` (nothing held is committed) and
    /// always a next cursor (a read cannot end holding). Incremental streams only.
    pub const HOLD: Delivery = Delivery(1);
    /// Drop what earlier pages of this read hold, then treat this batch like `SEND`.
    /// Incremental streams only.
    pub const DISCARD: Delivery = Delivery(2);

    /// The name in messages (`None` for a value this version does not know).
    pub fn name(self) -> Option<&'static str> {
        match self {
            Delivery::SEND => Some("send"),
            Delivery::HOLD => Some("hold"),
            Delivery::DISCARD => Some("discard"),
            _ => None,
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "delivery {}", self.0),
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The answer to a [`ReadRequest`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ReadBatch {
    /// At most `max_records` records of the requested stream.
    pub records: Records,
    /// `Some` if there is more to read: pass it back in the next request.
    pub next_cursor: ROption<RString>,
    /// The connector's state after this batch. The host stores it with the records and
    /// then calls `commit` with it; incremental reads start from it next time.
    pub state: ROption<RVec<u8>>,
    /// Source records that could not be read, with their position.
    pub rejects: RVec<Reject>,
    /// Whether the records go out now, are held, or end a hold by dropping it.
    pub delivery: Delivery,
}

impl ReadBatch {
    /// A final batch (no further cursor) with no state and no rejects.
    pub fn last(records: Records) -> ReadBatch {
        ReadBatch {
            records,
            next_cursor: ROption::RNone,
            state: ROption::RNone,
            rejects: RVec::new(),
            delivery: Delivery::SEND,
        }
    }
}

/// The result of `check`: what the connector found when it tested its source.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// One line for the operator, e.g. "connected to CMS r19 on cms01, 42 splits".
    pub message: RString,
}

/// A queue the source knows.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredQueue {
    pub id: RString,
    pub name: RString,
    pub channel: crate::Channel,
}

/// An agent or activity the source knows.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredItem {
    pub id: RString,
    pub name: RString,
}

/// What the source knows: what an operator maps to WFM identifiers.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    pub queues: RVec<DiscoveredQueue>,
    pub agents: RVec<DiscoveredItem>,
    pub activities: RVec<DiscoveredItem>,
}

/// An opened connector, as the host sees it across the boundary.
///
/// Connector authors do not implement this directly: they implement
/// [`crate::sdk::Connector`], whose adapter implements this trait and catches panics.
#[sabi_trait]
pub trait ConnectorInstance: Send {
    /// Tests the connection to the source, like an ODBC "test" button.
    fn check(&mut self) -> RResult<CheckReport, ConnectorError>;

    /// Lists the queues, agents and activities the source knows.
    fn discover(&mut self) -> RResult<Discovery, ConnectorError>;

    /// Reads one bounded batch.
    fn read(&mut self, request: &ReadRequest) -> RResult<ReadBatch, ConnectorError>;

    /// Called once the host has durably stored a batch together with `state`. Only now may
    /// the connector touch its source irreversibly.
    #[sabi(last_prefix_field)]
    fn commit(&mut self, state: RSlice<'_, u8>) -> RResult<(), ConnectorError>;
}

/// An opened connector instance, owned by the host.
pub type ConnectorBox = ConnectorInstance_TO<'static, RBox<()>>;

/// The root module a plugin exports: one connector kind per module.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ConnectorModuleRef)))]
pub struct ConnectorModule {
    /// Describes the connector. Cheap; called once when the plugin loads.
    pub manifest: extern "C" fn() -> RResult<Manifest, ConnectorError>,

    /// Opens a connector instance from its settings (a JSON object, what the operator
    /// wrote in `[connector.settings]`) and the host's context for it (a JSON object:
    /// `name`, the configured connector name, and `timezone`, the source's time zone;
    /// hosts may add keys, so readers must ignore keys they do not know).
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(
        settings_json: RStr<'_>,
        context_json: RStr<'_>,
    ) -> RResult<ConnectorBox, ConnectorError>,
}

impl RootModule for ConnectorModuleRef {
    declare_root_module_statics! {ConnectorModuleRef}

    const BASE_NAME: &'static str = "acdlink_connector";
    const NAME: &'static str = "acdlink connector";
    /// The connector-api version the plugin was built against; abi_stable refuses a plugin
    /// whose version is not semver-compatible with the host's.
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
