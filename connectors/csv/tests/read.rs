//! The CSV connector over fixture files: every layout and format option, the nasty files
//! real systems write, bad input, and the file life cycle (checksum, commit, archive,
//! error folder, restart).

mod common;

use acdlink_connector_api::{sdk::Connector, Delivery, ErrorKind, RString, StreamKind};
use acdlink_connector_csv::CsvConnector;
use common::{fixture, interval_lines, open, read_all, read_with_crashes, status_lines, Folder};
use serde_json::{json, Value};

const INTERVALS: StreamKind = StreamKind::PHONELINK_INTERVALS;

/// Settings for `intervals_basic.csv`-shaped files.
fn basic_settings(folder: &Folder) -> Value {
    json!({
        "settle_secs": 0,
        "phonelink": {
            "import_dir": folder.import_dir,
            "layout": "intervals", "interval_minutes": 30,
            "format": { "timestamp_format": "YYYY-MM-DD hh:mm" },
            "columns": {
                "queue": "queue", "queue_name": "name", "timestamp": "start",
                "offered": "offered", "handled": "handled", "abandoned": "abandoned",
                "handle_time": "handle_time"
            }
        }
    })
}

fn with(mut settings: Value, path: &[&str], value: Value) -> Value {
    let mut target = &mut settings;
    for key in &path[..path.len() - 1] {
        target = &mut target[*key];
    }
    target[path[path.len() - 1]] = value;
    settings
}

#[test]
fn interval_rows_become_records_and_the_file_is_archived_only_on_commit() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "calls.csv");
    let mut connector = open(&basic_settings(&folder), "Europe/Berlin").unwrap();
    let uncommitted = read_all(&mut connector, INTERVALS, None, 1000, false).unwrap();
    assert_eq!(
        interval_lines(&uncommitted.records),
        [
            "Q1|Sales|calls|2024-03-04T07:00:00Z|30|10|9|1|1800.0",
            "Q2|Support|calls|2024-03-04T07:00:00Z|30|5|5|0|600.5",
            "Q1|Sales|calls|2024-03-04T07:30:00Z|30|12|10|2|2000.0",
        ]
    );
    // Read but not committed: the file is where it was.
    assert_eq!(folder.names(""), ["calls.csv"]);
    connector
        .commit(uncommitted.state.as_deref().unwrap())
        .unwrap();
    assert_eq!(folder.names(""), Vec::<String>::new());
    assert_eq!(folder.names("archive"), ["calls.csv"]);
    assert_eq!(
        std::fs::read(folder.path("archive/calls.csv")).unwrap(),
        std::fs::read(fixture("intervals_basic.csv")).unwrap()
    );
}

fn excel_settings(folder: &Folder, encoding: &str) -> Value {
    json!({
        "settle_secs": 0,
        "phonelink": {
            "import_dir": folder.import_dir,
            "layout": "intervals", "interval_minutes": 30,
            "interval_minutes": 15,
            "handle_time": "average",
            "format": {
                "separator": ";", "encoding": encoding, "date_format": "DD.MM.YYYY",
                "time_format": "hh:mm[:ss]", "duration_format": "hh:mm:ss"
            },
            "columns": {
                "queue": "Warteschlange", "date": "Datum", "time": "Uhrzeit",
                "offered": "Angeboten", "handled": "Bearbeitet", "abandoned": "Verloren",
                "handle_time": "AHT"
            }
        }
    })
}

#[test]
fn excel_utf8_with_bom_and_windows_1252_give_the_same_umlaut_queues() {
    let expected = [
        "Störung|Störung|calls|2024-03-04T07:00:00Z|15|10|8|2|1440.0",
        "Bürokratie|Bürokratie|calls|2024-03-04T07:00:00Z|15|4|4|0|360.0",
        "Straße|Straße|calls|2024-03-04T07:15:00Z|15|1|1|0|45.0",
    ];
    for (fixture_name, encoding) in [
        ("intervals_excel_utf8_bom.csv", "utf-8"),
        ("intervals_excel_1252.csv", "windows-1252"),
    ] {
        let folder = Folder::new();
        folder.drop_fixture(fixture_name, "export.csv");
        let mut connector = open(&excel_settings(&folder, encoding), "Europe/Berlin").unwrap();
        let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
        assert_eq!(interval_lines(&result.records), expected, "{fixture_name}");
        assert!(result.rejects.is_empty(), "{:?}", result.rejects);
    }
}

#[test]
fn windows_1252_read_as_utf8_is_a_bad_row_naming_the_column() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_excel_1252.csv", "export.csv");
    let mut connector = open(&excel_settings(&folder, "utf-8"), "Europe/Berlin").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert!(result.records.is_empty());
    let report = std::fs::read_to_string(folder.path("error/export.csv.error.txt")).unwrap();
    assert!(
        report.contains(
            "line 2, column 1 (Warteschlange): found \"St\u{fffd}rung\", expected text in utf-8"
        ),
        "{report}"
    );
}

/// Settings for the Windows-1252, semicolon, decimal-comma fixtures.
fn decimal_comma_settings(folder: &Folder) -> Value {
    json!({
        "settle_secs": 0,
        "phonelink": {
            "import_dir": folder.import_dir, "layout": "intervals", "interval_minutes": 30,
            "format": {
                "separator": ";", "encoding": "windows-1252", "decimal_comma": true,
                "timestamp_format": "YYYY-MM-DD hh:mm"
            },
            "columns": {
                "queue": "Queue", "timestamp": "Start", "offered": "Offered",
                "handled": "Handled", "abandoned": "Abandoned", "handle_time": "HandleTime"
            }
        }
    })
}

