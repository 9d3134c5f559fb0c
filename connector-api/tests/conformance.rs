//! The conformance kit passes connectors that keep the contracts, windowed and incremental,
//! and fails deliberately broken ones with a message that says why.

use acdlink_connector_api::{
    conformance::{self, Conformance},
    sdk::{Connector, OpenContext},
    AgentStatus, CheckReport, ConnectorError, Discovery, ErrorKind, Manifest, QueueInterval,
    ROption, RVec, ReadBatch, ReadMode, ReadRequest, Records, StreamKind, TimeWindow, UtcMillis,
};
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;

const HOUR: i64 = 3_600_000;

fn day() -> TimeWindow {
    // 2024-03-04T00:00:00Z to the next day.
    TimeWindow::new(
        UtcMillis(1_709_510_400_000),
        UtcMillis(1_709_510_400_000 + 24 * HOUR),
    )
}

fn interval(queue: &str, start: i64) -> QueueInterval {
    QueueInterval {
        queue_id: queue.into(),
        queue_name: queue.into(),
        channel: Default::default(),
        start: UtcMillis(start),
        interval_minutes: 60,
        offered: 10,
        handled: 9,
        abandoned: 1,
        handle_time_secs: 2000.0,
        extras: RVec::new(),
    }
}

/// How a test connector misbehaves.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Fault {
    /// None: a correct windowed connector, one record per hour.
    #[default]
    None,
    /// Shifts every record an hour after the window.
    OutsideWindow,
    /// Always returns another cursor.
    EndlessCursor,
    /// Ignores max_records.
    OversizedBatch,
    /// Panics in read.
    PanicInRead,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HourlySettings {
    #[serde(default)]
    fault: Fault,
}

/// A windowed connector: one interval per hour of the window, paged by hour offset.
struct Hourly {
    fault: Fault,
}

impl Connector for Hourly {
    type Settings = HourlySettings;

    fn manifest() -> Manifest {
        Manifest::new("hourly", "Hourly test source", "acdlink tests", "1.0.0")
            .stream(StreamKind::PHONELINK_INTERVALS, ReadMode::WINDOWED)
            .setting("fault", "how to misbehave", false)
    }

    fn open(settings: HourlySettings, _context: &OpenContext) -> Result<Self, ConnectorError> {
        Ok(Hourly {
            fault: settings.fault,
        })
    }

    fn check(&mut self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport {
            message: "ok".into(),
        })
    }

    fn discover(&mut self) -> Result<Discovery, ConnectorError> {
        Ok(Discovery::default())
    }

    fn read(&mut self, request: &ReadRequest) -> Result<ReadBatch, ConnectorError> {
        if request.stream != StreamKind::PHONELINK_INTERVALS {
            return Err(ConnectorError::unsupported(format!(
                "cannot read {}",
                request.stream
            )));
        }
        if self.fault == Fault::PanicInRead {
            panic!("the source went away");
        }
        let window = request
            .window
            .into_option()
            .ok_or_else(|| ConnectorError::unsupported("windowed only"))?;
        let first_hour = (window.from.0 + HOUR - 1).div_euclid(HOUR);
        let end_hour = (window.to.0 + HOUR - 1).div_euclid(HOUR);
        let offset: i64 = match request.cursor.as_ref().into_option() {
            Some(cursor) => cursor
                .parse()
                .map_err(|_| ConnectorError::internal("bad cursor"))?,
            None => 0,
        };
        let page = match self.fault {
            Fault::OversizedBatch => request.max_records as i64 + 5,
            _ => request.max_records as i64,
        };
        let from_hour = first_hour + offset;
        let to_hour = (from_hour + page).min(end_hour);
        let shift = if self.fault == Fault::OutsideWindow {
            HOUR * 24
        } else {
            0
        };
        let records: Vec<QueueInterval> = (from_hour..to_hour)
            .map(|hour| interval("Q1", hour * HOUR + shift))
            .collect();
        let next = match self.fault {
            Fault::EndlessCursor => Some(offset + 1),
            _ => (to_hour < end_hour).then_some(to_hour - first_hour),
        };
        let mut batch = ReadBatch::last(Records::QueueIntervals(records.into()));
        batch.next_cursor = next.map(|offset| offset.to_string().into()).into();
        Ok(batch)
    }
}

