//! The CSV connector: PhoneLink and TimeLink from CSV files dropped into an import folder.
//!
//! # Brief overview
//!
//! [`CsvConnector`] reads each configured stream (`phonelink`, `timelink`) incrementally
//! from its import folder. A read takes the ready files oldest first. Each file is read
//! once, by two threads of its own that outlive a single `read`: one reads the file,
//! computes its SHA-256 from those reads and parses rows ahead; the other converts every
//! row and encodes the records ([`encoded`]). Each `read` decodes the next page of at
//! most `max_records` records and hands it to the host held ([`Delivery::HOLD`]): stored,
//! not sent. When the file ends, its checksum and bad rows decide: the last page of a good
//! file is [`Delivery::SEND`] with the new state and releases the file's records; a bad
//! file (`on_bad_row = "reject-file"`), one already imported under another name, or one
//! that changed while it was read is [`Delivery::DISCARD`], and nothing of it goes out.
//! Nothing is committed inside a file: after a restart, a file is read again from its
//! start. `commit(state)` is the only place a file is moved to the archive, deleted, or
//! moved to the error folder with its report.
//!
//! Data flow: [`files`] finds ready files and keeps the state, [`reader`] turns a file into
//! rows of raw bytes, [`layout`] turns a row into a record, [`format`] reads cells,
//! [`encoded`] carries the records from the converting thread to `read`.

pub mod encoded;
pub mod files;
pub mod format;
pub mod layout;
pub mod reader;
pub mod settings;

