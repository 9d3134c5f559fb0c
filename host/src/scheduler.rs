//! The service on tokio: one task per enabled connector stream and one uploader, running at
//! the same time. Readers fill the outbox while the uploader drains it; the outbox limit
//! makes readers wait for uploads (backpressure).
//!
//! Connector calls and SQLite work are blocking: each task owns its own store connection
//! and hands it, with the work, to `spawn_blocking`. Tasks talk through `watch` channels:
//! readers bump `enqueued` after storing, the uploader publishes its progress (readers
//! waiting for room watch it), and `stop` ends everything at the next safe point (between
//! days of a read, and between the requests of a drain).
//!
//! Schedules: a windowed PhoneLink stream reads at each interval boundary plus the delay,
//! re-reading the reconciliation window every time; TimeLink reads every
//! `timelink_poll_secs`, re-reading the reconciliation window once per interval and only
//! what is new in between; incremental streams read what is new on their stream's
//! schedule. A failing stream waits 1 minute, doubling up to an hour, while the others go
//! on.

use crate::{
    config::{Config, ConnectorConfig},
    pipeline::ImportReport,
    registry::Registry,
    service::{self, DayProgress, Reach, StreamOutcome},
    store::{now_ms, Store, StoreError},
    upload::{self, DrainReport, Sink},
};
use acdlink_connector_api::{ReadMode, StreamKind, TimeWindow};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::watch;

/// What the scheduler tells whoever shows progress. Called from blocking threads.
pub trait Observer: Send + Sync {
    /// A read of a windowed stream will cover this many days.
    fn planned(&self, _connector: &str, _stream: StreamKind, _n_days: usize) {}
    /// A day (or part of one) of a windowed stream was stored.
    fn day(&self, _connector: &str, _stream: StreamKind, _day: TimeWindow, _report: &ImportReport) {
    }
    /// A read of a stream ended (the outcome, or the error).
    fn read(
        &self,
        _connector: &str,
        _stream: StreamKind,
        _outcome: &Result<StreamOutcome, String>,
    ) {
    }
    /// The uploader delivered more (totals of the current drain).
    fn upload_progress(&self, _report: &DrainReport) {}
}

/// An observer that only logs.
pub struct LogObserver;

impl Observer for LogObserver {
    fn read(&self, connector: &str, stream: StreamKind, outcome: &Result<StreamOutcome, String>) {
        match outcome {
            Ok(outcome) if outcome.report.n_read > 0 || outcome.outbox_full => tracing::info!(
                connector,
                %stream,
                n_read = outcome.report.n_read,
                n_enqueued = outcome.report.n_enqueued,
                n_rejected = outcome.report.n_rejects,
                outbox_full = outcome.outbox_full,
                "read"
            ),
            Ok(_) => {}
            Err(error) => tracing::error!(connector, %stream, %error, "read failed"),
        }
    }
}

/// What one stream's task did in `run --once`.
#[derive(Debug)]
pub struct StreamSummary {
    pub connector: String,
    pub stream: StreamKind,
    /// The reads' totals, or the error that ended them.
    pub result: Result<ImportReport, String>,
    /// Why nothing was read (`paused`).
    pub skipped: Option<&'static str>,
    /// Reading stopped because the outbox stayed full (the WFM does not take uploads).
    pub outbox_full: bool,
    /// How often reading waited for uploads to make room in the outbox.
    pub n_waits_for_room: usize,
}

/// What `run --once` did.
#[derive(Debug, Default)]
pub struct OnceSummary {
    pub streams: Vec<StreamSummary>,
    pub upload: DrainReport,
}

/// The uploader's progress, for readers waiting for room in the outbox.
#[derive(Clone, Copy, Debug, Default)]
struct UploadState {
    /// Drains done.
    generation: u64,
    /// The last drain delivered nothing although it had batches: waiting readers give up
    /// (in `run --once`) or wait for their next tick (in the service).
    stalled: bool,
    /// The uploader has ended.
    finished: bool,
}