#[test]
fn a_correct_windowed_connector_passes() {
    let report = conformance::check::<Hourly>(&json!({}), day())
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.kind, "hourly");
    assert_eq!(report.streams[0].n_records, 24);
    // 24 records are read in pages of 6 even though the default page size is 50.
    assert_eq!(report.streams[0].n_pages, 4);
    let paged = Conformance::new(&json!({}), day())
        .max_records(5)
        .run::<Hourly>()
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(paged.streams[0].n_pages, 5);
}

fn failure_of(fault: &str) -> String {
    let failure = Conformance::new(&json!({ "fault": fault }), day())
        .max_records(10)
        .max_pages(500)
        .run::<Hourly>()
        .expect_err("a broken connector fails the kit");
    failure.to_string()
}

#[test]
fn records_outside_the_window_fail() {
    let message = failure_of("outside_window");
    assert!(
        message.contains("phonelink-intervals in one page: page 1: record 0: interval start 2024-03-05T00:00:00Z is outside the window [2024-03-04T00:00:00Z, 2024-03-05T00:00:00Z)"),
        "{message}"
    );
}

#[test]
fn a_cursor_that_never_ends_fails() {
    let message = failure_of("endless_cursor");
    assert!(
        message.contains("cursor paging did not terminate after 500 pages"),
        "{message}"
    );
}

#[test]
fn a_batch_larger_than_asked_fails() {
    let message = failure_of("oversized_batch");
    assert!(
        message.contains("phonelink-intervals in pages of 6: page 1: batch holds 11 records but max_records was 6"),
        "{message}"
    );
}

#[test]
fn a_panic_fails_with_its_message() {
    let message = failure_of("panic_in_read");
    assert!(message.contains("phonelink-intervals in one page: read() failed on page 1: connector panicked in read: the source went away [panicked]"), "{message}");
}

/// An incremental connector over a folder of files: each file holds agent statuses as
/// `agent,activity,start_ms,end_ms` lines. Its state is the list of files it has fully
/// read; `commit` moves those files to `archive/`. `forget_state` breaks the contract by
/// never recording what was read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderSettings {
    dir: PathBuf,
    #[serde(default)]
    forget_state: bool,
    /// Breaks the contract by archiving files as soon as they are read, before commit.
    #[serde(default)]
    archive_on_read: bool,
}

struct Folder {
    settings: FolderSettings,
}

/// Where a read of the folder has got to.
#[derive(Default, Deserialize, serde::Serialize)]
struct FolderCursor {
    /// Files finished by earlier pages of this read.
    done: Vec<String>,
    /// The line to go on from in the first file not done.
    line: usize,
}

fn decode_state(state: Option<&[u8]>) -> Vec<String> {
    match state {
        Some(bytes) => String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    }
}

impl Connector for Folder {
    type Settings = FolderSettings;

    fn manifest() -> Manifest {
        Manifest::new("folder", "Folder test source", "acdlink tests", "1.0.0")
            .stream(StreamKind::TIMELINK, ReadMode::INCREMENTAL)
            .setting("dir", "the import folder", true)
    }

    fn open(settings: FolderSettings, _context: &OpenContext) -> Result<Self, ConnectorError> {
        Ok(Folder { settings })
    }

