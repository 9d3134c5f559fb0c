//! One read of one connector stream, synchronously: which streams a connector reads, which
//! window is due (history on first start, catch-up after downtime or a pause, the
//! reconciliation window), whole local days oldest first, and backpressure. The scheduler
//! (`scheduler.rs`) runs these reads on blocking threads, each stream on its own schedule.

use crate::{
    config::{Config, ConnectorConfig, PhoneLinkForm, UploadConfig},
    pipeline::{BodyFormat, Destination, ImportReport, Importer, PipelineError},
    registry::Registry,
    session::Session,
    store::{now_ms, Store},
};
use acdlink_connector_api::{ReadMode, StreamKind, TimeWindow, UtcMillis};

/// The body format of the configured upload (or defaults when there is none).
pub fn body_format(config: &Config) -> BodyFormat {
    match &config.upload {
        Some(UploadConfig::Http(http)) => BodyFormat {
            integration_configuration_id: http.integration_configuration_id,
            external_system: http.external_system.clone(),
            batch_size: http.batch_size as usize,
        },
        Some(UploadConfig::File(file)) => BodyFormat {
            integration_configuration_id: file.integration_configuration_id,
            external_system: file.external_system.clone(),
            batch_size: file.batch_size as usize,
        },
        None => BodyFormat {
            integration_configuration_id: 0,
            external_system: None,
            batch_size: crate::config::defaults::BATCH_SIZE as usize,
        },
    }
}

/// The streams of a connector that its configuration switches on. A connector that offers
/// PhoneLink both per interval and per contact is read in one form only, intervals unless
/// `phonelink_form = "contacts"`: the WFM would count the same contacts twice otherwise.
pub fn enabled_streams(
    connector: &ConnectorConfig,
    manifest: &acdlink_connector_api::Manifest,
) -> Vec<(StreamKind, ReadMode)> {
    let has_intervals = manifest
        .read_mode(StreamKind::PHONELINK_INTERVALS)
        .is_some();
    manifest
        .streams
        .iter()
        .filter(|info| match info.stream {
            StreamKind::TIMELINK => connector.timelink != Some(false),
            StreamKind::PHONELINK_INTERVALS => {
                connector.phonelink != Some(false)
                    && connector.phonelink_form != Some(PhoneLinkForm::Contacts)
            }
            StreamKind::PHONELINK_CONTACTS => {
                connector.phonelink != Some(false)
                    && (connector.phonelink_form == Some(PhoneLinkForm::Contacts) || !has_intervals)
            }
            _ => false,
        })
        .map(|info| (info.stream, info.mode))
        .collect()
}

/// Splits `[from, to)` at local midnights of the connector's time zone: imports cover whole
/// days where they can, oldest first.
pub fn local_days(
    connector: &ConnectorConfig,
    window: TimeWindow,
) -> Result<Vec<TimeWindow>, acdlink_connector_api::ConnectorError> {
    let zone = &connector.timezone;
    let mut day = zone.to_local(window.from)?.date();
    let mut windows = Vec::new();
    let mut start = window.from;
    while start < window.to {
        let next_day = day.tomorrow().map_err(|error| {
            acdlink_connector_api::ConnectorError::internal(format!("day after {day}: {error}"))
        })?;
        let next_start = zone.start_of_day(next_day)?;
        let end = UtcMillis(next_start.0.min(window.to.0));
        if end > start {
            windows.push(TimeWindow::new(start, end));
        }
        start = end;
        day = next_day;
    }
    Ok(windows)
}

/// The window a windowed stream reads in this cycle: from the checkpoint (or the start of
/// the history on first start), moved back by the reconciliation window, up to the last
/// interval that closed `delay_secs` ago. `None` when there is nothing to read yet.
pub fn due_window(
    connector: &ConnectorConfig,
    window_reached_ms: Option<i64>,
    now_ms: i64,
) -> Result<Option<TimeWindow>, acdlink_connector_api::ConnectorError> {
    let interval_ms = i64::from(connector.interval_minutes) * 60_000;
    due_window_by(connector, window_reached_ms, now_ms, interval_ms)
}

/// [`due_window`] with the window's end aligned down to `step_ms` instead of the interval.
pub fn due_window_by(
    connector: &ConnectorConfig,
    window_reached_ms: Option<i64>,
    now_ms: i64,
    step_ms: i64,
) -> Result<Option<TimeWindow>, acdlink_connector_api::ConnectorError> {
    let end = (now_ms - connector.delay_secs as i64 * 1000).div_euclid(step_ms) * step_ms;
    let zone = &connector.timezone;
    let today = zone.to_local(UtcMillis(now_ms))?.date();
    let history_start = today
        .checked_sub(jiff::Span::new().days(i64::from(connector.history_days)))
        .map_err(|error| {
            acdlink_connector_api::ConnectorError::internal(format!("history start: {error}"))
        })?;
    let history_start = zone.start_of_day(history_start)?.0;
    let start = match window_reached_ms {
        Some(reached) => (reached - i64::from(connector.reconcile_hours) * 3_600_000)
            .max(history_start)
            .min(reached),
        None => history_start,
    };
    Ok((start < end).then(|| TimeWindow::new(UtcMillis(start), UtcMillis(end))))
}

