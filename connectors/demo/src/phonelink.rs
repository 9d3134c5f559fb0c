//! The PhoneLink streams of the demo: queue intervals, and the same volumes one contact at a
//! time. Both derive every number from [`interval_numbers`], so the contacts of a queue and
//! interval add up to that interval's record.

use crate::{
    model::{derive, mix, round_whole, signed, unit, Model},
    parse_cursor,
};
use acdlink_connector_api::{
    ConnectorError, ContactEvent, Extra, QueueInterval, ROption, RVec, ReadBatch, Records,
    TimeWindow, UtcMillis,
};

/// The numbers of one queue in one interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntervalNumbers {
    pub offered: u32,
    pub handled: u32,
    pub abandoned: u32,
    /// Average handle time of this interval's handled contacts, seconds.
    pub handle_secs: f64,
}

/// The interval indices (start = index × length) whose start lies in `window`.
fn interval_range(window: TimeWindow, length_ms: i64) -> (i64, i64) {
    let first =
        window.from.0.div_euclid(length_ms) + i64::from(window.from.0.rem_euclid(length_ms) != 0);
    let end = window.to.0.div_euclid(length_ms) + i64::from(window.to.0.rem_euclid(length_ms) != 0);
    (first, end.max(first))
}

/// The hash every number of one queue and interval is drawn from.
fn record_key(model: &Model, queue: usize, interval: i64) -> u64 {
    mix(&[model.settings.seed, queue as u64, interval as u64])
}

pub(crate) fn interval_numbers(
    model: &Model,
    queue: usize,
    interval: i64,
    load: f64,
) -> IntervalNumbers {
    let queue_model = &model.queues[queue];
    let base = record_key(model, queue, interval);
    let key = |salt: u64| derive(base, salt);
    let expected = load * queue_model.size;
    let offered = round_whole((expected * (1.0 + 0.25 * signed(key(10)))).max(0.0)) as u32;
    let handled_rate = queue_model.handled_rate - 0.06 * unit(key(11));
    let handled = (round_whole(f64::from(offered) * handled_rate) as u32).min(offered);
    let offered_with_corrections = offered + queue_model.correction;
    IntervalNumbers {
        offered: offered_with_corrections,
        handled,
        abandoned: offered_with_corrections - handled,
        handle_secs: queue_model.handle_secs * (1.0 + 0.12 * signed(key(12))),
    }
}

fn interval_record(model: &Model, queue: usize, interval: i64, load: f64) -> QueueInterval {
    let numbers = interval_numbers(model, queue, interval, load);
    let queue_model = &model.queues[queue];
    let handled = f64::from(numbers.handled);
    let base = record_key(model, queue, interval);
    let key = |salt: u64| derive(base, salt);
    let minutes = model.settings.interval_minutes;
    QueueInterval {
        queue_id: queue_model.id.as_str().into(),
        queue_name: queue_model.name.as_str().into(),
        channel: queue_model.channel,
        start: UtcMillis(interval * UtcMillis::minutes(i64::from(minutes))),
        interval_minutes: minutes,
        offered: numbers.offered,
        handled: numbers.handled,
        abandoned: numbers.abandoned,
        handle_time_secs: round_whole(handled * numbers.handle_secs),
        extras: RVec::from(vec![
            Extra::fixed(
                Extra::AFTER_CALL_WORK_SECS,
                round_whole(handled * (20.0 + 15.0 * unit(key(13)))),
            ),
            Extra::fixed(
                Extra::HOLD_SECS,
                round_whole(handled * 14.0 * unit(key(14))),
            ),
            Extra::fixed(
                Extra::ANSWERED_IN_SERVICE_LEVEL,
                round_whole(handled * (0.65 + 0.3 * unit(key(15)))),
            ),
        ]),
    }
}

