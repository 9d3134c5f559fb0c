//! The stable connector ABI of acdlink, and the SDK that connector authors write against.
//!
//! # Brief overview
//!
//! A connector reads one contact-centre source (files, a database, a feed) and yields
//! normalized records. The host (`acdlink`) loads connectors either built in or from a
//! shared library (`.so`, `.dll`, `.dylib`) and talks to every one of them through the
//! same types, defined here:
//!
//! - [`ConnectorModuleRef`] is the root module a plugin exports: it gives the
//!   [`Manifest`] and opens a connector instance from JSON settings.
//! - [`ConnectorBox`] is the opened connector, an FFI-safe trait object with `check`,
//!   `discover`, `read` and `commit` ([`ConnectorInstance`]).
//! - [`ReadRequest`] asks for one bounded batch of one [`StreamKind`], either for a time
//!   window ([`ReadMode::WINDOWED`]) or for "what is new since this state"
//!   ([`ReadMode::INCREMENTAL`]); the answer is a [`ReadBatch`] of [`Records`] with a paging
//!   cursor and the connector's new opaque state.
//! - [`QueueInterval`], [`ContactEvent`] and [`AgentStatus`] are the normalized records.
//!
//! A connector author does not touch these FFI types directly for the plumbing: they
//! implement the plain Rust trait [`sdk::Connector`] and call [`export_connector!`] (for a
//! shared library) or [`register_builtin!`] (for a connector compiled into the host). The
//! SDK catches every panic at the boundary, turns local source times into UTC
//! ([`time`]), and offers a conformance kit ([`conformance`]) to run in the connector's
//! own tests.
//!
//! # The read contract
//!
//! 1. A read is a first request without a cursor and, while a batch says `next_cursor`,
//!    further requests with that cursor. Every batch holds at most `max_records` records.
//!    Every request of one read carries the same `state`: the last committed state when the
//!    read began (incremental streams; `None` for windowed ones). The cursor alone says
//!    where the read has got to, so it must be meaningful relative to that starting state
//!    even if the host commits batches between pages.
//! 2. Each batch may carry the connector's new `state`, the state after this batch. The
//!    host stores the batch's records and that state in one transaction, then calls
//!    `commit(state)`. The next read starts from the last state committed.
//! 3. Only after `commit` may the connector do anything irreversible at its source (archive
//!    a file, acknowledge a feed). If the host crashes before `commit`, it reads again from
//!    the last committed state and must get the same records again, never fewer.
//!
//! # Evolution rules
//!
//! The host checks a plugin's ABI when it loads it, in two steps. First abi_stable compares
//! version numbers: it refuses a plugin built against another major version (for `0.x`:
//! against a lower `x` than the host's). Then it compares the complete layout of every type
//! reachable from the root module, and refuses any difference except fields and methods
//! appended to prefix types. So a plugin built against connector-api `0.1.y` loads into a
//! host built against `0.1.z` for any `y` and `z`, in either direction, which is why the
//! rules below are strict. connector-api has its own version number (not the workspace's),
//! bumped only for changes to this crate. In a **minor** version (for `0.x`: a patch
//! version) we may only:
//!
//! - append fields to the root module [`ConnectorModule`] after the field marked
//!   `last_prefix_field` (older plugins then report the new field as absent, and the host
//!   must cope);
//! - append methods with a default body to [`ConnectorInstance`] after `commit`;
//! - add constants to the integer newtypes [`StreamKind`], [`ReadMode`], [`Channel`] and
//!   [`ErrorKind`] (they are deliberately not Rust enums, so a value from a newer plugin
//!   is never undefined behaviour: it is just unknown, and code must handle unknown
//!   values);
//! - add new well-known names for [`Extra`] values (extras are named, so new value types
//!   never need an ABI change);
//! - add SDK functions, helpers and conformance checks (they are not part of the ABI).
//!
//! **Never** in a minor version: change, reorder or remove a field of any `#[repr(C)]`
//! type, change a method signature, change the meaning of an existing constant, or add a
//! variant to [`Records`]. Those need a new major version, and abi_stable then refuses to
//! load old plugins with a clear version error instead of crashing.
//!
//! Times cross the boundary as UTC milliseconds since the Unix epoch ([`UtcMillis`]);
//! settings cross it as JSON text; opaque connector state crosses it as bytes.

pub mod conformance;
pub mod measure;
pub mod sdk;
pub mod time;
pub mod validate;

mod abi;
mod error;
mod manifest;
mod records;

pub use abi::{
    CheckReport, ConnectorBox, ConnectorInstance, ConnectorInstance_trait, ConnectorModule,
    ConnectorModuleRef, Delivery, DiscoveredItem, DiscoveredQueue, Discovery, ReadBatch,
    ReadRequest, Reject, TimeWindow,
};
/// The FFI-safe standard types the records are made of, re-exported so that connector
/// crates need no direct dependency for them.
pub use abi_stable::std_types::{RCowStr, ROption, RResult, RSlice, RStr, RString, RVec};
pub use error::{ConnectorError, ErrorKind};
pub use manifest::{Manifest, ReadMode, SettingInfo, StreamInfo, StreamKind};
pub use records::{AgentStatus, Channel, ContactEvent, Extra, QueueInterval, Records, UtcMillis};

/// Re-exports used by the SDK's macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
    pub use inventory;
}
