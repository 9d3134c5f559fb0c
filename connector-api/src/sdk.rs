//! The connector author's SDK: the plain Rust [`Connector`] trait, the adapter that turns it
//! into the FFI root module (catching every panic), and the macros that export a connector
//! from a shared library or register it as a built-in.
//!
//! ```text
//! use acdlink_connector_api::sdk::Connector;
//!
//! struct MyConnector { /* connection, settings */ }
//! impl Connector for MyConnector { /* manifest, open, check, discover, read, commit */ }
//!
//! // In the connector's library crate: lets the host link it in as a built-in.
//! acdlink_connector_api::register_builtin!(MyConnector);
//! // In the cdylib crate a vendor ships (one line, edition 2021):
//! acdlink_connector_api::export_connector!(my_connector::MyConnector);
//! ```

use crate::{
    time::SourceTimeZone, CheckReport, ConnectorBox, ConnectorError, ConnectorInstance,
    ConnectorModule, ConnectorModuleRef, Discovery, ErrorKind, Manifest, ReadBatch, ReadRequest,
};
use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RStr},
};
use serde::de::DeserializeOwned;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a connector implements. Plain Rust: no FFI types in the settings, no unsafe code.
///
/// The host calls these methods from one thread at a time (never concurrently on the same
/// instance), on a blocking thread where a call may take as long as the source needs.
pub trait Connector: Send + Sized + 'static {
    /// The connector's settings, deserialized from the `[connector.settings]` table of the
    /// host's configuration (secrets already resolved). Use `#[serde(deny_unknown_fields)]`
    /// so that a misspelt key is an error, not a silent default.
    type Settings: DeserializeOwned;

    /// Describes the connector: kind, vendor, version, streams, settings.
    fn manifest() -> Manifest;

    /// Validates the settings and prepares the connector. Should not read data; may
    /// connect. Return [`ErrorKind::CONFIG`] errors for bad settings. `context` carries what
    /// the host knows about this connector, above all the source's time zone.
    fn open(settings: Self::Settings, context: &OpenContext) -> Result<Self, ConnectorError>;

    /// Tests the connection to the source.
    fn check(&mut self) -> Result<CheckReport, ConnectorError>;

    /// Lists the queues, agents and activities the source knows.
    fn discover(&mut self) -> Result<Discovery, ConnectorError>;

    /// Reads one batch of at most `request.max_records` records; see the crate docs for the
    /// read contract.
    fn read(&mut self, request: &ReadRequest) -> Result<ReadBatch, ConnectorError>;

    /// The host has durably stored everything up to `state`. Only now may the connector do
    /// something irreversible at its source. The default does nothing, which is right for
    /// every windowed connector.
    fn commit(&mut self, state: &[u8]) -> Result<(), ConnectorError> {
        let _ = state;
        Ok(())
    }
}

/// Builds the root module of connector `C`. The module is leaked: it lives as long as the
/// process, like the plugin library it may come from (plugins are never unloaded).
pub fn module_for<C: Connector>() -> ConnectorModuleRef {
    ConnectorModule {
        manifest: manifest_entry::<C>,
        open: open_entry::<C>,
    }
    .leak_into_prefix()
}

/// A connector compiled into the host, registered with [`register_builtin!`] and collected
/// by the host with `inventory`.
pub struct BuiltinConnector {
    /// Builds the connector's root module, the same one its shared library would export.
    pub module: fn() -> ConnectorModuleRef,
    /// The Rust crate that registered it, for messages.
    pub crate_name: &'static str,
}

inventory::collect!(BuiltinConnector);

/// Every connector registered with [`register_builtin!`] in the crates linked into this
/// binary.
pub fn builtin_connectors() -> impl Iterator<Item = &'static BuiltinConnector> {
    inventory::iter::<BuiltinConnector>.into_iter()
}

/// Registers a connector type as a built-in of any binary that links its crate.
#[macro_export]
macro_rules! register_builtin {
    ($connector:ty) => {
        $crate::__private::inventory::submit! {
            $crate::sdk::BuiltinConnector {
                module: $crate::sdk::module_for::<$connector>,
                crate_name: ::core::env!("CARGO_PKG_NAME"),
            }
        }
    };
}

/// Exports a connector type as the root module of a shared library. Use it in a `cdylib`
/// crate on edition 2021 that depends on `abi_stable` (the attribute it expands to names
/// that crate directly). One connector per library.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        /// The root module of this acdlink connector plugin.
        #[::abi_stable::export_root_module]
        pub fn acdlink_connector_root_module() -> $crate::ConnectorModuleRef {
            $crate::sdk::module_for::<$connector>()
        }
    };
}