use acdlink_connector_api::{
    sdk::{Connector, OpenContext},
    time::SourceTimeZone,
    Channel, CheckReport, ConnectorError, Delivery, DiscoveredItem, DiscoveredQueue, Discovery,
    Manifest, QueueInterval, RString, RVec, ReadBatch, ReadMode, ReadRequest, Records, Reject,
    StreamKind, UtcMillis,
};
use encoded::{Decoder, Encoder, NumberedQueue};
use files::{Candidate, FileEntry, Folders, Outcome, State, MAX_REPORTED_ROWS};
use layout::{
    Chains, IntervalKey, LayoutSpec, Output, QueueSpec, RowError, RowReader, TimeColumns,
};
use reader::{Checksummed, FileStart};
use settings::{
    config_error, parse_channel, ColumnRef, ContactsAs, Format, OnBadRow, PhoneLinkLayout,
    PhoneLinkSettings, Settings, SpanType, TimeLinkSettings,
};
use std::{
    collections::{BTreeMap, HashSet},
    fs::File,
    path::Path,
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

acdlink_connector_api::register_builtin!(CsvConnector);

/// `discover` looks into at most this many files (the newest) per stream ...
const DISCOVER_FILES: usize = 20;
/// ... and at most this many rows of each.
const DISCOVER_ROWS: usize = 10_000;

/// One configured stream: where its files are, their format and layout.
struct Stream {
    /// `phonelink` or `timelink`: the settings table, and the stream named in the state.
    name: &'static str,
    folders: Folders,
    format: Format,
    spec: LayoutSpec,
}

impl Stream {
    /// The layout's columns in a file that begins as `start` says. A file without a
    /// single line (not even its header) is an empty import, not a bad file.
    fn resolve(&self, start: &FileStart) -> Result<(layout::Layout, usize), String> {
        if self.format.header && start.header.is_none() {
            return Ok(self.spec.resolve_for_empty_file());
        }
        self.spec.resolve(start.header.as_deref())
    }

    fn is_aggregated(&self) -> bool {
        matches!(
            self.spec,
            LayoutSpec::Contacts {
                contacts_as: ContactsAs::Intervals,
                ..
            }
        )
    }
}

/// The file being read: its threads convert ahead while `read` hands its records to the
/// host page by page.
struct InFlight {
    candidate: Candidate,
    /// Declared before the converting thread: dropped first, it stops that thread (its
    /// next block finds nobody to take it), which is then joined.
    decoder: Decoder,
    converter: Converter,
    /// What the conversion found, once it ended.
    scan: Option<Scan>,
    /// The next of `scan.summed` to hand out.
    next_summed: usize,
}

/// The converting thread of a file, joined when dropped.
struct Converter(Option<JoinHandle<Result<Scan, ConnectorError>>>);

impl Converter {
    fn join(&mut self) -> Result<Scan, ConnectorError> {
        let handle = self.0.take().expect("the converting thread is joined once");
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Converter {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            // A read given up: the thread stops at its next block. Its result (and a
            // panic) no longer matters.
            let _ = handle.join();
        }
    }
}

impl InFlight {
    /// The next page of at most `max_records` records, waiting for the converting thread
    /// as needed.
    fn page(&mut self, kind: StreamKind, max_records: usize) -> Result<Records, ConnectorError> {
        if self.scan.is_none() {
            let records = self.decoder.page(kind, max_records).map_err(|error| {
                files::io_error(
                    format!("cannot take the records of {}", self.candidate.name),
                    error,
                )
            })?;
            if !self.decoder.ended() {
                return Ok(records);
            }
            let scan = self.scan.insert(self.converter.join()?);
            if scan.summed.is_empty() {
                return Ok(records);
            }
        }
        let summed = &self.scan.as_ref().expect("set above").summed;
        let to = (self.next_summed + max_records).min(summed.len());
        let page = summed[self.next_summed..to].to_vec();
        self.next_summed = to;
        Ok(Records::QueueIntervals(page.into()))
    }

    /// Whether every record of the file is handed out and its scan is known.
    fn is_done(&self) -> bool {
        self.scan
            .as_ref()
            .is_some_and(|scan| self.next_summed >= scan.summed.len())
    }
}

/// An opened CSV connector.
pub struct CsvConnector {
    phonelink: Option<Arc<Stream>>,
    timelink: Option<Arc<Stream>>,
    on_bad_row: OnBadRow,
    settle: Duration,
    timezone: SourceTimeZone,
    in_flight: Option<InFlight>,
    /// The state between the pages of a read, and the cursor its next page comes with:
    /// a read's pages are not committed until a file ends, so the state lives here.
    working: Option<(String, State)>,
    /// Counts the pages handed out, for the cursors.
    n_pages: u64,
    /// Files this read looked at and left for a later one (they changed while read).
    passed_over: HashSet<String>,
}

/// What the conversion of a file found.
struct Scan {
    checksum: String,
    n_bytes: u64,
    /// The file cannot be read at all (e.g. a named column is not in the header).
    failure: Option<String>,
    bad_rows: Vec<String>,
    n_bad_rows: u64,
    rejects: Vec<Reject>,
    /// The intervals summed from a contact file (the other layouts' records went to the
    /// decoder as they were converted).
    summed: Vec<QueueInterval>,
    open_spans: Chains,
}

impl Connector for CsvConnector {
    type Settings = Settings;

    fn manifest() -> Manifest {
        Manifest::new("csv", "CSV files", "acdlink", env!("CARGO_PKG_VERSION"))
            .description("PhoneLink and TimeLink from CSV files dropped into an import folder")
            .stream(StreamKind::PHONELINK_INTERVALS, ReadMode::INCREMENTAL)
            .stream(StreamKind::PHONELINK_CONTACTS, ReadMode::INCREMENTAL)
            .stream(StreamKind::TIMELINK, ReadMode::INCREMENTAL)
            .setting(
                "phonelink",
                "table: import_dir, layout, columns, format, ...",
                false,
            )
            .setting(
                "timelink",
                "table: import_dir, span, columns, format, ...",
                false,
            )
            .setting(
                "archive_dir",
                "where imported files are moved (default <import_dir>/archive)",
                false,
            )
            .setting(
                "error_dir",
                "where failed files and reports go (default <import_dir>/error)",
                false,
            )
            .setting("after_import", "keep | move | delete (default move)", false)
            .setting(
                "on_bad_row",
                "reject-file | skip-row (default reject-file)",
                false,
            )
            .setting(
                "settle_secs",
                "seconds a file must be unmodified before it is read (default 10)",
                false,
            )
            .setting(
                "repeated_hour",
                "earlier | later | reject (default earlier)",
                false,
            )
            .setting(
                "missing_hour",
                "shift-forward | reject (default shift-forward)",
                false,
            )
    }

    fn open(settings: Settings, context: &OpenContext) -> Result<Self, ConnectorError> {
        if settings.phonelink.is_none() && settings.timelink.is_none() {
            return Err(ConnectorError::config(
                "invalid settings: expected a `phonelink` or a `timelink` table (or both), found neither",
            ));
        }
        let folders = |import_dir: &Path, prefix: &str| -> Result<Folders, ConnectorError> {
            let archive_dir = settings
                .archive_dir
                .clone()
                .unwrap_or_else(|| import_dir.join("archive"));
            let error_dir = settings
                .error_dir
                .clone()
                .unwrap_or_else(|| import_dir.join("error"));
            for (key, dir) in [("archive_dir", &archive_dir), ("error_dir", &error_dir)] {
                if dir == import_dir {
                    return Err(config_error(
                        key,
                        &format!("a folder other than `{prefix}.import_dir`"),
                        dir.display(),
                    ));
                }
            }
            Ok(Folders {
                import_dir: import_dir.to_path_buf(),
                archive_dir,
                error_dir,
                after_import: settings.after_import,
            })
        };
        let phonelink = settings
            .phonelink
            .as_ref()
            .map(|phonelink| -> Result<Arc<Stream>, ConnectorError> {
                let format = phonelink.format.resolve("phonelink")?;
                let spec = phonelink_spec(phonelink, &format)?;
                Ok(Arc::new(Stream {
                    name: "phonelink",
                    folders: folders(&phonelink.import_dir, "phonelink")?,
                    format,
                    spec,
                }))
            })
            .transpose()?;
        let timelink = settings
            .timelink
            .as_ref()
            .map(|timelink| -> Result<Arc<Stream>, ConnectorError> {
                let format = timelink.format.resolve("timelink")?;
                let spec = timelink_spec(timelink, &format)?;
                Ok(Arc::new(Stream {
                    name: "timelink",
                    folders: folders(&timelink.import_dir, "timelink")?,
                    format,
                    spec,
                }))
            })
            .transpose()?;
        Ok(CsvConnector {
            phonelink,
            timelink,
            on_bad_row: settings.on_bad_row,
            settle: Duration::from_secs(settings.settle_secs),
            timezone: context.timezone.clone().with_policy(settings.dst_policy()),
            in_flight: None,
            working: None,
            n_pages: 0,
            passed_over: HashSet::new(),
        })
    }

    fn check(&mut self) -> Result<CheckReport, ConnectorError> {
        let mut parts = Vec::new();
        for stream in [&self.phonelink, &self.timelink].into_iter().flatten() {
            let dir = &stream.folders.import_dir;
            let ready = files::ready_files(dir, self.settle)?;
            parts.push(format!(
                "{}: {} ({} file(s) ready)",
                stream.name,
                dir.display(),
                ready.len()
            ));
        }
        Ok(CheckReport {
            message: parts.join("; ").into(),
        })
    }

    fn discover(&mut self) -> Result<Discovery, ConnectorError> {
        // The source knows what its files hold: look into the newest files waiting in the
        // import folder and in the archive, a bounded number of rows each.
        let mut queues = BTreeMap::new();
        let mut agents = std::collections::BTreeSet::new();
        let mut activities = BTreeMap::new();
        for stream in [&self.phonelink, &self.timelink].into_iter().flatten() {
            let mut candidates = files::ready_files(&stream.folders.import_dir, self.settle)?;
            if let Ok(archived) = files::ready_files(&stream.folders.archive_dir, Duration::ZERO) {
                candidates.extend(archived);
            }
            candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.modified_ns));
            for candidate in candidates.iter().take(DISCOVER_FILES) {
                let Ok(file) = File::open(&candidate.path) else {
                    continue;
                };
                let Ok((mut rows, start)) = reader::start(file, &stream.format) else {
                    continue;
                };
                let Ok((layout, width)) = stream.resolve(&start) else {
                    continue;
                };
                let mut row_reader =
                    RowReader::new(layout, width, &stream.format, self.timezone.clone());
                let mut chains = Chains::new();
                for _ in 0..DISCOVER_ROWS {
                    if !rows.advance().unwrap_or(false) {
                        break;
                    }
                    if rows.is_skipped(&stream.format) {
                        continue;
                    }
                    match row_reader.convert(&rows.row(), &mut chains) {
                        // Files are looked at newest first: the newest name of a queue
                        // is the one listed.
                        Ok(Output::Interval) => {
                            let record = row_reader.interval();
                            queues
                                .entry((record.queue_id.to_string(), record.channel.0))
                                .or_insert_with(|| record.queue_name.to_string());
                        }
                        Ok(Output::Contact(record)) => {
                            queues
                                .entry((record.queue_id.into_string(), record.channel.0))
                                .or_insert_with(|| record.queue_name.into_string());
                        }
                        Ok(Output::ContactForInterval { key, .. }) => {
                            queues
                                .entry((key.queue_id, key.channel))
                                .or_insert(key.queue_name);
                        }
                        Ok(Output::Status(record)) => {
                            agents.insert(record.agent_id.into_string());
                            let name = record.activity_name.into_option().map(RString::into_string);
                            activities
                                .entry(record.activity_id.into_string())
                                .or_insert(name);
                        }
                        Ok(Output::Nothing) | Err(_) => {}
                    }
                }
                // Start-only chains: the statuses still open are activities too.
                for (agent, span) in chains {
                    agents.insert(agent);
                    activities
                        .entry(span.activity_id)
                        .or_insert(span.activity_name);
                }
            }
        }
        Ok(Discovery {
            queues: queues
                .into_iter()
                .map(|((id, channel), name)| DiscoveredQueue {
                    id: id.into(),
                    name: name.into(),
                    channel: Channel(channel),
                })
                .collect(),
            agents: agents
                .into_iter()
                .map(|id| DiscoveredItem {
                    name: id.as_str().into(),
                    id: id.into(),
                })
                .collect(),
            activities: activities
                .into_iter()
                .map(|(id, name)| DiscoveredItem {
                    name: name.unwrap_or_else(|| id.clone()).into(),
                    id: id.into(),
                })
                .collect(),
        })
    }

    fn read(&mut self, request: &ReadRequest) -> Result<ReadBatch, ConnectorError> {
        let stream_kind = request.stream;
        let stream = match stream_kind {
            StreamKind::PHONELINK_INTERVALS => self.phonelink.as_ref().filter(|stream| {
                !matches!(
                    stream.spec.phonelink_layout(),
                    Some((_, ContactsAs::Events))
                )
            }),
            StreamKind::PHONELINK_CONTACTS => self.phonelink.as_ref().filter(|stream| {
                matches!(
                    stream.spec.phonelink_layout(),
                    Some((PhoneLinkLayout::Contacts, ContactsAs::Events))
                )
            }),
            StreamKind::TIMELINK => self.timelink.as_ref(),
            other => {
                return Err(ConnectorError::unsupported(format!(
                    "the csv connector cannot read {other}"
                )))
            }
        };
        let Some(stream) = stream else {
            // Declared but not configured: nothing to read, and no state to keep.
            let records = Records::empty(stream_kind).expect("a stream this version knows");
            return Ok(ReadBatch::last(records));
        };
        let stream_name = stream.name;
        let mut state = match request.cursor.as_ref().into_option() {
            None => {
                // A new read: a file in flight from an earlier one is given up (the host
                // dropped what that read held) and read again from the committed state.
                self.in_flight = None;
                self.passed_over.clear();
                self.working = None;
                let mut state = match request.state.as_ref().into_option() {
                    Some(state) => State::from_bytes(state.as_slice())?,
                    None => State {
                        stream: stream_name.to_string(),
                        ..State::default()
                    },
                };
                prune_reports(&mut state, &stream.folders);
                state
            }
            Some(cursor) => match self.working.take() {
                Some((expected, state)) if expected == cursor.as_str() => state,
                _ => {
                    return Err(ConnectorError::internal(format!(
                        "cursor {cursor:?} is not the one this instance handed out last: a read goes on with the cursor of its last page, or starts again without one"
                    )))
                }
            },
        };
        let result = self.next_batch(stream_kind, &mut state, request.max_records.max(1) as usize);
        let mut batch = match result {
            Ok(batch) => batch,
            Err(error) => {
                self.in_flight = None;
                return Err(error);
            }
        };
        if batch.delivery != Delivery::HOLD {
            batch.state = Some(RVec::from(state.to_json().into_bytes())).into();
        }
        if batch.next_cursor.is_some() {
            self.n_pages += 1;
            let cursor = format!("page {}", self.n_pages);
            batch.next_cursor = Some(RString::from(cursor.as_str())).into();
            self.working = Some((cursor, state));
        }
        Ok(batch)
    }

    fn commit(&mut self, state: &[u8]) -> Result<(), ConnectorError> {
        let state = State::from_bytes(state)?;
        let stream = match state.stream.as_str() {
            "phonelink" => self.phonelink.as_ref(),
            "timelink" => self.timelink.as_ref(),
            _ => None,
        };
        match stream {
            Some(stream) => stream.folders.dispose(&state),
            // A state stored before the stream was removed from the settings: the host
            // commits it again, and there is nothing left to do for it.
            None => Ok(()),
        }
    }
}

