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

/// Delivers every batch that is due, oldest first, until none is due or the sink stops.
pub fn drain(
    store: &mut Store,
    sink: &dyn Sink,
    on_progress: impl FnMut(&DrainReport),
) -> Result<DrainReport, StoreError> {
    drain_until(store, sink, &AtomicBool::new(false), on_progress)
}

/// [`drain`] that also ends after the round in flight once `stop` is set.
pub fn drain_until(
    store: &mut Store,
    sink: &dyn Sink,
    stop: &AtomicBool,
    mut on_progress: impl FnMut(&DrainReport),
) -> Result<DrainReport, StoreError> {
    let mut report = DrainReport::default();
    let concurrency = sink.concurrency().max(1);
    // Each batch gets at most one attempt per drain: a WFM that accepts connections and
    // never answers must not keep the drain (and with it reading and shutdown) going for
    // ever; what failed waits for its backoff and the next drain.
    let mut attempted = std::collections::HashSet::new();
    // A round holds a few batches per delivery slot: enough to keep every slot busy, few
    // enough to keep memory small (a batch of 1000 intervals is about 250 kB).
    let round = (concurrency * 4).max(16);
    loop {
        let due: Vec<OutboxBatch> = store
            .due_batches(now_ms(), round + attempted.len())?
            .into_iter()
            .filter(|batch| !attempted.contains(&batch.id))
            .take(round)
            .collect();
        if due.is_empty() {
            return Ok(report);
        }
        attempted.extend(due.iter().map(|batch| batch.id));
        // `concurrency` workers take the round's batches in order, each starting the next
        // as soon as its last one is done; the store is updated afterwards.
        let deliveries: Vec<std::sync::OnceLock<Delivery>> =
            due.iter().map(|_| std::sync::OnceLock::new()).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..concurrency.min(due.len()) {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = due.get(index) else { break };
                    let delivery = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        sink.deliver(batch)
                    }));
                    if let Ok(delivery) = delivery {
                        let _ = deliveries[index].set(delivery);
                    }
                });
            }
        });
        let outcomes = due.iter().zip(deliveries).map(|(batch, delivery)| {
            let delivery = delivery.into_inner().unwrap_or_else(|| Delivery::Retry {
                error: "the delivery thread panicked".to_string(),
                retry_after_secs: None,
            });
            (batch, delivery)
        });
        // One transaction for the round: a commit (an fsync) per batch would cost more than
        // the upload itself. A crash before it commits re-sends the round's batches with
        // their idempotency keys, which a receiver honouring them applies once.
        let mut updates = Vec::with_capacity(due.len());
        for (batch, delivery) in outcomes {
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
                    // The other outcomes of this round are still applied.
                    report.stopped = Some(error);
                }
            }
        }
        store.apply(&updates)?;
        on_progress(&report);
        if report.stopped.is_some() || stop.load(Ordering::Relaxed) {
            return Ok(report);
        }
    }
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
        let bodies = (0..2)
            .map(|n| NewBody {
                endpoint: "queue-intervals".to_string(),
                n_records: 1,
                body: format!("{{\"n\":{n}}}").into_bytes(),
            })
            .collect();
        store
            .store_read(&ReadOutcome {
                connector: "hq".to_string(),
                stream: "phonelink-intervals".to_string(),
                checkpoint: Checkpoint::default(),
                bodies,
                ..ReadOutcome::default()
            })
            .unwrap();
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
}
