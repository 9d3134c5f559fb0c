//! From a connector to the outbox: read a window (or what is new), map the records, keep
//! only the new or changed ones, and store them with the checkpoint in one transaction;
//! only then tell the connector to commit.
//!
//! Exactly-once into the outbox follows from the fingerprints: a window read again (after a
//! crash, for reconciliation, by a manual import) enqueues only items whose natural key is
//! new or whose content changed since it was last enqueued.

use crate::{
    config::ConnectorConfig,
    mapping::{self, Item},
    session::{Session, SessionError},
    store::{Checkpoint, Fingerprint, Held, NewBody, ReadOutcome, Store, StoreError},
};
use acdlink_connector_api::{Delivery, ReadBatch, ReadMode, ReadRequest, StreamKind, TimeWindow};

/// Where bodies go and how big they are: the upload target's settings.
#[derive(Clone, Debug)]
pub struct BodyFormat {
    pub integration_configuration_id: i64,
    pub external_system: Option<String>,
    pub batch_size: usize,
}

/// What a read did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub n_read: usize,
    pub n_enqueued: usize,
    pub n_unchanged: usize,
    pub n_dropped_queues: usize,
    pub n_dropped_agents: usize,
    pub n_rejects: usize,
    pub n_bodies: usize,
}

impl ImportReport {
    /// Adds another report's counts to this one.
    pub fn add(&mut self, other: &ImportReport) {
        self.n_read += other.n_read;
        self.n_enqueued += other.n_enqueued;
        self.n_unchanged += other.n_unchanged;
        self.n_dropped_queues += other.n_dropped_queues;
        self.n_dropped_agents += other.n_dropped_agents;
        self.n_rejects += other.n_rejects;
        self.n_bodies += other.n_bodies;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("connector `{connector}` cannot read {stream}")]
    Unsupported {
        connector: String,
        stream: StreamKind,
    },
}

/// What to do with the bodies a read produces.
pub enum Destination<'a> {
    /// Into the outbox, with the checkpoint.
    Outbox,
    /// Nowhere: show them (a dry run). Nothing is stored and nothing is committed.
    DryRun(&'a mut dyn FnMut(&str, &[u8])),
}

/// One connector's stream, ready to import.
pub struct Importer<'a> {
    pub session: &'a mut Session,
    pub store: &'a mut Store,
    pub connector: &'a ConnectorConfig,
    pub format: &'a BodyFormat,
    /// Whether a contiguous windowed read moves the checkpoint (the scheduler's reads do;
    /// a manual import of a date range does not).
    pub advance_checkpoint: bool,
}