/// Drops reports from the state once they are written (the file left the import folder,
/// or its report is in the error folder), so the state does not grow with them.
fn prune_reports(state: &mut State, folders: &Folders) {
    for file in &mut state.files {
        if file.report.is_none() {
            continue;
        }
        let suffix = match file.outcome {
            Outcome::Failed => "error.txt",
            Outcome::Imported | Outcome::Duplicate => "rejects.txt",
        };
        let is_written = folders
            .error_dir
            .join(files::report_name(&file.name, suffix))
            .exists();
        if is_written || !files::is_unchanged(&folders.import_dir.join(&file.name), file) {
            file.report = None;
        }
    }
}

fn time_columns(
    prefix: &str,
    names: [&str; 3],
    timestamp: &Option<ColumnRef>,
    date: &Option<ColumnRef>,
    time: &Option<ColumnRef>,
    format: &Format,
    format_prefix: &str,
) -> Result<TimeColumns<ColumnRef>, ConnectorError> {
    let key = |name: &str| format!("{prefix}.columns.{name}");
    let columns = match (timestamp, date, time) {
        (Some(timestamp), None, None) => {
            if format.timestamp_format.is_none() {
                return Err(config_error(
                    &format!("{format_prefix}.format.timestamp_format"),
                    &format!(
                        "a format for column `{}`, e.g. \"YYYY-MM-DD hh:mm:ss\" or \"unix\"",
                        key(names[0])
                    ),
                    "nothing",
                ));
            }
            TimeColumns::Timestamp(timestamp.clone())
        }
        (None, Some(date), Some(time)) => {
            if format.date_format.is_none() || format.time_format.is_none() {
                return Err(config_error(
                    &format!("{format_prefix}.format.date_format"),
                    "both `date_format` and `time_format` when date and time are in two columns",
                    "nothing",
                ));
            }
            TimeColumns::DateAndTime(date.clone(), time.clone())
        }
        _ => {
            return Err(config_error(
                &key(names[0]),
                &format!(
                    "either `{}` (date and time in one column) or both `{}` and `{}`",
                    key(names[0]),
                    key(names[1]),
                    key(names[2])
                ),
                "another combination",
            ))
        }
    };
    Ok(columns)
}

