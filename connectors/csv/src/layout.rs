//! The layouts: how one CSV row becomes a record. Columns are resolved against a file's
//! header once ([`Layout::resolve`]), then every row is converted by column index.
//!
//! A row that cannot be converted gives a [`RowError`] naming the column, the value and
//! what was expected; the reader adds file and line.

use crate::reader::Row;
use crate::{
    format::{self, DateFormat, Encoding, Parts},
    settings::{
        ColumnRef, ContactsAs, DurationFormat, Format, HandleTime, MissingValues, PhoneLinkLayout,
        SpanType,
    },
};
use acdlink_connector_api::{
    time::SourceTimeZone, AgentStatus, Channel, ContactEvent, QueueInterval, ROption, RString,
    RVec, UtcMillis,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::{borrow::Cow, collections::BTreeMap};

/// What is wrong with one row: a [`RowProblem`], boxed so that the results of the
/// conversion of every good row stay small enough to be returned in registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError(Box<RowProblem>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// The column at fault, 0-based; `None` for the row as a whole.
    pub column: Option<usize>,
    /// The cell's text (lossily decoded), empty when there is no cell.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl std::ops::Deref for RowError {
    type Target = RowProblem;

    fn deref(&self) -> &RowProblem {
        &self.0
    }
}

impl RowError {
    fn new(column: Option<usize>, value: String, expected: String) -> RowError {
        RowError(Box::new(RowProblem {
            column,
            value,
            expected,
        }))
    }

    fn cell(column: usize, bytes: &[u8], expected: impl Into<String>) -> RowError {
        RowError::new(
            Some(column),
            String::from_utf8_lossy(bytes).into_owned(),
            expected.into(),
        )
    }
}

/// How a point in time is spread over columns.
#[derive(Clone, Debug)]
pub enum TimeColumns<C> {
    /// One column with date and time (or Unix seconds).
    Timestamp(C),
    /// A date column and a time column.
    DateAndTime(C, C),
}

/// The queue columns of a PhoneLink layout, not yet resolved.
#[derive(Clone, Debug)]
pub struct QueueSpec {
    pub queue: ColumnRef,
    pub queue_name: Option<ColumnRef>,
    pub channel_column: Option<ColumnRef>,
    /// The channel when there is no channel column.
    pub channel: Channel,
}

/// The configured layout of one stream, with columns not yet resolved.
#[derive(Clone, Debug)]
pub enum LayoutSpec {
    Intervals {
        interval_minutes: u32,
        handle_time: HandleTime,
        queue: QueueSpec,
        time: TimeColumns<ColumnRef>,
        offered: ColumnRef,
        handled: ColumnRef,
        abandoned: Option<ColumnRef>,
        handle_time_column: Option<ColumnRef>,
    },
    Contacts {
        interval_minutes: u32,
        contacts_as: ContactsAs,
        queue: QueueSpec,
        time: TimeColumns<ColumnRef>,
        handled: ColumnRef,
        duration: Option<ColumnRef>,
        contact_id: Option<ColumnRef>,
    },
    Statuses {
        span: SpanType,
        logoff_activities: Vec<String>,
        agent: ColumnRef,
        activity: ColumnRef,
        activity_name: Option<ColumnRef>,
        start: TimeColumns<ColumnRef>,
        end: Option<TimeColumns<ColumnRef>>,
        duration: Option<ColumnRef>,
    },
}

impl LayoutSpec {
    pub fn phonelink_layout(&self) -> Option<(PhoneLinkLayout, ContactsAs)> {
        match self {
            LayoutSpec::Intervals { .. } => {
                Some((PhoneLinkLayout::Intervals, ContactsAs::Intervals))
            }
            LayoutSpec::Contacts { contacts_as, .. } => {
                Some((PhoneLinkLayout::Contacts, *contacts_as))
            }
            LayoutSpec::Statuses { .. } => None,
        }
    }

    /// Resolves every column against the header (`None` for files without one). The error
    /// names the column that is missing.
    pub fn resolve(&self, header: Option<&[String]>) -> Result<(Layout, usize), String> {
        self.resolve_with(Resolver {
            header,
            max_index: 0,
            is_empty_file: false,
        })
    }

    /// The layout for a file without a single line, whose header row is missing too: it
    /// has no rows to convert, so named columns need not be found.
    pub fn resolve_for_empty_file(&self) -> (Layout, usize) {
        self.resolve_with(Resolver {
            header: None,
            max_index: 0,
            is_empty_file: true,
        })
        .expect("every column resolves in an empty file")
    }

