//! Checks a batch against the request it answers: the right stream, at most `max_records`
//! records, every record inside the window and well-formed. The host runs this on every
//! batch it receives; the conformance kit runs it too, so both judge a connector alike.

use crate::{
    AgentStatus, ContactEvent, Extra, QueueInterval, ReadBatch, ReadRequest, Records, TimeWindow,
    UtcMillis,
};
use abi_stable::std_types::ROption;
use std::fmt;

/// One thing wrong with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The index of the offending record in the batch, if it is about one record.
    pub record: Option<usize>,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.record {
            Some(index) => write!(f, "record {index}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// At most this many violations are collected per batch: enough to diagnose, bounded.
const MAX_VIOLATIONS: usize = 20;

/// Every violation in `batch` as an answer to `request` (empty when the batch is valid).
pub fn check_batch(request: &ReadRequest, batch: &ReadBatch) -> Vec<Violation> {
    let mut violations = Violations::default();
    if batch.records.stream() != request.stream {
        violations.batch(format!(
            "batch holds {} records but {} was requested",
            batch.records.stream(),
            request.stream
        ));
        return violations.0;
    }
    let n_records = batch.records.len();
    if n_records > request.max_records as usize {
        violations.batch(format!(
            "batch holds {n_records} records but max_records was {}",
            request.max_records
        ));
    }
    if let ROption::RSome(cursor) = &batch.next_cursor {
        if request.cursor.as_ref() == ROption::RSome(cursor) {
            violations.batch(format!(
                "cursor did not advance: the batch returned the cursor it was given ({cursor:?})"
            ));
        }
    }
    check_delivery(request, batch, &mut violations);
    let window = request.window.into_option();
    match &batch.records {
        Records::QueueIntervals(records) => {
            for (index, record) in records.iter().enumerate() {
                check_queue_interval(record, window, &mut violations.at(index));
            }
        }
        Records::ContactEvents(records) => {
            for (index, record) in records.iter().enumerate() {
                check_contact_event(record, window, &mut violations.at(index));
            }
        }
        Records::AgentStatuses(records) => {
            for (index, record) in records.iter().enumerate() {
                check_agent_status(record, window, &mut violations.at(index));
            }
        }
    }
    violations.0
}

/// The rules of [`crate::Delivery`]: holding is for incremental reads, holds nothing
/// committed, and never ends a read.
fn check_delivery(request: &ReadRequest, batch: &ReadBatch, violations: &mut Violations) {
    let delivery = batch.delivery;
    if delivery.name().is_none() {
        violations.batch(format!(
            "{delivery} is not a delivery this host knows (send, hold or discard)"
        ));
        return;
    }
    if delivery != crate::Delivery::SEND && request.window.is_some() {
        violations.batch(format!(
            "a batch of a windowed read cannot {delivery}: only incremental reads hold records"
        ));
    }
    if delivery == crate::Delivery::HOLD {
        if batch.state.is_some() {
            violations.batch(
                "a held batch carries a state: what is held is not committed, so the state belongs to the batch that ends the hold".to_string(),
            );
        }
        if batch.next_cursor.is_none() {
            violations.batch(
                "a held batch has no next cursor: a read cannot end holding records; end the hold with a send or discard batch".to_string(),
            );
        }
    }
}

#[derive(Default)]
struct Violations(Vec<Violation>);

impl Violations {
    fn batch(&mut self, message: String) {
        self.push(None, message);
    }

    fn push(&mut self, record: Option<usize>, message: String) {
        if self.0.len() < MAX_VIOLATIONS {
            self.0.push(Violation { record, message });
        }
    }

    fn at(&mut self, index: usize) -> RecordViolations<'_> {
        RecordViolations {
            violations: self,
            index,
        }
    }
}

struct RecordViolations<'a> {
    violations: &'a mut Violations,
    index: usize,
}

impl RecordViolations<'_> {
    fn push(&mut self, message: String) {
        self.violations.push(Some(self.index), message);
    }

    fn non_empty(&mut self, field: &str, value: &str) {
        // Not `trim()`: this runs for every record, and identifiers rarely start with a space.
        if value.bytes().all(|byte| byte.is_ascii_whitespace()) {
            self.push(format!("{field} is empty"));
        }
    }

    fn in_window(&mut self, field: &str, instant: UtcMillis, window: Option<TimeWindow>) {
        if let Some(window) = window {
            if !window.contains(instant) {
                self.push(format!("{field} {instant} is outside the window {window}"));
            }
        }
    }

    fn seconds(&mut self, field: &str, value: f64) {
        if !value.is_finite() || value < 0.0 {
            self.push(format!(
                "{field} must be a finite number of seconds >= 0, found {value}"
            ));
        }
    }

    fn channel(&mut self, channel: crate::Channel) {
        if channel.name().is_none() {
            self.push(format!(
                "channel {channel} is not one this host knows ({})",
                crate::Channel::known_names().join(", ")
            ));
        }
    }

    fn extras(&mut self, extras: &[Extra]) {
        for (index, extra) in extras.iter().enumerate() {
            if extras[..index]
                .iter()
                .any(|earlier| earlier.name == extra.name)
            {
                self.push(format!("extra {} appears twice", extra.name));
            }
            if extra.name.bytes().all(|byte| byte.is_ascii_whitespace()) {
                self.push("an extra has an empty name".to_string());
            }
            if !extra.value.is_finite() {
                self.push(format!(
                    "extra {} must be finite, found {}",
                    extra.name, extra.value
                ));
            }
        }
    }
}