fn required(
    key: &str,
    column: &Option<ColumnRef>,
    what: &str,
) -> Result<ColumnRef, ConnectorError> {
    column
        .clone()
        .ok_or_else(|| config_error(key, what, "nothing"))
}

/// Named columns need a header row.
fn check_named_columns<'a>(
    prefix: &str,
    format: &Format,
    columns: impl IntoIterator<Item = (&'a str, &'a Option<ColumnRef>)>,
) -> Result<(), ConnectorError> {
    if format.header {
        return Ok(());
    }
    for (name, column) in columns {
        if let Some(ColumnRef::Name(header_name)) = column {
            return Err(config_error(
                &format!("{prefix}.columns.{name}"),
                &format!("a column number, because `{prefix}.format.header` is false"),
                format!("the name {header_name:?}"),
            ));
        }
    }
    Ok(())
}

fn phonelink_spec(
    settings: &PhoneLinkSettings,
    format: &Format,
) -> Result<LayoutSpec, ConnectorError> {
    if ![15, 30, 60].contains(&settings.interval_minutes) {
        return Err(config_error(
            "phonelink.interval_minutes",
            "15, 30 or 60",
            settings.interval_minutes,
        ));
    }
    let channel = parse_channel("phonelink.channel", &settings.channel)?;
    let columns = &settings.columns;
    let queue_column = Some(columns.queue.clone());
    check_named_columns(
        "phonelink",
        format,
        [
            ("queue", &queue_column),
            ("queue_name", &columns.queue_name),
            ("channel", &columns.channel),
            ("timestamp", &columns.timestamp),
            ("date", &columns.date),
            ("time", &columns.time),
            ("offered", &columns.offered),
            ("handled", &columns.handled),
            ("abandoned", &columns.abandoned),
            ("handle_time", &columns.handle_time),
            ("duration", &columns.duration),
            ("contact_id", &columns.contact_id),
        ],
    )?;
    let time = time_columns(
        "phonelink",
        ["timestamp", "date", "time"],
        &columns.timestamp,
        &columns.date,
        &columns.time,
        format,
        "phonelink",
    )?;
    let queue = QueueSpec {
        queue: columns.queue.clone(),
        queue_name: columns.queue_name.clone(),
        channel_column: columns.channel.clone(),
        channel,
    };
    Ok(match settings.layout {
        PhoneLinkLayout::Intervals => LayoutSpec::Intervals {
            interval_minutes: settings.interval_minutes,
            handle_time: settings.handle_time,
            queue,
            time,
            offered: required(
                "phonelink.columns.offered",
                &columns.offered,
                "the column of offered contacts",
            )?,
            handled: required(
                "phonelink.columns.handled",
                &columns.handled,
                "the column of handled contacts",
            )?,
            abandoned: columns.abandoned.clone(),
            handle_time_column: columns.handle_time.clone(),
        },
        PhoneLinkLayout::Contacts => LayoutSpec::Contacts {
            interval_minutes: settings.interval_minutes,
            contacts_as: settings.contacts_as,
            queue,
            time,
            handled: required(
                "phonelink.columns.handled",
                &columns.handled,
                "the column saying whether a contact was handled",
            )?,
            duration: columns.duration.clone(),
            contact_id: columns.contact_id.clone(),
        },
    })
}

