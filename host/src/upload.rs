//! Draining the outbox into a sink. A sink tries to deliver one batch and says what became
//! of it; [`drain`] turns that into store updates: delivered batches leave the outbox,
//! transient failures are retried later with exponential backoff and jitter (honouring a
//! server's `Retry-After`), permanent refusals go to quarantine, and an authentication
//! failure stops the drain with the data kept.
//!
//! The backoff is computed here rather than with a retry crate because the schedule is
//! persisted per batch (`next_attempt_ms` in the store), so it survives restarts.

use crate::store::{now_ms, OutboxBatch, OutboxUpdate, Store, StoreError};
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

/// What became of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The WFM has it.
    Delivered,
    /// May pass later (timeouts, 408, 429, 5xx, connection errors).
    Retry {
        error: String,
        /// What the server asked for (`Retry-After`), if anything.
        retry_after_secs: Option<u64>,
    },
    /// Refused for good (4xx other than 401, 403, 408, 429).
    Quarantine {
        status: Option<u16>,
        response: String,
    },
    /// The credentials were refused (401, 403): stop uploading, keep everything.
    Stop { error: String },
}

/// Something that takes outbox batches.
pub trait Sink: Send + Sync {
    /// Tries to deliver one batch. Called from several threads at once, up to
    /// [`Sink::concurrency`].
    fn deliver(&self, batch: &OutboxBatch) -> Delivery;

    /// How many deliveries may be in flight at once.
    fn concurrency(&self) -> usize {
        1
    }
}

/// What a drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub n_delivered_batches: usize,
    pub n_delivered_records: usize,
    pub n_retried: usize,
    pub n_quarantined: usize,
    /// Set when the sink refused the credentials; the drain stopped there.
    pub stopped: Option<String>,
    /// The last transient error, for messages.
    pub last_error: Option<String>,
}

impl DrainReport {
    /// Adds a later report to this one.
    pub fn add(&mut self, later: &DrainReport) {
        self.n_delivered_batches += later.n_delivered_batches;
        self.n_delivered_records += later.n_delivered_records;
        self.n_retried += later.n_retried;
        self.n_quarantined += later.n_quarantined;
        if later.stopped.is_some() {
            self.stopped.clone_from(&later.stopped);
        }
        if later.last_error.is_some() {
            self.last_error.clone_from(&later.last_error);
        }
    }
}

/// Delivers the batches that are due, oldest first, until none is due, the sink stops, or
/// [`MAX_DRAIN`] has passed.
pub fn drain(
    store: &mut Store,
    sink: &dyn Sink,
    on_progress: impl FnMut(&DrainReport),
) -> Result<DrainReport, StoreError> {
    drain_until(store, sink, &AtomicBool::new(false), on_progress)
}

/// How long one drain takes new batches; it then finishes those in flight and returns.
const MAX_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// [`drain`] that also ends, once `stop` is set, after the requests in flight: batches
/// handed out but not yet sent are left as they are.
///
/// The drain is a stream, not a series of rounds: `concurrency` workers deliver while this
/// thread keeps a few batches per worker queued ahead of them and writes the outcomes to
/// the store as they come in, one transaction for whatever has arrived since the last. The
/// WFM never waits for the store (a commit is an fsync), and the store never waits for the
/// slowest delivery.
pub fn drain_until(
    store: &mut Store,
    sink: &dyn Sink,
    stop: &AtomicBool,
    mut on_progress: impl FnMut(&DrainReport),
) -> Result<DrainReport, StoreError> {
    let mut report = DrainReport::default();
    let concurrency = sink.concurrency().max(1);
    // Batches handed out and not yet written back: enough to keep every worker busy while
    // this thread commits, few enough to keep memory small (a batch of 1000 intervals is
    // about 250 kB).
    let ahead = (concurrency * 4).max(8);
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<OutboxBatch>(ahead);
    let job_rx = std::sync::Mutex::new(job_rx);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(OutboxBatch, Option<Delivery>)>();
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || {
                while let Ok(Ok(batch)) = job_rx.lock().map(|receiver| receiver.recv()) {
                    // After a stop, batches not yet sent stay as they are.
                    let delivery = (!stop.load(Ordering::Relaxed)).then(|| {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            sink.deliver(&batch)
                        }))
                        .unwrap_or_else(|_| Delivery::Retry {
                            error: "the delivery thread panicked".to_string(),
                            retry_after_secs: None,
                        })
                    });
                    if done_tx.send((batch, delivery)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        // Each batch gets at most one attempt per drain: the drain walks the outbox in id
        // order, so a WFM that accepts connections and never answers cannot keep it (and
        // with it reading and shutdown) going for ever; what failed waits for its backoff
        // and the next drain. Batches stored while the drain runs have higher ids and are
        // taken too.
        let mut after_id = 0;
        let mut n_out = 0;
        let group = ahead / 2;
        let mut updates = Vec::with_capacity(ahead);
        let started = std::time::Instant::now();
        let result = loop {
            // A drain that the readers keep fed ends now and then, so that its caller can
            // report what went out.
            let stopping = report.stopped.is_some()
                || stop.load(Ordering::Relaxed)
                || started.elapsed() > MAX_DRAIN;
            // Refills when half the batches handed out have come back (or none are out),
            // so that the flush below is shared by several batches.
            if !stopping && (n_out == 0 || n_out <= ahead / 2) {
                let due = match store.due_batches(now_ms(), after_id, ahead - n_out) {
                    Ok(due) => due,
                    Err(error) => break Err(error),
                };
                // What the WFM sees must survive a power cut (see the store's docs).
                if !due.is_empty() {
                    if let Err(error) = store.sync() {
                        break Err(error);
                    }
                }
                for batch in due {
                    after_id = batch.id;
                    n_out += 1;
                    // Never blocks: the channel holds `ahead` batches.
                    let _ = job_tx.send(batch);
                }
            }
            if n_out == 0 {
                break Ok(());
            }
            // Wait for one outcome and take whatever else has arrived. Outcomes are stored
            // in groups (each commit is an fsync, and the readers wait for it), and at the
            // end; a crash before they are stored re-sends those batches with their
            // idempotency keys, which the WFM applies once.
            let Ok(first) = done_rx.recv() else {
                break Ok(());
            };
            let outcomes: Vec<_> = std::iter::once(first)
                .chain(std::iter::from_fn(|| done_rx.try_recv().ok()))
                .collect();
            n_out -= outcomes.len();
            updates.extend(record_outcomes(outcomes, &mut report));
            if updates.len() >= group || n_out == 0 || report.stopped.is_some() {
                if let Err(error) = store.apply(&updates) {
                    break Err(error);
                }
                updates.clear();
                on_progress(&report);
            }
        };
        // Ends the workers; outcomes still in flight after an error are lost with it, and
        // their batches are simply sent again (same idempotency keys) by the next drain.
        drop(job_tx);
        result
    })?;
    Ok(report)
}