    fn check(&mut self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport {
            message: "ok".into(),
        })
    }

    fn discover(&mut self) -> Result<Discovery, ConnectorError> {
        Ok(Discovery::default())
    }

    fn read(&mut self, request: &ReadRequest) -> Result<ReadBatch, ConnectorError> {
        if request.stream != StreamKind::TIMELINK {
            return Err(ConnectorError::unsupported(format!(
                "cannot read {}",
                request.stream
            )));
        }
        let io = |error: std::io::Error| ConnectorError::new(ErrorKind::IO, error);
        // Every page of a read gets the state the read began with; the cursor carries the
        // files finished so far in this read and the line to go on from.
        let mut done = decode_state(
            request
                .state
                .as_ref()
                .map(|state| state.as_slice())
                .into_option(),
        );
        let mut cursor: FolderCursor = match request.cursor.as_ref().into_option() {
            Some(text) => {
                serde_json::from_str(text).map_err(|_| ConnectorError::internal("bad cursor"))?
            }
            None => FolderCursor::default(),
        };
        done.extend(cursor.done.iter().cloned());
        let mut files: Vec<String> = std::fs::read_dir(&self.settings.dir)
            .map_err(io)?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_file())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| !done.contains(name))
            .collect();
        files.sort();
        let max_records = request.max_records as usize;
        let mut records = Vec::new();
        let mut more = false;
        for name in files {
            if records.len() == max_records {
                more = true;
                break;
            }
            let text = std::fs::read_to_string(self.settings.dir.join(&name)).map_err(io)?;
            let lines: Vec<&str> = text.lines().collect();
            let take = (max_records - records.len()).min(lines.len() - cursor.line);
            for line in &lines[cursor.line..cursor.line + take] {
                let fields: Vec<&str> = line.split(',').collect();
                records.push(AgentStatus {
                    agent_id: fields[0].into(),
                    activity_id: fields[1].into(),
                    activity_name: ROption::RNone,
                    start: UtcMillis(fields[2].parse().map_err(ConnectorError::source_data)?),
                    end: ROption::RSome(UtcMillis(
                        fields[3].parse().map_err(ConnectorError::source_data)?,
                    )),
                });
            }
            if cursor.line + take < lines.len() {
                cursor.line += take;
                more = true;
                break;
            }
            cursor.line = 0;
            if self.settings.archive_on_read {
                self.commit(name.as_bytes())?;
            }
            if !self.settings.forget_state {
                cursor.done.push(name.clone());
                done.push(name);
            }
        }
        let mut batch = ReadBatch::last(Records::AgentStatuses(records.into()));
        if more {
            let text = serde_json::to_string(&cursor).map_err(ConnectorError::internal)?;
            batch.next_cursor = ROption::RSome(text.into());
        }
        batch.state = ROption::RSome(done.join("\n").into_bytes().into());
        Ok(batch)
    }
    fn commit(&mut self, state: &[u8]) -> Result<(), ConnectorError> {
        let archive = self.settings.dir.join("archive");
        std::fs::create_dir_all(&archive)
            .map_err(|error| ConnectorError::new(ErrorKind::IO, error))?;
        for name in decode_state(Some(state)) {
            let from = self.settings.dir.join(&name);
            if from.exists() {
                std::fs::rename(&from, archive.join(&name))
                    .map_err(|error| ConnectorError::new(ErrorKind::IO, error))?;
            }
        }
        Ok(())
    }
}

fn folder_with_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (file, agent) in [("a.txt", "tina"), ("b.txt", "tom"), ("c.txt", "uma")] {
        let lines: Vec<String> = (0..7i64)
            .map(|n| {
                format!(
                    "{agent},AVAIL,{},{}",
                    1_709_510_400_000 + n * 60_000,
                    1_709_510_400_000 + (n + 1) * 60_000
                )
            })
            .collect();
        std::fs::write(dir.path().join(file), lines.join("\n")).unwrap();
    }
    dir
}

#[test]
fn a_correct_incremental_connector_passes_and_commit_archives_only_what_was_stored() {
    let dir = folder_with_files();
    let report = Conformance::new(&json!({ "dir": dir.path() }), day())
        .max_records(4)
        .run::<Folder>()
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.streams[0].stream, StreamKind::TIMELINK);
    assert_eq!(report.streams[0].mode, ReadMode::INCREMENTAL);
    assert_eq!(report.streams[0].n_records, 21);
    let archived: Vec<String> = std::fs::read_dir(dir.path().join("archive"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        archived.len(),
        3,
        "every file was committed and archived: {archived:?}"
    );
}

#[test]
fn an_incremental_connector_that_reads_committed_data_again_fails() {
    let dir = folder_with_files();
    // One page holds every file, so the broken state is the only thing that goes wrong.
    let failure = Conformance::new(&json!({ "dir": dir.path(), "forget_state": true }), day())
        .max_records(100)
        .max_pages(100)
        .run::<Folder>()
        .expect_err("re-reading committed data breaks the contract");
    let message = failure.to_string();
    assert!(
        message.contains(
            "reading again from the committed state yielded a record that was already committed"
        ),
        "{message}"
    );
}

#[test]
fn an_incremental_connector_that_touches_the_source_before_commit_fails() {
    let dir = folder_with_files();
    let failure = Conformance::new(
        &json!({ "dir": dir.path(), "archive_on_read": true }),
        day(),
    )
    .max_records(10)
    .run::<Folder>()
    .expect_err("archiving before commit loses data when the host crashes");
    let message = failure.to_string();
    assert!(
        message.contains("after a read that was never committed, a fresh instance did not yield the same first batch again"),
        "{message}"
    );
}