fn timelink_spec(
    settings: &TimeLinkSettings,
    format: &Format,
) -> Result<LayoutSpec, ConnectorError> {
    let columns = &settings.columns;
    let agent = Some(columns.agent.clone());
    let activity = Some(columns.activity.clone());
    check_named_columns(
        "timelink",
        format,
        [
            ("agent", &agent),
            ("activity", &activity),
            ("activity_name", &columns.activity_name),
            ("start", &columns.start),
            ("start_date", &columns.start_date),
            ("start_time", &columns.start_time),
            ("end", &columns.end),
            ("end_date", &columns.end_date),
            ("end_time", &columns.end_time),
            ("duration", &columns.duration),
        ],
    )?;
    let start = time_columns(
        "timelink",
        ["start", "start_date", "start_time"],
        &columns.start,
        &columns.start_date,
        &columns.start_time,
        format,
        "timelink",
    )?;
    let end = match settings.span {
        SpanType::StartEnd => Some(time_columns(
            "timelink",
            ["end", "end_date", "end_time"],
            &columns.end,
            &columns.end_date,
            &columns.end_time,
            format,
            "timelink",
        )?),
        _ => None,
    };
    let duration = match settings.span {
        SpanType::StartDuration => Some(required(
            "timelink.columns.duration",
            &columns.duration,
            "the duration column, because `timelink.span` is \"start-duration\"",
        )?),
        _ => None,
    };
    if settings.span != SpanType::StartOnly && !settings.logoff_activities.is_empty() {
        return Err(config_error(
            "timelink.logoff_activities",
            "no logoff activities unless `timelink.span` is \"start-only\"",
            format!("{:?}", settings.logoff_activities),
        ));
    }
    Ok(LayoutSpec::Statuses {
        span: settings.span,
        logoff_activities: settings.logoff_activities.clone(),
        agent: columns.agent.clone(),
        activity: columns.activity.clone(),
        activity_name: columns.activity_name.clone(),
        start,
        end,
        duration,
    })
}

