//! Test helpers: an import folder in a temporary directory, fixtures dropped into it, and
//! reads driven the way the host drives them (each page's state committed before the
//! next page, every batch held to the host's batch checks).

#![allow(dead_code)]

use acdlink_connector_api::{
    sdk::{parse_settings, Connector, OpenContext},
    time::SourceTimeZone,
    validate, ConnectorError, Delivery, ReadRequest, StreamKind,
};
use acdlink_connector_csv::CsvConnector;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A temporary import folder.
pub struct Folder {
    _root: tempfile::TempDir,
    pub import_dir: PathBuf,
}

impl Folder {
    pub fn new() -> Folder {
        let root = tempfile::tempdir().expect("a temporary directory");
        let import_dir = root.path().join("import");
        std::fs::create_dir(&import_dir).expect("create the import folder");
        Folder {
            _root: root,
            import_dir,
        }
    }

    /// Copies fixture `name` into the import folder as `as_name`.
    pub fn drop_fixture(&self, name: &str, as_name: &str) {
        std::fs::copy(fixture(name), self.import_dir.join(as_name)).expect("copy a fixture");
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.import_dir.join(relative)
    }

    /// The names of the files directly in `relative` (sorted), or none if it is missing.
    pub fn names(&self, relative: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.import_dir.join(relative)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_file())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

pub fn open(settings: &Value, timezone: &str) -> Result<CsvConnector, ConnectorError> {
    let settings = parse_settings(&settings.to_string())?;
    let zone = SourceTimeZone::new(timezone).expect("a known zone");
    CsvConnector::open(settings, &OpenContext::new("csv-test", zone))
}

/// What one read (all its pages) gave.
#[derive(Debug, Default)]
pub struct ReadResult {
    pub records: Vec<Value>,
    /// `position: message` of every reject.
    pub rejects: Vec<String>,
    pub state: Option<Vec<u8>>,
    pub n_pages: usize,
    /// Pages that dropped what the read held (a file rejected, or seen before).
    pub n_discarded_files: usize,
}

/// Reads everything new from `state` like the host's `import_new`: every page is checked
/// with the host's batch checks; with `commit`, each page's state is committed before
/// the next page is read.
pub fn read_all(
    connector: &mut CsvConnector,
    stream: StreamKind,
    state: Option<Vec<u8>>,
    max_records: u32,
    commit: bool,
) -> Result<ReadResult, ConnectorError> {
    let mut request = ReadRequest::incremental(stream, state.clone(), max_records);
    let mut result = ReadResult {
        state,
        ..ReadResult::default()
    };
    let mut held = Vec::new();
    loop {
        let batch = connector.read(&request)?;
        result.n_pages += 1;
        assert!(result.n_pages < 100_000, "the read does not end");
        let violations = validate::check_batch(&request, &batch);
        assert!(
            violations.is_empty(),
            "batch breaks the contract: {violations:?}"
        );
        // Like the host: held records count once released, and not at all when the
        // hold is dropped.
        match batch.delivery {
            Delivery::HOLD => held.extend(batch.records.to_json_values()),
            Delivery::DISCARD => {
                held.clear();
                result.n_discarded_files += 1;
                result.records.extend(batch.records.to_json_values());
            }
            _ => {
                result.records.append(&mut held);
                result.records.extend(batch.records.to_json_values());
            }
        }
        result.rejects.extend(
            batch
                .rejects
                .iter()
                .map(|reject| format!("{}: {}", reject.position, reject.message)),
        );
        if let Some(state) = batch.state.into_option() {
            result.state = Some(state.into_vec());
            if commit {
                connector.commit(result.state.as_deref().expect("just set"))?;
            }
        }
        match batch.next_cursor.into_option() {
            Some(cursor) => request.cursor = Some(cursor).into(),
            None => return Ok(result),
        }
    }
}

/// Reads everything new like a host that dies again and again: life `n` reads `n` pages
/// with a new instance from the last stored state and then stops, so what it held is
/// dropped (as the host's store drops it). Every page that ends a hold is stored and
/// committed. The records are those that went out, in order.
pub fn read_with_crashes(
    open: impl Fn() -> CsvConnector,
    stream: StreamKind,
    max_records: u32,
) -> Result<ReadResult, ConnectorError> {
    let mut result = ReadResult::default();
    for n_pages in 1..1000 {
        let mut connector = open();
        let mut request = ReadRequest::incremental(stream, result.state.clone(), max_records);
        let mut held = Vec::new();
        for _ in 0..n_pages {
            let batch = connector.read(&request)?;
            result.n_pages += 1;
            let violations = validate::check_batch(&request, &batch);
            assert!(violations.is_empty(), "{violations:?}");
            match batch.delivery {
                Delivery::HOLD => held.extend(batch.records.to_json_values()),
                Delivery::DISCARD => held.clear(),
                _ => result.records.append(&mut held),
            }
            if batch.delivery != Delivery::HOLD {
                result.records.extend(batch.records.to_json_values());
                result.rejects.extend(
                    batch
                        .rejects
                        .iter()
                        .map(|reject| reject.position.to_string()),
                );
            }
            if let Some(state) = batch.state.into_option() {
                connector.commit(&state)?;
                result.state = Some(state.into_vec());
            }
            match batch.next_cursor.into_option() {
                Some(cursor) => request.cursor = Some(cursor).into(),
                None => return Ok(result),
            }
        }
    }
    panic!("the read does not end");
}

/// Interval records as compact `queue|name|channel|start|minutes|offered|handled|abandoned|handle_time`
/// lines, to compare with expectations.
pub fn interval_lines(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|record| {
            format!(
                "{}|{}|{}|{}|{}|{}|{}|{}|{}",
                record["queue_id"].as_str().unwrap_or("?"),
                record["queue_name"].as_str().unwrap_or("?"),
                record["channel"].as_str().unwrap_or("?"),
                record["start"].as_str().unwrap_or("?"),
                record["interval_minutes"],
                record["offered"],
                record["handled"],
                record["abandoned"],
                record["handle_time_secs"],
            )
        })
        .collect()
}

/// Agent statuses as `agent|activity|start|end` lines (`-` for an open end).
pub fn status_lines(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|record| {
            format!(
                "{}|{}|{}|{}",
                record["agent_id"].as_str().unwrap_or("?"),
                record["activity_id"].as_str().unwrap_or("?"),
                record["start"].as_str().unwrap_or("?"),
                record["end"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}
