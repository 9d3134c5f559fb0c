//! The TimeLink stream of the demo: agents on shifts moving through login, available,
//! on-call, after-call work, breaks and lunch, and logout.
//!
//! An agent's statuses of one local day are a pure function of (seed, agent, day): the day
//! is generated whole and the statuses starting inside the window are yielded. A logout
//! lasts until the agent's next login.

use crate::{
    model::{mix, unit, Model},
    parse_cursor,
    phonelink::batch,
};
use acdlink_connector_api::{
    AgentStatus, ConnectorError, ROption, ReadBatch, Records, TimeWindow, UtcMillis,
};
use jiff::{
    civil::{Date, Weekday},
    ToSpan,
};

/// An activity of the simulated ACD.
pub struct Activity {
    pub id: &'static str,
    pub name: &'static str,
}

const LOGIN: usize = 0;
const AVAILABLE: usize = 1;
const ON_CALL: usize = 2;
const AFTER_CALL_WORK: usize = 3;
const BREAK: usize = 4;
const LUNCH: usize = 5;
const MEETING: usize = 6;
const LOGOUT: usize = 7;

/// Every activity the demo ACD knows, as `discover` lists them.
pub const ACTIVITIES: [Activity; 8] = [
    Activity {
        id: "LOGIN",
        name: "Login",
    },
    Activity {
        id: "AVAIL",
        name: "Available",
    },
    Activity {
        id: "ACD",
        name: "On call",
    },
    Activity {
        id: "ACW",
        name: "After-call work",
    },
    Activity {
        id: "AUX-1",
        name: "Break",
    },
    Activity {
        id: "AUX-2",
        name: "Lunch",
    },
    Activity {
        id: "AUX-3",
        name: "Meeting",
    },
    Activity {
        id: "LOGOUT",
        name: "Logged out",
    },
];

/// The agent identifier the demo uses for agent number `agent` (0-based).
pub fn agent_id(agent: u32) -> String {
    format!("agent{:04}@demo.example", agent + 1)
}

/// One generated status: activity index, start and end in UTC milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    activity: usize,
    start: i64,
    end: i64,
}

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const SHIFT_MS: i64 = 8 * 60 * MINUTE + 30 * MINUTE;

/// Whether `agent` works on `date`: four in five agents work Monday to Friday, the rest
/// Wednesday to Sunday.
fn works(agent: u32, date: Date) -> bool {
    let weekend_crew = agent.is_multiple_of(5);
    match date.weekday() {
        Weekday::Saturday | Weekday::Sunday => weekend_crew,
        Weekday::Monday | Weekday::Tuesday => !weekend_crew,
        _ => true,
    }
}

/// The day number used as a hash input.
fn day_number(date: Date) -> u64 {
    let days = date
        .since(Date::constant(1970, 1, 1))
        .map(|span| span.get_days())
        .unwrap_or(0);
    i64::from(days) as u64
}

/// The UTC start of `agent`'s shift on `date`: staggered from 07:00 local in half hours.
fn shift_start(model: &Model, agent: u32, date: Date) -> Result<i64, ConnectorError> {
    let jitter_minutes = (unit(mix(&[
        model.settings.seed,
        30,
        u64::from(agent),
        day_number(date),
    ])) * 10.0) as i64;
    let local = date.at(7, 0, 0, 0) + ((i64::from(agent % 8) * 30) + jitter_minutes).minutes();
    Ok(model.zone.to_utc(local)?.0)
}

/// The next login of `agent` after `date`, within a week.
fn next_shift_start(model: &Model, agent: u32, date: Date) -> Result<i64, ConnectorError> {
    let mut next = date;
    for _ in 0..7 {
        next = next
            .tomorrow()
            .map_err(|error| ConnectorError::internal(format!("date after {next}: {error}")))?;
        if works(agent, next) {
            return shift_start(model, agent, next);
        }
    }
    Err(ConnectorError::internal(format!(
        "agent {agent} never works after {date}"
    )))
}

/// A small deterministic generator for the durations of one agent's day.
struct Durations(u64);

impl Durations {
    /// A duration between `low` and `high` milliseconds, in whole seconds (as ACDs log).
    fn between(&mut self, low: i64, high: i64) -> i64 {
        self.0 = mix(&[self.0]);
        (low + (unit(self.0) * (high - low) as f64) as i64) / SECOND * SECOND
    }
}

