//! An opened connector as the host drives it: every call's error carries the connector's
//! name, and every batch is validated against its request before the host uses it.

use crate::registry::Plugin;
use acdlink_connector_api::{
    sdk::OpenContext,
    time::SourceTimeZone,
    validate::{check_batch, Violation},
    CheckReport, ConnectorBox, ConnectorError, Discovery, Manifest, RSlice, ReadBatch, ReadMode,
    ReadRequest, StreamKind, TimeWindow,
};
use std::{fmt, ops::ControlFlow};

/// A failed connector call.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connector returned an error (or panicked, which the SDK turned into one).
    #[error("connector `{connector}`: {operation} failed: {error}")]
    Connector {
        connector: String,
        operation: &'static str,
        error: ConnectorError,
    },
    /// The connector returned a batch that breaks the read contract; the batch is not used.
    #[error("connector `{connector}`: batch {page} of {stream} breaks the read contract: {}", Violations(.violations))]
    Contract {
        connector: String,
        stream: StreamKind,
        page: usize,
        violations: Vec<Violation>,
    },
    /// The connector cannot read the stream, or not in the way asked.
    #[error("connector `{connector}`: {message}")]
    Unsupported { connector: String, message: String },
}

struct Violations<'a>(&'a [Violation]);

impl fmt::Display for Violations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, violation) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

/// After this many consecutive empty batches that still carry a cursor, a read is taken to
/// be stuck in a loop.
const MAX_EMPTY_PAGES: usize = 10_000;

/// What one paged read delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub n_records: usize,
    pub n_batches: usize,
    pub n_rejects: usize,
}

/// An opened connector instance.
pub struct Session {
    name: String,
    manifest: Manifest,
    instance: ConnectorBox,
}

impl Session {
    /// Opens `plugin` with JSON `settings` under the configured connector `name`, whose
    /// source writes local times in `timezone`.
    pub fn open(
        name: &str,
        plugin: &Plugin,
        settings: &serde_json::Value,
        timezone: &SourceTimeZone,
    ) -> Result<Session, SessionError> {
        let settings_json = settings.to_string();
        let context_json = OpenContext::new(name, timezone.clone()).to_json();
        let instance =
            (plugin.module.open())(settings_json.as_str().into(), context_json.as_str().into())
                .into_result()
                .map_err(|error| SessionError::Connector {
                    connector: name.to_string(),
                    operation: "open",
                    error,
                })?;
        Ok(Session {
            name: name.to_string(),
            manifest: plugin.manifest.clone(),
            instance,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn failed(&self, operation: &'static str) -> impl FnOnce(ConnectorError) -> SessionError + '_ {
        move |error| SessionError::Connector {
            connector: self.name.clone(),
            operation,
            error,
        }
    }

    pub fn check(&mut self) -> Result<CheckReport, SessionError> {
        let result = self.instance.check().into_result();
        result.map_err(self.failed("check"))
    }

    pub fn discover(&mut self) -> Result<Discovery, SessionError> {
        let result = self.instance.discover().into_result();
        result.map_err(self.failed("discover"))
    }

    /// Tells the connector that everything up to `state` is durably stored.
    pub fn commit(&mut self, state: &[u8]) -> Result<(), SessionError> {
        let result = self
            .instance
            .commit(RSlice::from_slice(state))
            .into_result();
        result.map_err(self.failed("commit"))
    }

    /// Reads one batch and validates it against the request.
    pub fn read_batch(
        &mut self,
        request: &ReadRequest,
        page: usize,
    ) -> Result<ReadBatch, SessionError> {
        let result = self.instance.read(request).into_result();
        let batch = result.map_err(self.failed("read"))?;
        let violations = check_batch(request, &batch);
        if violations.is_empty() {
            Ok(batch)
        } else {
            Err(SessionError::Contract {
                connector: self.name.clone(),
                stream: request.stream,
                page,
                violations,
            })
        }
    }

    /// Reads a stream's window (windowed streams) or what is new since `state`
    /// (incremental streams) page by page, handing each valid batch to `on_batch`, which
    /// may stop the read early with `ControlFlow::Break`. Memory stays bounded by
    /// `max_records` per batch. Nothing is committed.
    pub fn read_pages(
        &mut self,
        stream: StreamKind,
        window: Option<TimeWindow>,
        state: Option<Vec<u8>>,
        max_records: u32,
        mut on_batch: impl FnMut(ReadBatch) -> ControlFlow<()>,
    ) -> Result<ReadSummary, SessionError> {
        let mode = self
            .manifest
            .read_mode(stream)
            .ok_or_else(|| SessionError::Unsupported {
                connector: self.name.clone(),
                message: format!(
                    "the {} connector cannot read {stream}; it reads {}",
                    self.manifest.kind,
                    streams_of(&self.manifest)
                ),
            })?;
        let mut request = match (mode, window) {
            (ReadMode::WINDOWED, Some(window)) => {
                ReadRequest::windowed(stream, window, max_records)
            }
            (ReadMode::WINDOWED, None) => {
                return Err(SessionError::Unsupported {
                    connector: self.name.clone(),
                    message: format!("{stream} is read by time window, and no window was given"),
                })
            }
            _ => ReadRequest::incremental(stream, state, max_records),
        };
        let mut summary = ReadSummary::default();
        let mut n_empty_in_a_row = 0;
        loop {
            let batch = self.read_batch(&request, summary.n_batches + 1)?;
            summary.n_batches += 1;
            summary.n_records += batch.records.len();
            summary.n_rejects += batch.rejects.len();
            n_empty_in_a_row = if batch.records.is_empty() {
                n_empty_in_a_row + 1
            } else {
                0
            };
            let next_cursor = batch.next_cursor.clone().into_option();
            if on_batch(batch).is_break() {
                return Ok(summary);
            }
            match next_cursor {
                Some(_) if n_empty_in_a_row >= MAX_EMPTY_PAGES => {
                    return Err(SessionError::Contract {
                        connector: self.name.clone(),
                        stream,
                        page: summary.n_batches,
                        violations: vec![Violation {
                            record: None,
                            message: format!("{MAX_EMPTY_PAGES} empty batches in a row still carry a cursor: the read does not end"),
                        }],
                    })
                }
                Some(cursor) => request.cursor = Some(cursor).into(),
                None => return Ok(summary),
            }
        }
    }
}

/// The streams a manifest declares, for messages: `phonelink-intervals, timelink`.
pub fn streams_of(manifest: &Manifest) -> String {
    let names: Vec<String> = manifest
        .streams
        .iter()
        .map(|info| info.stream.to_string())
        .collect();
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}
