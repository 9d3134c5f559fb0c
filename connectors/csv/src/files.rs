//! The import folder: which files are ready, the connector's state (what it has read), and
//! what happens to a file after the host committed it (keep, archive, delete) or after it
//! failed (error folder with a report).

use acdlink_connector_api::{ConnectorError, ErrorKind};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{layout::OpenSpan, settings::AfterImport};

/// How a file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Its records were read (with `skip-row`, maybe without some bad rows).
    Imported,
    /// Its content was imported before, under this or another name: nothing read.
    Duplicate,
    /// Rejected: nothing read; it goes to the error folder.
    Failed,
}

/// One file the connector has finished with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch: with name and size, recognises a
    /// file that is still in the folder without hashing it again.
    pub modified_ns: u64,
    /// XXH3-128 of the content, 32 hex digits (as `xxhsum -H2` prints it). States from
    /// earlier releases hold SHA-256 values (64 digits), which no new file matches.
    pub checksum: String,
    pub outcome: Outcome,
    /// The report to write into the error folder on commit (failed files, and imported
    /// files with bad rows); dropped from the state once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// At most this many bad rows are listed in a report; the rest are counted.
pub const MAX_REPORTED_ROWS: usize = 1000;

/// The connector's state for one stream, as it crosses to the host (JSON bytes). It moves
/// from file to file: a file is finished (or rejected) in the state of the page that ends
/// it. (Versions before held pages kept a file in progress under `current`; such a file
/// is read again from its start.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// `phonelink` or `timelink`: commit is not told which stream a state belongs to.
    pub stream: String,
    /// Every file finished, oldest first.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// TimeLink `start-only`: each agent's status still open at the end of what was read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub open_spans: BTreeMap<String, OpenSpan>,
}

impl State {
    pub fn from_bytes(bytes: &[u8]) -> Result<State, ConnectorError> {
        serde_json::from_slice(bytes).map_err(|error| {
            ConnectorError::internal(format!("unreadable csv connector state or cursor: {error}"))
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the state always serializes to JSON")
    }

    /// Whether content with this checksum was imported already.
    pub fn knows_content(&self, checksum: &str) -> bool {
        self.files
            .iter()
            .any(|file| file.checksum == checksum && file.outcome != Outcome::Failed)
    }

    /// Whether this very file (name, size, modification time) is finished.
    pub fn knows_file(&self, candidate: &Candidate) -> bool {
        let is_it = |file: &FileEntry| {
            file.name == candidate.name
                && file.size == candidate.size
                && file.modified_ns == candidate.modified_ns
        };
        self.files.iter().any(is_it)
    }
}

/// A file in the import folder that may be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified_ns: u64,
}

pub fn io_error(what: impl std::fmt::Display, error: io::Error) -> ConnectorError {
    ConnectorError::new(ErrorKind::IO, format!("{what}: {error}"))
}

/// Names that are never picked up: temporary and partial files, Office lock files, dot
/// files.
pub fn is_temporary(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with("~$")
        || [".tmp", ".part", ".partial", ".crdownload", ".filepart", "~"]
            .iter()
            .any(|suffix| lower.ends_with(suffix))
}

fn modified_ns(metadata: &fs::Metadata) -> u64 {
    metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |duration| duration.as_nanos() as u64)
}