#[test]
fn decimal_comma_with_semicolons_in_windows_1252() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_decimal_comma_1252.csv", "a.csv");
    let settings = decimal_comma_settings(&folder);
    let mut connector = open(&settings, "UTC").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert_eq!(
        interval_lines(&result.records),
        [
            "Größe|Größe|calls|2024-03-04T08:00:00Z|30|3|3|0|123.5",
            "Größe|Größe|calls|2024-03-04T08:30:00Z|30|2|1|1|60.25",
        ]
    );
}

#[test]
fn quoted_separators_line_breaks_crlf_and_trailing_empty_lines() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_quoted.csv", "q.csv");
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert_eq!(
        interval_lines(&result.records),
        [
            "Q1|Sales, North|calls|2024-03-04T08:00:00Z|30|10|9|1|1800.0",
            "Q2|Support\r\nsecond line|calls|2024-03-04T08:00:00Z|30|5|5|0|600.0",
            "Q3|He said \"hi\"|calls|2024-03-04T08:00:00Z|30|1|1|0|60.0",
        ]
    );
    assert!(result.rejects.is_empty());
    assert_eq!(folder.names("archive"), ["q.csv"]);
}

#[test]
fn a_truncated_last_line_rejects_the_file_into_the_error_folder_untouched() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_truncated.csv", "cut.csv");
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let uncommitted = read_all(&mut connector, INTERVALS, None, 1000, false).unwrap();
    assert!(
        uncommitted.records.is_empty(),
        "nothing of a rejected file is read"
    );
    // Not moved before commit.
    assert_eq!(folder.names(""), ["cut.csv"]);
    connector
        .commit(uncommitted.state.as_deref().unwrap())
        .unwrap();
    assert_eq!(folder.names(""), Vec::<String>::new());
    assert_eq!(folder.names("error"), ["cut.csv", "cut.csv.error.txt"]);
    assert_eq!(
        std::fs::read(folder.path("error/cut.csv")).unwrap(),
        std::fs::read(fixture("intervals_truncated.csv")).unwrap()
    );
    let report = std::fs::read_to_string(folder.path("error/cut.csv.error.txt")).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "file: cut.csv");
    let content = std::fs::read(fixture("intervals_truncated.csv")).unwrap();
    let checksum = xxhash_rust::xxh3::xxh3_128(&content);
    assert_eq!(lines[1], format!("xxh128: {checksum:032x}"), "{report}");
    assert_eq!(
        lines[2],
        "result: rejected, nothing imported: 1 bad row(s) (on_bad_row = \"reject-file\")"
    );
    assert_eq!(
        lines[4],
        "line 4, column 5 (handled): found \"\", expected at least 7 columns, found 4 (is the line truncated?)"
    );
    // The next read does not look at it again.
    let again = read_all(&mut connector, INTERVALS, uncommitted.state, 1000, true).unwrap();
    assert!(again.records.is_empty());
}

#[test]
fn a_bad_value_rejects_the_whole_file_by_default() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_bad_value.csv", "bad.csv");
    folder.drop_fixture("intervals_basic.csv", "good.csv");
    // Make the bad file the older one, so it is read first.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(folder.path("bad.csv"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    // Pages of one record: the rejection must happen before the first page of the file.
    let result = read_all(&mut connector, INTERVALS, None, 1, true).unwrap();
    assert_eq!(result.records.len(), 3, "only good.csv is read");
    assert!(result
        .records
        .iter()
        .all(|record| record["offered"] != json!(5) || record["queue_id"] == json!("Q2")));
    assert_eq!(folder.names("error"), ["bad.csv", "bad.csv.error.txt"]);
    assert_eq!(folder.names("archive"), ["good.csv"]);
    let report = std::fs::read_to_string(folder.path("error/bad.csv.error.txt")).unwrap();
    assert!(
        report
            .contains("line 4, column 4 (offered): found \"twelve\", expected a whole number >= 0"),
        "{report}"
    );
}

#[test]
fn skip_row_imports_the_good_rows_and_reports_each_bad_one() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_bad_value.csv", "bad.csv");
    let settings = with(basic_settings(&folder), &["on_bad_row"], json!("skip-row"));
    let mut connector = open(&settings, "UTC").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 2, true).unwrap();
    assert_eq!(
        interval_lines(&result.records),
        [
            "Q1|Sales|calls|2024-03-04T08:00:00Z|30|10|9|1|1800.0",
            "Q2|Support|calls|2024-03-04T08:00:00Z|30|5|5|0|600.0",
            "Q2|Support|calls|2024-03-04T08:30:00Z|30|5|5|0|600.0",
        ]
    );
    assert_eq!(
        result.rejects,
        ["bad.csv:4:4 (offered): found \"twelve\", expected a whole number >= 0"]
    );
    assert_eq!(folder.names("archive"), ["bad.csv"]);
    let report = std::fs::read_to_string(folder.path("error/bad.csv.rejects.txt")).unwrap();
    assert!(
        report.contains("result: imported without 1 bad row(s)"),
        "{report}"
    );
    assert!(
        report.contains("line 4, column 4 (offered): found \"twelve\""),
        "{report}"
    );
}