/// What one read of a connector's stream did.
#[derive(Debug, Default)]
pub struct StreamOutcome {
    pub report: ImportReport,
    /// Reading stopped early because the outbox reached `max_outbox_records`; it goes on
    /// from the checkpoint once uploads have made room.
    pub outbox_full: bool,
    /// Reading stopped early because the service is shutting down.
    pub stopped: bool,
}

/// What a windowed read reports as it goes.
#[derive(Clone, Copy, Debug)]
pub enum DayProgress<'a> {
    /// The read will cover this many (local) days.
    Planned(usize),
    /// A day (or part of one) was stored.
    Stored(TimeWindow, &'a ImportReport),
}

/// How far back a read of a windowed stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// From the checkpoint moved back by the reconciliation window: late corrections in
    /// the source reach the WFM.
    Reconcile,
    /// From the checkpoint: only what is new (TimeLink polls between reconciliations).
    New,
}

/// Reads one stream of a connector up to now into the outbox: history on first start,
/// catch-up after downtime or a pause, the reconciliation window if `reach` says so, or
/// (for an incremental stream) whatever is new. Windowed reads go day by day, oldest
/// first, and stop early when the outbox is full or `stop` is set.
#[allow(clippy::too_many_arguments)]
pub fn catch_up_stream(
    connector: &ConnectorConfig,
    registry: &Registry,
    store: &mut Store,
    format: &BodyFormat,
    max_outbox_records: u64,
    (stream, mode): (StreamKind, ReadMode),
    reach: Reach,
    stop: &std::sync::atomic::AtomicBool,
    on_progress: &mut dyn FnMut(DayProgress<'_>),
) -> anyhow::Result<StreamOutcome> {
    let plugin = registry
        .find(&connector.plugin)
        .ok_or_else(|| anyhow::anyhow!("no plugin of kind `{}` is loaded", connector.plugin))?;
    let mut outcome = StreamOutcome::default();
    let outbox_is_full = |store: &Store| -> anyhow::Result<bool> {
        let depth = store.outbox_depth(None)?;
        Ok((depth.n_records + depth.n_held_records) as u64 >= max_outbox_records)
    };
    // Backpressure: with the WFM away the outbox would grow without end; the source keeps
    // the data and the checkpoint says where to go on.
    if outbox_is_full(store)? {
        outcome.outbox_full = true;
        return Ok(outcome);
    }
    let window = if mode == ReadMode::INCREMENTAL {
        None
    } else {
        let checkpoint = store
            .checkpoint(&connector.name, &stream.to_string())?
            .unwrap_or_default();
        let window = window_to_read(
            connector,
            stream,
            checkpoint.window_reached_ms,
            reach,
            now_ms(),
        )?;
        match window {
            Some(window) => Some(window),
            None => return Ok(outcome),
        }
    };
    // No connector call may take longer than `call_timeout_secs`: a hanging source is
    // reported and abandoned, and the other connectors go on.
    let mut session = Session::open_with_timeout(
        &connector.name,
        plugin,
        connector.settings.resolved(),
        &connector.timezone,
        Some(std::time::Duration::from_secs(connector.call_timeout_secs)),
    )?;
    let mut importer = Importer {
        session: &mut session,
        store: &mut *store,
        connector,
        format,
        advance_checkpoint: true,
    };
    let Some(window) = window else {
        // A big file can hold more than the outbox may: the read ends after the page that
        // fills it, and the next read goes on from the stored state.
        let (report, full) =
            importer.import_new_until(stream, &mut Destination::Outbox, |store| {
                outbox_is_full(store).unwrap_or(false)
            })?;
        outcome.report = report;
        outcome.outbox_full = full;
        return Ok(outcome);
    };
    let days = local_days(connector, window)?;
    on_progress(DayProgress::Planned(days.len()));
    for day in days {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            outcome.stopped = true;
            break;
        }
        if outbox_is_full(importer.store)? {
            tracing::warn!(connector = %connector.name, max_outbox_records, "outbox full; reading pauses until uploads make room");
            outcome.outbox_full = true;
            break;
        }
        let report = importer
            .import_window(stream, day, &mut Destination::Outbox)
            .map_err(|error: PipelineError| anyhow::anyhow!(error))?;
        on_progress(DayProgress::Stored(day, &report));
        outcome.report.add(&report);
    }
    Ok(outcome)
}

/// The window a read of a windowed stream covers now: [`due_window_by`] with the end
/// aligned as [`read_step_ms`] says, starting at the checkpoint itself for [`Reach::New`].
/// `None` when there is nothing to read.
pub fn window_to_read(
    connector: &ConnectorConfig,
    stream: StreamKind,
    window_reached_ms: Option<i64>,
    reach: Reach,
    now_ms: i64,
) -> Result<Option<TimeWindow>, acdlink_connector_api::ConnectorError> {
    let step_ms = read_step_ms(connector, stream);
    let due = due_window_by(connector, window_reached_ms, now_ms, step_ms)?;
    Ok(match (reach, due, window_reached_ms) {
        (Reach::New, Some(due), Some(reached)) => {
            Some(TimeWindow::new(UtcMillis(reached.max(due.from.0)), due.to))
                .filter(|window| window.from < window.to)
        }
        (_, due, _) => due,
    })
}