    fn resolve_with(&self, mut resolver: Resolver<'_>) -> Result<(Layout, usize), String> {
        let layout = match self {
            LayoutSpec::Intervals {
                interval_minutes,
                handle_time,
                queue,
                time,
                offered,
                handled,
                abandoned,
                handle_time_column,
            } => Layout::Intervals(IntervalColumns {
                interval_minutes: *interval_minutes,
                handle_time: *handle_time,
                queue: QueueColumns::resolve(&mut resolver, queue)?,
                time: resolver.time(time)?,
                offered: resolver.one(offered)?,
                handled: resolver.one(handled)?,
                abandoned: resolver.optional(abandoned)?,
                handle_time_column: resolver.optional(handle_time_column)?,
            }),
            LayoutSpec::Contacts {
                interval_minutes,
                contacts_as,
                queue,
                time,
                handled,
                duration,
                contact_id,
            } => Layout::Contacts(ContactColumns {
                interval_minutes: *interval_minutes,
                contacts_as: *contacts_as,
                queue: QueueColumns::resolve(&mut resolver, queue)?,
                time: resolver.time(time)?,
                handled: resolver.one(handled)?,
                duration: resolver.optional(duration)?,
                contact_id: resolver.optional(contact_id)?,
            }),
            LayoutSpec::Statuses {
                span,
                logoff_activities,
                agent,
                activity,
                activity_name,
                start,
                end,
                duration,
            } => Layout::Statuses(StatusColumns {
                span: *span,
                logoff_activities: logoff_activities.clone(),
                agent: resolver.one(agent)?,
                activity: resolver.one(activity)?,
                activity_name: resolver.optional(activity_name)?,
                start: resolver.time(start)?,
                end: end.as_ref().map(|end| resolver.time(end)).transpose()?,
                duration: resolver.optional(duration)?,
            }),
        };
        Ok((layout, resolver.max_index + 1))
    }
}

struct Resolver<'a> {
    header: Option<&'a [String]>,
    max_index: usize,
    is_empty_file: bool,
}

