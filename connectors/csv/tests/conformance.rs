//! The CSV connector held to acdlink's conformance kit, through the same FFI entry points
//! the host uses, with files in every stream's import folder.

mod common;

use acdlink_connector_api::{
    conformance::Conformance, time::SourceTimeZone, StreamKind, TimeWindow, UtcMillis,
};
use acdlink_connector_csv::CsvConnector;
use common::Folder;
use serde_json::json;

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
        "phonelink": {
            "import_dir": phonelink.import_dir, "layout": "intervals",
            "format": { "timestamp_format": "YYYY-MM-DD hh:mm" },
            "columns": {
                "queue": "queue", "queue_name": "name", "timestamp": "start",
                "offered": "offered", "handled": "handled", "abandoned": "abandoned",
                "handle_time": "handle_time"
            }
        },
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