impl Importer<'_> {
    /// Reads `window` of a windowed stream and enqueues what is new or changed. The
    /// checkpoint moves to the window's end if the window starts at or before it (a
    /// contiguous read); a window elsewhere (a manual import of old days) leaves it alone.
    pub fn import_window(
        &mut self,
        stream: StreamKind,
        window: TimeWindow,
        destination: &mut Destination<'_>,
    ) -> Result<ImportReport, PipelineError> {
        self.expect_mode(stream, ReadMode::WINDOWED)?;
        let stream_name = stream.to_string();
        let previous = self
            .store
            .checkpoint(&self.connector.name, &stream_name)?
            .unwrap_or_default();
        let reached = match previous.window_reached_ms {
            _ if !self.advance_checkpoint => previous.window_reached_ms,
            Some(reached) if window.from.0 > reached => Some(reached),
            Some(reached) => Some(reached.max(window.to.0)),
            None => Some(window.to.0),
        };
        let mut request = ReadRequest::windowed(stream, window, self.connector.max_records);
        let mut report = ImportReport::default();
        let mut page = 0;
        loop {
            page += 1;
            let batch = self.session.read_batch(&request, page)?;
            let last = batch.next_cursor.is_none();
            // Only the last page moves the checkpoint: the pages before it are stored with
            // the old one, and a crash in between re-reads the window, whose fingerprints
            // then keep the stored items from being enqueued twice.
            let checkpoint = Checkpoint {
                window_reached_ms: if last {
                    reached
                } else {
                    previous.window_reached_ms
                },
                state: None,
            };
            log_rejects(&self.connector.name, stream, &batch.rejects);
            let page_report =
                self.store_batch(stream, &batch, checkpoint, Some(window), destination)?;
            report.add(&page_report);
            match batch.next_cursor.into_option() {
                Some(cursor) => request.cursor = Some(cursor).into(),
                None => return Ok(report),
            }
        }
    }

    /// Reads what is new in an incremental stream since the stored state, storing each
    /// batch with the connector's new state and then committing that state.
    pub fn import_new(
        &mut self,
        stream: StreamKind,
        destination: &mut Destination<'_>,
    ) -> Result<ImportReport, PipelineError> {
        self.import_new_until(stream, destination, |_| false)
            .map(|(report, _)| report)
    }

    /// [`Importer::import_new`] that ends the read after a stored page when `enough` says
    /// so (the outbox is full). Every page is stored with its state and committed, so the
    /// next read goes on from there. Returns whether it ended early.
    ///
    /// Held pages ([`Delivery::HOLD`]) are stored but not committed, and the read does not
    /// end early while it holds: a file is held whole. What an earlier read left held (it
    /// failed, or the process stopped) is dropped first; the connector reads it again
    /// from the committed state.
    pub fn import_new_until(
        &mut self,
        stream: StreamKind,
        destination: &mut Destination<'_>,
        enough: impl Fn(&Store) -> bool,
    ) -> Result<(ImportReport, bool), PipelineError> {
        self.expect_mode(stream, ReadMode::INCREMENTAL)?;
        let stream_name = stream.to_string();
        let previous = self
            .store
            .checkpoint(&self.connector.name, &stream_name)?
            .unwrap_or_default();
        if let Destination::Outbox = destination {
            let n_dropped = self
                .store
                .discard_held(&self.connector.name, &stream_name)?;
            if n_dropped > 0 {
                tracing::warn!(connector = %self.connector.name, %stream, n_batches = n_dropped,
                    "an earlier read ended while it held records (it failed, or the process stopped): dropped them, never sent; the connector reads them again");
            }
        }
        let mut request =
            ReadRequest::incremental(stream, previous.state.clone(), self.connector.max_records);
        let mut report = ImportReport::default();
        // What the pages held so far in this read added to `report`.
        let mut held_report = ImportReport::default();
        let mut state = previous.state;
        let mut page = 0;
        loop {
            page += 1;
            let batch = self.session.read_batch(&request, page)?;
            if let Some(new_state) = batch.state.clone().into_option() {
                state = Some(new_state.into_vec());
            }
            let checkpoint = Checkpoint {
                window_reached_ms: None,
                state: state.clone(),
            };
            log_rejects(&self.connector.name, stream, &batch.rejects);
            let held = held_for(batch.delivery);
            let page_report = self.store_batch(stream, &batch, checkpoint, None, destination)?;
            report.add(&page_report);
            match held {
                Held::Keep => held_report.add(&page_report),
                Held::Discard => {
                    // Read, but never to be sent.
                    report.n_enqueued -= held_report.n_enqueued;
                    report.n_bodies -= held_report.n_bodies;
                    held_report = ImportReport::default();
                }
                Held::Release => held_report = ImportReport::default(),
            }
            if let (Destination::Outbox, Some(state), false) =
                (&destination, &state, held == Held::Keep)
            {
                // The connector may now remove its source: the page must be on disk first.
                self.store.sync()?;
                self.session.commit(state)?;
            }
            match batch.next_cursor.into_option() {
                Some(_) if held != Held::Keep && enough(self.store) => return Ok((report, true)),
                Some(cursor) => request.cursor = Some(cursor).into(),
                None => return Ok((report, false)),
            }
        }
    }

    fn expect_mode(&self, stream: StreamKind, mode: ReadMode) -> Result<(), PipelineError> {
        if self.session.manifest().read_mode(stream) == Some(mode) {
            Ok(())
        } else {
            Err(PipelineError::Unsupported {
                connector: self.connector.name.clone(),
                stream,
            })
        }
    }

    fn store_batch(
        &mut self,
        stream: StreamKind,
        batch: &ReadBatch,
        checkpoint: Checkpoint,
        window: Option<TimeWindow>,
        destination: &mut Destination<'_>,
    ) -> Result<ImportReport, PipelineError> {
        let records = &batch.records;
        let endpoint = mapping::endpoint(stream).ok_or_else(|| PipelineError::Unsupported {
            connector: self.connector.name.clone(),
            stream,
        })?;
        let stream_name = stream.to_string();
        let mapped = mapping::map_records(records, &self.connector.mapping);
        let fingerprints: Vec<Fingerprint> =
            mapped.items.iter().map(Item::stored_fingerprint).collect();
        let unchanged = self
            .store
            .unchanged(&self.connector.name, &stream_name, &fingerprints)?;
        let fresh: Vec<&Item> = mapped
            .items
            .iter()
            .zip(&unchanged)
            .filter(|(_, unchanged)| !**unchanged)
            .map(|(item, _)| item)
            .collect();
        let n_unchanged = mapped.items.len() - fresh.len();
        let bodies: Vec<NewBody> = fresh
            .chunks(self.format.batch_size.max(1))
            .map(|chunk| NewBody {
                endpoint: endpoint.to_string(),
                n_records: chunk.len(),
                body: mapping::body(
                    &mapped,
                    chunk,
                    self.format.integration_configuration_id,
                    self.format.external_system.as_deref(),
                ),
            })
            .collect();
        let report = ImportReport {
            n_read: records.len(),
            n_enqueued: fresh.len(),
            n_unchanged,
            n_dropped_queues: mapped.n_dropped_queues,
            n_dropped_agents: mapped.n_dropped_agents,
            n_rejects: batch.rejects.len(),
            n_bodies: bodies.len(),
        };
        match destination {
            Destination::Outbox => {
                self.store.store_read(&ReadOutcome {
                    connector: self.connector.name.clone(),
                    stream: stream_name,
                    checkpoint,
                    bodies,
                    fingerprints,
                    window_ms: window.map(|window| (window.from.0, window.to.0)),
                    n_records_read: records.len(),
                    held: held_for(batch.delivery),
                })?;
            }
            Destination::DryRun(show) => {
                for body in &bodies {
                    show(&body.endpoint, &body.body);
                }
            }
        }
        Ok(report)
    }
}

/// What the store does with the held pages of the stream, given a batch's delivery.
fn held_for(delivery: Delivery) -> Held {
    match delivery {
        Delivery::HOLD => Held::Keep,
        Delivery::DISCARD => Held::Discard,
        _ => Held::Release,
    }
}

/// Logs what a connector rejected, with its position in the source: the first few of each
/// page (the counts are in the import report and the summary).
fn log_rejects(connector: &str, stream: StreamKind, rejects: &[acdlink_connector_api::Reject]) {
    const SHOWN: usize = 20;
    for reject in rejects.iter().take(SHOWN) {
        tracing::warn!(connector, %stream, position = %reject.position, "rejected: {}", reject.message);
    }
    if rejects.len() > SHOWN {
        tracing::warn!(connector, %stream, n_more = rejects.len() - SHOWN, "more rejected in this batch, not logged");
    }
}
