//! One cycle of the service, synchronously: for every enabled, unpaused connector, read
//! each of its streams up to now (history on first start, catch-up after downtime or a
//! pause, the reconciliation window every time) into the outbox; then drain the outbox into
//! the sink. `acdlink run --once` is one cycle; `acdlink run` repeats it on the schedule.

use crate::{
    config::{Config, ConnectorConfig, UploadConfig},
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
/// PhoneLink both per interval and per contact is read per interval: the WFM would count
/// the same contacts twice otherwise.
pub fn enabled_streams(
    connector: &ConnectorConfig,
    session: &Session,
) -> Vec<(StreamKind, ReadMode)> {
    let manifest = session.manifest();
    let has_intervals = manifest
        .read_mode(StreamKind::PHONELINK_INTERVALS)
        .is_some();
    manifest
        .streams
        .iter()
        .filter(|info| match info.stream {
            StreamKind::TIMELINK => connector.timelink != Some(false),
            StreamKind::PHONELINK_INTERVALS => connector.phonelink != Some(false),
            StreamKind::PHONELINK_CONTACTS => connector.phonelink != Some(false) && !has_intervals,
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
    let end = (now_ms - connector.delay_secs as i64 * 1000).div_euclid(interval_ms) * interval_ms;
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

/// What one connector's part of a cycle did.
#[derive(Debug)]
pub struct ConnectorOutcome {
    pub name: String,
    pub result: Result<ImportReport, String>,
    pub skipped: Option<&'static str>,
    /// Reading stopped early because the outbox reached `max_outbox_records`; the next
    /// cycle goes on from the checkpoint once uploads have made room.
    pub outbox_full: bool,
}

/// Reads every enabled, unpaused connector up to now into the outbox. A failing connector
/// is reported and the others go on.
pub fn catch_up_all(
    config: &Config,
    registry: &Registry,
    store: &mut Store,
    backing_off: impl Fn(&str) -> bool,
    mut on_day: impl FnMut(&str, StreamKind, TimeWindow, &ImportReport),
) -> Result<Vec<ConnectorOutcome>, crate::store::StoreError> {
    let format = body_format(config);
    let mut outcomes = Vec::new();
    for connector in &config.connectors {
        if !connector.enabled {
            continue;
        }
        let skipped = if store.paused_since(&connector.name)?.is_some() {
            Some("paused")
        } else if backing_off(&connector.name) {
            Some("backing off after a failure")
        } else {
            None
        };
        if skipped.is_some() {
            outcomes.push(ConnectorOutcome {
                name: connector.name.clone(),
                result: Ok(ImportReport::default()),
                skipped,
                outbox_full: false,
            });
            continue;
        }
        let mut outbox_full = false;
        let result = catch_up(
            connector,
            registry,
            store,
            &format,
            config.max_outbox_records,
            &mut outbox_full,
            &mut on_day,
        )
        .map_err(|error| format!("{error:#}"));
        if let Err(error) = &result {
            tracing::error!(connector = %connector.name, %error, "connector failed this cycle; the others go on");
        }
        outcomes.push(ConnectorOutcome {
            name: connector.name.clone(),
            result,
            skipped: None,
            outbox_full,
        });
    }
    Ok(outcomes)
}

#[allow(clippy::too_many_arguments)]
fn catch_up(
    connector: &ConnectorConfig,
    registry: &Registry,
    store: &mut Store,
    format: &BodyFormat,
    max_outbox_records: u64,
    outbox_full: &mut bool,
    on_day: &mut impl FnMut(&str, StreamKind, TimeWindow, &ImportReport),
) -> anyhow::Result<ImportReport> {
    let plugin = registry
        .find(&connector.plugin)
        .ok_or_else(|| anyhow::anyhow!("no plugin of kind `{}` is loaded", connector.plugin))?;
    // No connector call may take longer than `call_timeout_secs`: a hanging source is
    // reported and abandoned, and the other connectors go on.
    let mut session = Session::open_with_timeout(
        &connector.name,
        plugin,
        connector.settings.resolved(),
        &connector.timezone,
        Some(std::time::Duration::from_secs(connector.call_timeout_secs)),
    )?;
    let mut total = ImportReport::default();
    for (stream, mode) in enabled_streams(connector, &session) {
        let stream_name = stream.to_string();
        let checkpoint = store
            .checkpoint(&connector.name, &stream_name)?
            .unwrap_or_default();
        let mut importer = Importer {
            session: &mut session,
            store: &mut *store,
            connector,
            format,
            advance_checkpoint: true,
        };
        if mode == ReadMode::INCREMENTAL {
            let report = importer.import_new(stream, &mut Destination::Outbox)?;
            total.add(&report);
            continue;
        }
        let Some(window) = due_window(connector, checkpoint.window_reached_ms, now_ms())? else {
            continue;
        };
        for day in local_days(connector, window)? {
            // Backpressure: with the WFM away the outbox would grow without end; the
            // source keeps the data and the checkpoint says where to go on.
            if importer.store.outbox_depth(None)?.n_records as u64 >= max_outbox_records {
                tracing::warn!(connector = %connector.name, max_outbox_records, "outbox full; reading pauses until uploads make room");
                *outbox_full = true;
                return Ok(total);
            }
            let report = importer
                .import_window(stream, day, &mut Destination::Outbox)
                .map_err(|error: PipelineError| anyhow::anyhow!(error))?;
            on_day(&connector.name, stream, day, &report);
            total.add(&report);
        }
    }
    Ok(total)
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