fn check_queue_interval(
    record: &QueueInterval,
    window: Option<TimeWindow>,
    violations: &mut RecordViolations<'_>,
) {
    violations.non_empty("queue_id", &record.queue_id);
    violations.channel(record.channel);
    violations.in_window("interval start", record.start, window);
    if record.interval_minutes == 0 || 1440 % record.interval_minutes != 0 {
        violations.push(format!(
            "interval_minutes must divide a day (15, 30, 60, ...), found {}",
            record.interval_minutes
        ));
    }
    if record.start.0 % 60_000 != 0 {
        violations.push(format!(
            "interval start {} is not on a whole minute",
            record.start
        ));
    }
    violations.seconds("handle_time_secs", record.handle_time_secs);
    violations.extras(&record.extras);
}

fn check_contact_event(
    record: &ContactEvent,
    window: Option<TimeWindow>,
    violations: &mut RecordViolations<'_>,
) {
    violations.non_empty("queue_id", &record.queue_id);
    violations.channel(record.channel);
    violations.in_window("timestamp", record.timestamp, window);
    violations.seconds("duration_secs", record.duration_secs);
}

fn check_agent_status(
    record: &AgentStatus,
    window: Option<TimeWindow>,
    violations: &mut RecordViolations<'_>,
) {
    violations.non_empty("agent_id", &record.agent_id);
    violations.non_empty("activity_id", &record.activity_id);
    violations.in_window("start", record.start, window);
    if let Some(end) = record.end.into_option() {
        if end < record.start {
            violations.push(format!("end {end} is before start {}", record.start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Channel, QueueInterval, RVec, StreamKind};

    fn interval(channel: Channel, extras: Vec<Extra>) -> QueueInterval {
        QueueInterval {
            queue_id: "Q1".into(),
            queue_name: "Sales".into(),
            channel,
            start: UtcMillis(0),
            interval_minutes: 15,
            offered: 1,
            handled: 1,
            abandoned: 0,
            handle_time_secs: 60.0,
            extras: RVec::from(extras),
        }
    }

    fn violations(record: QueueInterval) -> Vec<String> {
        let request = ReadRequest::windowed(
            StreamKind::PHONELINK_INTERVALS,
            TimeWindow::new(UtcMillis(0), UtcMillis(900_000)),
            10,
        );
        let batch = ReadBatch::last(Records::QueueIntervals(RVec::from(vec![record])));
        check_batch(&request, &batch)
            .into_iter()
            .map(|violation| violation.to_string())
            .collect()
    }

    #[test]
    fn unknown_channels_and_repeated_extras_are_violations() {
        assert!(violations(interval(
            Channel::CALLS,
            vec![Extra::fixed("hold_secs", 1.0)]
        ))
        .is_empty());
        assert_eq!(
            violations(interval(Channel(42), Vec::new())),
            ["record 0: channel channel(42) is not one this host knows (calls, chats, emails, social_media, documents, cases)"]
        );
        assert_eq!(
            violations(interval(
                Channel::CALLS,
                vec![
                    Extra::fixed("hold_secs", 1.0),
                    Extra::named("hold_secs", 2.0)
                ]
            )),
            ["record 0: extra hold_secs appears twice"]
        );
    }
}

#[cfg(test)]
mod delivery_tests {
    use super::*;
    use crate::{Delivery, RString, RVec, StreamKind};

    fn messages(request: &ReadRequest, batch: &ReadBatch) -> Vec<String> {
        check_batch(request, batch)
            .into_iter()
            .map(|violation| violation.to_string())
            .collect()
    }

    fn batch(delivery: Delivery, state: bool, cursor: bool) -> ReadBatch {
        let mut batch = ReadBatch::last(Records::QueueIntervals(RVec::new()));
        batch.delivery = delivery;
        batch.state = state.then(|| RVec::from(b"s".to_vec())).into();
        batch.next_cursor = cursor.then(|| RString::from("c")).into();
        batch
    }

    #[test]
    fn holding_is_for_incremental_reads_without_state_and_never_ends_a_read() {
        let incremental = ReadRequest::incremental(StreamKind::PHONELINK_INTERVALS, None, 10);
        let windowed = ReadRequest::windowed(
            StreamKind::PHONELINK_INTERVALS,
            TimeWindow::new(UtcMillis(0), UtcMillis(900_000)),
            10,
        );
        for (delivery, state, cursor) in [
            (Delivery::SEND, true, false),
            (Delivery::SEND, false, true),
            (Delivery::HOLD, false, true),
            (Delivery::DISCARD, true, true),
            (Delivery::DISCARD, true, false),
        ] {
            let batch = batch(delivery, state, cursor);
            assert_eq!(
                messages(&incremental, &batch),
                Vec::<String>::new(),
                "{delivery}"
            );
        }
        let held_state = messages(&incremental, &batch(Delivery::HOLD, true, true));
        assert_eq!(held_state.len(), 1);
        assert!(held_state[0].contains("a held batch carries a state"));
        let held_last = messages(&incremental, &batch(Delivery::HOLD, false, false));
        assert_eq!(held_last.len(), 1);
        assert!(held_last[0].contains("a read cannot end holding records"));
        for delivery in [Delivery::HOLD, Delivery::DISCARD] {
            let found = messages(&windowed, &batch(delivery, false, true));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].contains(&format!("windowed read cannot {delivery}")));
        }
        let unknown = messages(&incremental, &batch(Delivery(7), false, true));
        assert_eq!(
            unknown,
            ["delivery 7 is not a delivery this host knows (send, hold or discard)"]
        );
    }
}
