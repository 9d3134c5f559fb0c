//! An incremental connector over a folder of files, for the commit-contract tests. Each
//! `*.txt` file holds agent statuses as `agent,activity,start_ms,end_ms` lines. The state is
//! the list of files read; `commit` moves those files to `archive/`, and nothing touches a
//! file before that. With `ACDLINK_FIXTURE_ABORT_IN_COMMIT` set, `commit` aborts the
//! process instead: the host dies after storing a batch and before committing it.

use acdlink_connector_api::{
    sdk::{Connector, OpenContext},
    AgentStatus, CheckReport, ConnectorError, Discovery, ErrorKind, Manifest, ROption, ReadBatch,
    ReadMode, ReadRequest, Records, StreamKind, UtcMillis,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    dir: PathBuf,
}

pub struct DropFolder {
    dir: PathBuf,
}

/// Files finished by earlier pages of this read (every page gets the state the read began
/// with, so the cursor carries the rest).
#[derive(Default, Serialize, Deserialize)]
struct Cursor {
    done: Vec<String>,
}

fn io(error: std::io::Error) -> ConnectorError {
    ConnectorError::new(ErrorKind::IO, error)
}

fn names(state: Option<&[u8]>) -> Vec<String> {
    state
        .map(|bytes| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Connector for DropFolder {
    type Settings = Settings;

    fn manifest() -> Manifest {
        Manifest::new(
            "drop-folder",
            "Drop folder (test)",
            "acdlink tests",
            "1.0.0",
        )
        .stream(StreamKind::TIMELINK, ReadMode::INCREMENTAL)
        .setting("dir", "the folder files are dropped into", true)
    }

    fn open(settings: Settings, _context: &OpenContext) -> Result<Self, ConnectorError> {
        Ok(DropFolder { dir: settings.dir })
    }

    fn check(&mut self) -> Result<CheckReport, ConnectorError> {
        std::fs::read_dir(&self.dir).map_err(io)?;
        Ok(CheckReport {
            message: format!("folder {} is readable", self.dir.display()).into(),
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
        let mut cursor: Cursor = match request.cursor.as_ref().into_option() {
            Some(text) => serde_json::from_str(text).map_err(ConnectorError::internal)?,
            None => Cursor::default(),
        };
        let mut done = names(
            request
                .state
                .as_ref()
                .map(|state| state.as_slice())
                .into_option(),
        );
        done.extend(cursor.done.iter().cloned());
        let mut pending: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(io)?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".txt") && !done.contains(name))
            .collect();
        pending.sort();
        // One file per batch.
        let Some(name) = pending.first() else {
            let mut batch = ReadBatch::last(Records::AgentStatuses(Vec::new().into()));
            batch.state = ROption::RSome(done.join("\n").into_bytes().into());
            return Ok(batch);
        };
        let text = std::fs::read_to_string(self.dir.join(name)).map_err(io)?;
        let mut records = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split(',').collect();
            let number = |field: usize| -> Result<i64, ConnectorError> {
                fields
                    .get(field)
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| {
                        ConnectorError::source_data(format!(
                            "{name}:{}: field {} must be milliseconds, found {line:?}",
                            index + 1,
                            field + 1
                        ))
                    })
            };
            records.push(AgentStatus {
                agent_id: fields[0].into(),
                activity_id: fields.get(1).copied().unwrap_or_default().into(),
                activity_name: ROption::RNone,
                start: UtcMillis(number(2)?),
                end: ROption::RSome(UtcMillis(number(3)?)),
            });
        }
        if records.len() > request.max_records as usize {
            return Err(ConnectorError::source_data(format!(
                "{name} has more lines than a batch may hold"
            )));
        }
        done.push(name.clone());
        cursor.done.push(name.clone());
        let mut batch = ReadBatch::last(Records::AgentStatuses(records.into()));
        batch.state = ROption::RSome(done.join("\n").into_bytes().into());
        if pending.len() > 1 {
            batch.next_cursor = ROption::RSome(
                serde_json::to_string(&cursor)
                    .map_err(ConnectorError::internal)?
                    .into(),
            );
        }
        Ok(batch)
    }

    fn commit(&mut self, state: &[u8]) -> Result<(), ConnectorError> {
        if std::env::var_os("ACDLINK_FIXTURE_ABORT_IN_COMMIT").is_some() {
            std::process::abort();
        }
        let archive = self.dir.join("archive");
        std::fs::create_dir_all(&archive).map_err(io)?;
        for name in names(Some(state)) {
            let from = self.dir.join(&name);
            if from.exists() {
                std::fs::rename(&from, archive.join(&name)).map_err(io)?;
            }
        }
        Ok(())
    }
}

acdlink_connector_api::export_connector!(DropFolder);