/// What a windowed read's end is aligned to: PhoneLink reads closed intervals; TimeLink
/// reads up to the last full second when it polls more often than the interval.
pub fn read_step_ms(connector: &ConnectorConfig, stream: StreamKind) -> i64 {
    let interval_ms = i64::from(connector.interval_minutes) * 60_000;
    if stream == StreamKind::TIMELINK && connector.timelink_poll_secs * 1000 < interval_ms as u64 {
        1000
    } else {
        interval_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acdlink_connector_api::time::SourceTimeZone;

    fn at(text: &str) -> i64 {
        text.parse::<UtcMillis>().unwrap().0
    }

    fn berlin() -> ConnectorConfig {
        let mut connector = ConnectorConfig::with_defaults("hq", "demo");
        connector.timezone = SourceTimeZone::new("Europe/Berlin").unwrap();
        connector.history_days = 2;
        connector
    }

    #[test]
    fn the_first_window_starts_at_local_midnight_history_days_ago_and_ends_after_the_delay() {
        let connector = berlin();
        let window = due_window(&connector, None, at("2024-03-04T10:07:00Z"))
            .unwrap()
            .unwrap();
        // 2024-03-02 00:00 in Berlin; 10:07 minus 5 minutes, aligned down to 15 minutes.
        assert_eq!(
            window,
            TimeWindow::new(
                UtcMillis(at("2024-03-01T23:00:00Z")),
                UtcMillis(at("2024-03-04T10:00:00Z"))
            )
        );
    }

    #[test]
    fn later_windows_re_read_the_reconciliation_hours() {
        let connector = berlin();
        let window = due_window(
            &connector,
            Some(at("2024-03-04T10:00:00Z")),
            at("2024-03-04T10:22:00Z"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(window.from, UtcMillis(at("2024-03-03T10:00:00Z")));
        assert_eq!(window.to, UtcMillis(at("2024-03-04T10:15:00Z")));
        assert_eq!(
            due_window(
                &connector,
                Some(at("2024-03-04T10:15:00Z")),
                at("2024-03-04T10:15:00Z")
            )
            .unwrap()
            .map(|w| w.to),
            Some(UtcMillis(at("2024-03-04T10:00:00Z")))
        );
    }

    #[test]
    fn timelink_polls_read_to_the_second_and_reconcile_only_when_asked() {
        let mut connector = berlin();
        connector.timelink_poll_secs = 30;
        let reached = Some(at("2024-03-04T10:00:00Z"));
        let now = at("2024-03-04T10:12:34.500Z");
        // PhoneLink: closed intervals only (10:12:34 minus 5 minutes is in 10:00..10:15).
        assert_eq!(
            window_to_read(
                &connector,
                StreamKind::PHONELINK_INTERVALS,
                reached,
                Reach::New,
                now
            )
            .unwrap(),
            None
        );
        // TimeLink polled every 30 s: up to the last full second `delay_secs` ago.
        let new = window_to_read(&connector, StreamKind::TIMELINK, reached, Reach::New, now)
            .unwrap()
            .unwrap();
        assert_eq!(
            (new.from, new.to),
            (
                UtcMillis(at("2024-03-04T10:00:00Z")),
                UtcMillis(at("2024-03-04T10:07:34Z"))
            )
        );
        let reconcile = window_to_read(
            &connector,
            StreamKind::TIMELINK,
            reached,
            Reach::Reconcile,
            now,
        )
        .unwrap()
        .unwrap();
        assert_eq!(reconcile.from, UtcMillis(at("2024-03-03T10:00:00Z")));
        assert_eq!(reconcile.to, new.to);
        // Polling no faster than the interval: TimeLink reads closed intervals like PhoneLink.
        connector.timelink_poll_secs = 900;
        assert_eq!(read_step_ms(&connector, StreamKind::TIMELINK), 900_000);
    }

    #[test]
    fn days_split_at_local_midnight_including_a_dst_change() {
        let connector = berlin();
        let window = TimeWindow::new(
            UtcMillis(at("2024-03-30T12:00:00Z")),
            UtcMillis(at("2024-04-01T12:00:00Z")),
        );
        let days = local_days(&connector, window).unwrap();
        let bounds: Vec<(String, String)> = days
            .iter()
            .map(|day| (day.from.to_string(), day.to.to_string()))
            .collect();
        assert_eq!(
            bounds,
            [
                (
                    "2024-03-30T12:00:00Z".to_string(),
                    "2024-03-30T23:00:00Z".to_string()
                ),
                (
                    "2024-03-30T23:00:00Z".to_string(),
                    "2024-03-31T22:00:00Z".to_string()
                ),
                (
                    "2024-03-31T22:00:00Z".to_string(),
                    "2024-04-01T12:00:00Z".to_string()
                ),
            ]
        );
    }
}
