//! The service commands: `import`, `run`, `status`, `pause`, `resume`. Glue between the
//! configuration, the registry, the pipeline, the store and the sink.

use crate::{
    cli::{parse_instant, resolve, write_table, ImportArgs},
    config::{Config, UploadConfig},
    pipeline::{Destination, ImportReport, Importer},
    registry::Registry,
    scheduler::{self, Scheduler},
    service::{body_format, enabled_streams, local_days, StreamOutcome},
    session::Session,
    store::Store,
    upload::{DrainReport, FileSink, Sink},
};
use acdlink_connector_api::{ReadMode, StreamKind, TimeWindow};
use anyhow::{bail, Context};
use std::{io::Write, sync::Arc, time::Instant};

fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&config.state_dir)?)
}

fn progress_bar(length: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed}]",
        )
        .expect("the progress template is valid")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// `acdlink import`: a date range into the outbox, day by day, oldest first.
pub fn import(config: &Config, registry: &Registry, args: &ImportArgs) -> anyhow::Result<()> {
    let (connector, plugin) = resolve(config, registry, &args.connector)?;
    let mut session = Session::open(
        &connector.name,
        plugin,
        connector.settings.resolved(),
        &connector.timezone,
    )?;
    let from = parse_instant(&args.from, &connector.timezone).context("--from")?;
    let to = parse_instant(&args.to, &connector.timezone).context("--to")?;
    if to <= from {
        bail!("--to ({to}) must be after --from ({from})");
    }
    let streams: Vec<_> = match args.stream {
        Some(stream) => {
            let kind = stream.kind(session.manifest());
            match session.manifest().read_mode(kind) {
                Some(mode) => vec![(kind, mode)],
                None => bail!("connector `{}` cannot read {kind}", connector.name),
            }
        }
        None => enabled_streams(&connector, session.manifest()),
    };
    if streams.iter().any(|(_, mode)| *mode != ReadMode::WINDOWED) {
        bail!(
            "connector `{}` has incremental streams: they read what is new, not a date range; `acdlink run --once` imports them",
            connector.name
        );
    }
    let mut store = open_store(config)?;
    let format = body_format(config);
    let days = local_days(&connector, TimeWindow::new(from, to))?;
    let bar = progress_bar(
        (days.len() * streams.len()) as u64,
        &format!("import {}", connector.name),
    );
    let mut stdout = std::io::stdout().lock();
    let mut show = |_endpoint: &str, body: &[u8]| {
        let _ = stdout
            .write_all(body)
            .and_then(|()| stdout.write_all(b"\n"));
    };
    let mut destination = if args.dry_run {
        Destination::DryRun(&mut show)
    } else {
        Destination::Outbox
    };
    let mut total = ImportReport::default();
    let started = Instant::now();
    for (stream, _) in &streams {
        for day in &days {
            let mut importer = Importer {
                session: &mut session,
                store: &mut store,
                connector: &connector,
                format: &format,
                advance_checkpoint: false,
            };
            let report = importer.import_window(*stream, *day, &mut destination)?;
            total.add(&report);
            bar.set_message(format!("{stream} {}: {} records", day.from, total.n_read));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let verb = if args.dry_run {
        "would enqueue"
    } else {
        "enqueued"
    };
    eprintln!(
        "import `{}` [{from}, {to}) in {} day(s): read {} record(s), {verb} {} new or changed, {} unchanged, dropped {} (unmapped queues) and {} (unmapped agents), {} rejected, in {:.1} s",
        connector.name,
        days.len(),
        total.n_read,
        total.n_enqueued,
        total.n_unchanged,
        total.n_dropped_queues,
        total.n_dropped_agents,
        total.n_rejects,
        started.elapsed().as_secs_f64()
    );
    if !args.dry_run && total.n_enqueued > 0 {
        eprintln!("the service uploads them; or run `acdlink run --once`");
    }
    Ok(())
}

/// The configured sink.
fn sink(config: &Config) -> anyhow::Result<Box<dyn Sink>> {
    match &config.upload {
        Some(UploadConfig::File(file)) => Ok(Box::new(
            FileSink::new(&file.path).with_context(|| format!("cannot create the upload directory {}", file.path.display()))?,
        )),
        Some(UploadConfig::Http(http)) => Ok(Box::new(crate::http::HttpSink::new(http)?)),
        None => bail!("the configuration has no [upload] section; `run` needs one (see docs/configuration.md)"),
    }
}

/// Shows reads and uploads as they happen: progress bars at a terminal, log lines
/// otherwise.
struct Progress {
    interactive: bool,
    read: indicatif::ProgressBar,
    upload: indicatif::ProgressBar,
}

impl Progress {
    /// `waiting`: the records already in the outbox, which the upload bar counts too.
    fn new(interactive: bool, waiting: u64) -> Progress {
        let bars = indicatif::MultiProgress::new();
        if !interactive {
            bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let read = bars.add(progress_bar(0, "read  "));
        let upload = bars.add(progress_bar(waiting, "upload"));
        Progress {
            interactive,
            read,
            upload,
        }
    }
}

impl scheduler::Observer for Progress {
    fn planned(&self, _connector: &str, _stream: StreamKind, n_days: usize) {
        self.read.inc_length(n_days as u64);
    }

    fn day(&self, connector: &str, stream: StreamKind, day: TimeWindow, report: &ImportReport) {
        self.read.inc(1);
        self.read.set_message(format!(
            "{connector} {stream} {}: {} read, {} new",
            day.from, report.n_read, report.n_enqueued
        ));
        self.upload.inc_length(report.n_enqueued as u64);
    }

    fn read(&self, connector: &str, stream: StreamKind, outcome: &Result<StreamOutcome, String>) {
        if !self.interactive {
            scheduler::LogObserver.read(connector, stream, outcome);
        }
    }

    fn upload_progress(&self, report: &DrainReport) {
        self.upload.set_position(report.n_delivered_records as u64);
    }
}

/// Takes the state directory for this process: two services on one store would read and
/// upload the same data twice. The lock is the operating system's (released when the
/// process ends, however it ends); the file holds the process id for the message.
fn lock_state_dir(state_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = state_dir.join("acdlink.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another acdlink (process {}) is running on the state directory {}; stop it first",
                holder.trim(),
                state_dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// `acdlink run [--once]`.
pub fn run(config: Config, registry: Registry, once: bool) -> anyhow::Result<()> {
    // Opening the store here reports an unusable one before anything starts, and brings
    // its schema up to date once.
    let store = open_store(&config)?;
    let _lock = lock_state_dir(&config.state_dir)?;
    // A connector whose plugin is missing is a configuration error, named with its line.
    for connector in config
        .connectors
        .iter()
        .filter(|connector| connector.enabled)
    {
        resolve(&config, &registry, &connector.name)?;
    }
    let sink: Arc<dyn Sink> = Arc::from(sink(&config)?);
    let interactive = once && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let config = Arc::new(config);
    let progress = Arc::new(Progress::new(
        interactive,
        store.outbox_depth(None)?.n_records as u64,
    ));
    let scheduler = Scheduler::new(
        Arc::clone(&config),
        Arc::new(registry),
        sink,
        if once {
            Arc::clone(&progress) as Arc<dyn scheduler::Observer>
        } else {
            Arc::new(scheduler::LogObserver)
        },
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    if !once {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut terminate =
                signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
            let mut interrupt =
                signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
                tracing::info!(
                    "stopping: reads and uploads in flight finish at their next safe point"
                );
                let _ = stop_tx.send(true);
            });
            tracing::info!(
                n_connectors = config
                    .connectors
                    .iter()
                    .filter(|connector| connector.enabled)
                    .count(),
                "service started"
            );
            scheduler.run_service(stop_rx).await?;
            anyhow::Ok(())
        })?;
        eprintln!("stopped: what was read is in the outbox; uploads go on at the next start");
        return Ok(());
    }
    let summary = runtime.block_on(scheduler.run_once())?;
    progress.read.finish_and_clear();
    progress.upload.finish_and_clear();
    let mut ok = true;
    // One line per connector, its streams added up.
    let mut connectors: Vec<&str> = summary
        .streams
        .iter()
        .map(|stream| stream.connector.as_str())
        .collect();
    connectors.dedup();
    for name in connectors {
        let streams: Vec<&scheduler::StreamSummary> = summary
            .streams
            .iter()
            .filter(|stream| stream.connector == name)
            .collect();
        if let Some(reason) = streams.iter().find_map(|stream| stream.skipped) {
            eprintln!("connector `{name}`: skipped ({reason})");
            continue;
        }
        if streams.iter().any(|stream| stream.outbox_full) {
            ok = false;
            eprintln!("connector `{name}`: reading paused, the outbox is full ({} records at most) and the WFM does not take uploads now; it goes on from there", config.max_outbox_records);
        }
        let n_waits: usize = streams.iter().map(|stream| stream.n_waits_for_room).sum();
        if n_waits > 0 {
            eprintln!("connector `{name}`: reading waited {n_waits} time(s) for uploads to make room in the outbox ({} records at most)", config.max_outbox_records);
        }
        let mut total = ImportReport::default();
        for stream in &streams {
            match &stream.result {
                Ok(report) => total.add(report),
                Err(error) => {
                    ok = false;
                    eprintln!("connector `{name}` {}: failed: {error}", stream.stream);
                }
            }
        }
        eprintln!(
            "connector `{name}`: read {} record(s), enqueued {} new or changed ({} unchanged, {} dropped unmapped, {} rejected)",
            total.n_read,
            total.n_enqueued,
            total.n_unchanged,
            total.n_dropped_queues + total.n_dropped_agents,
            total.n_rejects
        );
    }
    let report = &summary.upload;
    eprintln!(
        "upload: delivered {} record(s) in {} batch(es), {} to retry, {} quarantined",
        report.n_delivered_records,
        report.n_delivered_batches,
        report.n_retried,
        report.n_quarantined
    );
    if let Some(error) = &report.stopped {
        eprintln!("upload stopped: {error}; the data is kept in the outbox");
        ok = false;
    }
    if report.n_retried > 0 || report.n_quarantined > 0 {
        ok = false;
    }
    let depth = store.outbox_depth(None)?;
    if depth.n_batches > 0 {
        eprintln!(
            "{} record(s) in {} batch(es) remain in the outbox",
            depth.n_records, depth.n_batches
        );
    }
    if let Some(UploadConfig::File(file)) = &config.upload {
        eprintln!(
            "the file sink writes NDJSON (one body per line, a file per endpoint) to {}",
            file.path.display()
        );
    }
    if !ok || depth.n_batches > 0 {
        bail!("not everything was read and delivered; `acdlink status` shows what is left");
    }
    Ok(())
}

/// `acdlink status`.
pub fn status(config: &Config) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let mut rows = Vec::new();
    for connector in &config.connectors {
        let state = if !connector.enabled {
            "disabled".to_string()
        } else if let Some(since) = store.paused_since(&connector.name)? {
            format!("paused since {}", acdlink_connector_api::UtcMillis(since))
        } else {
            "active".to_string()
        };
        let mut checkpoints = Vec::new();
        for stream in acdlink_connector_api::StreamKind::ALL {
            if let Some(checkpoint) = store.checkpoint(&connector.name, &stream.to_string())? {
                let at = match (checkpoint.window_reached_ms, &checkpoint.state) {
                    (Some(reached), _) => {
                        format!("read up to {}", acdlink_connector_api::UtcMillis(reached))
                    }
                    (None, Some(state)) => format!("state of {} bytes", state.len()),
                    (None, None) => "started".to_string(),
                };
                checkpoints.push(format!("{stream}: {at}"));
            }
        }
        let depth = store.outbox_depth(Some(&connector.name))?;
        rows.push([
            connector.name.clone(),
            state,
            if checkpoints.is_empty() {
                "never read".to_string()
            } else {
                checkpoints.join("; ")
            },
            if depth.n_held_records > 0 {
                format!(
                    "{} record(s) in {} batch(es), {} held (a file being read)",
                    depth.n_records, depth.n_batches, depth.n_held_records
                )
            } else {
                format!(
                    "{} record(s) in {} batch(es)",
                    depth.n_records, depth.n_batches
                )
            },
        ]);
    }
    let mut out = std::io::stdout().lock();
    write_table(
        &mut out,
        ["CONNECTOR", "STATE", "CHECKPOINTS", "OUTBOX"],
        &rows,
    )?;
    let mut problems = Vec::new();
    for failing in store.stream_errors()? {
        problems.push(format!(
            "  `{}` {}: {} failed read(s) since {}, the last at {}: {}",
            failing.connector,
            failing.stream,
            failing.n_failures,
            acdlink_connector_api::UtcMillis(failing.first_ms),
            acdlink_connector_api::UtcMillis(failing.at_ms),
            failing.error
        ));
    }
    for connector in &config.connectors {
        if let Some(waiting) = store.waiting(&connector.name)? {
            problems.push(format!(
                "  `{}` upload: {} batch(es) wait for a retry, the next at {}; last error: {}",
                connector.name,
                waiting.n_batches,
                acdlink_connector_api::UtcMillis(waiting.next_attempt_ms),
                waiting.last_error
            ));
        }
    }
    if !problems.is_empty() {
        writeln!(out, "\nlast errors:")?;
        for problem in problems {
            writeln!(out, "{problem}")?;
        }
    }
    let quarantined = store.quarantined()?;
    if !quarantined.is_empty() {
        writeln!(
            out,
            "\n{} quarantined batch(es) (refused by the WFM; not retried):",
            quarantined.len()
        )?;
        for batch in quarantined {
            writeln!(
                out,
                "  batch {} of `{}` ({} {} record(s)) at {}: status {}: {}",
                batch.id,
                batch.connector,
                batch.n_records,
                batch.endpoint,
                acdlink_connector_api::UtcMillis(batch.quarantined_ms),
                batch
                    .status
                    .map_or("none".to_string(), |status| status.to_string()),
                batch.response
            )?;
        }
    }
    Ok(())
}

/// `acdlink requeue`: quarantined batches (the given ones, or all) back into the outbox.
pub fn requeue(config: &Config, batches: Option<&[i64]>) -> anyhow::Result<()> {
    let mut store = open_store(config)?;
    if let Some(batches) = batches {
        let known: std::collections::HashSet<i64> =
            store.quarantined()?.iter().map(|batch| batch.id).collect();
        let unknown: Vec<String> = batches
            .iter()
            .filter(|id| !known.contains(id))
            .map(i64::to_string)
            .collect();
        if !unknown.is_empty() {
            bail!(
                "no quarantined batch {} (`acdlink status` lists them)",
                unknown.join(", ")
            );
        }
    }
    let requeued = store.requeue_quarantined(batches)?;
    eprintln!(
        "{} batch(es) back in the outbox with a new idempotency key; the service uploads them (or run `acdlink run --once`)",
        requeued.len()
    );
    Ok(())
}

/// `acdlink pause` and `acdlink resume`.
pub fn set_paused(config: &Config, name: &str, paused: bool) -> anyhow::Result<()> {
    if config.connector(name).is_none() {
        bail!("no connector `{name}` in the configuration");
    }
    let mut store = open_store(config)?;
    store.set_paused(name, paused)?;
    if paused {
        println!("{name}: paused; the service reads nothing from it until `acdlink resume {name}`");
    } else {
        println!("{name}: resumed; its next read imports everything it missed");
    }
    Ok(())
}