/// The regular files of `dir` that are ready: not temporary, and not modified for
/// `settle`. Oldest first (then by name), the order they were dropped in.
pub fn ready_files(dir: &Path, settle: Duration) -> Result<Vec<Candidate>, ConnectorError> {
    let now = SystemTime::now();
    let mut candidates = Vec::new();
    let entries = fs::read_dir(dir)
        .map_err(|error| io_error(format!("cannot list {}", dir.display()), error))?;
    for entry in entries {
        let entry =
            entry.map_err(|error| io_error(format!("cannot list {}", dir.display()), error))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_temporary(&name) {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        let age = metadata
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .unwrap_or_default();
        if age < settle {
            continue;
        }
        candidates.push(Candidate {
            path: entry.path(),
            name,
            size: metadata.len(),
            modified_ns: modified_ns(&metadata),
        });
    }
    candidates.sort_by(|a, b| (a.modified_ns, &a.name).cmp(&(b.modified_ns, &b.name)));
    Ok(candidates)
}

/// Whether the file at `path` is still the one in `file` (same size and modification
/// time).
pub fn is_unchanged(path: &Path, file: &FileEntry) -> bool {
    fs::metadata(path)
        .map(|metadata| metadata.len() == file.size && modified_ns(&metadata) == file.modified_ns)
        .unwrap_or(false)
}

/// The folders a stream's files go to.
#[derive(Clone, Debug)]
pub struct Folders {
    pub import_dir: PathBuf,
    pub archive_dir: PathBuf,
    pub error_dir: PathBuf,
    pub after_import: AfterImport,
}

impl Folders {
    /// Does what the host's commit allows for every finished file of `state` that is
    /// still in the import folder: writes its report, then keeps, archives or deletes an
    /// imported (or duplicate) file, and moves a failed one to the error folder untouched.
    pub fn dispose(&self, state: &State) -> Result<(), ConnectorError> {
        // The host commits after every page: list the folder once instead of looking up
        // every file the state remembers.
        let present: std::collections::HashSet<String> = match fs::read_dir(&self.import_dir) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect(),
            Err(error) => {
                return Err(io_error(
                    format!("cannot list {}", self.import_dir.display()),
                    error,
                ))
            }
        };
        for file in &state.files {
            if !present.contains(&file.name) {
                continue;
            }
            let path = self.import_dir.join(&file.name);
            if !is_unchanged(&path, file) {
                // Another file of the same name, which the next read will look at.
                continue;
            }
            let destination = match (file.outcome, self.after_import) {
                (Outcome::Failed, _) => Some(free_name(&self.error_dir, file)),
                (_, AfterImport::Move) => Some(free_name(&self.archive_dir, file)),
                (_, AfterImport::Keep | AfterImport::Delete) => None,
            };
            if let Some(report) = &file.report {
                let suffix = match file.outcome {
                    Outcome::Failed => "error.txt",
                    Outcome::Imported | Outcome::Duplicate => "rejects.txt",
                };
                let name = destination
                    .as_ref()
                    .and_then(|path| path.file_name())
                    .map_or_else(
                        || file.name.clone(),
                        |name| name.to_string_lossy().into_owned(),
                    );
                write_report(&self.error_dir, &report_name(&name, suffix), report)?;
            }
            match destination {
                Some(to) => move_file(&path, &to)?,
                None if self.after_import == AfterImport::Delete => fs::remove_file(&path)
                    .map_err(|error| {
                        io_error(format!("cannot delete {}", path.display()), error)
                    })?,
                None => {}
            }
        }
        Ok(())
    }
}

/// The report beside file `name`: `<name>.error.txt` or `<name>.rejects.txt`.
pub fn report_name(name: &str, suffix: &str) -> String {
    format!("{name}.{suffix}")
}

/// `dir/<name>`, or if that is taken `dir/<name>.<start of checksum>[.n]`.
fn free_name(dir: &Path, file: &FileEntry) -> PathBuf {
    let mut to = dir.join(&file.name);
    let mut n_tries = 0;
    while to.exists() {
        n_tries += 1;
        to = dir.join(format!(
            "{}.{}{}",
            file.name,
            &file.checksum[..12.min(file.checksum.len())],
            if n_tries > 1 {
                format!(".{n_tries}")
            } else {
                String::new()
            }
        ));
    }
    to
}

/// Writes report `name` into `dir` (again, if a commit is repeated after a crash: the
/// same text).
fn write_report(dir: &Path, name: &str, report: &str) -> Result<(), ConnectorError> {
    fs::create_dir_all(dir)
        .map_err(|error| io_error(format!("cannot create {}", dir.display()), error))?;
    let path = dir.join(name);
    fs::write(&path, report)
        .and_then(|()| fs::File::open(&path)?.sync_all())
        .map_err(|error| io_error(format!("cannot write {}", path.display()), error))
}

/// Moves a file byte for byte to `to`.
fn move_file(from: &Path, to: &Path) -> Result<(), ConnectorError> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)
            .map_err(|error| io_error(format!("cannot create {}", dir.display()), error))?;
    }
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        // Another file system: copy, make it durable, then remove the original.
        Err(_) => fs::copy(from, to)
            .and_then(|_| fs::File::open(to)?.sync_all())
            .and_then(|()| fs::remove_file(from))
            .map_err(|error| {
                io_error(
                    format!("cannot move {} to {}", from.display(), to.display()),
                    error,
                )
            }),
    }
}