#[test]
fn skip_row_lists_the_first_thousand_bad_rows_and_counts_the_rest() {
    let folder = Folder::new();
    let mut text = String::from("queue,name,start,offered,handled,abandoned,handle_time\n");
    text.push_str("Q1,Sales,2024-03-04 08:00,10,9,1,1800\n");
    for _ in 0..1003 {
        text.push_str("Q1,Sales,2024-03-04 08:30,twelve,10,2,2000\n");
    }
    text.push_str("Q2,Support,2024-03-04 08:30,5,5,0,600\n");
    std::fs::write(folder.import_dir.join("many.csv"), text).unwrap();
    let settings = with(basic_settings(&folder), &["on_bad_row"], json!("skip-row"));
    let mut connector = open(&settings, "UTC").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1, true).unwrap();
    assert_eq!(
        result.records.len(),
        2,
        "the good rows, across pages of one"
    );
    assert_eq!(
        result.rejects.len(),
        1001,
        "each listed row, and one for the rest"
    );
    assert_eq!(
        result.rejects[0],
        "many.csv:3:4 (offered): found \"twelve\", expected a whole number >= 0"
    );
    assert_eq!(
        result.rejects[1000],
        "many.csv: 3 more bad row(s), counted in the file's report"
    );
    let report = std::fs::read_to_string(folder.path("error/many.csv.rejects.txt")).unwrap();
    assert!(
        report.contains("result: imported without 1003 bad row(s)"),
        "{report}"
    );
}

#[test]
fn a_missing_header_column_rejects_the_file_naming_the_column() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "a.csv");
    let settings = with(
        basic_settings(&folder),
        &["phonelink", "columns", "offered"],
        json!("Angeboten"),
    );
    let mut connector = open(&settings, "UTC").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert!(result.records.is_empty());
    let report = std::fs::read_to_string(folder.path("error/a.csv.error.txt")).unwrap();
    assert!(
        report.contains("line 1 (header): expected a column named `Angeboten` in the header, found only `queue`, `name`, `start`, `offered`, `handled`, `abandoned`, `handle_time`"),
        "{report}"
    );
}

fn dst_settings(folder: &Folder) -> Value {
    json!({
        "settle_secs": 0,
        "phonelink": {
            "import_dir": folder.import_dir, "layout": "intervals", "interval_minutes": 30,
            "format": { "timestamp_format": "YYYY-MM-DD hh:mm" },
            "columns": { "queue": "queue", "timestamp": "start", "offered": "offered", "handled": "handled" }
        }
    })
}

#[test]
fn berlin_dst_days_map_local_interval_starts_to_utc() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_berlin_dst.csv", "dst.csv");
    let mut connector = open(&dst_settings(&folder), "Europe/Berlin").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    let starts: Vec<&str> = result
        .records
        .iter()
        .map(|record| record["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            // Spring: 01:30 CET, then 03:00 CEST, half an hour later in UTC.
            "2024-03-31T00:30:00Z",
            "2024-03-31T01:00:00Z",
            // Autumn: 01:30 and 02:00 CEST (the first 02:00, the default policy), 03:00 CET.
            "2024-10-26T23:30:00Z",
            "2024-10-27T00:00:00Z",
            "2024-10-27T02:00:00Z",
        ]
    );
    // With `repeated_hour = "later"` 02:00 is the second occurrence (CET).
    let folder = Folder::new();
    folder.drop_fixture("intervals_berlin_dst.csv", "dst.csv");
    let settings = with(dst_settings(&folder), &["repeated_hour"], json!("later"));
    let mut connector = open(&settings, "Europe/Berlin").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert_eq!(result.records[3]["start"], json!("2024-10-27T01:00:00Z"));
    // With `repeated_hour = "reject"` the file is rejected naming the row.
    let folder = Folder::new();
    folder.drop_fixture("intervals_berlin_dst.csv", "dst.csv");
    let settings = with(dst_settings(&folder), &["repeated_hour"], json!("reject"));
    let mut connector = open(&settings, "Europe/Berlin").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert!(result.records.is_empty());
    let report = std::fs::read_to_string(folder.path("error/dst.csv.error.txt")).unwrap();
    assert!(
        report.contains("line 5, column 2 (start): found \"2024-10-27 02:00\", expected a local time the DST policy accepts"),
        "{report}"
    );
}

fn contact_settings(
    folder: &Folder,
    contacts_as: &str,
    timestamp_format: &str,
    separator: &str,
) -> Value {
    json!({
        "settle_secs": 0,
        "phonelink": {
            "import_dir": folder.import_dir, "layout": "contacts", "contacts_as": contacts_as,
            "interval_minutes": 60,
            "format": { "timestamp_format": timestamp_format, "separator": separator },
            "columns": { "queue": 1, "timestamp": 2, "handled": 3, "duration": 4 }
        }
    })
}