struct Shared {
    config: Arc<Config>,
    registry: Arc<Registry>,
    sink: Arc<dyn Sink>,
    observer: Arc<dyn Observer>,
    /// Set on SIGINT/SIGTERM; blocking work checks it between days and before each request.
    stop_flag: Arc<AtomicBool>,
    once: bool,
}

/// The service: readers and uploader on a tokio runtime.
pub struct Scheduler {
    config: Arc<Config>,
    registry: Arc<Registry>,
    sink: Arc<dyn Sink>,
    observer: Arc<dyn Observer>,
}

impl Scheduler {
    /// `registry` must hold the plugin of every enabled connector (`acdlink run` checks
    /// that first); a connector whose plugin is missing is logged and left out.
    pub fn new(
        config: Arc<Config>,
        registry: Arc<Registry>,
        sink: Arc<dyn Sink>,
        observer: Arc<dyn Observer>,
    ) -> Scheduler {
        Scheduler {
            config,
            registry,
            sink,
            observer,
        }
    }

    fn shared(self, once: bool) -> Arc<Shared> {
        Arc::new(Shared {
            config: self.config,
            registry: self.registry,
            sink: self.sink,
            observer: self.observer,
            stop_flag: Arc::new(AtomicBool::new(false)),
            once,
        })
    }

    /// Catches every enabled connector stream up to now while uploading, until the reads
    /// are done and the outbox holds nothing that is due.
    pub async fn run_once(self) -> Result<OnceSummary, StoreError> {
        // Nothing stops `run --once` early (a signal ends the process); the sender lives as
        // long as the run so that waiting on it never wakes.
        let (stop_tx, stop_rx) = watch::channel(false);
        let summary = self::run(self.shared(true), stop_rx).await;
        drop(stop_tx);
        summary
    }

    /// Runs until `stop` turns true: reads on each stream's schedule, uploads as data
    /// arrives and as retries fall due. Work in flight finishes at its next safe point.
    pub async fn run_service(self, stop: watch::Receiver<bool>) -> Result<(), StoreError> {
        let shared = self.shared(false);
        let stop_flag = Arc::clone(&shared.stop_flag);
        let mut watcher = stop.clone();
        tokio::spawn(async move {
            while !*watcher.borrow_and_update() {
                if watcher.changed().await.is_err() {
                    break;
                }
            }
            stop_flag.store(true, Ordering::Relaxed);
        });
        self::run(shared, stop).await.map(|_| ())
    }
}

