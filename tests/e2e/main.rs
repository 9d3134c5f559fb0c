//! End-to-end tests: real plugin libraries loaded from disk and the real `acdlink` binary.

mod cli;
mod csv;
mod equivalence;
mod loading;
mod panics;
mod pipeline;

use acdlink::{
    registry::{LoadOptions, Registry},
    session::Session,
};
use acdlink_connector_api::{time::SourceTimeZone, StreamKind, TimeWindow, UtcMillis};
use std::{ops::ControlFlow, path::PathBuf};

fn utc() -> SourceTimeZone {
    SourceTimeZone::utc()
}

fn zone(name: &str) -> SourceTimeZone {
    SourceTimeZone::new(name).expect("a known time zone")
}

/// A UTC instant from RFC 3339 text.
fn at(text: &str) -> UtcMillis {
    UtcMillis(
        text.parse::<jiff::Timestamp>()
            .expect("a test timestamp")
            .as_millisecond(),
    )
}

fn window(from: &str, to: &str) -> TimeWindow {
    TimeWindow::new(at(from), at(to))
}

/// A registry of the given plugin directory only (no built-ins) or built-ins only.
fn registry(plugin_dir: Option<PathBuf>) -> Registry {
    Registry::load(&LoadOptions {
        include_builtins: plugin_dir.is_none(),
        plugin_dirs: plugin_dir.into_iter().collect(),
        allow_insecure_plugins: false,
    })
}

/// Every record of a windowed read, as JSON values in the order the connector gave them.
fn read_json(
    session: &mut Session,
    stream: StreamKind,
    window: TimeWindow,
    max_records: u32,
) -> Vec<serde_json::Value> {
    let mut values = Vec::new();
    session
        .read_pages(stream, Some(window), None, max_records, |batch| {
            values.extend(batch.records.to_json_values());
            ControlFlow::Continue(())
        })
        .unwrap_or_else(|error| panic!("{error}"));
    values
}