#[test]
fn new_york_contacts_are_summed_into_local_hours_across_both_dst_changes() {
    let folder = Folder::new();
    folder.drop_fixture("contacts_new_york_dst.csv", "contacts.csv");
    let settings = contact_settings(&folder, "intervals", "MM/DD/YY hh:mm:ss", ",");
    let mut connector = open(&settings, "America/New_York").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 2, true).unwrap();
    assert_eq!(
        interval_lines(&result.records),
        [
            // 2024-03-10: 01:00 EST (06:00Z) holds two contacts; 02:00 does not exist;
            // 03:01 is EDT, in the 03:00 interval at 07:00Z.
            "Q1|Q1|calls|2024-03-10T06:00:00Z|60|2|1|1|100.0",
            "Q1|Q1|calls|2024-03-10T07:00:00Z|60|1|1|0|50.0",
            // 2024-11-03: 00:59 EDT; 01:20 is read as the first 01:xx (EDT); 02:05 is EST.
            "Q1|Q1|calls|2024-11-03T04:00:00Z|60|1|1|0|30.0",
            "Q1|Q1|calls|2024-11-03T05:00:00Z|60|1|1|0|40.0",
            "Q1|Q1|calls|2024-11-03T07:00:00Z|60|1|0|1|0.0",
        ]
    );
}

#[test]
fn the_repeated_new_york_hour_stays_two_intervals_with_unix_seconds() {
    let folder = Folder::new();
    folder.drop_fixture("contacts_new_york_unix.csv", "unix.csv");
    let settings = contact_settings(&folder, "intervals", "unix", ";");
    let mut connector = open(&settings, "America/New_York").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert_eq!(
        interval_lines(&result.records),
        [
            "Q1|Q1|calls|2024-11-03T05:00:00Z|60|1|1|0|10.0",
            "Q1|Q1|calls|2024-11-03T06:00:00Z|60|2|1|1|20.0",
        ]
    );
}

#[test]
fn contacts_as_events() {
    let folder = Folder::new();
    folder.drop_fixture("contacts_events.csv", "events.csv");
    let settings = with(
        contact_settings(&folder, "events", "YYYY-MM-DD hh:mm:ss", ","),
        &["phonelink", "columns", "contact_id"],
        json!("id"),
    );
    let mut connector = open(&settings, "Europe/Berlin").unwrap();
    // Intervals are not what this layout gives.
    let intervals = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert!(intervals.records.is_empty());
    let result = read_all(
        &mut connector,
        StreamKind::PHONELINK_CONTACTS,
        None,
        1000,
        true,
    )
    .unwrap();
    assert_eq!(
        result.records,
        [
            json!({"queue_id": "Q1", "queue_name": "Q1", "channel": "calls", "timestamp": "2024-03-04T07:00:05Z",
                   "offered": true, "handled": true, "duration_secs": 100.5, "contact_id": "c1"}),
            json!({"queue_id": "Q1", "queue_name": "Q1", "channel": "calls", "timestamp": "2024-03-04T07:01:00Z",
                   "offered": true, "handled": false, "duration_secs": 0.0, "contact_id": "c2"}),
            json!({"queue_id": "Q2", "queue_name": "Q2", "channel": "calls", "timestamp": "2024-03-04T07:02:00Z",
                   "offered": true, "handled": true, "duration_secs": 30.0, "contact_id": null}),
        ]
    );
}

#[test]
fn timelink_start_and_end_in_date_and_time_columns() {
    let folder = Folder::new();
    folder.drop_fixture("statuses_start_end.csv", "s.csv");
    let settings = json!({
        "settle_secs": 0,
        "timelink": {
            "import_dir": folder.import_dir, "span": "start-end",
            "format": { "date_format": "DD.MM.YYYY", "time_format": "hh:mm:ss" },
            "columns": {
                "agent": "agent", "activity": "activity", "start_date": "start_date",
                "start_time": "start_time", "end_date": "end_date", "end_time": "end_time"
            }
        }
    });
    let mut connector = open(&settings, "Europe/Berlin").unwrap();
    let result = read_all(&mut connector, StreamKind::TIMELINK, None, 1000, true).unwrap();
    assert_eq!(
        status_lines(&result.records),
        [
            "anna|READY|2024-03-04T07:00:00Z|2024-03-04T07:10:00Z",
            "anna|AUX-1|2024-03-04T07:10:00Z|2024-03-04T07:25:30Z",
            // No end yet: still open.
            "ben|READY|2024-03-04T08:00:00Z|-",
        ]
    );
}

#[test]
fn timelink_start_and_duration_tab_separated_in_iso_8859_9() {
    let folder = Folder::new();
    folder.drop_fixture("statuses_start_duration.tsv", "s.tsv");
    let settings = json!({
        "settle_secs": 0,
        "timelink": {
            "import_dir": folder.import_dir, "span": "start-duration",
            "format": {
                "separator": "tab", "encoding": "iso-8859-9",
                "timestamp_format": "YYYY-MM-DD hh:mm:ss", "duration_format": "hh:mm:ss"
            },
            "columns": { "agent": "agent", "activity": "activity", "start": "start", "duration": "duration" }
        }
    });
    let mut connector = open(&settings, "UTC").unwrap();
    let result = read_all(&mut connector, StreamKind::TIMELINK, None, 1000, true).unwrap();
    assert_eq!(
        status_lines(&result.records),
        [
            "ayşe|READY|2024-03-04T08:00:00Z|2024-03-04T08:10:00Z",
            "ayşe|LUNCH|2024-03-04T08:10:00Z|2024-03-04T09:10:00Z",
        ]
    );
}

fn start_only_settings(folder: &Folder) -> Value {
    json!({
        "settle_secs": 0,
        "timelink": {
            "import_dir": folder.import_dir, "span": "start-only",
            "logoff_activities": ["LOGOUT"],
            "format": { "timestamp_format": "YYYY-MM-DD hh:mm:ss" },
            "columns": { "agent": "agent", "activity": "activity", "start": "start" }
        }
    })
}

