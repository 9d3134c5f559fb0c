//! Turning the source's local times into UTC, DST-correct, the same way in every connector.
//!
//! Sources write local wall-clock times. Twice a year those are not a simple function of
//! UTC, and [`SourceTimeZone`] applies one written-down policy:
//!
//! - **The repeated autumn hour** (e.g. 02:00–03:00 on the last Sunday of October in
//!   Europe/Berlin happens twice). A local time in it is ambiguous. Default
//!   [`RepeatedHour::Earlier`]: it is the first occurrence (still summer time). A source
//!   that writes both occurrences with the same labels cannot be told apart by the time
//!   alone; such a connector should use a DST flag or UTC offset column
//!   ([`SourceTimeZone::to_utc_with_offset`]) or choose [`RepeatedHour::Reject`] to report
//!   those rows instead of merging them.
//! - **The missing spring hour** (e.g. 02:00–03:00 on the last Sunday of March in
//!   Europe/Berlin does not exist). A local time in it can only come from a source that
//!   ignores DST. Default [`MissingHour::ShiftForward`]: it is read with the offset before
//!   the change, i.e. moved forward by the length of the gap (02:30 becomes 03:30 summer
//!   time). This is what RFC 5545, java.time and jiff call "compatible".
//!   [`MissingHour::Reject`] reports those times as bad data instead.
//!
//! Besides IANA names (`Europe/Berlin`), a zone may be `UTC` or a fixed offset such as
//! `+02:00`, `-08:00` or `+05:30`, which never changes with the seasons.

use crate::{ConnectorError, UtcMillis};
use jiff::{
    civil::{Date, DateTime},
    tz::{AmbiguousOffset, Offset, TimeZone},
};

/// What a local time in the repeated autumn hour means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RepeatedHour {
    /// The first occurrence (summer time). The default.
    #[default]
    Earlier,
    /// The second occurrence (winter time).
    Later,
    /// An error: the connector reports the time as bad data.
    Reject,
}

/// What a local time in the missing spring hour means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingHour {
    /// Moved forward by the length of the gap. The default.
    #[default]
    ShiftForward,
    /// An error: the connector reports the time as bad data.
    Reject,
}

/// The DST policy of a [`SourceTimeZone`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DstPolicy {
    pub repeated: RepeatedHour,
    pub missing: MissingHour,
}

/// The time zone a source writes its local times in.
#[derive(Clone, Debug)]
pub struct SourceTimeZone {
    name: String,
    zone: TimeZone,
    policy: DstPolicy,
}

impl SourceTimeZone {
    /// Looks up an IANA zone name, `UTC`, or a fixed offset (`+02:00`). The error is a
    /// configuration error that names what was given.
    pub fn new(name: &str) -> Result<SourceTimeZone, ConnectorError> {
        let zone = match parse_fixed_offset(name) {
            Some(offset) => TimeZone::fixed(offset),
            None => TimeZone::get(name).map_err(|error| {
                ConnectorError::config(format!(
                    "unknown time zone `{name}`: expected an IANA name such as Europe/Berlin, UTC, or an offset such as +02:00 ({error})"
                ))
            })?,
        };
        Ok(SourceTimeZone {
            name: name.to_string(),
            zone,
            policy: DstPolicy::default(),
        })
    }

    /// UTC: no conversion at all.
    pub fn utc() -> SourceTimeZone {
        SourceTimeZone {
            name: "UTC".to_string(),
            zone: TimeZone::UTC,
            policy: DstPolicy::default(),
        }
    }

    /// The same zone with another DST policy.
    pub fn with_policy(mut self, policy: DstPolicy) -> SourceTimeZone {
        self.policy = policy;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn policy(&self) -> DstPolicy {
        self.policy
    }

    /// The UTC instant of a local wall-clock time, applying the DST policy.
    pub fn to_utc(&self, local: DateTime) -> Result<UtcMillis, ConnectorError> {
        let ambiguous = self.zone.to_ambiguous_timestamp(local);
        let offset = match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset } => offset,
            AmbiguousOffset::Fold { before, after } => match self.policy.repeated {
                RepeatedHour::Earlier => before,
                RepeatedHour::Later => after,
                RepeatedHour::Reject => {
                    return Err(ConnectorError::source_data(format!(
                        "local time {local} is ambiguous in {}: it happens twice (at UTC offsets {before} and {after}) and the policy rejects such times",
                        self.name
                    )))
                }
            },
            AmbiguousOffset::Gap { before, after } => match self.policy.missing {
                MissingHour::ShiftForward => before,
                MissingHour::Reject => {
                    return Err(ConnectorError::source_data(format!(
                        "local time {local} does not exist in {}: the clocks jump from UTC offset {before} to {after} and the policy rejects such times",
                        self.name
                    )))
                }
            },
        };
        self.instant_at(local, offset)
    }

    /// The UTC instant of a local time whose UTC offset the source wrote down itself (the
    /// unambiguous case: no policy needed).
    pub fn to_utc_with_offset(
        &self,
        local: DateTime,
        offset_secs: i32,
    ) -> Result<UtcMillis, ConnectorError> {
        let offset = Offset::from_seconds(offset_secs).map_err(|error| {
            ConnectorError::source_data(format!("invalid UTC offset {offset_secs} s: {error}"))
        })?;
        self.instant_at(local, offset)
    }

    /// The local wall-clock time of a UTC instant.
    pub fn to_local(&self, instant: UtcMillis) -> Result<DateTime, ConnectorError> {
        let timestamp = instant.to_timestamp().ok_or_else(|| {
            ConnectorError::internal(format!("instant {} ms is out of range", instant.0))
        })?;
        Ok(self.zone.to_datetime(timestamp))
    }

    /// The first instant of a local calendar day (midnight, or the first time after a gap
    /// where a zone's DST change happens at midnight).
    pub fn start_of_day(&self, date: Date) -> Result<UtcMillis, ConnectorError> {
        let zoned = date
            .to_zoned(self.zone.clone())
            .map_err(|error| ConnectorError::internal(format!("start of day {date}: {error}")))?;
        Ok(UtcMillis::from(zoned.timestamp()))
    }

    fn instant_at(&self, local: DateTime, offset: Offset) -> Result<UtcMillis, ConnectorError> {
        offset
            .to_timestamp(local)
            .map(UtcMillis::from)
            .map_err(|error| {
                ConnectorError::source_data(format!("local time {local} is out of range: {error}"))
            })
    }
}

