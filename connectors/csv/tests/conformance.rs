//! The CSV connector held to acdlink's conformance kit, through the same FFI entry points
//! the host uses, with files in every stream's import folder.

mod common;

use acdlink_connector_api::{
    conformance::Conformance, time::SourceTimeZone, StreamKind, TimeWindow, UtcMillis,
};
use acdlink_connector_csv::CsvConnector;
use common::Folder;
use serde_json::json;

/// The `phonelink` settings for the columns of `intervals_basic.csv` in `folder`.
fn intervals(folder: &Folder) -> serde_json::Value {
    json!({
        "import_dir": folder.import_dir, "layout": "intervals",
        "format": { "timestamp_format": "YYYY-MM-DD hh:mm" },
        "columns": {
            "queue": "queue", "queue_name": "name", "timestamp": "start",
            "offered": "offered", "handled": "handled", "abandoned": "abandoned",
            "handle_time": "handle_time"
        }
    })
}

#[test]
fn conforms_with_intervals_and_start_only_statuses_in_small_pages() {
    let phonelink = Folder::new();
    phonelink.drop_fixture("intervals_basic.csv", "a.csv");
    phonelink.drop_fixture("intervals_quoted.csv", "b.csv");
    let timelink = Folder::new();
    timelink.drop_fixture("statuses_start_only_1.csv", "1.csv");
    let settings = json!({
        "settle_secs": 0,
        // The kit reads every stream several times from the start: keep the files.
        "after_import": "keep",
        "phonelink": intervals(&phonelink),
        "timelink": {
            "import_dir": timelink.import_dir, "span": "start-only",
            "logoff_activities": ["LOGOUT"],
            "format": { "timestamp_format": "YYYY-MM-DD hh:mm:ss" },
            "columns": { "agent": "agent", "activity": "activity", "start": "start" }
        }
    });
    // Incremental streams have no window; the kit needs one for its windowed checks.
    let window = TimeWindow::new(UtcMillis(0), UtcMillis(1));
    let report = Conformance::new(&settings, window)
        .timezone(SourceTimeZone::new("Europe/Berlin").expect("a known zone"))
        .max_records(2)
        .run::<CsvConnector>()
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.kind, "csv");
    let n_records = |stream: StreamKind| {
        report
            .streams
            .iter()
            .find(|checked| checked.stream == stream)
            .map(|checked| checked.n_records)
    };
    assert_eq!(n_records(StreamKind::PHONELINK_INTERVALS), Some(6));
    // Contacts as events are not configured: declared, and empty.
    assert_eq!(n_records(StreamKind::PHONELINK_CONTACTS), Some(0));
    assert_eq!(n_records(StreamKind::TIMELINK), Some(3));
}

#[test]
fn conforms_when_pages_of_a_file_are_held_and_then_discarded() {
    // The oldest file has more good rows than fit in one block of encoded records, so
    // pages of it are held, and then a bad row: its records are discarded, and only the
    // second file's go out. A crash during the hold must yield the held batch again.
    let phonelink = Folder::new();
    let mut text = String::from("queue,name,start,offered,handled,abandoned,handle_time\n");
    for queue in 0..4000 {
        text.push_str(&format!(
            "Q{queue},Queue {queue},2024-03-04 08:00,1,1,0,0\n"
        ));
    }
    text.push_str("Q1,Sales,2024-03-04 08:30,many,1,0,0\n");
    std::fs::write(phonelink.path("a-bad.csv"), text).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(phonelink.path("a-bad.csv"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    phonelink.drop_fixture("intervals_basic.csv", "b.csv");
    let settings = json!({
        "settle_secs": 0,
        "after_import": "keep",
        "phonelink": intervals(&phonelink)
    });
    let window = TimeWindow::new(UtcMillis(0), UtcMillis(1));
    let report = Conformance::new(&settings, window)
        .max_records(1000)
        .run::<CsvConnector>()
        .unwrap_or_else(|failure| panic!("{failure}"));
    let intervals = report
        .streams
        .iter()
        .find(|checked| checked.stream == StreamKind::PHONELINK_INTERVALS)
        .expect("intervals checked");
    assert_eq!(intervals.n_records, 3);
    assert_eq!(
        phonelink.names("error"),
        ["a-bad.csv", "a-bad.csv.error.txt"]
    );
}