#[test]
fn timelink_start_only_chains_run_across_files_and_end_at_logoff() {
    let folder = Folder::new();
    folder.drop_fixture("statuses_start_only_1.csv", "1.csv");
    let mut connector = open(&start_only_settings(&folder), "UTC").unwrap();
    let first = read_all(&mut connector, StreamKind::TIMELINK, None, 1, true).unwrap();
    assert_eq!(
        status_lines(&first.records),
        [
            "anna|LOGIN|2024-03-04T08:00:00Z|2024-03-04T08:00:30Z",
            "anna|READY|2024-03-04T08:00:30Z|2024-03-04T09:00:00Z",
            "ben|LOGIN|2024-03-04T08:01:00Z|2024-03-04T12:00:00Z",
        ]
    );
    // anna's AUX is still open; the next file ends it. A new instance (a restart) reads
    // it from the committed state.
    folder.drop_fixture("statuses_start_only_2.csv", "2.csv");
    let mut connector = open(&start_only_settings(&folder), "UTC").unwrap();
    let second = read_all(&mut connector, StreamKind::TIMELINK, first.state, 1, true).unwrap();
    assert_eq!(
        status_lines(&second.records),
        [
            "anna|AUX|2024-03-04T09:00:00Z|2024-03-04T09:15:00Z",
            "anna|READY|2024-03-04T09:15:00Z|2024-03-04T17:00:00Z",
        ]
    );
    assert_eq!(folder.names("archive"), ["1.csv", "2.csv"]);
}

#[test]
fn no_header_columns_by_number_skipped_lines_total_rows_and_no_data_rows() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_no_header.txt", "export.txt");
    let settings = json!({
        "settle_secs": 0,
        "phonelink": {
            "import_dir": folder.import_dir, "layout": "intervals", "interval_minutes": 30, "channel": "chats",
            "format": {
                "separator": "|", "header": false, "skip_lines": 2,
                "skip_rows_containing": ["Total"], "missing_values": "no-data",
                "timestamp_format": "YYYY-MM-DD hh:mm"
            },
            "columns": { "queue": 1, "timestamp": 2, "offered": 3, "handled": 4, "abandoned": 5 }
        }
    });
    let mut connector = open(&settings, "UTC").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert_eq!(
        folder.names("error"),
        Vec::<String>::new(),
        "{:?}",
        std::fs::read_to_string(folder.path("error/export.txt.error.txt"))
    );
    assert_eq!(
        interval_lines(&result.records),
        [
            "Q1|Q1|chats|2024-03-04T08:00:00Z|30|10|9|1|0.0",
            "Q2|Q2|chats|2024-03-04T08:00:00Z|30|4|4|0|0.0",
        ]
    );
    assert!(result.rejects.is_empty());
}

#[test]
fn the_same_content_under_two_names_is_imported_once_and_a_restart_reimports_nothing() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "monday.csv");
    folder.drop_fixture("intervals_basic.csv", "monday-copy.csv");
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert_eq!(result.records.len(), 3);
    // Both leave the import folder: one imported, the other recognised as a duplicate.
    assert_eq!(folder.names("archive"), ["monday-copy.csv", "monday.csv"]);
    // Dropped again after archiving, and read by a new instance: nothing.
    folder.drop_fixture("intervals_basic.csv", "monday-again.csv");
    let mut restarted = open(&basic_settings(&folder), "UTC").unwrap();
    let again = read_all(&mut restarted, INTERVALS, result.state, 1000, true).unwrap();
    assert!(again.records.is_empty());
    assert_eq!(folder.names(""), Vec::<String>::new());
}

#[test]
fn crashes_while_a_file_is_held_neither_lose_nor_double_a_row() {
    // The reference: the whole file in one go.
    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "a.csv");
    folder.drop_fixture("intervals_quoted.csv", "b.csv");
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let whole = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert_eq!(whole.records.len(), 6);

    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "a.csv");
    folder.drop_fixture("intervals_quoted.csv", "b.csv");
    // Pages of one record: the host dies after the first page of a file, after the
    // second, ... and the next instance reads the file again from its start.
    let crashed = read_with_crashes(
        || open(&basic_settings(&folder), "UTC").unwrap(),
        INTERVALS,
        1,
    )
    .unwrap();
    assert_eq!(crashed.records, whole.records);
    assert_eq!(folder.names("archive"), ["a.csv", "b.csv"]);
}

#[test]
fn a_new_read_starts_the_file_in_flight_again_and_an_old_cursor_is_refused() {
    // The host failed to store page 2 and gave the read up; its next read (no cursor)
    // gets the whole file again, from the same instance.
    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "a.csv");
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let page = |connector: &mut CsvConnector, cursor: Option<RString>| {
        let mut request = acdlink_connector_api::ReadRequest::incremental(INTERVALS, None, 1);
        request.cursor = cursor.into();
        connector.read(&request)
    };
    let first = page(&mut connector, None).unwrap();
    assert_eq!(first.delivery, Delivery::HOLD);
    assert!(first.state.is_none());
    let cursor = first.next_cursor.clone().into_option();
    let second = page(&mut connector, cursor.clone()).unwrap();
    assert_eq!(second.records.len(), 1);
    let error = page(&mut connector, cursor).unwrap_err();
    assert!(
        error
            .message
            .contains("is not the one this instance handed out last"),
        "{error}"
    );
    let again = read_all(&mut connector, INTERVALS, None, 1, true).unwrap();
    assert_eq!(again.records.len(), 3);
    assert_eq!(again.records[0], first.records.to_json_values()[0]);
    assert_eq!(folder.names("archive"), ["a.csv"]);
}

