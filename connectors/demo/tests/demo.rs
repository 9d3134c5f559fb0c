//! The demo connector held to the conformance kit, and to what makes its data realistic.

use acdlink_connector_api::{
    conformance,
    sdk::{module_for, OpenContext},
    time::SourceTimeZone,
    AgentStatus, ConnectorBox, ContactEvent, QueueInterval, ReadRequest, Records, StreamKind,
    TimeWindow, UtcMillis,
};
use acdlink_connector_demo::DemoConnector;
use serde_json::json;
use std::collections::BTreeMap;

fn at(text: &str) -> UtcMillis {
    UtcMillis::from(text.parse::<jiff::Timestamp>().expect("test timestamp"))
}

fn window(from: &str, to: &str) -> TimeWindow {
    TimeWindow::new(at(from), at(to))
}

fn open(settings: serde_json::Value, timezone: &str) -> ConnectorBox {
    let context =
        OpenContext::new("test", SourceTimeZone::new(timezone).expect("a known zone")).to_json();
    (module_for::<DemoConnector>().open())(
        settings.to_string().as_str().into(),
        context.as_str().into(),
    )
    .into_result()
    .expect("demo opens")
}

fn read_all(settings: serde_json::Value, stream: StreamKind, window: TimeWindow) -> Records {
    let timezone = settings["timezone"].as_str().unwrap_or("UTC").to_string();
    let mut settings = settings;
    if let Some(object) = settings.as_object_mut() {
        object.remove("timezone");
    }
    let mut connector = open(settings, &timezone);
    let mut request = ReadRequest::windowed(stream, window, 4096);
    let mut all: Option<Records> = None;
    loop {
        let batch = connector.read(&request).into_result().expect("demo reads");
        match (&mut all, batch.records) {
            (None, records) => all = Some(records),
            (Some(Records::QueueIntervals(all)), Records::QueueIntervals(more)) => all.extend(more),
            (Some(Records::ContactEvents(all)), Records::ContactEvents(more)) => all.extend(more),
            (Some(Records::AgentStatuses(all)), Records::AgentStatuses(more)) => all.extend(more),
            _ => panic!("batches of different streams"),
        }
        match batch.next_cursor.into_option() {
            Some(cursor) => request.cursor = Some(cursor).into(),
            None => return all.expect("at least one batch"),
        }
    }
}

fn intervals(settings: serde_json::Value, window: TimeWindow) -> Vec<QueueInterval> {
    match read_all(settings, StreamKind::PHONELINK_INTERVALS, window) {
        Records::QueueIntervals(records) => records.into_vec(),
        other => panic!("expected queue intervals, found {:?}", other.stream()),
    }
}

fn contacts(settings: serde_json::Value, window: TimeWindow) -> Vec<ContactEvent> {
    match read_all(settings, StreamKind::PHONELINK_CONTACTS, window) {
        Records::ContactEvents(records) => records.into_vec(),
        other => panic!("expected contact events, found {:?}", other.stream()),
    }
}

fn statuses(settings: serde_json::Value, window: TimeWindow) -> Vec<AgentStatus> {
    match read_all(settings, StreamKind::TIMELINK, window) {
        Records::AgentStatuses(records) => records.into_vec(),
        other => panic!("expected agent statuses, found {:?}", other.stream()),
    }
}

#[test]
fn passes_the_conformance_kit_across_a_dst_change() {
    // 2024-10-27 is the autumn DST change in Europe/Berlin.
    let report = conformance::Conformance::new(
        &json!({ "queues": 3, "agents": 6, "daily_volume": 300 }),
        window("2024-10-26T00:00:00Z", "2024-10-28T00:00:00Z"),
    )
    .timezone(SourceTimeZone::new("Europe/Berlin").unwrap())
    .run::<DemoConnector>()
    .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.kind, "demo");
    assert_eq!(report.streams.len(), 3);
    let intervals = &report.streams[0];
    assert_eq!(intervals.n_records, 3 * 96 * 2);
    assert!(
        intervals.n_pages > 10,
        "paging was exercised: {intervals:?}"
    );
    assert!(
        report.streams.iter().all(|stream| stream.n_records > 0),
        "{report:?}"
    );
}

#[test]
fn contacts_add_up_to_their_intervals() {
    let settings = json!({ "queues": 4, "daily_volume": 400 });
    let day = window("2024-03-04T00:00:00Z", "2024-03-05T00:00:00Z");
    let mut from_contacts: BTreeMap<(String, i64), (u32, u32)> = BTreeMap::new();
    for contact in contacts(settings.clone(), day) {
        let interval_start = contact.timestamp.0 / 900_000 * 900_000;
        let entry = from_contacts
            .entry((contact.queue_id.to_string(), interval_start))
            .or_default();
        entry.0 += 1;
        entry.1 += u32::from(contact.handled);
    }
    let intervals = intervals(settings, day);
    assert_eq!(intervals.len(), 4 * 96);
    let mut n_offered = 0;
    for interval in &intervals {
        let counted = from_contacts
            .get(&(interval.queue_id.to_string(), interval.start.0))
            .copied()
            .unwrap_or_default();
        assert_eq!(
            counted,
            (interval.offered, interval.handled),
            "{interval:?}"
        );
        assert_eq!(interval.offered, interval.handled + interval.abandoned);
        n_offered += interval.offered;
    }
    // Four queues of average size 1 around 400 contacts each on a Monday.
    assert!((1000..3000).contains(&n_offered), "offered {n_offered}");
}

