//! An opened connector as the host drives it: every call's error carries the connector's
//! name, and every batch is validated against its request before the host uses it.

use crate::registry::Plugin;
use acdlink_connector_api::{
    sdk::OpenContext,
    time::SourceTimeZone,
    validate::{check_batch, Violation},
    CheckReport, ConnectorBox, ConnectorError, Discovery, Manifest, RResult, RSlice, ReadBatch,
    ReadMode, ReadRequest, StreamKind, TimeWindow,
};
use std::{fmt, ops::ControlFlow, sync::mpsc, time::Duration};

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
    /// A call took longer than the configured timeout; the instance is abandoned.
    #[error("connector `{connector}`: {operation} took longer than {timeout_secs} s; the instance is abandoned and will be opened again")]
    Timeout {
        connector: String,
        operation: &'static str,
        timeout_secs: u64,
    },
    /// A call on an instance whose earlier call timed out.
    #[error("connector `{connector}`: the instance was abandoned after {operation} timed out")]
    Abandoned {
        connector: String,
        operation: &'static str,
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

/// A job for the connector's worker thread.
type Job = Box<dyn FnOnce(&mut ConnectorBox) + Send>;

/// Where a session's connector calls run.
enum Runner {
    /// On the caller's thread: no timeout, and no hand-over between threads (records are
    /// allocated and freed on one thread, which the allocator likes best).
    Inline(ConnectorBox),
    /// On a thread of the connector's own, so that the caller can stop waiting.
    Thread {
        jobs: mpsc::Sender<Job>,
        call_timeout: Duration,
    },
}

/// An opened connector instance. With a call timeout its calls run on a thread of its own,
/// so that the host can stop waiting for a call that takes longer: such an instance is
/// abandoned (its thread finishes the call whenever it does) and every later call of this
/// session fails at once; the caller opens a new session.
pub struct Session {
    name: String,
    manifest: Manifest,
    runner: Runner,
    /// Set when a call timed out: the operation that did.
    abandoned: Option<&'static str>,
}

impl Session {
    /// Opens `plugin` with JSON `settings` under the configured connector `name`, whose
    /// source writes local times in `timezone`. Calls wait as long as the connector needs.
    pub fn open(
        name: &str,
        plugin: &Plugin,
        settings: &serde_json::Value,
        timezone: &SourceTimeZone,
    ) -> Result<Session, SessionError> {
        Session::open_with_timeout(name, plugin, settings, timezone, None)
    }

    /// Like [`Session::open`], but no call (`open` included) may take longer than
    /// `call_timeout`.
    pub fn open_with_timeout(
        name: &str,
        plugin: &Plugin,
        settings: &serde_json::Value,
        timezone: &SourceTimeZone,
        call_timeout: Option<Duration>,
    ) -> Result<Session, SessionError> {
        let settings_json = settings.to_string();
        let context_json = OpenContext::new(name, timezone.clone()).to_json();
        let module = plugin.module;
        let Some(call_timeout) = call_timeout else {
            let instance =
                (module.open())(settings_json.as_str().into(), context_json.as_str().into())
                    .into_result()
                    .map_err(|error| SessionError::Connector {
                        connector: name.to_string(),
                        operation: "open",
                        error,
                    })?;
            return Ok(Session {
                name: name.to_string(),
                manifest: plugin.manifest.clone(),
                runner: Runner::Inline(instance),
                abandoned: None,
            });
        };
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (opened_sender, opened) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("connector {name}"))
            .spawn(move || {
                let result =
                    (module.open())(settings_json.as_str().into(), context_json.as_str().into())
                        .into_result();
                let mut instance = match result {
                    Ok(instance) => {
                        let _ = opened_sender.send(Ok(()));
                        instance
                    }
                    Err(error) => {
                        let _ = opened_sender.send(Err(error));
                        return;
                    }
                };
                for job in receiver {
                    job(&mut instance);
                }
            })
            .map_err(|error| SessionError::Connector {
                connector: name.to_string(),
                operation: "open",
                error: ConnectorError::internal(format!(
                    "cannot start the connector's thread: {error}"
                )),
            })?;
        let opened = opened
            .recv_timeout(call_timeout)
            .map_err(|error| match error {
                mpsc::RecvTimeoutError::Timeout => SessionError::Timeout {
                    connector: name.to_string(),
                    operation: "open",
                    timeout_secs: call_timeout.as_secs(),
                },
                mpsc::RecvTimeoutError::Disconnected => SessionError::Connector {
                    connector: name.to_string(),
                    operation: "open",
                    error: ConnectorError::internal("the connector's thread ended during open"),
                },
            })?;
        opened.map_err(|error| SessionError::Connector {
            connector: name.to_string(),
            operation: "open",
            error,
        })?;
        Ok(Session {
            name: name.to_string(),
            manifest: plugin.manifest.clone(),
            runner: Runner::Thread { jobs, call_timeout },
            abandoned: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Runs `call` on the caller's thread, or on the connector's thread waiting at most the
    /// call timeout.
    fn call<T: Send + 'static>(
        &mut self,
        operation: &'static str,
        call: impl FnOnce(&mut ConnectorBox) -> RResult<T, ConnectorError> + Send + 'static,
    ) -> Result<T, SessionError> {
        if let Some(earlier) = self.abandoned {
            return Err(SessionError::Abandoned {
                connector: self.name.clone(),
                operation: earlier,
            });
        }
        let result = match &mut self.runner {
            Runner::Inline(instance) => call(instance).into_result(),
            Runner::Thread { jobs, call_timeout } => {
                let timeout = *call_timeout;
                let (sender, receiver) = mpsc::channel();
                let job: Job = Box::new(move |instance| {
                    let _ = sender.send(call(instance).into_result());
                });
                let lost = |name: &str| SessionError::Connector {
                    connector: name.to_string(),
                    operation,
                    error: ConnectorError::internal("the connector's thread ended unexpectedly"),
                };
                jobs.send(job).map_err(|_| lost(&self.name))?;
                match receiver.recv_timeout(timeout) {
                    Ok(result) => result,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.abandoned = Some(operation);
                        tracing::error!(connector = %self.name, operation, timeout_secs = timeout.as_secs(), "connector call timed out; the instance is abandoned");
                        return Err(SessionError::Timeout {
                            connector: self.name.clone(),
                            operation,
                            timeout_secs: timeout.as_secs(),
                        });
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Err(lost(&self.name)),
                }
            }
        };
        result.map_err(|error| SessionError::Connector {
            connector: self.name.clone(),
            operation,
            error,
        })
    }

    pub fn check(&mut self) -> Result<CheckReport, SessionError> {
        self.call("check", |instance| instance.check())
    }

    pub fn discover(&mut self) -> Result<Discovery, SessionError> {
        self.call("discover", |instance| instance.discover())
    }

    /// Tells the connector that everything up to `state` is durably stored.
    pub fn commit(&mut self, state: &[u8]) -> Result<(), SessionError> {
        let state = state.to_vec();
        self.call("commit", move |instance| {
            instance.commit(RSlice::from_slice(&state))
        })
    }

    /// Reads one batch and validates it against the request.
    pub fn read_batch(
        &mut self,
        request: &ReadRequest,
        page: usize,
    ) -> Result<ReadBatch, SessionError> {
        let owned = request.clone();
        let batch = self.call("read", move |instance| instance.read(&owned))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Origin;
    use acdlink_connector_api::{
        sdk::{module_for, Connector},
        ReadBatch, Records,
    };

    /// A connector whose `read` takes as long as its settings say.
    struct Sleepy {
        read_ms: u64,
    }

    impl Connector for Sleepy {
        type Settings = u64;

        fn manifest() -> Manifest {
            Manifest::new("sleepy", "Sleepy", "tests", "1.0.0")
                .stream(StreamKind::TIMELINK, ReadMode::WINDOWED)
        }

        fn open(read_ms: u64, _context: &OpenContext) -> Result<Self, ConnectorError> {
            Ok(Sleepy { read_ms })
        }

        fn check(&mut self) -> Result<CheckReport, ConnectorError> {
            Ok(CheckReport {
                message: "awake".into(),
            })
        }

        fn discover(&mut self) -> Result<Discovery, ConnectorError> {
            Ok(Discovery::default())
        }

        fn read(&mut self, request: &ReadRequest) -> Result<ReadBatch, ConnectorError> {
            std::thread::sleep(Duration::from_millis(self.read_ms));
            Ok(ReadBatch::last(
                Records::empty(request.stream).expect("a known stream"),
            ))
        }
    }

    fn plugin() -> Plugin {
        Plugin {
            manifest: Sleepy::manifest(),
            origin: Origin::Builtin {
                crate_name: "tests",
            },
            module: module_for::<Sleepy>(),
        }
    }

    fn read(session: &mut Session) -> Result<ReadBatch, SessionError> {
        let window = TimeWindow::new(
            acdlink_connector_api::UtcMillis(0),
            acdlink_connector_api::UtcMillis(900_000),
        );
        session.read_batch(&ReadRequest::windowed(StreamKind::TIMELINK, window, 10), 1)
    }

    #[test]
    fn a_call_that_takes_too_long_times_out_and_abandons_the_instance() {
        let timeout = Some(Duration::from_millis(100));
        let mut slow = Session::open_with_timeout(
            "slow",
            &plugin(),
            &serde_json::json!(2000),
            &SourceTimeZone::utc(),
            timeout,
        )
        .unwrap();
        let started = std::time::Instant::now();
        match read(&mut slow) {
            Err(SessionError::Timeout { operation, .. }) => assert_eq!(operation, "read"),
            other => panic!("expected a timeout, got {:?}", other.map(|_| ())),
        }
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the host stopped waiting"
        );
        assert!(matches!(
            slow.check(),
            Err(SessionError::Abandoned {
                operation: "read",
                ..
            })
        ));

        // A connector that answers in time is not affected.
        let mut quick = Session::open_with_timeout(
            "quick",
            &plugin(),
            &serde_json::json!(1),
            &SourceTimeZone::utc(),
            timeout,
        )
        .unwrap();
        assert!(read(&mut quick).is_ok());
        assert_eq!(quick.check().unwrap().message.as_str(), "awake");
    }
}