async fn run(shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Result<OnceSummary, StoreError> {
    let (enqueued_tx, enqueued_rx) = watch::channel(0u64);
    let (upload_tx, upload_rx) = watch::channel(UploadState::default());
    let (readers_done_tx, readers_done_rx) = watch::channel(false);
    let enqueued_tx = Arc::new(enqueued_tx);

    let mut readers = tokio::task::JoinSet::new();
    for (index, connector) in shared.config.connectors.iter().enumerate() {
        if !connector.enabled {
            continue;
        }
        let Some(plugin) = shared.registry.find(&connector.plugin) else {
            tracing::error!(connector = %connector.name, plugin = %connector.plugin, "no plugin of this kind is loaded; the connector is left out");
            continue;
        };
        for stream in service::enabled_streams(connector, &plugin.manifest) {
            readers.spawn(reader(
                Arc::clone(&shared),
                index,
                stream,
                Arc::clone(&enqueued_tx),
                upload_rx.clone(),
                stop.clone(),
            ));
        }
    }
    let uploader = tokio::spawn(uploader(
        Arc::clone(&shared),
        enqueued_rx,
        upload_tx,
        readers_done_rx,
        stop.clone(),
    ));
    let mut summary = OnceSummary::default();
    while let Some(joined) = readers.join_next().await {
        match joined {
            Ok(Ok(stream)) => summary.streams.push(stream),
            Ok(Err(error)) => {
                let _ = readers_done_tx.send(true);
                let _ = uploader.await;
                return Err(error);
            }
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        }
    }
    let _ = readers_done_tx.send(true);
    summary.upload = match uploader.await {
        Ok(report) => report?,
        Err(panic) => std::panic::resume_unwind(panic.into_panic()),
    };
    summary
        .streams
        .sort_by(|a, b| (&a.connector, a.stream.0).cmp(&(&b.connector, b.stream.0)));
    Ok(summary)
}

/// Runs `work` with the store on a blocking thread and gives the store back.
async fn blocking<T: Send + 'static>(
    store: Store,
    work: impl FnOnce(&mut Store) -> T + Send + 'static,
) -> (Store, T) {
    let mut store = store;
    tokio::task::spawn_blocking(move || {
        let result = work(&mut store);
        (store, result)
    })
    .await
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

async fn open_store(shared: &Shared) -> Result<Store, StoreError> {
    let state_dir = shared.config.state_dir.clone();
    tokio::task::spawn_blocking(move || Store::open(&state_dir))
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

/// Sleeps for `duration` unless `stop` turns true first. Returns whether to stop.
async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}

/// One connector stream: reads on its schedule until stopped (or, in `run --once`, until
/// it has caught up).
async fn reader(
    shared: Arc<Shared>,
    index: usize,
    stream: (StreamKind, ReadMode),
    enqueued: Arc<watch::Sender<u64>>,
    mut upload: watch::Receiver<UploadState>,
    mut stop: watch::Receiver<bool>,
) -> Result<StreamSummary, StoreError> {
    let connector: &ConnectorConfig = &shared.config.connectors[index];
    let mut summary = StreamSummary {
        connector: connector.name.clone(),
        stream: stream.0,
        result: Ok(ImportReport::default()),
        skipped: None,
        outbox_full: false,
        n_waits_for_room: 0,
    };
    let mut store = open_store(&shared).await?;
    store.leave_checkpoints_to_others()?;
    let mut n_failures = 0u32;
    let mut last_reconciled_interval = None;
    let mut last_pruned_day = None;
    loop {
        let (returned, paused) = blocking(store, {
            let name = connector.name.clone();
            move |store| store.paused_since(&name)
        })
        .await;
        store = returned;
        if paused?.is_some() {
            if shared.once {
                summary.skipped = Some("paused");
                return Ok(summary);
            }
        } else {
            // TimeLink polls re-read the reconciliation window once per interval.
            let interval_ms = i64::from(connector.interval_minutes) * 60_000;
            let interval = now_ms().div_euclid(interval_ms);
            let reach = if last_reconciled_interval != Some(interval) {
                Reach::Reconcile
            } else {
                Reach::New
            };
            let (returned, outcome) = blocking(store, {
                let shared = Arc::clone(&shared);
                let enqueued = Arc::clone(&enqueued);
                move |store| {
                    let connector = &shared.config.connectors[index];
                    let observer = Arc::clone(&shared.observer);
                    let name = connector.name.clone();
                    // Each stored day wakes the uploader: uploads run while reading goes on.
                    let on_progress = |progress: DayProgress<'_>| match progress {
                        DayProgress::Planned(n_days) => observer.planned(&name, stream.0, n_days),
                        DayProgress::Stored(day, report) => {
                            if report.n_enqueued > 0 {
                                enqueued.send_modify(|generation| *generation += 1);
                            }
                            observer.day(&name, stream.0, day, report);
                        }
                    };
                    let outcome = service::catch_up_stream(
                        connector,
                        &shared.registry,
                        store,
                        &service::body_format(&shared.config),
                        shared.config.max_outbox_records,
                        stream,
                        reach,
                        &shared.stop_flag,
                        &mut { on_progress },
                    )
                    .map_err(|error| format!("{error:#}"));
                    shared.observer.read(&name, stream.0, &outcome);
                    // `acdlink status` shows a failing stream until a read succeeds.
                    let recorded = store.record_read_result(
                        &name,
                        &stream.0.to_string(),
                        outcome.as_ref().map(|_| ()).map_err(String::as_str),
                    );
                    if let Err(error) = recorded {
                        tracing::error!(connector = %name, %error, "cannot record the read's outcome");
                    }
                    outcome
                }
            })
            .await;
            store = returned;
            if outcome
                .as_ref()
                .is_ok_and(|outcome| outcome.report.n_enqueued > 0)
            {
                enqueued.send_modify(|generation| *generation += 1);
            }
            match outcome {
                Ok(outcome) => {
                    n_failures = 0;
                    // A read cut short by a full outbox has not re-read the whole
                    // reconciliation window: the next one starts it again.
                    if reach == Reach::Reconcile && !outcome.outbox_full && !outcome.stopped {
                        last_reconciled_interval = Some(interval);
                    }
                    // Once a day: forget fingerprints no scheduled read looks at again,
                    // so that the store does not grow for ever.
                    let today = now_ms().div_euclid(86_400_000);
                    if last_pruned_day != Some(today) {
                        last_pruned_day = Some(today);
                        let (returned, pruned) = blocking(store, {
                            let name = connector.name.clone();
                            let keep_days = prune_horizon_days(connector);
                            move |store| {
                                store.prune(
                                    &name,
                                    &stream.0.to_string(),
                                    today - keep_days,
                                    now_ms() - IMPORT_LOG_DAYS * 86_400_000,
                                )
                            }
                        })
                        .await;
                        store = returned;
                        match pruned {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::info!(connector = %connector.name, stream = %stream.0, n_rows = n, "pruned old fingerprints and import log")
                            }
                            Err(error) => {
                                tracing::warn!(connector = %connector.name, %error, "cannot prune the store")
                            }
                        }
                    }
                    if let Ok(total) = &mut summary.result {
                        total.add(&outcome.report);
                    }
                    if outcome.stopped {
                        return Ok(summary);
                    }
                    if outcome.outbox_full {
                        if wait_for_room(&mut upload, &mut stop).await {
                            summary.n_waits_for_room += 1;
                            continue;
                        }
                        summary.outbox_full = true;
                        if shared.once {
                            return Ok(summary);
                        }
                    } else if shared.once {
                        return Ok(summary);
                    }
                }
                Err(error) => {
                    n_failures += 1;
                    if shared.once {
                        summary.result = Err(error);
                        return Ok(summary);
                    }
                    let wait = Duration::from_secs(60u64 << (n_failures - 1).min(6))
                        .min(Duration::from_secs(3600));
                    tracing::warn!(connector = %connector.name, stream = %stream.0, failures = n_failures, wait_secs = wait.as_secs(), "stream backs off after a failure; the others go on");
                    if sleep_or_stop(wait, &mut stop).await {
                        return Ok(summary);
                    }
                    continue;
                }
            }
        }
        if sleep_or_stop(until_next_read(connector, stream.0), &mut stop).await {
            return Ok(summary);
        }
    }
}