impl Resolver<'_> {
    fn one(&mut self, column: &ColumnRef) -> Result<usize, String> {
        let index = match column {
            ColumnRef::Index(number) => number - 1,
            ColumnRef::Name(_) if self.is_empty_file => 0,
            ColumnRef::Name(name) => {
                let header = self.header.ok_or_else(|| {
                    format!("column {column} is named, but the file has no header row")
                })?;
                header
                    .iter()
                    .position(|cell| cell.trim().eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        format!(
                            "expected a column named `{name}` in the header, found only {}",
                            header
                                .iter()
                                .map(|cell| format!("`{cell}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?
            }
        };
        self.max_index = self.max_index.max(index);
        Ok(index)
    }

    fn optional(&mut self, column: &Option<ColumnRef>) -> Result<Option<usize>, String> {
        column.as_ref().map(|column| self.one(column)).transpose()
    }

    fn time(&mut self, time: &TimeColumns<ColumnRef>) -> Result<TimeColumns<usize>, String> {
        Ok(match time {
            TimeColumns::Timestamp(column) => TimeColumns::Timestamp(self.one(column)?),
            TimeColumns::DateAndTime(date, time) => {
                TimeColumns::DateAndTime(self.one(date)?, self.one(time)?)
            }
        })
    }
}

#[derive(Clone, Debug)]
pub struct QueueColumns {
    queue: usize,
    queue_name: Option<usize>,
    channel_column: Option<usize>,
    channel: Channel,
}

impl QueueColumns {
    fn resolve(resolver: &mut Resolver<'_>, spec: &QueueSpec) -> Result<QueueColumns, String> {
        Ok(QueueColumns {
            queue: resolver.one(&spec.queue)?,
            queue_name: resolver.optional(&spec.queue_name)?,
            channel_column: resolver.optional(&spec.channel_column)?,
            channel: spec.channel,
        })
    }
}

#[derive(Clone, Debug)]
pub struct IntervalColumns {
    interval_minutes: u32,
    handle_time: HandleTime,
    queue: QueueColumns,
    time: TimeColumns<usize>,
    offered: usize,
    handled: usize,
    abandoned: Option<usize>,
    handle_time_column: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct ContactColumns {
    interval_minutes: u32,
    contacts_as: ContactsAs,
    queue: QueueColumns,
    time: TimeColumns<usize>,
    handled: usize,
    duration: Option<usize>,
    contact_id: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct StatusColumns {
    span: SpanType,
    logoff_activities: Vec<String>,
    agent: usize,
    activity: usize,
    activity_name: Option<usize>,
    start: TimeColumns<usize>,
    end: Option<TimeColumns<usize>>,
    duration: Option<usize>,
}

/// A layout with its columns resolved for one file.
#[derive(Clone, Debug)]
pub enum Layout {
    Intervals(IntervalColumns),
    Contacts(ContactColumns),
    Statuses(StatusColumns),
}

/// An agent's status that has started and not yet ended (`span = "start-only"`), carried
/// from row to row and, in the connector's state, from file to file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSpan {
    pub activity_id: String,
    pub activity_name: Option<String>,
    pub start_ms: i64,
}

/// The open spans of every agent, by agent identifier.
pub type Chains = BTreeMap<String, OpenSpan>;

/// What one row gives.
#[derive(Debug)]
pub enum Output {
    /// An interval: [`RowReader::interval`] is its record.
    Interval,
    Contact(ContactEvent),
    Status(AgentStatus),
    /// A contact to be summed into an interval.
    ContactForInterval {
        key: IntervalKey,
        handled: bool,
        duration_secs: f64,
    },
    /// Nothing (a row of missing values, a logoff row, the first row of a chain).
    Nothing,
}

/// Queue, channel and interval start: the natural key of an interval record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntervalKey {
    pub start_ms: i64,
    pub queue_id: String,
    pub queue_name: String,
    pub channel: u8,
}

/// The queue texts of a file, each decoded and checked once: cells with the same bytes
/// get the same number. Up to [`Texts::MAX`] texts; beyond, records carry their texts.
#[derive(Default)]
pub struct Texts {
    numbers: FxHashMap<Box<[u8]>, u32>,
    texts: Vec<RString>,
    /// The cell bytes of each text, by number.
    cells: Vec<Box<[u8]>>,
    /// By the number of a queue identifier: the number of the name it came with last,
    /// and of the identifier on the row after it last. Files repeat their queues in the
    /// same order, and a queue keeps its name, so most rows are numbered by comparing
    /// their cells with these guesses, without hashing.
    name_of: Vec<u32>,
    next_of: Vec<u32>,
    /// The number of the last row's queue identifier.
    last_id: Option<u32>,
}

/// No number yet, in [`Texts::name_of`] and [`Texts::next_of`].
const NONE: u32 = u32::MAX;

impl Texts {
    /// At most this many texts are numbered, so that memory stays flat on a file of ever
    /// new queue names.
    pub const MAX: usize = 100_000;

    /// The text numbered `number`.
    pub fn get(&self, number: u32) -> &str {
        &self.texts[number as usize]
    }

    /// Whether text `number` came from a cell of exactly `bytes`.
    fn is(&self, number: u32, bytes: &[u8]) -> bool {
        number != NONE && *self.cells[number as usize] == *bytes
    }

    /// The number of the text in `bytes`, decoded by `decode` the first time.
    fn number(
        &mut self,
        bytes: &[u8],
        decode: impl FnOnce() -> Result<RString, RowError>,
    ) -> Result<Option<u32>, RowError> {
        if let Some(&number) = self.numbers.get(bytes) {
            return Ok(Some(number));
        }
        let text = decode()?;
        if self.texts.len() >= Texts::MAX {
            return Ok(None);
        }
        let number = self.texts.len() as u32;
        self.numbers.insert(bytes.into(), number);
        self.texts.push(text);
        self.cells.push(bytes.into());
        self.name_of.push(NONE);
        self.next_of.push(NONE);
        Ok(Some(number))
    }

    /// The numbers of a row's queue identifier and name (the identifier's, without a
    /// name column), given as cell bytes and column; a cell's text is decoded by
    /// `decode(column)` the first time. `None` when the table is full.
    fn number_queue(
        &mut self,
        (id, id_column): (&[u8], usize),
        name: Option<(&[u8], usize)>,
        decode: impl Fn(usize) -> Result<RString, RowError>,
    ) -> Result<Option<[u32; 2]>, RowError> {
        let guess = self
            .last_id
            .map_or(NONE, |last| self.next_of[last as usize]);
        let id_number = if self.is(guess, id) {
            guess
        } else {
            let Some(number) = self.number(id, || decode(id_column))? else {
                self.last_id = None;
                return Ok(None);
            };
            if let Some(last) = self.last_id {
                self.next_of[last as usize] = number;
            }
            number
        };
        self.last_id = Some(id_number);
        let Some((name, name_column)) = name else {
            return Ok(Some([id_number, id_number]));
        };
        let guess = self.name_of[id_number as usize];
        if self.is(guess, name) {
            return Ok(Some([id_number, guess]));
        }
        let Some(name_number) = self.number(name, || decode(name_column))? else {
            return Ok(None);
        };
        self.name_of[id_number as usize] = name_number;
        Ok(Some([id_number, name_number]))
    }
}

/// Converts rows: the layout plus what every row needs (encoding, formats, time zone).
pub struct RowReader {
    pub layout: Layout,
    /// The number of columns a row needs.
    pub width: usize,
    cells: Cells,
}

/// Reads cells: everything a row's conversion needs besides the layout.
struct Cells {
    encoding: Encoding,
    decimal_comma: bool,
    missing_values: MissingValues,
    duration_format: DurationFormat,
    timestamp_format: Option<DateFormat>,
    date_format: Option<DateFormat>,
    time_format: Option<DateFormat>,
    clock: Clock,
    /// The raw cells of the last point in time read, and what they gave: interval files
    /// repeat one timestamp for every queue.
    last_time: (Vec<u8>, Vec<u8>),
    last_instant: Option<(UtcMillis, Parts)>,
    /// With [`RowReader::numbering_queues`]: the queue texts, and the numbers of the last
    /// record's queue identifier and name (`None`: the record carries its texts).
    texts: Option<Texts>,
    queue_numbers: Option<[u32; 2]>,
    /// The queue identifier and name of the last row whose queue is not numbered.
    queue_texts: (RString, RString),
    /// The record of the last interval row, filled in place: returning it by value cost
    /// a tenth of a row's conversion in copies.
    interval: QueueInterval,
}

impl RowReader {
    pub fn new(layout: Layout, width: usize, format: &Format, zone: SourceTimeZone) -> RowReader {
        RowReader {
            layout,
            width,
            cells: Cells {
                encoding: format.encoding,
                decimal_comma: format.decimal_comma,
                missing_values: format.missing_values,
                duration_format: format.duration_format,
                timestamp_format: format.timestamp_format.clone(),
                date_format: format.date_format.clone(),
                time_format: format.time_format.clone(),
                clock: Clock::new(zone),
                last_time: (Vec::new(), Vec::new()),
                last_instant: None,
                texts: None,
                queue_numbers: None,
                queue_texts: (RString::new(), RString::new()),
                interval: QueueInterval {
                    queue_id: RString::new(),
                    queue_name: RString::new(),
                    channel: Channel::CALLS,
                    start: UtcMillis(0),
                    interval_minutes: 0,
                    offered: 0,
                    handled: 0,
                    abandoned: 0,
                    handle_time_secs: 0.0,
                    extras: RVec::new(),
                },
            },
        }
    }

    /// The same reader, numbering queue texts instead of copying them into each record:
    /// the records of intervals and contact events come with empty queue texts, and
    /// [`RowReader::queue_numbers`] says which of [`RowReader::texts`] they are.
    pub fn numbering_queues(mut self) -> RowReader {
        self.cells.texts = Some(Texts::default());
        self
    }

    pub fn texts(&self) -> Option<&Texts> {
        self.cells.texts.as_ref()
    }

    /// The numbers of the queue identifier and name of the record the last `convert`
    /// returned, when they are numbered.
    pub fn queue_numbers(&self) -> Option<[u32; 2]> {
        self.cells.queue_numbers
    }

    /// The record of the row `convert` last returned [`Output::Interval`] for; with
    /// [`RowReader::queue_numbers`], its queue texts are empty.
    pub fn interval(&self) -> &QueueInterval {
        &self.cells.interval
    }
}

impl RowReader {
    /// Converts one row. `chains` holds the open spans of `span = "start-only"`.
    pub fn convert(&mut self, row: &Row, chains: &mut Chains) -> Result<Output, RowError> {
        if row.len() < self.width {
            return Err(RowError::new(
                Some(row.len()),
                String::new(),
                format!(
                    "at least {} columns, found {} (is the line truncated?)",
                    self.width,
                    row.len()
                ),
            ));
        }
        match &self.layout {
            Layout::Intervals(columns) => self.cells.interval(columns, row),
            Layout::Contacts(columns) => self.cells.contact(columns, row),
            Layout::Statuses(columns) => self.cells.status(columns, row, chains),
        }
    }
}

/// The text of a cell, decoded and trimmed.
fn text<'r>(encoding: Encoding, row: &'r Row, column: usize) -> Result<Cow<'r, str>, RowError> {
    let bytes = format::trim(&row[column]);
    encoding
        .decode(bytes)
        .ok_or_else(|| RowError::cell(column, bytes, format!("text in {}", encoding.name())))
}

impl Cells {
    fn text<'r>(&self, row: &'r Row, column: usize) -> Result<Cow<'r, str>, RowError> {
        text(self.encoding, row, column)
    }

    fn identifier(&self, row: &Row, column: usize) -> Result<RString, RowError> {
        let text = self.text(row, column)?;
        if text.is_empty() {
            return Err(RowError::cell(
                column,
                b"",
                "an identifier, found an empty cell",
            ));
        }
        Ok(RString::from(text.as_ref()))
    }

    /// The numbers of the row's queue identifier and name, with numbering on and room
    /// in the table.
    fn number_queue(
        &mut self,
        columns: &QueueColumns,
        row: &Row,
    ) -> Result<Option<[u32; 2]>, RowError> {
        let encoding = self.encoding;
        let Some(texts) = self.texts.as_mut() else {
            return Ok(None);
        };
        let id_bytes = format::trim(&row[columns.queue]);
        if id_bytes.is_empty() {
            // Checked before the table: an empty name may be numbered already.
            return Err(RowError::cell(
                columns.queue,
                b"",
                "an identifier, found an empty cell",
            ));
        }
        texts.number_queue(
            (id_bytes, columns.queue),
            columns
                .queue_name
                .map(|column| (format::trim(&row[column]), column)),
            |column| Ok(RString::from(text(encoding, row, column)?.as_ref())),
        )
    }

    /// The row's queue: its numbers in `queue_numbers`, or else its texts in
    /// `queue_texts`; and its channel.
    fn queue(&mut self, columns: &QueueColumns, row: &Row) -> Result<Channel, RowError> {
        self.queue_numbers = self.number_queue(columns, row)?;
        if self.queue_numbers.is_none() {
            let queue_id = self.identifier(row, columns.queue)?;
            let queue_name = match columns.queue_name {
                Some(column) => RString::from(self.text(row, column)?.as_ref()),
                None => queue_id.clone(),
            };
            self.queue_texts = (queue_id, queue_name);
        }
        let channel = match columns.channel_column {
            Some(column) => {
                let bytes = format::trim(&row[column]);
                let name = std::str::from_utf8(bytes)
                    .ok()
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_default();
                Channel::from_name(&name).ok_or_else(|| {
                    RowError::cell(
                        column,
                        bytes,
                        format!("a channel: one of {}", Channel::known_names().join(", ")),
                    )
                })?
            }
            None => columns.channel,
        };
        Ok(channel)
    }

    /// The queue texts of the row `queue` read last: empty when they are numbered.
    fn take_queue_texts(&mut self) -> (RString, RString) {
        match self.queue_numbers {
            Some(_) => (RString::new(), RString::new()),
            None => std::mem::take(&mut self.queue_texts),
        }
    }

    /// A count cell; `None` for an empty cell (a missing value).
    fn count(&self, row: &Row, column: usize) -> Result<Option<u32>, RowError> {
        let bytes = &row[column];
        if format::trim(bytes).is_empty() {
            return Ok(None);
        }
        format::parse_count(bytes)
            .map(Some)
            .ok_or_else(|| RowError::cell(column, bytes, "a whole number >= 0"))
    }

    fn duration(&self, row: &Row, column: usize) -> Result<Option<f64>, RowError> {
        let bytes = &row[column];
        if format::trim(bytes).is_empty() {
            return Ok(None);
        }
        let (value, expected) = match self.duration_format {
            DurationFormat::Secs => (
                format::parse_decimal(bytes, self.decimal_comma),
                if self.decimal_comma {
                    "a number of seconds >= 0 with a decimal comma"
                } else {
                    "a number of seconds >= 0"
                },
            ),
            DurationFormat::Clock => (
                format::parse_clock_duration(bytes),
                "a duration as hh:mm:ss or mm:ss",
            ),
        };
        value
            .map(Some)
            .ok_or_else(|| RowError::cell(column, bytes, expected))
    }

    /// The UTC instant and local parts of a point in time.
    fn instant(
        &mut self,
        row: &Row,
        time: &TimeColumns<usize>,
    ) -> Result<(UtcMillis, Parts), RowError> {
        let (first, second): (&[u8], &[u8]) = match *time {
            TimeColumns::Timestamp(column) => (&row[column], b""),
            TimeColumns::DateAndTime(date, time) => (&row[date], &row[time]),
        };
        if let Some(cached) = self.last_instant {
            if self.last_time.0 == first && self.last_time.1 == second {
                return Ok(cached);
            }
        }
        let instant = self.read_instant(row, time)?;
        self.last_time.0.clear();
        self.last_time.0.extend_from_slice(first);
        self.last_time.1.clear();
        self.last_time.1.extend_from_slice(second);
        self.last_instant = Some(instant);
        Ok(instant)
    }

    fn read_instant(
        &mut self,
        row: &Row,
        time: &TimeColumns<usize>,
    ) -> Result<(UtcMillis, Parts), RowError> {
        match *time {
            TimeColumns::Timestamp(column) => {
                let bytes = &row[column];
                let format = self
                    .timestamp_format
                    .as_ref()
                    .expect("open() requires timestamp_format with a timestamp column");
                if format.unix {
                    let seconds = format::parse_unix_seconds(bytes).ok_or_else(|| {
                        RowError::cell(column, bytes, "Unix seconds (a whole number)")
                    })?;
                    let instant = UtcMillis(seconds.saturating_mul(1000));
                    let parts = self
                        .clock
                        .local_parts(instant)
                        .map_err(|message| RowError::cell(column, bytes, message))?;
                    return Ok((instant, parts));
                }
                let parts = format.read(bytes).ok_or_else(|| {
                    RowError::cell(
                        column,
                        bytes,
                        format!("a date and time like {}", format.text),
                    )
                })?;
                let instant = self
                    .clock
                    .utc_of(parts)
                    .map_err(|message| RowError::cell(column, bytes, message))?;
                Ok((instant, parts))
            }
            TimeColumns::DateAndTime(date_column, time_column) => {
                let date_format = self
                    .date_format
                    .as_ref()
                    .expect("open() requires date_format with a date column");
                let time_format = self
                    .time_format
                    .as_ref()
                    .expect("open() requires time_format with a time column");
                let date_bytes = &row[date_column];
                let date = date_format.read(date_bytes).ok_or_else(|| {
                    RowError::cell(
                        date_column,
                        date_bytes,
                        format!("a date like {}", date_format.text),
                    )
                })?;
                let time_bytes = &row[time_column];
                let time = time_format.read(time_bytes).ok_or_else(|| {
                    RowError::cell(
                        time_column,
                        time_bytes,
                        format!("a time like {}", time_format.text),
                    )
                })?;
                let parts = Parts {
                    year: date.year,
                    month: date.month,
                    day: date.day,
                    hour: time.hour,
                    minute: time.minute,
                    second: time.second,
                };
                let instant = self
                    .clock
                    .utc_of(parts)
                    .map_err(|message| RowError::cell(date_column, date_bytes, message))?;
                Ok((instant, parts))
            }
        }
    }

    fn interval(&mut self, columns: &IntervalColumns, row: &Row) -> Result<Output, RowError> {
        let offered = self.count(row, columns.offered)?;
        let handled = self.count(row, columns.handled)?;
        let abandoned = match columns.abandoned {
            Some(column) => self.count(row, column)?,
            None => Some(0),
        };
        let handle_time = match columns.handle_time_column {
            Some(column) => self.duration(row, column)?,
            None => Some(0.0),
        };
        // Configured value columns and whether each is empty; unconfigured ones are
        // `None` and do not count.
        let cells = [
            Some((columns.offered, offered.is_none())),
            Some((columns.handled, handled.is_none())),
            columns
                .abandoned
                .map(|column| (column, abandoned.is_none())),
            columns
                .handle_time_column
                .map(|column| (column, handle_time.is_none())),
        ];
        if let Some(column) = self.missing_value(&cells)? {
            return Err(RowError::cell(
                column,
                b"",
                "a value: with missing_values = \"no-data\" a row has all its values or none",
            ));
        }
        if self.missing_values == MissingValues::NoData
            && cells.iter().flatten().all(|(_, missing)| *missing)
        {
            return Ok(Output::Nothing);
        }
        let (offered, handled, abandoned) = (
            offered.unwrap_or(0),
            handled.unwrap_or(0),
            abandoned.unwrap_or(0),
        );
        let channel = self.queue(&columns.queue, row)?;
        let time_column = match columns.time {
            TimeColumns::Timestamp(column) | TimeColumns::DateAndTime(_, column) => column,
        };
        let (start, parts) = self.instant(row, &columns.time)?;
        let minute_of_day = u32::from(parts.hour as u8) * 60 + u32::from(parts.minute as u8);
        if parts.second != 0 || minute_of_day % columns.interval_minutes != 0 {
            return Err(RowError::cell(
                time_column,
                &row[time_column],
                format!(
                    "the start of a {}-minute interval (local time on a multiple of {} minutes)",
                    columns.interval_minutes, columns.interval_minutes
                ),
            ));
        }
        let handle_time = handle_time.unwrap_or(0.0);
        let handle_time_secs = match columns.handle_time {
            HandleTime::Total => handle_time,
            HandleTime::Average => handle_time * f64::from(handled),
        };
        // Numbered rows leave the record's (empty) texts alone: no drop of the old ones.
        let has_texts = !(self.interval.queue_id.is_empty() && self.interval.queue_name.is_empty());
        if self.queue_numbers.is_none() || has_texts {
            (self.interval.queue_id, self.interval.queue_name) = self.take_queue_texts();
        }
        let record = &mut self.interval;
        record.channel = channel;
        record.start = start;
        record.interval_minutes = columns.interval_minutes;
        record.offered = offered;
        record.handled = handled;
        record.abandoned = abandoned;
        record.handle_time_secs = handle_time_secs;
        Ok(Output::Interval)
    }

    /// With `missing_values = "no-data"`: a row with some values missing and some present
    /// is bad; gives the first missing column then. With `zero` nothing is missing.
    fn missing_value(&self, cells: &[Option<(usize, bool)>]) -> Result<Option<usize>, RowError> {
        if self.missing_values == MissingValues::Zero {
            return Ok(None);
        }
        let n_cells = cells.iter().flatten().count();
        let n_missing = cells
            .iter()
            .flatten()
            .filter(|(_, missing)| *missing)
            .count();
        if n_missing == 0 || n_missing == n_cells {
            return Ok(None);
        }
        Ok(cells
            .iter()
            .flatten()
            .find(|(_, missing)| *missing)
            .map(|(column, _)| *column))
    }

    fn contact(&mut self, columns: &ContactColumns, row: &Row) -> Result<Output, RowError> {
        let channel = self.queue(&columns.queue, row)?;
        let (queue_id, queue_name) = self.take_queue_texts();
        let (timestamp, _) = self.instant(row, &columns.time)?;
        let handled_bytes = &row[columns.handled];
        let handled = format::parse_flag(handled_bytes).ok_or_else(|| {
            RowError::cell(
                columns.handled,
                handled_bytes,
                "whether the contact was handled: 1/0, true/false, yes/no or y/n",
            )
        })?;
        let duration_secs = match columns.duration {
            Some(column) => self.duration(row, column)?.unwrap_or(0.0),
            None => 0.0,
        };
        match columns.contacts_as {
            ContactsAs::Events => {
                let contact_id = match columns.contact_id {
                    Some(column) => {
                        let text = self.text(row, column)?;
                        if text.is_empty() {
                            ROption::RNone
                        } else {
                            ROption::RSome(RString::from(text.as_ref()))
                        }
                    }
                    None => ROption::RNone,
                };
                Ok(Output::Contact(ContactEvent {
                    queue_id,
                    queue_name,
                    channel,
                    timestamp,
                    offered: true,
                    handled,
                    duration_secs,
                    contact_id,
                }))
            }
            ContactsAs::Intervals => {
                let start_ms = self
                    .clock
                    .interval_start(timestamp, columns.interval_minutes)
                    .map_err(|message| RowError::new(None, String::new(), message))?;
                Ok(Output::ContactForInterval {
                    key: IntervalKey {
                        start_ms,
                        queue_id: queue_id.into_string(),
                        queue_name: queue_name.into_string(),
                        channel: channel.0,
                    },
                    handled,
                    duration_secs,
                })
            }
        }
    }

    fn status(
        &mut self,
        columns: &StatusColumns,
        row: &Row,
        chains: &mut Chains,
    ) -> Result<Output, RowError> {
        let agent_id = self.identifier(row, columns.agent)?;
        let activity_id = self.identifier(row, columns.activity)?;
        let activity_name = match columns.activity_name {
            Some(column) => {
                let text = self.text(row, column)?;
                (!text.is_empty()).then(|| text.into_owned())
            }
            None => None,
        };
        let (start, _) = self.instant(row, &columns.start)?;
        let start_column = match columns.start {
            TimeColumns::Timestamp(column) | TimeColumns::DateAndTime(column, _) => column,
        };
        match columns.span {
            SpanType::StartEnd => {
                let end_spec = columns
                    .end
                    .as_ref()
                    .expect("open() requires end columns for span = \"start-end\"");
                let end_column = match end_spec {
                    TimeColumns::Timestamp(column) | TimeColumns::DateAndTime(column, _) => *column,
                };
                let end_is_empty = match end_spec {
                    TimeColumns::Timestamp(column) => format::trim(&row[*column]).is_empty(),
                    TimeColumns::DateAndTime(date, time) => {
                        format::trim(&row[*date]).is_empty() && format::trim(&row[*time]).is_empty()
                    }
                };
                let end = if end_is_empty {
                    None
                } else {
                    let (end, _) = self.instant(row, end_spec)?;
                    if end < start {
                        return Err(RowError::cell(
                            end_column,
                            &row[end_column],
                            format!("an end at or after the start {start}"),
                        ));
                    }
                    Some(end)
                };
                Ok(Output::Status(AgentStatus {
                    agent_id,
                    activity_id,
                    activity_name: activity_name.map(RString::from).into(),
                    start,
                    end: end.into(),
                }))
            }
            SpanType::StartDuration => {
                let column = columns
                    .duration
                    .expect("open() requires a duration column for span = \"start-duration\"");
                let seconds = self.duration(row, column)?.ok_or_else(|| {
                    RowError::cell(column, b"", "a duration, found an empty cell")
                })?;
                let end = UtcMillis(start.0 + (seconds * 1000.0).round() as i64);
                Ok(Output::Status(AgentStatus {
                    agent_id,
                    activity_id,
                    activity_name: activity_name.map(RString::from).into(),
                    start,
                    end: ROption::RSome(end),
                }))
            }
            SpanType::StartOnly => {
                let is_logoff = columns
                    .logoff_activities
                    .iter()
                    .any(|logoff| logoff == activity_id.as_str());
                let previous = match chains.get(agent_id.as_str()) {
                    Some(previous) if previous.start_ms > start.0 => {
                        return Err(RowError::cell(
                            start_column,
                            &row[start_column],
                            format!(
                                "a start at or after {}, when the agent's previous status began (rows of one agent in time order)",
                                UtcMillis(previous.start_ms)
                            ),
                        ))
                    }
                    _ => chains.remove(agent_id.as_str()),
                };
                if !is_logoff {
                    chains.insert(
                        agent_id.to_string(),
                        OpenSpan {
                            activity_id: activity_id.to_string(),
                            activity_name,
                            start_ms: start.0,
                        },
                    );
                }
                Ok(match previous {
                    Some(previous) => Output::Status(AgentStatus {
                        agent_id,
                        activity_id: previous.activity_id.into(),
                        activity_name: previous.activity_name.map(RString::from).into(),
                        start: UtcMillis(previous.start_ms),
                        end: ROption::RSome(start),
                    }),
                    None => Output::Nothing,
                })
            }
        }
    }
}