/// Runs `call`, turning a panic into a [`ErrorKind::PANICKED`] error that names `entry`.
/// The outer `Err` means the call panicked.
fn catch_panic<T>(
    entry: &str,
    call: impl FnOnce() -> Result<T, ConnectorError>,
) -> Result<Result<T, ConnectorError>, ConnectorError> {
    catch_unwind(AssertUnwindSafe(call)).map_err(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic payload".to_string());
        ConnectorError::new(
            ErrorKind::PANICKED,
            format!("connector panicked in {entry}: {what}"),
        )
    })
}

extern "C" fn manifest_entry<C: Connector>() -> RResult<Manifest, ConnectorError> {
    catch_panic("manifest", || Ok(C::manifest()))
        .and_then(|result| result)
        .into()
}

extern "C" fn open_entry<C: Connector>(
    settings_json: RStr<'_>,
    context_json: RStr<'_>,
) -> RResult<ConnectorBox, ConnectorError> {
    catch_panic("open", || {
        let context = OpenContext::from_json(context_json.as_str())?;
        let settings = parse_settings::<C::Settings>(settings_json.as_str())?;
        let connector = C::open(settings, &context)?;
        let adapter = Adapter {
            connector,
            panicked_in: None,
        };
        Ok(ConnectorBox::from_value(adapter, TD_Opaque))
    })
    .and_then(|result| result)
    .into()
}

/// What the host tells a connector when it opens it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OpenContext {
    /// The connector's name in the host's configuration, for messages.
    pub name: String,
    /// The time zone the source writes local times in (the connector's `timezone` key).
    pub timezone: SourceTimeZone,
}

impl OpenContext {
    /// A context for tests and tools: the given name and time zone.
    pub fn new(name: &str, timezone: SourceTimeZone) -> OpenContext {
        OpenContext {
            name: name.to_string(),
            timezone,
        }
    }

    /// The context as it crosses the ABI.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "name": self.name, "timezone": self.timezone.name() }).to_string()
    }

    /// Reads the context the host sent; keys this version does not know are ignored.
    pub fn from_json(context_json: &str) -> Result<OpenContext, ConnectorError> {
        #[derive(serde::Deserialize)]
        struct RawContext {
            #[serde(default)]
            name: String,
            #[serde(default)]
            timezone: Option<String>,
        }
        let raw: RawContext = serde_json::from_str(context_json).map_err(|error| {
            ConnectorError::internal(format!("the host sent an unreadable open context: {error}"))
        })?;
        let timezone = match raw.timezone.as_deref() {
            Some(name) => SourceTimeZone::new(name)?,
            None => SourceTimeZone::utc(),
        };
        Ok(OpenContext {
            name: raw.name,
            timezone,
        })
    }
}

/// Deserializes settings, naming the key at fault (`queues: invalid type: ...`).
pub fn parse_settings<S: DeserializeOwned>(settings_json: &str) -> Result<S, ConnectorError> {
    let mut deserializer = serde_json::Deserializer::from_str(settings_json);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // serde_json appends "at line 1 column N" of the JSON text the host generated,
        // which means nothing to an operator: keep the key path and the reason only.
        let reason = inner.to_string();
        let reason = match reason.rfind(" at line ") {
            Some(position) => reason[..position].to_string(),
            None => reason,
        };
        if path == "." {
            ConnectorError::config(format!("invalid settings: {reason}"))
        } else {
            ConnectorError::config(format!("invalid setting `{path}`: {reason}"))
        }
    })
}

/// Implements the FFI trait for a [`Connector`], catching panics. After a panic the
/// connector's own state may be half-updated, so the instance refuses further calls and
/// the host opens a new one.
struct Adapter<C> {
    connector: C,
    panicked_in: Option<String>,
}

impl<C: Connector> Adapter<C> {
    fn guarded<T>(
        &mut self,
        entry: &str,
        call: impl FnOnce(&mut C) -> Result<T, ConnectorError>,
    ) -> RResult<T, ConnectorError> {
        if let Some(earlier) = &self.panicked_in {
            return RResult::RErr(ConnectorError::new(
                ErrorKind::PANICKED,
                format!(
                    "connector instance is unusable after it panicked in {earlier}; open it again"
                ),
            ));
        }
        match catch_panic(entry, || call(&mut self.connector)) {
            Ok(result) => result.into(),
            Err(panicked) => {
                self.panicked_in = Some(entry.to_string());
                RResult::RErr(panicked)
            }
        }
    }
}

impl<C: Connector> ConnectorInstance for Adapter<C> {
    fn check(&mut self) -> RResult<CheckReport, ConnectorError> {
        self.guarded("check", |connector| connector.check())
    }

    fn discover(&mut self) -> RResult<Discovery, ConnectorError> {
        self.guarded("discover", |connector| connector.discover())
    }

    fn read(&mut self, request: &ReadRequest) -> RResult<ReadBatch, ConnectorError> {
        self.guarded("read", |connector| connector.read(request))
    }

    fn commit(&mut self, state: RSlice<'_, u8>) -> RResult<(), ConnectorError> {
        self.guarded("commit", |connector| connector.commit(state.as_slice()))
    }
}