/// Where a row is: `file:line:column`, the column 1-based, with its header name.
fn column_label(column: Option<usize>, header: Option<&[String]>) -> String {
    match column {
        None => "-".to_string(),
        Some(index) => match header.and_then(|header| header.get(index)) {
            Some(name) => format!("{} ({name})", index + 1),
            None => format!("{}", index + 1),
        },
    }
}

fn reject_for(name: &str, line: u64, error: &RowError, header: Option<&[String]>) -> Reject {
    let column = column_label(error.column, header);
    Reject {
        position: format!("{name}:{line}:{column}").into(),
        message: describe(error).into(),
    }
}

fn describe(error: &RowError) -> String {
    if error.column.is_some() {
        format!("found {:?}, expected {}", error.value, error.expected)
    } else {
        format!("expected {}", error.expected)
    }
}

/// One line of a report: `line 9, column 4 (Offered): found "x", expected ...`.
fn report_line(line: u64, error: &RowError, header: Option<&[String]>) -> String {
    format!(
        "line {line}, column {}: {}",
        column_label(error.column, header),
        describe(error)
    )
}

/// The text of `<file>.error.txt` / `<file>.rejects.txt`.
fn report_text(file: &FileEntry, headline: &str, lines: &[String], n_bad_rows: u64) -> String {
    let mut text = format!(
        "file: {}\nxxh128: {}\nresult: {headline}\n",
        file.name, file.checksum
    );
    text.push('\n');
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    let n_listed = lines.len() as u64;
    if n_bad_rows > n_listed {
        text.push_str(&format!(
            "... and {} more bad row(s), not listed\n",
            n_bad_rows - n_listed
        ));
    }
    text
}

impl CsvConnector {
    fn stream(&self, stream_kind: StreamKind) -> &Arc<Stream> {
        let stream = if stream_kind == StreamKind::TIMELINK {
            &self.timelink
        } else {
            &self.phonelink
        };
        stream
            .as_ref()
            .expect("read() checked that the stream is configured")
    }

    /// The next batch of `state`'s read: a held page of the file in flight, the page that
    /// ends it, or the end of the read when no file is left. The caller adds the state
    /// and the cursor.
    fn next_batch(
        &mut self,
        stream_kind: StreamKind,
        state: &mut State,
        max_records: usize,
    ) -> Result<ReadBatch, ConnectorError> {
        if self.in_flight.is_none() && !self.start_next(stream_kind, state)? {
            let records = Records::empty(stream_kind).expect("a stream this version knows");
            return Ok(ReadBatch::last(records));
        }
        let flight = self.in_flight.as_mut().expect("started above");
        let records = flight.page(stream_kind, max_records)?;
        let more = RString::from("more");
        if !flight.is_done() {
            let mut batch = ReadBatch::last(records);
            batch.delivery = Delivery::HOLD;
            batch.next_cursor = Some(more).into();
            return Ok(batch);
        }
        let flight = self.in_flight.take().expect("checked above");
        let (delivery, rejects) = self.finish_file(state, flight);
        let mut batch = ReadBatch::last(if delivery == Delivery::SEND {
            records
        } else {
            Records::empty(stream_kind).expect("a stream this version knows")
        });
        batch.delivery = delivery;
        batch.rejects = rejects.into();
        // Always on: the next page looks for the next file.
        batch.next_cursor = Some(more).into();
        Ok(batch)
    }