/// Turns delivery outcomes into store updates, counting them in `report`. A batch without
/// an outcome was not sent (a stop came first) and stays as it is.
fn record_outcomes(
    outcomes: Vec<(OutboxBatch, Option<Delivery>)>,
    report: &mut DrainReport,
) -> Vec<OutboxUpdate> {
    let mut updates = Vec::with_capacity(outcomes.len());
    for (batch, delivery) in outcomes {
        let Some(delivery) = delivery else { continue };
        match delivery {
            Delivery::Delivered => {
                updates.push(OutboxUpdate::Delivered { id: batch.id });
                report.n_delivered_batches += 1;
                report.n_delivered_records += batch.n_records;
            }
            Delivery::Retry {
                error,
                retry_after_secs,
            } => {
                let delay_ms = backoff_ms(batch.attempts, retry_after_secs);
                tracing::warn!(batch = batch.id, attempts = batch.attempts + 1, delay_ms, %error, "upload failed; will retry");
                updates.push(OutboxUpdate::Retry {
                    id: batch.id,
                    next_attempt_ms: now_ms() + delay_ms,
                    error: error.clone(),
                });
                report.n_retried += 1;
                report.last_error = Some(error);
            }
            Delivery::Quarantine { status, response } => {
                tracing::error!(batch = batch.id, connector = %batch.connector, ?status, %response, "batch refused by the WFM; quarantined");
                updates.push(OutboxUpdate::Quarantine {
                    id: batch.id,
                    status,
                    response,
                });
                report.n_quarantined += 1;
            }
            Delivery::Stop { error } => {
                tracing::error!(%error, "the WFM refused the credentials; uploading stops, the data is kept");
                // The other outcomes are still applied.
                report.stopped = Some(error);
            }
        }
    }
    updates
}

/// The wait before attempt `attempts + 1`: 1 s doubling up to 10 minutes, with ±25 %
/// jitter so that many batches do not retry in step; at least what the server asked for.
pub fn backoff_ms(attempts: u32, retry_after_secs: Option<u64>) -> i64 {
    let base = 1_000i64
        .saturating_mul(1i64 << attempts.min(10))
        .min(600_000);
    let jitter = (now_ms().rem_euclid(1000) - 500) * base / 2000;
    let wait = base + jitter;
    match retry_after_secs {
        Some(seconds) => wait.max(seconds.min(86_400) as i64 * 1000),
        None => wait,
    }
}

/// The `file` sink: appends each body as one line to `<endpoint>.ndjson` in a directory,
/// flushed to disk before the batch leaves the outbox. A crash between the two may repeat
/// a line (at least once); every line carries its batch's idempotency key in
/// `meta.idempotencyKey` so that a reader can drop repeats.
pub struct FileSink {
    directory: PathBuf,
}

impl FileSink {
    pub fn new(directory: &Path) -> std::io::Result<FileSink> {
        std::fs::create_dir_all(directory)?;
        Ok(FileSink {
            directory: directory.to_path_buf(),
        })
    }

