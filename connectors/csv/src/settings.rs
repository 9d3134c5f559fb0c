//! What an operator writes in `[connector.settings]` (the raw, validating half of the
//! two-stage configuration), and the resolved form the reader uses.

use crate::format::{DateFormat, Encoding, TimeFormat};
use acdlink_connector_api::{
    time::{DstPolicy, MissingHour, RepeatedHour},
    Channel, ConnectorError,
};
use serde::{de, Deserialize, Deserializer};
use std::{fmt, path::PathBuf};

/// The whole `[connector.settings]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// PhoneLink files: intervals or contacts.
    #[serde(default)]
    pub phonelink: Option<PhoneLinkSettings>,
    /// TimeLink files: agent statuses.
    #[serde(default)]
    pub timelink: Option<TimeLinkSettings>,
    /// Where imported files go with `after_import = "move"` (default: `archive/` inside each
    /// import folder).
    #[serde(default)]
    pub archive_dir: Option<PathBuf>,
    /// Where failed files and reports go (default: `error/` inside each import folder).
    #[serde(default)]
    pub error_dir: Option<PathBuf>,
    #[serde(default)]
    pub after_import: AfterImport,
    #[serde(default)]
    pub on_bad_row: OnBadRow,
    /// A file is picked up only once it has not been modified for this long.
    #[serde(default = "default_settle_secs")]
    pub settle_secs: u64,
    #[serde(default)]
    pub repeated_hour: RepeatedHourSetting,
    #[serde(default)]
    pub missing_hour: MissingHourSetting,
}

fn default_settle_secs() -> u64 {
    10
}

/// What happens to a file once the host has committed its records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterImport {
    Keep,
    #[default]
    Move,
    Delete,
}

/// What a bad row does to its file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBadRow {
    /// Nothing of the file is imported; it goes to the error folder with a report.
    #[default]
    RejectFile,
    /// The good rows are imported; every bad row is reported.
    SkipRow,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepeatedHourSetting {
    #[default]
    Earlier,
    Later,
    Reject,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingHourSetting {
    #[default]
    ShiftForward,
    Reject,
}

impl Settings {
    pub fn dst_policy(&self) -> DstPolicy {
        DstPolicy {
            repeated: match self.repeated_hour {
                RepeatedHourSetting::Earlier => RepeatedHour::Earlier,
                RepeatedHourSetting::Later => RepeatedHour::Later,
                RepeatedHourSetting::Reject => RepeatedHour::Reject,
            },
            missing: match self.missing_hour {
                MissingHourSetting::ShiftForward => MissingHour::ShiftForward,
                MissingHourSetting::Reject => MissingHour::Reject,
            },
        }
    }
}

/// The PhoneLink layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhoneLinkLayout {
    /// One row per queue and interval.
    Intervals,
    /// One row per contact.
    Contacts,
}

/// What contact rows become.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContactsAs {
    /// Summed into intervals of `interval_minutes`.
    #[default]
    Intervals,
    /// Sent one by one as contact events.
    Events,
}

/// What the handle time column of an interval row holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandleTime {
    /// The total of the interval.
    #[default]
    Total,
    /// The average per handled contact (multiplied by handled).
    Average,
}

/// How durations (handle time, contact duration, status duration) are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum DurationFormat {
    /// Seconds, possibly with a fraction.
    #[default]
    #[serde(rename = "secs")]
    Secs,
    /// `hh:mm:ss` (hours may exceed 24) or `mm:ss`.
    #[serde(rename = "hh:mm:ss")]
    Clock,
}

/// What an empty numeric cell means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingValues {
    /// Zero.
    #[default]
    Zero,
    /// No data: a row whose value cells are all empty yields no record; a row with only
    /// some of them empty is a bad row.
    NoData,
}

/// How the TimeLink rows give a status's time span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpanType {
    StartEnd,
    StartDuration,
    /// The next row of the same agent ends the previous one; logoff activities end the
    /// chain.
    StartOnly,
}

/// A column, by header name (a string) or by position (a number, 1 = first column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnRef {
    Name(String),
    Index(usize),
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnRef::Name(name) => write!(f, "`{name}`"),
            ColumnRef::Index(index) => write!(f, "{index}"),
        }
    }
}