    /// Starts reading the first ready file that `state` does not know yet. `false` when
    /// no file is left.
    fn start_next(
        &mut self,
        stream_kind: StreamKind,
        state: &State,
    ) -> Result<bool, ConnectorError> {
        let stream = Arc::clone(self.stream(stream_kind));
        let candidates = files::ready_files(&stream.folders.import_dir, self.settle)?;
        for candidate in candidates {
            if state.knows_file(&candidate) || self.passed_over.contains(&candidate.name) {
                continue;
            }
            let path = &candidate.path;
            let file = match File::open(path) {
                Ok(file) => file,
                // Taken away since the folder was listed: nothing to read.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(files::io_error(
                        format!("cannot read {}", path.display()),
                        error,
                    ))
                }
            };
            let (encoder, decoder) = encoded::channel();
            let job = Conversion {
                stream,
                on_bad_row: self.on_bad_row,
                timezone: self.timezone.clone(),
                candidate: candidate.clone(),
                open_spans: state.open_spans.clone(),
            };
            let converter = std::thread::Builder::new()
                .name(format!("csv {}", candidate.name))
                .spawn(move || job.run(Checksummed::new(file), encoder))
                .map_err(|error| files::io_error("cannot start a thread".to_string(), error))?;
            self.in_flight = Some(InFlight {
                candidate,
                decoder,
                converter: Converter(Some(converter)),
                scan: None,
                next_summed: 0,
            });
            return Ok(true);
        }
        Ok(false)
    }

    /// Ends the file of `flight` in `state`: `SEND` releases its records, `DISCARD` drops
    /// them (the file is bad, imported before, or changed while it was read). Also gives
    /// the rejects to report with the page.
    fn finish_file(&mut self, state: &mut State, mut flight: InFlight) -> (Delivery, Vec<Reject>) {
        let scan = flight.scan.take().expect("a finished file has its scan");
        let candidate = flight.candidate;
        if scan.n_bytes != candidate.size {
            // Still being written: looked at again by a later read.
            self.passed_over.insert(candidate.name);
            return (Delivery::DISCARD, Vec::new());
        }
        let mut file = FileEntry {
            name: candidate.name.clone(),
            size: candidate.size,
            modified_ns: candidate.modified_ns,
            checksum: scan.checksum,
            outcome: Outcome::Imported,
            report: None,
        };
        if state.knows_content(&file.checksum) {
            file.outcome = Outcome::Duplicate;
            state.files.push(file);
            return (Delivery::DISCARD, Vec::new());
        }
        if let Some(failure) = scan.failure {
            let reject = Reject {
                position: candidate.name.as_str().into(),
                message: format!(
                    "file rejected, nothing imported: {failure}; it goes to the error folder with a report"
                )
                .into(),
            };
            file.report = Some(report_text(
                &file,
                "rejected, nothing imported: the file cannot be read",
                &[failure],
                1,
            ));
            file.outcome = Outcome::Failed;
            state.files.push(file);
            return (Delivery::DISCARD, vec![reject]);
        }
        if self.on_bad_row == OnBadRow::RejectFile && scan.n_bad_rows > 0 {
            // Each bad row (up to the report's limit), as the host counts rejects.
            let rejects = scan
                .rejects
                .iter()
                .map(|reject| Reject {
                    position: reject.position.clone(),
                    message: format!(
                        "{}; the whole file is rejected (on_bad_row = \"reject-file\")",
                        reject.message
                    )
                    .into(),
                })
                .collect();
            file.report = Some(report_text(
                &file,
                &format!(
                    "rejected, nothing imported: {} bad row(s) (on_bad_row = \"reject-file\")",
                    scan.n_bad_rows
                ),
                &scan.bad_rows,
                scan.n_bad_rows,
            ));
            file.outcome = Outcome::Failed;
            state.files.push(file);
            return (Delivery::DISCARD, rejects);
        }
        if scan.n_bad_rows > 0 {
            file.report = Some(report_text(
                &file,
                &format!(
                    "imported without {} bad row(s) (on_bad_row = \"skip-row\")",
                    scan.n_bad_rows
                ),
                &scan.bad_rows,
                scan.n_bad_rows,
            ));
        }
        state.open_spans = scan.open_spans;
        state.files.push(file);
        (Delivery::SEND, scan.rejects)
    }
}

/// One file's conversion, on a thread of its own: what it needs, owned.
struct Conversion {
    stream: Arc<Stream>,
    on_bad_row: OnBadRow,
    timezone: SourceTimeZone,
    candidate: Candidate,
    /// The open spans before the file.
    open_spans: Chains,
}

impl Conversion {
    /// Converts every row of `file` (the records encoded for the decoder, or contacts
    /// summed) while a second thread parses ahead; collects bad rows and the checksum of
    /// every byte.
    fn run(self, file: Checksummed<File>, encoder: Encoder) -> Result<Scan, ConnectorError> {
        std::thread::scope(|scope| self.convert(scope, file, encoder))
    }