/// All statuses of `agent` starting on local `date`, in order.
fn day_spans(model: &Model, agent: u32, date: Date) -> Result<Vec<Span>, ConnectorError> {
    if !works(agent, date) {
        return Ok(Vec::new());
    }
    let start = shift_start(model, agent, date)?;
    let end = start + SHIFT_MS;
    let mut durations = Durations(mix(&[
        model.settings.seed,
        31,
        u64::from(agent),
        day_number(date),
    ]));
    let mut pauses = vec![
        (BREAK, start + 2 * 60 * MINUTE, 15 * MINUTE),
        (LUNCH, start + 4 * 60 * MINUTE, 30 * MINUTE),
        (BREAK, start + 6 * 60 * MINUTE + 30 * MINUTE, 15 * MINUTE),
    ];
    if date.weekday() == Weekday::Wednesday && agent.is_multiple_of(3) {
        pauses.insert(0, (MEETING, start + 60 * MINUTE, 45 * MINUTE));
    }
    let mut pauses = pauses.into_iter().peekable();
    let mut spans = Vec::with_capacity(256);
    let mut now = start;
    let mut push = |activity: usize, from: i64, to: i64| {
        spans.push(Span {
            activity,
            start: from,
            end: to,
        })
    };
    let login_end = start + durations.between(30 * SECOND, 3 * MINUTE);
    push(LOGIN, start, login_end);
    now = now.max(login_end);
    // The work cycle: available, on a call, after-call work; pauses interrupt it.
    let cycle = [
        (AVAILABLE, 5 * SECOND, 150 * SECOND),
        (ON_CALL, 45 * SECOND, 600 * SECOND),
        (AFTER_CALL_WORK, 5 * SECOND, 90 * SECOND),
    ];
    let mut step = 0;
    while now < end {
        if let Some(&(activity, pause_start, length)) = pauses.peek() {
            if now >= pause_start {
                push(activity, now, (now + length).min(end));
                now += length;
                pauses.next();
                step = 0;
                continue;
            }
        }
        let (activity, low, high) = cycle[step % cycle.len()];
        let boundary = pauses
            .peek()
            .map_or(end, |&(_, pause_start, _)| pause_start.min(end));
        let until = (now + durations.between(low, high))
            .min(boundary)
            .max(now + SECOND);
        push(activity, now, until);
        now = until;
        step += 1;
    }
    push(LOGOUT, now, next_shift_start(model, agent, date)?);
    Ok(spans)
}

/// Agent statuses starting in the window, ordered by local day, agent and start. Cursor:
/// `day offset:agent:status index within the day`.
pub(crate) fn read_statuses(
    model: &Model,
    window: TimeWindow,
    cursor: Option<&str>,
    max_records: usize,
) -> Result<ReadBatch, ConnectorError> {
    let first_day = model.zone.to_local(window.from)?.date();
    let last_day = model.zone.to_local(UtcMillis(window.to.0 - 1))?.date();
    let [day_offset, agent, index] = match cursor {
        Some(cursor) => parse_cursor::<3>(cursor)?,
        None => [0, 0, 0],
    };
    let n_agents = model.settings.agents;
    let mut day = first_day
        .checked_add((day_offset as i64).days())
        .map_err(|error| ConnectorError::internal(format!("demo cursor day: {error}")))?;
    let (mut day_offset, mut agent, mut index) = (day_offset, agent as u32, index as usize);
    let mut records = Vec::with_capacity(max_records.min(65_536));
    'days: while window.from < window.to && day <= last_day {
        while agent < n_agents {
            let spans = day_spans(model, agent, day)?;
            while index < spans.len() {
                let span = spans[index];
                if window.contains(UtcMillis(span.start)) {
                    if records.len() == max_records {
                        break 'days;
                    }
                    records.push(status_record(agent, span));
                }
                index += 1;
            }
            index = 0;
            agent += 1;
        }
        agent = 0;
        day_offset += 1;
        day = match day.tomorrow() {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    let more = window.from < window.to && day <= last_day;
    let next_cursor = more.then(|| format!("{day_offset}:{agent}:{index}"));
    Ok(batch(Records::AgentStatuses(records.into()), next_cursor))
}

fn status_record(agent: u32, span: Span) -> AgentStatus {
    let activity = &ACTIVITIES[span.activity];
    AgentStatus {
        agent_id: agent_id(agent).into(),
        activity_id: activity.id.into(),
        activity_name: ROption::RSome(activity.name.into()),
        start: UtcMillis(span.start),
        end: ROption::RSome(UtcMillis(span.end)),
    }
}
