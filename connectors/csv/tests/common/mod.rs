//! Test helpers: an import folder in a temporary directory, fixtures dropped into it, and
//! reads driven the way the host drives them (each page's state committed before the
//! next page, every batch held to the host's batch checks).

#![allow(dead_code)]

use acdlink_connector_api::{
    sdk::{parse_settings, Connector, OpenContext},
    time::SourceTimeZone,
    validate, ConnectorError, ReadRequest, StreamKind,
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
    loop {
        let batch = connector.read(&request)?;
        result.n_pages += 1;
        assert!(result.n_pages < 100_000, "the read does not end");
        let violations = validate::check_batch(&request, &batch);
        assert!(
            violations.is_empty(),
            "batch breaks the contract: {violations:?}"
        );
        result.records.extend(batch.records.to_json_values());
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