impl<'de> Deserialize<'de> for ColumnRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ColumnRef, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ColumnRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header name (string) or a column number starting at 1")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ColumnRef, E> {
                if value.trim().is_empty() {
                    return Err(E::invalid_value(de::Unexpected::Str(value), &self));
                }
                Ok(ColumnRef::Name(value.trim().to_string()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ColumnRef, E> {
                match usize::try_from(value) {
                    Ok(index) if index >= 1 => Ok(ColumnRef::Index(index)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(value), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ColumnRef, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(value), &self)),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The file format, shared by both streams: `[connector.settings.<stream>.format]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatSettings {
    /// `,`, `;`, `\t` (or `tab`), `|`.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// The quote character; `""` for no quoting.
    #[serde(default = "default_quote")]
    pub quote: String,
    /// Lines before the header (or the first row) to skip.
    #[serde(default)]
    pub skip_lines: usize,
    /// Whether the first line after `skip_lines` names the columns.
    #[serde(default = "default_true")]
    pub header: bool,
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Numbers with a decimal comma (`12,5`).
    #[serde(default)]
    pub decimal_comma: bool,
    /// Skip rows whose cells are all empty.
    #[serde(default = "default_true")]
    pub skip_empty_rows: bool,
    /// Skip rows that contain any of these strings (e.g. `Total`).
    #[serde(default)]
    pub skip_rows_containing: Vec<String>,
    #[serde(default)]
    pub missing_values: MissingValues,
    /// Format of a column holding date and time, or `unix` (seconds since the epoch).
    #[serde(default)]
    pub timestamp_format: Option<String>,
    /// Format of a date column, e.g. `DD.MM.YYYY`.
    #[serde(default)]
    pub date_format: Option<String>,
    /// Format of a time column, e.g. `hh:mm[:ss]`.
    #[serde(default)]
    pub time_format: Option<String>,
    #[serde(default)]
    pub duration_format: DurationFormat,
}

impl Default for FormatSettings {
    fn default() -> Self {
        FormatSettings {
            separator: default_separator(),
            quote: default_quote(),
            skip_lines: 0,
            header: true,
            encoding: default_encoding(),
            decimal_comma: false,
            skip_empty_rows: true,
            skip_rows_containing: Vec::new(),
            missing_values: MissingValues::Zero,
            timestamp_format: None,
            date_format: None,
            time_format: None,
            duration_format: DurationFormat::Secs,
        }
    }
}

fn default_separator() -> String {
    ",".to_string()
}

fn default_quote() -> String {
    "\"".to_string()
}

fn default_encoding() -> String {
    "utf-8".to_string()
}

fn default_true() -> bool {
    true
}

/// `[connector.settings.phonelink]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneLinkSettings {
    pub import_dir: PathBuf,
    pub layout: PhoneLinkLayout,
    #[serde(default)]
    pub contacts_as: ContactsAs,
    #[serde(default = "default_interval_minutes")]
    pub interval_minutes: u32,
    #[serde(default)]
    pub handle_time: HandleTime,
    /// The channel of every row, unless `columns.channel` is set.
    #[serde(default = "default_channel")]
    pub channel: String,
    #[serde(default)]
    pub format: FormatSettings,
    pub columns: PhoneLinkColumns,
}

/// 15 minutes, like the host's `interval_minutes` default: a file of quarter hours read with
/// the defaults must not be rejected as misaligned.
fn default_interval_minutes() -> u32 {
    15
}

fn default_channel() -> String {
    "calls".to_string()
}

/// `[connector.settings.phonelink.columns]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneLinkColumns {
    pub queue: ColumnRef,
    #[serde(default)]
    pub queue_name: Option<ColumnRef>,
    #[serde(default)]
    pub channel: Option<ColumnRef>,
    #[serde(default)]
    pub timestamp: Option<ColumnRef>,
    #[serde(default)]
    pub date: Option<ColumnRef>,
    #[serde(default)]
    pub time: Option<ColumnRef>,
    // Interval layout.
    #[serde(default)]
    pub offered: Option<ColumnRef>,
    /// Intervals: the number handled; contacts: whether the contact was handled (1/0,
    /// true/false, yes/no, y/n).
    #[serde(default)]
    pub handled: Option<ColumnRef>,
    #[serde(default)]
    pub abandoned: Option<ColumnRef>,
    #[serde(default)]
    pub handle_time: Option<ColumnRef>,
    // Contact layout.
    #[serde(default)]
    pub duration: Option<ColumnRef>,
    #[serde(default)]
    pub contact_id: Option<ColumnRef>,
}

/// `[connector.settings.timelink]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeLinkSettings {
    pub import_dir: PathBuf,
    pub span: SpanType,
    /// Activities that end an agent's chain (`span = "start-only"`).
    #[serde(default)]
    pub logoff_activities: Vec<String>,
    #[serde(default)]
    pub format: FormatSettings,
    pub columns: TimeLinkColumns,
}

/// `[connector.settings.timelink.columns]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeLinkColumns {
    pub agent: ColumnRef,
    pub activity: ColumnRef,
    #[serde(default)]
    pub activity_name: Option<ColumnRef>,
    #[serde(default)]
    pub start: Option<ColumnRef>,
    #[serde(default)]
    pub start_date: Option<ColumnRef>,
    #[serde(default)]
    pub start_time: Option<ColumnRef>,
    #[serde(default)]
    pub end: Option<ColumnRef>,
    #[serde(default)]
    pub end_date: Option<ColumnRef>,
    #[serde(default)]
    pub end_time: Option<ColumnRef>,
    #[serde(default)]
    pub duration: Option<ColumnRef>,
}