#[test]
fn a_read_given_up_while_the_converting_thread_waits_starts_the_file_again() {
    // Enough rows that the converting thread fills the channel and waits for `read`: a
    // new read must stop it (not wait for it for ever) and read the file from its start.
    let folder = Folder::new();
    let mut text = String::from("queue,name,start,offered,handled,abandoned,handle_time\n");
    let n_rows = 100_000;
    for row in 0..n_rows {
        let (day, half_hour) = (row / 200 / 48, row / 200 % 48);
        text.push_str(&format!(
            "Q{},Queue {},2024-03-{:02} {:02}:{:02},10,9,1,1800\n",
            row % 200,
            row % 200,
            1 + day,
            half_hour / 2,
            half_hour % 2 * 30
        ));
    }
    std::fs::write(folder.path("big.csv"), text).unwrap();
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let request = acdlink_connector_api::ReadRequest::incremental(INTERVALS, None, 10);
    let first = connector.read(&request).unwrap();
    assert_eq!(first.delivery, Delivery::HOLD);
    assert_eq!(first.records.len(), 10);
    let again = read_all(&mut connector, INTERVALS, None, 8192, true).unwrap();
    assert_eq!(again.records.len(), n_rows);
    assert_eq!(again.records[0], first.records.to_json_values()[0]);
    assert_eq!(folder.names("archive"), ["big.csv"]);
}

#[test]
fn small_pages_give_the_same_records_as_one_page() {
    for fixture_name in ["intervals_quoted.csv", "intervals_basic.csv"] {
        let mut results = Vec::new();
        for max_records in [1, 2, 1000] {
            let folder = Folder::new();
            folder.drop_fixture(fixture_name, "a.csv");
            let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
            results.push(
                read_all(&mut connector, INTERVALS, None, max_records, true)
                    .unwrap()
                    .records,
            );
        }
        assert_eq!(results[0], results[2], "{fixture_name}");
        assert_eq!(results[1], results[2], "{fixture_name}");
        assert_eq!(results[2].len(), 3);
    }
}

#[test]
fn files_still_being_written_and_temporary_names_are_not_picked_up() {
    let folder = Folder::new();
    for name in ["a.csv.tmp", "b.part", "~$c.csv", ".d.csv"] {
        folder.drop_fixture("intervals_basic.csv", name);
    }
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert!(result.records.is_empty());
    // A fresh file with settle_secs = 3600 is too young.
    folder.drop_fixture("intervals_basic.csv", "fresh.csv");
    let settings = with(basic_settings(&folder), &["settle_secs"], json!(3600));
    let mut connector = open(&settings, "UTC").unwrap();
    assert!(read_all(&mut connector, INTERVALS, None, 1000, true)
        .unwrap()
        .records
        .is_empty());
    assert_eq!(folder.names("").len(), 5);
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    assert_eq!(
        read_all(&mut connector, INTERVALS, None, 1000, true)
            .unwrap()
            .records
            .len(),
        3
    );
}

#[test]
fn after_import_keep_and_delete() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "a.csv");
    let settings = with(basic_settings(&folder), &["after_import"], json!("keep"));
    let mut connector = open(&settings, "UTC").unwrap();
    let first = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert_eq!(first.records.len(), 3);
    assert_eq!(folder.names(""), ["a.csv"]);
    // Kept files are recognised and not read again.
    let again = read_all(&mut connector, INTERVALS, first.state, 1000, true).unwrap();
    assert!(again.records.is_empty());

    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "a.csv");
    let settings = with(basic_settings(&folder), &["after_import"], json!("delete"));
    let mut connector = open(&settings, "UTC").unwrap();
    assert_eq!(
        read_all(&mut connector, INTERVALS, None, 1000, true)
            .unwrap()
            .records
            .len(),
        3
    );
    assert_eq!(folder.names(""), Vec::<String>::new());
    assert_eq!(folder.names("archive"), Vec::<String>::new());
}

#[test]
fn settings_errors_name_the_key_and_what_was_expected() {
    let folder = Folder::new();
    let cases = [
        (
            with(basic_settings(&folder), &["phonelink", "colour"], json!(1)),
            "invalid setting `phonelink.colour`: unknown field `colour`, expected one of `import_dir`, `layout`, `contacts_as`, `interval_minutes`, `handle_time`, `channel`, `format`, `columns`",
        ),
        (
            with(basic_settings(&folder), &["phonelink", "format", "separator"], json!("#")),
            "invalid setting `phonelink.format.separator`: expected one of \",\", \";\", \"\\t\" (or \"tab\"), \"|\", found \"#\"",
        ),
        (
            with(basic_settings(&folder), &["phonelink", "format", "header"], json!(false)),
            "invalid setting `phonelink.columns.queue`: expected a column number, because `phonelink.format.header` is false, found the name \"queue\"",
        ),
        (
            with(basic_settings(&folder), &["phonelink", "format", "timestamp_format"], json!("DD.MM.YYYY")),
            "invalid setting `phonelink.format.timestamp_format`: expected a date and time format such as \"YYYY-MM-DD hh:mm:ss\" or \"unix\", found \"DD.MM.YYYY\"",
        ),
        (
            with(basic_settings(&folder), &["phonelink", "interval_minutes"], json!(20)),
            "invalid setting `phonelink.interval_minutes`: expected 15, 30 or 60, found 20",
        ),
        (
            with(basic_settings(&folder), &["after_import"], json!("archive")),
            "invalid setting `after_import`: unknown variant `archive`, expected one of `keep`, `move`, `delete`",
        ),
        (
            with(basic_settings(&folder), &["phonelink", "columns", "queue"], json!(0)),
            "invalid setting `phonelink.columns.queue`: invalid value: integer `0`, expected a header name (string) or a column number starting at 1",
        ),
        (
            json!({}),
            "invalid settings: expected a `phonelink` or a `timelink` table (or both), found neither",
        ),
    ];
    for (settings, expected) in cases {
        let error = open(&settings, "UTC").err().expect("refused settings");
        assert_eq!(error.kind, ErrorKind::CONFIG, "{error}");
        assert_eq!(error.message.as_str(), expected);
    }
}