/// How long the import log is kept.
const IMPORT_LOG_DAYS: i64 = 90;

/// How many days of fingerprints a stream keeps: what a history import or reconciliation
/// of this connector could read again (its history depth, at least a month, plus the
/// reconciliation window and a day's margin for time zones).
fn prune_horizon_days(connector: &ConnectorConfig) -> i64 {
    i64::from(connector.history_days.max(31))
        + i64::from(connector.reconcile_hours.div_ceil(24))
        + 2
}

/// Waits until the uploader has made progress. `false` when it cannot (stalled, ended, or
/// the service stops).
async fn wait_for_room(
    upload: &mut watch::Receiver<UploadState>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let seen = upload.borrow_and_update().generation;
    loop {
        let state = *upload.borrow_and_update();
        if state.finished || *stop.borrow() {
            return false;
        }
        if state.generation > seen {
            return !state.stalled;
        }
        tokio::select! {
            changed = upload.changed() => if changed.is_err() { return false },
            _ = stop.changed() => return false,
        }
    }
}

/// How long a stream waits before its next read: TimeLink its poll period (when that is
/// not the interval), everything else until the next interval boundary plus the delay.
fn until_next_read(connector: &ConnectorConfig, stream: StreamKind) -> Duration {
    let interval_ms = i64::from(connector.interval_minutes) * 60_000;
    if stream == StreamKind::TIMELINK && connector.timelink_poll_secs * 1000 != interval_ms as u64 {
        return Duration::from_secs(connector.timelink_poll_secs.max(1));
    }
    let now = now_ms();
    let delay_ms = connector.delay_secs as i64 * 1000;
    // The first boundary whose read time (boundary + delay) is still ahead.
    let boundary = (now - delay_ms).div_euclid(interval_ms) * interval_ms + interval_ms;
    Duration::from_millis((boundary + delay_ms - now).max(1000) as u64)
}

