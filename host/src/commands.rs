//! The service commands: `import`, `run`, `status`, `pause`, `resume`. Glue between the
//! configuration, the registry, the pipeline, the store and the sink.

use crate::{
    cli::{parse_instant, resolve, write_table, ImportArgs},
    config::{Config, UploadConfig},
    pipeline::{Destination, ImportReport, Importer},
    registry::Registry,
    service::{self, body_format, enabled_streams, local_days},
    session::Session,
    store::Store,
    upload::{self, DrainReport, FileSink, Sink},
};
use acdlink_connector_api::{ReadMode, TimeWindow};
use anyhow::{bail, Context};
use std::{
    io::Write,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

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
        None => enabled_streams(&connector, &session),
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

/// What a cycle did.
struct CycleOutcome {
    /// Everything read and delivered without an error.
    ok: bool,
    /// Some connector stopped reading because the outbox was full.
    outbox_full: bool,
    /// Connectors that failed this cycle.
    failed: Vec<String>,
    /// Connectors that read successfully this cycle.
    succeeded: Vec<String>,
    n_delivered_records: usize,
}

/// One cycle: catch up every connector (except those `backing_off` says to leave alone),
/// then drain the outbox.
fn cycle(
    config: &Config,
    registry: &Registry,
    store: &mut Store,
    sink: &dyn Sink,
    interactive: bool,
    backing_off: impl Fn(&str) -> bool,
) -> anyhow::Result<CycleOutcome> {
    let bar = progress_bar(0, "read");
    if !interactive {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let outcomes = service::catch_up_all(
        config,
        registry,
        store,
        backing_off,
        |name, stream, day, report| {
            bar.inc_length(1);
            bar.inc(1);
            bar.set_message(format!(
                "{name} {stream} {}: {} read, {} new",
                day.from, report.n_read, report.n_enqueued
            ));
        },
    )?;
    bar.finish_and_clear();
    let mut ok = true;
    let mut failed = Vec::new();
    let mut succeeded = Vec::new();
    let outbox_full = outcomes.iter().any(|outcome| outcome.outbox_full);
    for outcome in &outcomes {
        if outcome.outbox_full {
            eprintln!("connector `{}`: reading paused, the outbox is full ({} records at most); it goes on once uploads make room", outcome.name, config.max_outbox_records);
        }
        match (&outcome.skipped, &outcome.result) {
            (Some(reason), _) => eprintln!("connector `{}`: skipped ({reason})", outcome.name),
            (None, Ok(report)) => {
                succeeded.push(outcome.name.clone());
                eprintln!(
                "connector `{}`: read {} record(s), enqueued {} new or changed ({} unchanged, {} dropped unmapped, {} rejected)",
                outcome.name,
                report.n_read,
                report.n_enqueued,
                report.n_unchanged,
                report.n_dropped_queues + report.n_dropped_agents,
                report.n_rejects
            )
            }
            (None, Err(error)) => {
                ok = false;
                failed.push(outcome.name.clone());
                eprintln!("connector `{}`: failed: {error}", outcome.name);
            }
        }
    }
    let depth = store.outbox_depth(None)?;
    let upload_bar = progress_bar(depth.n_records as u64, "upload");
    if !interactive {
        upload_bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report: DrainReport = upload::drain(store, sink, |report| {
        upload_bar.set_position(report.n_delivered_records as u64)
    })?;
    upload_bar.finish_and_clear();
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
    Ok(CycleOutcome {
        ok,
        outbox_full,
        failed,
        succeeded,
        n_delivered_records: report.n_delivered_records,
    })
}

/// `acdlink run [--once]`.
pub fn run(config: &Config, registry: &Registry, once: bool) -> anyhow::Result<()> {
    let mut store = open_store(config)?;
    let sink = sink(config)?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if once {
        // Cycles until the reading is done: a backfill larger than the outbox limit takes
        // several, each draining what the one before read. It stops when a cycle makes no
        // progress (the WFM is away), leaving the rest to the next run.
        let mut ok;
        loop {
            let outcome = cycle(
                config,
                registry,
                &mut store,
                sink.as_ref(),
                interactive,
                |_| false,
            )?;
            ok = outcome.ok;
            if !outcome.outbox_full || outcome.n_delivered_records == 0 {
                break;
            }
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
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the signal handler")?;
    }
    let period = config
        .connectors
        .iter()
        .filter(|connector| connector.enabled)
        .map(|connector| {
            Duration::from_secs(
                connector
                    .timelink_poll_secs
                    .min(u64::from(connector.interval_minutes) * 60),
            )
        })
        .min()
        .unwrap_or(Duration::from_secs(60));
    tracing::info!(period_secs = period.as_secs(), "service started");
    // A failing connector waits 1 minute, doubling up to an hour, while the others go on.
    let mut failures: std::collections::HashMap<String, (u32, Instant)> =
        std::collections::HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let backing_off = |name: &str| {
            failures
                .get(name)
                .is_some_and(|(_, retry_at)| *retry_at > now)
        };
        match cycle(
            config,
            registry,
            &mut store,
            sink.as_ref(),
            false,
            backing_off,
        ) {
            Ok(outcome) => {
                for name in outcome.succeeded {
                    failures.remove(&name);
                }
                for name in outcome.failed {
                    let entry = failures.entry(name.clone()).or_insert((0, now));
                    entry.0 += 1;
                    let wait = Duration::from_secs(60u64 << (entry.0 - 1).min(6))
                        .min(Duration::from_secs(3600));
                    entry.1 = Instant::now() + wait;
                    tracing::warn!(connector = %name, failures = entry.0, wait_secs = wait.as_secs(), "connector backs off");
                }
                if outcome.outbox_full && outcome.n_delivered_records > 0 {
                    // Room was made: read on at once instead of waiting for the next tick.
                    continue;
                }
            }
            Err(error) => tracing::error!(error = %format!("{error:#}"), "cycle failed"),
        }
        let deadline = next_tick(config, period);
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!("stopped: the current cycle finished; everything read is in the outbox");
    Ok(())
}

/// When the next cycle is due: the next interval boundary plus the delay of the soonest
/// connector, or `period` from now if that is sooner (TimeLink polling, retries).
fn next_tick(config: &Config, period: Duration) -> Instant {
    let now_ms = crate::store::now_ms();
    let soonest_ms = config
        .connectors
        .iter()
        .filter(|connector| connector.enabled)
        .map(|connector| {
            let interval_ms = i64::from(connector.interval_minutes) * 60_000;
            let delay_ms = connector.delay_secs as i64 * 1000;
            // The first boundary whose read time (boundary + delay) is still ahead.
            let boundary = (now_ms - delay_ms).div_euclid(interval_ms) * interval_ms + interval_ms;
            boundary + delay_ms - now_ms
        })
        .min()
        .unwrap_or(period.as_millis() as i64);
    Instant::now() + Duration::from_millis(soonest_ms.max(1000) as u64).min(period)
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
            format!(
                "{} record(s) in {} batch(es)",
                depth.n_records, depth.n_batches
            ),
        ]);
    }
    let mut out = std::io::stdout().lock();
    write_table(
        &mut out,
        ["CONNECTOR", "STATE", "CHECKPOINTS", "OUTBOX"],
        &rows,
    )?;
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
        println!("{name}: resumed; the next cycle imports everything it missed");
    }
    Ok(())
}