    fn append(&self, batch: &OutboxBatch) -> Result<(), String> {
        let mut body: serde_json::Value = serde_json::from_slice(&batch.body)
            .map_err(|error| format!("outbox batch {} is not JSON: {error}", batch.id))?;
        body["meta"]["idempotencyKey"] = serde_json::Value::String(batch.idempotency_key.clone());
        let mut line = serde_json::to_vec(&body).map_err(|error| error.to_string())?;
        line.push(b'\n');
        let path = self.directory.join(format!("{}.ndjson", batch.endpoint));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }
}

impl Sink for FileSink {
    fn deliver(&self, batch: &OutboxBatch) -> Delivery {
        match self.append(batch) {
            Ok(()) => Delivery::Delivered,
            Err(error) => Delivery::Retry {
                error,
                retry_after_secs: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        for attempts in 0..12 {
            let base = (1_000i64 << attempts.min(10)).min(600_000);
            let wait = backoff_ms(attempts, None);
            assert!(
                wait >= base * 3 / 4 && wait <= base * 5 / 4,
                "attempt {attempts}: {wait}"
            );
        }
        assert!(backoff_ms(0, Some(30)) >= 30_000);
    }
}

#[cfg(test)]
mod drain_tests {
    use super::*;
    use crate::store::{Checkpoint, NewBody, ReadOutcome};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A WFM that answers slowly and always fails: slower than the first backoff.
    struct SlowFailing {
        n_calls: AtomicUsize,
    }

    impl Sink for SlowFailing {
        fn deliver(&self, _batch: &OutboxBatch) -> Delivery {
            self.n_calls.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_millis(1300));
            Delivery::Retry {
                error: "503".to_string(),
                retry_after_secs: None,
            }
        }
    }

    #[test]
    fn each_batch_gets_one_attempt_per_drain_however_slow_the_wfm() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.store_read(&page(2)).unwrap();
        let sink = SlowFailing {
            n_calls: AtomicUsize::new(0),
        };
        let report = drain(&mut store, &sink, |_| {}).unwrap();
        assert_eq!(
            sink.n_calls.load(Ordering::Relaxed),
            2,
            "one attempt each, then the drain ends"
        );
        assert_eq!(report.n_retried, 2);
        assert_eq!(
            store.outbox_depth(None).unwrap().n_batches,
            2,
            "the data is kept"
        );
    }

    /// A WFM that takes the first batch and, while doing so, the service is told to stop.
    struct StopsTheService<'a> {
        stop: &'a AtomicBool,
        n_calls: AtomicUsize,
    }

    impl Sink for StopsTheService<'_> {
        fn deliver(&self, _batch: &OutboxBatch) -> Delivery {
            self.n_calls.fetch_add(1, Ordering::Relaxed);
            self.stop.store(true, Ordering::Relaxed);
            Delivery::Delivered
        }
    }

    #[test]
    fn a_stop_leaves_the_batches_not_yet_sent_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.store_read(&page(10)).unwrap();
        let stop = AtomicBool::new(false);
        let sink = StopsTheService {
            stop: &stop,
            n_calls: AtomicUsize::new(0),
        };
        let report = drain_until(&mut store, &sink, &stop, |_| {}).unwrap();
        assert_eq!(
            sink.n_calls.load(Ordering::Relaxed),
            1,
            "one request, then the stop"
        );
        assert_eq!(report.n_delivered_batches, 1);
        let left = store.due_batches(now_ms(), 0, 100).unwrap();
        assert_eq!(left.len(), 9);
        assert!(left.iter().all(|batch| batch.attempts == 0), "untouched");
    }

    /// A WFM that takes everything; while it answers the first request, a reader stores
    /// another page through its own connection.
    struct ReaderMeanwhile {
        state_dir: std::path::PathBuf,
        n_calls: AtomicUsize,
    }

    impl Sink for ReaderMeanwhile {
        fn deliver(&self, _batch: &OutboxBatch) -> Delivery {
            if self.n_calls.fetch_add(1, Ordering::Relaxed) == 0 {
                let mut reader = Store::open(&self.state_dir).unwrap();
                reader.store_read(&page(3)).unwrap();
            }
            Delivery::Delivered
        }
    }

    fn page(n_bodies: usize) -> ReadOutcome {
        ReadOutcome {
            connector: "hq".to_string(),
            stream: "phonelink-intervals".to_string(),
            checkpoint: Checkpoint::default(),
            bodies: (0..n_bodies)
                .map(|n| NewBody {
                    endpoint: "queue-intervals".to_string(),
                    n_records: 1,
                    body: format!("{{\"n\":{n}}}").into_bytes(),
                })
                .collect(),
            ..ReadOutcome::default()
        }
    }

    #[test]
    fn a_drain_also_takes_what_readers_store_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.store_read(&page(2)).unwrap();
        let sink = ReaderMeanwhile {
            state_dir: dir.path().to_path_buf(),
            n_calls: AtomicUsize::new(0),
        };
        let report = drain(&mut store, &sink, |_| {}).unwrap();
        assert_eq!(report.n_delivered_batches, 5, "{report:?}");
        assert_eq!(store.outbox_depth(None).unwrap().n_batches, 0);
    }
}