/// Drains the outbox whenever readers stored something and whenever a retry falls due. In
/// the service, a failure of the store (a full disk, say) does not end uploading for good:
/// it is logged and the uploader starts again a minute later.
async fn uploader(
    shared: Arc<Shared>,
    mut enqueued: watch::Receiver<u64>,
    progress: watch::Sender<UploadState>,
    mut readers_done: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> Result<DrainReport, StoreError> {
    let mut total = DrainReport::default();
    let result = loop {
        let uploaded = upload_loop(
            &shared,
            &mut enqueued,
            &progress,
            &mut readers_done,
            &mut stop,
            &mut total,
        )
        .await;
        match uploaded {
            Ok(()) => break Ok(()),
            Err(error) if shared.once => break Err(error),
            Err(error) => {
                tracing::error!(%error, "uploading failed; trying again in a minute");
                if sleep_or_stop(Duration::from_secs(60), &mut stop).await {
                    break Ok(());
                }
            }
        }
    };
    progress.send_modify(|state| state.finished = true);
    result.map(|()| total)
}

/// The uploader until it is done (`run --once`) or stopped, or until the store fails.
async fn upload_loop(
    shared: &Arc<Shared>,
    enqueued: &mut watch::Receiver<u64>,
    progress: &watch::Sender<UploadState>,
    readers_done: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
    total: &mut DrainReport,
) -> Result<(), StoreError> {
    let mut store = open_store(shared).await?;
    loop {
        let readers_were_done = *readers_done.borrow_and_update();
        enqueued.borrow_and_update();
        let (returned, drained) = blocking(store, {
            let shared = Arc::clone(shared);
            let mut so_far = total.clone();
            move |store| {
                let before = so_far.clone();
                upload::drain_until(store, shared.sink.as_ref(), &shared.stop_flag, |report| {
                    so_far = before.clone();
                    so_far.add(report);
                    shared.observer.upload_progress(&so_far);
                })
            }
        })
        .await;
        store = returned;
        let report = drained?;
        if !shared.once && report.n_delivered_batches > 0 {
            tracing::info!(
                n_records = report.n_delivered_records,
                n_batches = report.n_delivered_batches,
                n_retried = report.n_retried,
                n_quarantined = report.n_quarantined,
                "uploaded"
            );
        }
        total.add(&report);
        let (returned, depth) = blocking(store, |store| store.outbox_depth(None)).await;
        store = returned;
        let depth = depth?;
        progress.send_modify(|state| {
            state.generation += 1;
            state.stalled = report.n_delivered_batches == 0 && depth.n_batches > 0;
        });
        if *stop.borrow() {
            return Ok(());
        }
        if shared.once {
            if report.stopped.is_some() {
                return Ok(());
            }
            if readers_were_done && report.n_delivered_batches == 0 {
                return Ok(());
            }
            if report.n_delivered_batches > 0 {
                continue;
            }
            // Nothing to deliver now: wait for readers to store something or finish.
            tokio::select! {
                _ = enqueued.changed() => {}
                _ = readers_done.changed() => {}
            }
            continue;
        }
        // The service: wake when readers store something, when the next retry falls due,
        // and at least every minute (a WFM that refused the key may accept it again).
        let (returned, next) = blocking(store, |store| store.next_attempt_ms()).await;
        store = returned;
        let wait_ms = match next? {
            Some(next_ms) => (next_ms - now_ms()).clamp(100, 60_000),
            None => 60_000,
        };
        if report.stopped.is_some() {
            // The WFM refused the key: try again in a minute, not after every read.
            if sleep_or_stop(Duration::from_secs(60), stop).await {
                return Ok(());
            }
            continue;
        }
        let wait = Duration::from_millis(wait_ms as u64);
        tokio::select! {
            _ = enqueued.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}