    fn convert<'scope>(
        &'scope self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        file: Checksummed<File>,
        encoder: Encoder,
    ) -> Result<Scan, ConnectorError> {
        let stream = &*self.stream;
        let candidate = &self.candidate;
        let path = &candidate.path;
        let cannot_read = |error| files::io_error(format!("cannot read {}", path.display()), error);
        let (rows, start) = reader::start(file, &stream.format).map_err(cannot_read)?;
        let mut scan = Scan {
            checksum: String::new(),
            n_bytes: 0,
            failure: None,
            bad_rows: Vec::new(),
            n_bad_rows: 0,
            rejects: Vec::new(),
            summed: Vec::new(),
            open_spans: self.open_spans.clone(),
        };
        let (layout, width) = match stream.resolve(&start) {
            Ok(resolved) => resolved,
            Err(problem) => {
                let line = if stream.format.header {
                    start.data_line.saturating_sub(1).max(1)
                } else {
                    1
                };
                scan.failure = Some(format!("line {line} (header): {problem}"));
                (scan.checksum, scan.n_bytes) = rows.into_inner().finish().map_err(cannot_read)?;
                return Ok(scan);
            }
        };
        let mut row_reader = RowReader::new(layout, width, &stream.format, self.timezone.clone());
        if !stream.is_aggregated() {
            // The encoding takes queue texts by number: each is decoded once per file.
            row_reader = row_reader.numbering_queues();
        }
        let mut sums: BTreeMap<IntervalKey, (u32, u32, f64)> = BTreeMap::new();
        let mut encoder = (!stream.is_aggregated()).then_some(encoder);
        let header = start.header.as_deref();
        let mut rows = reader::parse_ahead(scope, rows, &stream.format);
        while let Some(chunk) = rows.next_chunk().map_err(cannot_read)? {
            for row in chunk.iter() {
                let output = row_reader.convert(&row, &mut scan.open_spans);
                let queue = row_reader
                    .texts()
                    .zip(row_reader.queue_numbers())
                    .map(|(texts, numbers)| NumberedQueue { texts, numbers });
                let written = match output {
                    Ok(Output::Interval) => encoder
                        .as_mut()
                        .map(|encoder| encoder.interval(row_reader.interval(), queue)),
                    Ok(Output::Contact(record)) => encoder
                        .as_mut()
                        .map(|encoder| encoder.contact(&record, queue)),
                    Ok(Output::Status(record)) => {
                        encoder.as_mut().map(|encoder| encoder.status(&record))
                    }
                    Ok(Output::ContactForInterval {
                        key,
                        handled,
                        duration_secs,
                    }) => {
                        let sum = sums.entry(key).or_insert((0, 0, 0.0));
                        sum.0 += 1;
                        if handled {
                            sum.1 += 1;
                            sum.2 += duration_secs;
                        }
                        None
                    }
                    Ok(Output::Nothing) => None,
                    Err(error) => {
                        scan.n_bad_rows += 1;
                        if scan.bad_rows.len() < MAX_REPORTED_ROWS {
                            let line = row.line();
                            scan.bad_rows.push(report_line(line, &error, header));
                            scan.rejects
                                .push(reject_for(&candidate.name, line, &error, header));
                        }
                        if self.on_bad_row == OnBadRow::RejectFile {
                            // The file is rejected: its records are not needed any more,
                            // the rest of the pass only completes the report.
                            encoder = None;
                        }
                        None
                    }
                };
                if let Some(Err(error)) = written {
                    // The read stopped taking records (it was given up): stop too.
                    return Err(files::io_error(
                        format!("stopped converting {}", candidate.name),
                        error,
                    ));
                }
            }
        }
        (scan.checksum, scan.n_bytes) = rows.into_inner().finish().map_err(cannot_read)?;
        if let Some(encoder) = encoder {
            encoder.finish().map_err(|error| {
                files::io_error(format!("stopped converting {}", candidate.name), error)
            })?;
        }
        // Beyond those listed, one reject says how many more the report counts.
        if scan.n_bad_rows > scan.rejects.len() as u64 {
            scan.rejects.push(Reject {
                position: candidate.name.as_str().into(),
                message: format!(
                    "{} more bad row(s), counted in the file's report",
                    scan.n_bad_rows - scan.rejects.len() as u64
                )
                .into(),
            });
        }
        if self.on_bad_row == OnBadRow::RejectFile && scan.n_bad_rows > 0 {
            return Ok(scan);
        }
        let interval_minutes = match &stream.spec {
            LayoutSpec::Contacts {
                interval_minutes, ..
            } => *interval_minutes,
            _ => 0,
        };
        scan.summed = sums
            .into_iter()
            .map(
                |(key, (offered, handled, handle_time_secs))| QueueInterval {
                    queue_id: key.queue_id.into(),
                    queue_name: key.queue_name.into(),
                    channel: Channel(key.channel),
                    start: UtcMillis(key.start_ms),
                    interval_minutes,
                    offered,
                    handled,
                    abandoned: offered - handled,
                    handle_time_secs,
                    extras: RVec::new(),
                },
            )
            .collect();
        Ok(scan)
    }
}