#[test]
fn a_bad_file_dropped_twice_under_one_name_keeps_both_copies_and_reports() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_bad_value.csv", "bad.csv");
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let first = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    folder.drop_fixture("intervals_bad_value.csv", "bad.csv");
    let second = read_all(&mut connector, INTERVALS, first.state, 1000, true).unwrap();
    assert!(second.records.is_empty());
    let names = folder.names("error");
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names.contains(&"bad.csv".to_string()) && names.contains(&"bad.csv.error.txt".to_string())
    );
    // The second copy under `bad.csv.<start of its checksum>`, with its own report.
    let copy = names
        .iter()
        .find(|name| name.starts_with("bad.csv.") && !name.ends_with(".txt"))
        .expect("the second copy");
    assert!(names.contains(&format!("{copy}.error.txt")), "{names:?}");
}

#[test]
fn crashes_in_a_start_only_file_carry_the_open_spans() {
    let folder = Folder::new();
    folder.drop_fixture("statuses_start_only_1.csv", "1.csv");
    folder.drop_fixture("statuses_start_only_2.csv", "2.csv");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(folder.path("1.csv"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let mut reference = open(&start_only_settings(&folder), "UTC").unwrap();
    let whole = read_all(&mut reference, StreamKind::TIMELINK, None, 1000, false).unwrap();
    assert_eq!(whole.records.len(), 5);
    // Crashes at every page of each file: the open spans from before a file are the ones
    // its conversion starts from, every time.
    let crashed = read_with_crashes(
        || open(&start_only_settings(&folder), "UTC").unwrap(),
        StreamKind::TIMELINK,
        1,
    )
    .unwrap();
    assert_eq!(crashed.records, whole.records);
}

#[test]
fn a_bom_semicolons_decimal_comma_and_windows_1252_umlauts_in_one_file() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_bom_semicolon_decimal_comma_1252.csv", "all.csv");
    let settings = decimal_comma_settings(&folder);
    let mut connector = open(&settings, "Europe/Berlin").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert_eq!(
        interval_lines(&result.records),
        [
            "Größe|Größe|calls|2024-03-04T07:00:00Z|30|3|3|0|123.5",
            "Übergabe|Übergabe|calls|2024-03-04T07:00:00Z|30|2|1|1|60.25",
        ]
    );
}

/// Settings for a fixture in a folder.
type Settings = fn(&Folder) -> Value;

#[test]
fn each_bad_input_fixture_names_line_column_value_and_expectation() {
    let events = |folder: &Folder| contact_settings(folder, "events", "YYYY-MM-DD hh:mm:ss", ",");
    let cases: [(&str, Settings, StreamKind, &str); 6] = [
        (
            "intervals_bad_date.csv",
            basic_settings,
            INTERVALS,
            "line 2, column 3 (start): found \"2024-02-30 08:00\", expected a valid date and time, not 2024-02-30 08:00:00",
        ),
        (
            "intervals_misaligned.csv",
            basic_settings,
            INTERVALS,
            "line 3, column 3 (start): found \"2024-03-04 08:10\", expected the start of a 30-minute interval (local time on a multiple of 30 minutes)",
        ),
        (
            "intervals_bad_decimal.csv",
            basic_settings,
            INTERVALS,
            "line 2, column 7 (handle_time): found \"1,800\", expected a number of seconds >= 0",
        ),
        (
            "intervals_empty_queue.csv",
            basic_settings,
            INTERVALS,
            "line 2, column 1 (queue): found \"\", expected an identifier, found an empty cell",
        ),
        (
            "statuses_out_of_order.csv",
            start_only_settings,
            StreamKind::TIMELINK,
            "line 4, column 3 (start): found \"2024-03-04 08:30:00\", expected a start at or after 2024-03-04T09:00:00Z, when the agent's previous status began (rows of one agent in time order)",
        ),
        (
            "contacts_bad_flag.csv",
            events,
            StreamKind::PHONELINK_CONTACTS,
            "line 2, column 3 (answered): found \"maybe\", expected whether the contact was handled: 1/0, true/false, yes/no or y/n",
        ),
    ];
    for (fixture_name, settings, stream, expected) in cases {
        let folder = Folder::new();
        folder.drop_fixture(fixture_name, "in.csv");
        let mut connector = open(&settings(&folder), "UTC").unwrap();
        let result = read_all(&mut connector, stream, None, 1000, true).unwrap();
        assert!(
            result.records.is_empty(),
            "{fixture_name}: nothing imported"
        );
        assert_eq!(folder.names(""), Vec::<String>::new(), "{fixture_name}");
        assert_eq!(
            std::fs::read(folder.path("error/in.csv")).unwrap(),
            std::fs::read(fixture(fixture_name)).unwrap(),
            "{fixture_name}: moved untouched"
        );
        let report = std::fs::read_to_string(folder.path("error/in.csv.error.txt")).unwrap();
        assert_eq!(
            report.lines().nth(4),
            Some(expected),
            "{fixture_name}:\n{report}"
        );
    }
}

#[test]
fn summed_contacts_survive_crashes_and_skip_row_reports_once() {
    let folder = Folder::new();
    folder.drop_fixture("contacts_new_york_dst.csv", "contacts.csv");
    let settings = with(
        contact_settings(&folder, "intervals", "MM/DD/YY hh:mm:ss", ","),
        &["on_bad_row"],
        json!("skip-row"),
    );
    // One contact row with a bad flag, appended to the fixture.
    let mut bytes = std::fs::read(fixture("contacts_new_york_dst.csv")).unwrap();
    bytes.extend_from_slice(b"Q1,03/10/24 03:30:00,perhaps,10,c7\n");
    std::fs::write(folder.path("contacts.csv"), bytes).unwrap();
    let mut reference = open(&settings, "America/New_York").unwrap();
    let whole = read_all(&mut reference, INTERVALS, None, 1000, false).unwrap();
    assert_eq!(whole.records.len(), 5);
    assert_eq!(
        whole.rejects,
        ["contacts.csv:8:3 (answered): found \"perhaps\", expected whether the contact was handled: 1/0, true/false, yes/no or y/n"]
    );
    // Crashes at every page: the sums are built again, and the bad row is reported once,
    // with the page that releases the file.
    let crashed = read_with_crashes(
        || open(&settings, "America/New_York").unwrap(),
        INTERVALS,
        2,
    )
    .unwrap();
    assert_eq!(crashed.records, whole.records);
    assert_eq!(crashed.rejects, ["contacts.csv:8:3 (answered)"]);
    assert_eq!(folder.names("archive"), ["contacts.csv"]);
    let report = std::fs::read_to_string(folder.path("error/contacts.csv.rejects.txt")).unwrap();
    assert!(
        report.contains("line 8, column 3 (answered): found \"perhaps\""),
        "{report}"
    );
}

#[test]
fn discover_lists_what_waiting_and_archived_files_hold() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "imported.csv");
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    folder.drop_fixture("intervals_quoted.csv", "waiting.csv");
    let discovery = connector.discover().unwrap();
    let queues: Vec<(String, String)> = discovery
        .queues
        .iter()
        .map(|queue| (queue.id.to_string(), queue.name.to_string()))
        .collect();
    assert_eq!(
        queues,
        [
            ("Q1".to_string(), "Sales, North".to_string()),
            ("Q2".to_string(), "Support\r\nsecond line".to_string()),
            ("Q3".to_string(), "He said \"hi\"".to_string()),
        ]
    );

    let folder = Folder::new();
    folder.drop_fixture("statuses_start_only_1.csv", "1.csv");
    let mut connector = open(&start_only_settings(&folder), "UTC").unwrap();
    let discovery = connector.discover().unwrap();
    let agents: Vec<String> = discovery
        .agents
        .iter()
        .map(|agent| agent.id.to_string())
        .collect();
    let activities: Vec<String> = discovery
        .activities
        .iter()
        .map(|activity| activity.id.to_string())
        .collect();
    assert_eq!(agents, ["anna", "ben"]);
    assert_eq!(activities, ["AUX", "LOGIN", "READY"]);
}