#[test]
fn volumes_follow_the_daily_and_weekly_curves() {
    let settings = json!({ "queues": 10, "timezone": "America/New_York" });
    let offered_between = |from: &str, to: &str| -> u32 {
        intervals(settings.clone(), window(from, to))
            .iter()
            .map(|interval| interval.offered)
            .sum()
    };
    // 10:00-12:00 and 03:00-05:00 New York time on Monday 2024-03-04 (UTC-5).
    let late_morning = offered_between("2024-03-04T15:00:00Z", "2024-03-04T17:00:00Z");
    let night = offered_between("2024-03-04T08:00:00Z", "2024-03-04T10:00:00Z");
    assert!(
        late_morning > 10 * night.max(1),
        "late morning {late_morning}, night {night}"
    );
    let monday = offered_between("2024-03-04T05:00:00Z", "2024-03-05T05:00:00Z");
    let sunday = offered_between("2024-03-03T05:00:00Z", "2024-03-04T05:00:00Z");
    assert!(monday > 4 * sunday, "monday {monday}, sunday {sunday}");
}

#[test]
fn agents_move_through_every_activity_without_gaps() {
    let day = window("2024-03-06T00:00:00Z", "2024-03-07T00:00:00Z");
    let statuses = statuses(json!({ "agents": 12 }), day);
    let mut by_agent: BTreeMap<String, Vec<&AgentStatus>> = BTreeMap::new();
    for status in &statuses {
        by_agent
            .entry(status.agent_id.to_string())
            .or_default()
            .push(status);
    }
    assert_eq!(by_agent.len(), 12, "everyone works on a Wednesday");
    for (agent, spans) in &by_agent {
        assert_eq!(
            spans.first().map(|s| s.activity_id.as_str()),
            Some("LOGIN"),
            "{agent}"
        );
        assert_eq!(
            spans.last().map(|s| s.activity_id.as_str()),
            Some("LOGOUT"),
            "{agent}"
        );
        for pair in spans.windows(2) {
            assert_eq!(
                pair[0].end.into_option(),
                Some(pair[1].start),
                "{agent}: {pair:?}"
            );
        }
        let activities: std::collections::BTreeSet<&str> =
            spans.iter().map(|s| s.activity_id.as_str()).collect();
        for expected in ["LOGIN", "AVAIL", "ACD", "ACW", "AUX-1", "AUX-2", "LOGOUT"] {
            assert!(activities.contains(expected), "{agent} never in {expected}");
        }
    }
}

#[test]
fn the_seed_decides_the_numbers() {
    let day = window("2024-03-04T00:00:00Z", "2024-03-05T00:00:00Z");
    let first = intervals(json!({ "seed": 7 }), day);
    assert_eq!(first, intervals(json!({ "seed": 7 }), day));
    assert_ne!(first, intervals(json!({ "seed": 8 }), day));
}

#[test]
fn bad_settings_name_the_key() {
    let context = OpenContext::new("test", SourceTimeZone::utc()).to_json();
    let open = |settings: serde_json::Value| {
        (module_for::<DemoConnector>().open())(
            settings.to_string().as_str().into(),
            context.as_str().into(),
        )
        .into_result()
        .err()
        .expect("settings are refused")
        .message
        .to_string()
    };
    assert_eq!(
        open(json!({ "queues": "many" })),
        "invalid setting `queues`: invalid type: string \"many\", expected u32"
    );
    assert!(open(json!({ "queue": 3 })).contains("unknown field `queue`"));
    assert_eq!(
        open(json!({ "interval_minutes": 20 })),
        "invalid setting `interval_minutes`: expected 15, 30 or 60, found 20"
    );
    assert!(open(json!({ "timezone": "Europe/Berlin" })).contains("unknown field `timezone`"));
    let bad_zone = (module_for::<DemoConnector>().open())(
        "{}".into(),
        r#"{"timezone":"Europe/Hamburg"}"#.into(),
    )
    .into_result()
    .err()
    .expect("an unknown time zone is refused");
    assert!(
        bad_zone
            .message
            .contains("unknown time zone `Europe/Hamburg`"),
        "{bad_zone}"
    );
}

#[test]
fn contacts_of_a_window_that_is_not_aligned_stay_inside_it() {
    // 10:07 to 11:53: the intervals at 10:00 and 11:45 are cut by the window's ends.
    let report = conformance::Conformance::new(
        &json!({ "queues": 2, "agents": 1 }),
        window("2024-03-04T10:07:00Z", "2024-03-04T11:53:00Z"),
    )
    .run::<DemoConnector>();
    // Queue intervals start inside the window only if aligned; the contacts must simply
    // lie inside it, which the kit checks for every record.
    let report = report.unwrap_or_else(|failure| panic!("{failure}"));
    assert!(report
        .streams
        .iter()
        .any(|stream| stream.stream == StreamKind::PHONELINK_CONTACTS && stream.n_records > 0));
    let unaligned = contacts(
        json!({ "queues": 2 }),
        window("2024-03-04T10:07:00Z", "2024-03-04T11:53:00Z"),
    );
    let aligned = contacts(
        json!({ "queues": 2 }),
        window("2024-03-04T10:00:00Z", "2024-03-04T12:00:00Z"),
    );
    let inside: Vec<&ContactEvent> = aligned
        .iter()
        .filter(|contact| {
            contact.timestamp >= at("2024-03-04T10:07:00Z")
                && contact.timestamp < at("2024-03-04T11:53:00Z")
        })
        .collect();
    assert_eq!(
        unaligned.len(),
        inside.len(),
        "exactly the contacts whose time is in the window"
    );
}