/// Local time to UTC through the connector's time zone, with a one-entry cache: interval
/// files repeat the same timestamp for every queue.
struct Clock {
    zone: SourceTimeZone,
    last: Option<(Parts, UtcMillis)>,
}

impl Clock {
    fn new(zone: SourceTimeZone) -> Clock {
        Clock { zone, last: None }
    }

    fn utc_of(&mut self, parts: Parts) -> Result<UtcMillis, String> {
        if let Some((last_parts, instant)) = self.last {
            if last_parts == parts {
                return Ok(instant);
            }
        }
        let local = jiff::civil::DateTime::new(
            parts.year,
            parts.month,
            parts.day,
            parts.hour,
            parts.minute,
            parts.second,
            0,
        )
        .map_err(|_| {
            format!(
                "a valid date and time, not {:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                parts.year, parts.month, parts.day, parts.hour, parts.minute, parts.second
            )
        })?;
        let instant = self
            .zone
            .to_utc(local)
            .map_err(|error| format!("a local time the DST policy accepts ({})", error.message))?;
        self.last = Some((parts, instant));
        Ok(instant)
    }

    fn local_parts(&self, instant: UtcMillis) -> Result<Parts, String> {
        let local = self
            .zone
            .to_local(instant)
            .map_err(|error| format!("a time in range ({})", error.message))?;
        Ok(Parts {
            year: local.year(),
            month: local.month(),
            day: local.day(),
            hour: local.hour(),
            minute: local.minute(),
            second: local.second(),
        })
    }