#[test]
fn an_empty_file_and_a_header_only_file_are_empty_imports() {
    let folder = Folder::new();
    std::fs::write(folder.path("empty.csv"), b"").unwrap();
    std::fs::write(
        folder.path("header.csv"),
        b"queue,name,start,offered,handled,abandoned,handle_time\r\n",
    )
    .unwrap();
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let result = read_all(&mut connector, INTERVALS, None, 1000, true).unwrap();
    assert!(result.records.is_empty());
    assert!(
        folder.names("error").is_empty(),
        "{:?}",
        folder.names("error")
    );
    // Both have been read (and so are archived), but they share no content.
    assert_eq!(folder.names("archive"), ["empty.csv", "header.csv"]);
}

#[test]
fn check_names_each_import_folder_and_what_is_ready() {
    let folder = Folder::new();
    folder.drop_fixture("intervals_basic.csv", "a.csv");
    folder.drop_fixture("intervals_basic.csv", "b.csv.part");
    let mut connector = open(&basic_settings(&folder), "UTC").unwrap();
    let report = connector.check().unwrap();
    assert_eq!(
        report.message.as_str(),
        format!(
            "phonelink: {} (1 file(s) ready)",
            folder.import_dir.display()
        )
    );
    std::fs::remove_dir_all(&folder.import_dir).unwrap();
    let error = connector.check().unwrap_err();
    assert_eq!(error.kind, ErrorKind::IO);
    assert!(
        error
            .message
            .starts_with(&format!("cannot list {}", folder.import_dir.display())),
        "{error}"
    );
}