/// Queue intervals, ordered by interval then queue. Cursor: `interval offset:queue`.
pub(crate) fn read_intervals(
    model: &Model,
    window: TimeWindow,
    cursor: Option<&str>,
    max_records: usize,
) -> Result<ReadBatch, ConnectorError> {
    let length_ms = UtcMillis::minutes(i64::from(model.settings.interval_minutes));
    let (first, end) = interval_range(window, length_ms);
    let n_queues = model.queues.len();
    let [offset, mut queue] = match cursor {
        Some(cursor) => parse_cursor::<2>(cursor)?,
        None => [0, 0],
    };
    let mut interval = first + offset as i64;
    let mut queue_index = queue as usize;
    let mut records = Vec::with_capacity(max_records.min(65_536));
    while interval < end && records.len() < max_records {
        let load = model.interval_load(UtcMillis(interval * length_ms))?;
        while queue_index < n_queues && records.len() < max_records {
            records.push(interval_record(model, queue_index, interval, load));
            queue_index += 1;
        }
        if queue_index == n_queues {
            queue_index = 0;
            interval += 1;
        }
    }
    queue = queue_index as u64;
    let next_cursor = (interval < end).then(|| format!("{}:{queue}", interval - first));
    Ok(batch(Records::QueueIntervals(records.into()), next_cursor))
}

/// Contact events, ordered by interval, queue and contact. Cursor:
/// `interval offset:queue:contact`.
pub(crate) fn read_contacts(
    model: &Model,
    window: TimeWindow,
    cursor: Option<&str>,
    max_records: usize,
) -> Result<ReadBatch, ConnectorError> {
    let minutes = i64::from(model.settings.interval_minutes);
    let length_ms = UtcMillis::minutes(minutes);
    // Contacts belong to the window by their own timestamp, so the intervals that overlap
    // the window are read, including one that starts before it.
    let (first, end) = interval_range(window, length_ms);
    let first = if window.from.0.rem_euclid(length_ms) != 0 {
        first - 1
    } else {
        first
    };
    let n_queues = model.queues.len();
    let [offset, queue, contact] = match cursor {
        Some(cursor) => parse_cursor::<3>(cursor)?,
        None => [0, 0, 0],
    };
    let (mut interval, mut queue_index, mut contact) =
        (first + offset as i64, queue as usize, contact as u32);
    let mut records = Vec::with_capacity(max_records.min(65_536));
    'intervals: while interval < end {
        let start = interval * length_ms;
        let load = model.interval_load(UtcMillis(start))?;
        while queue_index < n_queues {
            let numbers = interval_numbers(model, queue_index, interval, load);
            let queue_model = &model.queues[queue_index];
            while contact < numbers.offered {
                if records.len() == max_records {
                    break 'intervals;
                }
                let contact_key = derive(
                    record_key(model, queue_index, interval),
                    u64::from(contact) + 1000,
                );
                let key = |salt: u64| derive(contact_key, salt);
                let handled = contact < numbers.handled;
                let offset_ms = (unit(key(20)) * length_ms as f64) as i64;
                let timestamp = UtcMillis(start + offset_ms / 1000 * 1000);
                if !window.contains(timestamp) {
                    contact += 1;
                    continue;
                }
                records.push(ContactEvent {
                    queue_id: queue_model.id.as_str().into(),
                    queue_name: queue_model.name.as_str().into(),
                    channel: queue_model.channel,
                    timestamp,
                    offered: true,
                    handled,
                    duration_secs: if handled {
                        round_whole(numbers.handle_secs * (0.3 + 1.4 * unit(key(21))))
                    } else {
                        0.0
                    },
                    contact_id: ROption::RSome(
                        format!("{}-{}-{contact}", queue_model.id, start / 1000).into(),
                    ),
                });
                contact += 1;
            }
            contact = 0;
            queue_index += 1;
        }
        queue_index = 0;
        interval += 1;
    }
    let next_cursor =
        (interval < end).then(|| format!("{}:{queue_index}:{contact}", interval - first));
    Ok(batch(Records::ContactEvents(records.into()), next_cursor))
}

pub(crate) fn batch(records: Records, next_cursor: Option<String>) -> ReadBatch {
    let mut batch = ReadBatch::last(records);
    batch.next_cursor = next_cursor.map(Into::into).into();
    batch
}