    /// The start of the interval holding `instant`, on local interval boundaries but
    /// computed on the UTC time line, so the two repeated autumn hours stay apart.
    fn interval_start(&self, instant: UtcMillis, interval_minutes: u32) -> Result<i64, String> {
        let parts = self.local_parts(instant)?;
        let into_interval_ms = (i64::from(parts.hour) * 60 + i64::from(parts.minute))
            % i64::from(interval_minutes)
            * 60_000
            + i64::from(parts.second) * 1000
            + instant.0.rem_euclid(1000);
        Ok(instant.0 - into_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers rows of (identifier, name) and gives back the texts they were numbered as.
    fn numbered_as(rows: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut texts = Texts::default();
        let decode = |cell: &str| Ok::<_, RowError>(RString::from(cell));
        rows.iter()
            .map(|&(id, name)| {
                let [id_number, name_number] = texts
                    .number_queue((id.as_bytes(), 0), Some((name.as_bytes(), 1)), |column| {
                        decode(if column == 0 { id } else { name })
                    })
                    .expect("texts that decode")
                    .expect("room in the table");
                (
                    texts.get(id_number).to_string(),
                    texts.get(name_number).to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn queue_numbers_follow_repeats_renames_and_new_orders() {
        let rows = [
            ("Q1", "Sales"),
            ("Q2", "Support"),
            ("Q1", "Sales"),
            ("Q2", "Support"),
            // Renamed: the guess for Q1's name misses.
            ("Q1", "Sales DE"),
            // A new order: the guess for the queue after Q1 misses.
            ("Q3", "Support"),
            ("Q1", "Sales"),
            ("Q3", "Billing"),
            ("Q2", "Support"),
        ];
        let expected: Vec<(String, String)> = rows
            .iter()
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect();
        assert_eq!(numbered_as(&rows), expected);
    }
}