/// Parses `+HH:MM`, `-HH:MM`, `+HH` or `-HH`.
fn parse_fixed_offset(text: &str) -> Option<Offset> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = &text[1..];
    let (hours, minutes) = match rest.split_once(':') {
        Some((hours, minutes)) => (hours, minutes),
        None => (rest, "0"),
    };
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if !(0..=18).contains(&hours) || !(0..60).contains(&minutes) {
        return None;
    }
    Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn utc(text: &str) -> UtcMillis {
        UtcMillis::from(text.parse::<jiff::Timestamp>().expect("test timestamp"))
    }

    #[test]
    fn berlin_autumn_repeated_hour_follows_the_policy() {
        let local = date(2024, 10, 27).at(2, 30, 0, 0);
        let berlin = SourceTimeZone::new("Europe/Berlin").unwrap();
        assert_eq!(berlin.to_utc(local).unwrap(), utc("2024-10-27T00:30:00Z"));
        let later = berlin.clone().with_policy(DstPolicy {
            repeated: RepeatedHour::Later,
            ..DstPolicy::default()
        });
        assert_eq!(later.to_utc(local).unwrap(), utc("2024-10-27T01:30:00Z"));
        let strict = berlin.with_policy(DstPolicy {
            repeated: RepeatedHour::Reject,
            ..DstPolicy::default()
        });
        let error = strict.to_utc(local).unwrap_err();
        assert!(error.message.contains("ambiguous"), "{error}");
    }

    #[test]
    fn berlin_spring_missing_hour_shifts_forward_or_is_rejected() {
        let local = date(2024, 3, 31).at(2, 30, 0, 0);
        let berlin = SourceTimeZone::new("Europe/Berlin").unwrap();
        // 02:30 does not exist; read with the winter offset it is 01:30 UTC = 03:30 CEST.
        assert_eq!(berlin.to_utc(local).unwrap(), utc("2024-03-31T01:30:00Z"));
        let strict = berlin.with_policy(DstPolicy {
            missing: MissingHour::Reject,
            ..DstPolicy::default()
        });
        assert!(strict
            .to_utc(local)
            .unwrap_err()
            .message
            .contains("does not exist"));
    }

    #[test]
    fn new_york_days_have_23_and_25_hours() {
        let new_york = SourceTimeZone::new("America/New_York").unwrap();
        let length = |day: Date| {
            let start = new_york.start_of_day(day).unwrap();
            let end = new_york.start_of_day(day.tomorrow().unwrap()).unwrap();
            (end.0 - start.0) / 3_600_000
        };
        assert_eq!(length(date(2024, 3, 10)), 23);
        assert_eq!(length(date(2024, 11, 3)), 25);
        assert_eq!(length(date(2024, 7, 4)), 24);
    }

    #[test]
    fn fixed_offsets_and_unknown_names() {
        let india = SourceTimeZone::new("+05:30").unwrap();
        let local = date(2024, 1, 1).at(5, 30, 0, 0);
        assert_eq!(india.to_utc(local).unwrap(), utc("2024-01-01T00:00:00Z"));
        let error = SourceTimeZone::new("Mars/Olympus").unwrap_err();
        assert_eq!(error.kind, crate::ErrorKind::CONFIG);
        assert!(error.message.contains("Mars/Olympus"), "{error}");
    }

    #[test]
    fn to_local_round_trips() {
        let berlin = SourceTimeZone::new("Europe/Berlin").unwrap();
        let instant = utc("2024-07-01T10:00:00Z");
        let local = berlin.to_local(instant).unwrap();
        assert_eq!(local, date(2024, 7, 1).at(12, 0, 0, 0));
        assert_eq!(berlin.to_utc(local).unwrap(), instant);
    }
}