/// The resolved format: separator and quote as bytes, formats parsed.
#[derive(Clone, Debug)]
pub struct Format {
    pub separator: u8,
    pub quote: Option<u8>,
    pub skip_lines: usize,
    pub header: bool,
    pub encoding: Encoding,
    pub decimal_comma: bool,
    pub skip_empty_rows: bool,
    /// Already encoded in the file's encoding, so rows are matched as bytes.
    pub skip_rows_containing: Vec<Vec<u8>>,
    pub missing_values: MissingValues,
    pub timestamp_format: Option<DateFormat>,
    pub date_format: Option<DateFormat>,
    pub time_format: Option<TimeFormat>,
    pub duration_format: DurationFormat,
}

pub fn config_error(key: &str, expected: &str, found: impl fmt::Display) -> ConnectorError {
    ConnectorError::config(format!(
        "invalid setting `{key}`: expected {expected}, found {found}"
    ))
}

impl FormatSettings {
    /// Resolves the format of stream `prefix` (`phonelink` or `timelink`).
    pub fn resolve(&self, prefix: &str) -> Result<Format, ConnectorError> {
        let key = |name: &str| format!("{prefix}.format.{name}");
        let separator = match self.separator.as_str() {
            "," => b',',
            ";" => b';',
            "\t" | "tab" => b'\t',
            "|" => b'|',
            other => {
                return Err(config_error(
                    &key("separator"),
                    "one of \",\", \";\", \"\\t\" (or \"tab\"), \"|\"",
                    format!("{other:?}"),
                ))
            }
        };
        let quote = match self.quote.as_bytes() {
            [] => None,
            [byte] if byte.is_ascii() && *byte != separator => Some(*byte),
            _ => {
                return Err(config_error(
                    &key("quote"),
                    "one ASCII character other than the separator, or \"\" for none",
                    format!("{:?}", self.quote),
                ))
            }
        };
        let encoding = Encoding::from_name(&self.encoding).ok_or_else(|| {
            config_error(
                &key("encoding"),
                "one of utf-8, windows-1252, iso-8859-1, iso-8859-9",
                format!("{:?}", self.encoding),
            )
        })?;
        let mut skip_rows_containing = Vec::new();
        for text in &self.skip_rows_containing {
            if text.is_empty() {
                return Err(config_error(
                    &key("skip_rows_containing"),
                    "non-empty strings",
                    "\"\"",
                ));
            }
            let bytes = encoding.encode(text).ok_or_else(|| {
                config_error(
                    &key("skip_rows_containing"),
                    &format!("strings that {} can write", encoding.name()),
                    format!("{text:?}"),
                )
            })?;
            skip_rows_containing.push(bytes);
        }
        // Each format setting parsed by its parser; the error names the key.
        let parse_format = |name: &str,
                            text: &Option<String>,
                            parse: fn(&str) -> Result<DateFormat, String>|
         -> Result<Option<DateFormat>, ConnectorError> {
            text.as_deref()
                .map(|text| {
                    parse(text)
                        .map_err(|reason| config_error(&key(name), &reason, format!("{text:?}")))
                })
                .transpose()
        };
        let timestamp_format = parse_format("timestamp_format", &self.timestamp_format, |text| {
            DateFormat::parse(text, true)
        })?;
        let date_format = parse_format("date_format", &self.date_format, |text| {
            DateFormat::parse(text, false)
        })?;
        let time_format = parse_format("time_format", &self.time_format, DateFormat::parse_time)?;
        Ok(Format {
            separator,
            quote,
            skip_lines: self.skip_lines,
            header: self.header,
            encoding,
            decimal_comma: self.decimal_comma,
            skip_empty_rows: self.skip_empty_rows,
            skip_rows_containing,
            missing_values: self.missing_values,
            timestamp_format,
            date_format,
            time_format,
            duration_format: self.duration_format,
        })
    }
}

pub fn parse_channel(key: &str, name: &str) -> Result<Channel, ConnectorError> {
    Channel::from_name(name).ok_or_else(|| {
        config_error(
            key,
            &format!("one of {}", Channel::known_names().join(", ")),
            format!("{name:?}"),
        )
    })
}
