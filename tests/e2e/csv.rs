//! The CSV connector end to end: files dropped into import folders go through the real
//! binary (the built-in connector) to the strict reference receiver as exactly the
//! expected intervals and statuses; the archive and error folders end up right; a
//! restart imports nothing twice. And the connector as a plugin library, loaded from disk.

use acdlink_tests::{
    receiver::{Receiver, API_KEY},
    stderr, Sandbox,
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

fn run_once(sandbox: &Sandbox) -> std::process::Output {
    sandbox.acdlink_with_env(&["run", "--once"], &[("ACDLINK_E2E_KEY", API_KEY)])
}

/// The `[upload]` section for the reference receiver (ends with a newline, open for more
/// keys).
fn upload_section(receiver: &Receiver) -> String {
    format!(
        "[upload]\ntype = \"http\"\nbase_url = \"{}\"\napi_key = {{ env = \"ACDLINK_E2E_KEY\" }}\nintegration_configuration_id = 42\n",
        receiver.base_url
    )
}

fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An Excel export in a German locale: Windows-1252, semicolons, decimal comma, CRLF.
fn excel_export() -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(
        b"Warteschlange;Datum;Uhrzeit;Angeboten;Bearbeitet;Verloren;Bearbeitungszeit\r\n",
    );
    // "St\xf6rung" is "Störung" in Windows-1252.
    bytes.extend_from_slice(b"St\xf6rung;31.03.2024;01:30;10;8;2;1440,5\r\n");
    bytes.extend_from_slice(b"St\xf6rung;31.03.2024;03:00;4;4;0;600\r\n");
    bytes.extend_from_slice(b"Vertrieb;31.03.2024;03:00;3;2;1;300\r\n");
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes
}

/// Writes the sandbox's configuration: `head` (host and upload sections), then CSV
/// connector `name` (with `connector_keys`) reading 15-minute intervals with columns
/// `queue,start,offered,handled,abandoned,handle_time` from `import_dir`.
fn write_intervals_config(
    sandbox: &Sandbox,
    head: &str,
    name: &str,
    connector_keys: &str,
    import_dir: &Path,
) {
    std::fs::write(
        sandbox.path().join("acdlink.toml"),
        format!(
            r#"{head}[[connector]]
name = "{name}"
plugin = "csv"
timezone = "UTC"
{connector_keys}
[connector.settings]
settle_secs = 0

[connector.settings.phonelink]
import_dir = "{import_dir}"
layout = "intervals"
interval_minutes = 15

[connector.settings.phonelink.format]
timestamp_format = "YYYY-MM-DD hh:mm"

[connector.settings.phonelink.columns]
queue = "queue"
timestamp = "start"
offered = "offered"
handled = "handled"
abandoned = "abandoned"
handle_time = "handle_time"
"#,
            import_dir = import_dir.display(),
        ),
    )
    .unwrap();
}

struct Folders {
    phonelink: PathBuf,
    timelink: PathBuf,
}

fn setup(sandbox: &Sandbox, receiver: &Receiver) -> Folders {
    let phonelink = sandbox.path().join("phonelink");
    let timelink = sandbox.path().join("timelink");
    std::fs::create_dir(&phonelink).unwrap();
    std::fs::create_dir(&timelink).unwrap();
    sandbox.write_config(&format!(
        r#"{upload}
[[connector]]
name = "files"
plugin = "csv"
timezone = "Europe/Berlin"

[connector.settings]
settle_secs = 0

[connector.settings.phonelink]
import_dir = "{phonelink}"
layout = "intervals"
interval_minutes = 30

[connector.settings.phonelink.format]
separator = ";"
encoding = "windows-1252"
decimal_comma = true
date_format = "DD.MM.YYYY"
time_format = "hh:mm"

[connector.settings.phonelink.columns]
queue = "Warteschlange"
date = "Datum"
time = "Uhrzeit"
offered = "Angeboten"
handled = "Bearbeitet"
abandoned = "Verloren"
handle_time = "Bearbeitungszeit"

[connector.settings.timelink]
import_dir = "{timelink}"
span = "start-only"
logoff_activities = ["LOGOUT"]

[connector.settings.timelink.format]
timestamp_format = "YYYY-MM-DD hh:mm:ss"

[connector.settings.timelink.columns]
agent = "agent"
activity = "activity"
start = "start"
"#,
        upload = upload_section(receiver),
        phonelink = phonelink.display(),
        timelink = timelink.display(),
    ));
    Folders {
        phonelink,
        timelink,
    }
}

#[test]
fn csv_files_reach_the_receiver_as_exactly_the_expected_intervals_and_statuses() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    let folders = setup(&sandbox, &receiver);
    std::fs::write(folders.phonelink.join("export.csv"), excel_export()).unwrap();
    // A bad file: rejected whole, into the error folder untouched.
    let bad = b"Warteschlange;Datum;Uhrzeit;Angeboten;Bearbeitet;Verloren;Bearbeitungszeit\r\nVertrieb;31.03.2024;04:00;3;2;1;300\r\nVertrieb;31.03.2024;04:30;drei;2;1;300\r\n";
    std::fs::write(folders.phonelink.join("bad.csv"), bad).unwrap();
    std::fs::write(
        folders.timelink.join("agents.csv"),
        "agent,activity,start\nanna,READY,2024-03-31 08:00:00\nanna,AUX,2024-03-31 08:20:00\nanna,LOGOUT,2024-03-31 09:00:00\n",
    )
    .unwrap();

    let output = run_once(&sandbox);
    assert!(output.status.success(), "{}", stderr(&output));
    // The rejected file is reported at once, with the bad row's position.
    let text = stderr(&output);
    assert!(text.contains("1 rejected"), "{text}");
    assert!(text.contains("bad.csv:3:4 (Angeboten)"), "{text}");
    assert!(text.contains("the whole file is rejected"), "{text}");

    let (intervals, statuses, invalid) = receiver.with(|received| {
        let values = |endpoint: &str| -> BTreeMap<String, serde_json::Value> {
            received.items.get(endpoint).cloned().unwrap_or_default()
        };
        (
            values("queue-intervals"),
            values("agent-statuses"),
            received.invalid.clone(),
        )
    });
    assert!(invalid.is_empty(), "{invalid:?}");
    let intervals: BTreeMap<String, (u64, u64, u64, f64)> = intervals
        .into_iter()
        .map(|(key, item)| {
            (
                format!("{key}|{}", item["queueName"].as_str().unwrap()),
                (
                    item["offered"].as_u64().unwrap(),
                    item["handled"].as_u64().unwrap(),
                    item["abandoned"].as_u64().unwrap(),
                    item["handlingTime"].as_f64().unwrap(),
                ),
            )
        })
        .collect();
    // 2024-03-31 is the spring DST day in Berlin: 01:30 CET is 00:30Z, 03:00 CEST 01:00Z.
    assert_eq!(
        intervals,
        BTreeMap::from([
            (
                "Störung|calls|2024-03-31T00:30:00Z|Störung".to_string(),
                (10, 8, 2, 1440.5)
            ),
            (
                "Störung|calls|2024-03-31T01:00:00Z|Störung".to_string(),
                (4, 4, 0, 600.0)
            ),
            (
                "Vertrieb|calls|2024-03-31T01:00:00Z|Vertrieb".to_string(),
                (3, 2, 1, 300.0)
            ),
        ])
    );
    let statuses: BTreeMap<String, (String, String)> = statuses
        .into_iter()
        .map(|(key, item)| {
            (
                key,
                (
                    item["activityIdentifier"].as_str().unwrap().to_string(),
                    item["endTime"].as_str().unwrap_or("-").to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        BTreeMap::from([
            (
                "anna|2024-03-31T06:00:00Z".to_string(),
                ("READY".to_string(), "2024-03-31T06:20:00Z".to_string())
            ),
            (
                "anna|2024-03-31T06:20:00Z".to_string(),
                ("AUX".to_string(), "2024-03-31T07:00:00Z".to_string())
            ),
        ])
    );

    // The folders: imported files archived, the bad one in the error folder, byte for byte,
    // with its report.
    assert_eq!(names(&folders.phonelink), Vec::<String>::new());
    assert_eq!(names(&folders.phonelink.join("archive")), ["export.csv"]);
    assert_eq!(
        std::fs::read(folders.phonelink.join("archive/export.csv")).unwrap(),
        excel_export()
    );
    assert_eq!(
        names(&folders.phonelink.join("error")),
        ["bad.csv", "bad.csv.error.txt"]
    );
    assert_eq!(
        std::fs::read(folders.phonelink.join("error/bad.csv")).unwrap(),
        bad
    );
    let report =
        std::fs::read_to_string(folders.phonelink.join("error/bad.csv.error.txt")).unwrap();
    assert!(
        report
            .contains("line 3, column 4 (Angeboten): found \"drei\", expected a whole number >= 0"),
        "{report}"
    );
    assert_eq!(names(&folders.timelink.join("archive")), ["agents.csv"]);

    // The same content again under another name, and a second run: nothing is uploaded
    // again, and the copy is archived.
    let n_requests = receiver.with(|received| received.n_requests);
    std::fs::write(folders.phonelink.join("export-copy.csv"), excel_export()).unwrap();
    let output = run_once(&sandbox);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(receiver.with(|received| received.n_requests), n_requests);
    assert_eq!(
        names(&folders.phonelink.join("archive")),
        ["export-copy.csv", "export.csv"]
    );
    receiver.with(|received| {
        for (endpoint, applications) in &received.applications {
            assert!(
                applications.values().all(|n| *n == 1),
                "{endpoint}: applied more than once: {applications:?}"
            );
        }
    });
}

#[test]
fn the_csv_plugin_library_loads_from_disk_and_passes_the_conformance_kit() {
    let sandbox = Sandbox::new();
    sandbox.add_plugin("acdlink-connector-csv-plugin");
    let import_dir = sandbox.path().join("import");
    std::fs::create_dir(&import_dir).unwrap();
    std::fs::write(import_dir.join("export.csv"), excel_export()).unwrap();
    let registry = acdlink::registry::Registry::load(&acdlink::registry::LoadOptions {
        plugin_dirs: vec![sandbox.plugin_dir()],
        allow_insecure_plugins: false,
        include_builtins: false,
    });
    let plugin = registry.find("csv").expect("the csv plugin loaded");
    let settings = serde_json::json!({
        "settle_secs": 0,
        "after_import": "keep",
        "phonelink": {
            "import_dir": import_dir,
            "layout": "intervals",
            "format": {
                "separator": ";", "encoding": "windows-1252", "decimal_comma": true,
                "date_format": "DD.MM.YYYY", "time_format": "hh:mm"
            },
            "columns": {
                "queue": "Warteschlange", "date": "Datum", "time": "Uhrzeit",
                "offered": "Angeboten", "handled": "Bearbeitet", "abandoned": "Verloren",
                "handle_time": "Bearbeitungszeit"
            }
        }
    });
    let window = acdlink_connector_api::TimeWindow::new(
        acdlink_connector_api::UtcMillis(0),
        acdlink_connector_api::UtcMillis(1),
    );
    let report = acdlink_connector_api::conformance::Conformance::new(&settings, window)
        .timezone(acdlink_connector_api::time::SourceTimeZone::new("Europe/Berlin").unwrap())
        .max_records(2)
        .run_module(plugin.module)
        .unwrap_or_else(|failure| panic!("{failure}"));
    let intervals = report
        .streams
        .iter()
        .find(|stream| stream.stream == acdlink_connector_api::StreamKind::PHONELINK_INTERVALS)
        .expect("the intervals stream was checked");
    assert_eq!(intervals.n_records, 3);
}

#[test]
fn contacts_sent_as_events_reach_the_receiver_when_the_configuration_asks_for_them() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    let import_dir = sandbox.path().join("contacts");
    std::fs::create_dir(&import_dir).unwrap();
    std::fs::write(
        import_dir.join("calls.csv"),
        "queue,time,answered,duration,id\r\nQ1,2024-03-04 08:00:05,1,100.5,c1\r\nQ1,2024-03-04 08:01:00,0,,c2\r\n",
    )
    .unwrap();
    sandbox.write_config(&format!(
        r#"{upload}
[[connector]]
name = "calls"
plugin = "csv"
timezone = "Europe/Berlin"
phonelink_form = "contacts"

[connector.settings]
settle_secs = 0

[connector.settings.phonelink]
import_dir = "{import_dir}"
layout = "contacts"
contacts_as = "events"

[connector.settings.phonelink.format]
timestamp_format = "YYYY-MM-DD hh:mm:ss"

[connector.settings.phonelink.columns]
queue = "queue"
timestamp = "time"
handled = "answered"
duration = "duration"
contact_id = "id"
"#,
        upload = upload_section(&receiver),
        import_dir = import_dir.display(),
    ));
    let output = run_once(&sandbox);
    assert!(output.status.success(), "{}", stderr(&output));
    let events: BTreeMap<String, serde_json::Value> = receiver.with(|received| {
        received
            .items
            .get("contact-events")
            .cloned()
            .unwrap_or_default()
    });
    let summary: Vec<(String, String, bool, f64)> = events
        .values()
        .map(|event| {
            (
                event["contactIdentifier"].as_str().unwrap().to_string(),
                event["timestamp"].as_str().unwrap().to_string(),
                event["properties"]["handled"].as_bool().unwrap(),
                event["properties"]["duration"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "c1".to_string(),
                "2024-03-04T07:00:05Z".to_string(),
                true,
                100.5
            ),
            (
                "c2".to_string(),
                "2024-03-04T07:01:00Z".to_string(),
                false,
                0.0
            ),
        ]
    );
    assert!(receiver.with(|received| !received.items.contains_key("queue-intervals")));
    assert_eq!(names(&import_dir.join("archive")), ["calls.csv"]);
}

#[test]
fn a_file_bigger_than_the_outbox_is_held_whole_and_what_a_crashed_read_held_is_dropped() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    let import_dir = sandbox.path().join("big");
    std::fs::create_dir(&import_dir).unwrap();
    // 20 queues x 150 intervals = 3000 rows; the outbox takes 1000 records at most.
    let mut text = String::from("queue,start,offered,handled,abandoned,handle_time\n");
    for interval in 0..150 {
        let start = jiff::civil::date(2024, 3, 4)
            .at(0, 0, 0, 0)
            .checked_add(jiff::Span::new().minutes(15 * interval))
            .unwrap();
        for queue in 0..20 {
            text.push_str(&format!(
                "Q{queue},{},{},{},1,{}\n",
                start.strftime("%Y-%m-%d %H:%M"),
                10 + queue,
                9 + queue,
                60 * queue
            ));
        }
    }
    std::fs::write(import_dir.join("history.csv"), text).unwrap();
    let head = format!(
        "[host]\nstate_dir = \"state\"\nmax_outbox_records = 1000\n\n{}batch_size = 200\n\n",
        upload_section(&receiver)
    );
    write_intervals_config(
        &sandbox,
        &head,
        "history",
        "max_records = 250\n",
        &import_dir,
    );
    // A read that stopped (a crash) while it held pages of the file left them in the
    // outbox: they were never sent, and the next read drops them and reads the file again.
    {
        let mut store = acdlink::store::Store::open(&sandbox.path().join("state")).unwrap();
        store
            .store_read(&acdlink::store::ReadOutcome {
                connector: "history".to_string(),
                stream: "phonelink-intervals".to_string(),
                bodies: vec![acdlink::store::NewBody {
                    endpoint: "queue-intervals".to_string(),
                    n_records: 250,
                    body: b"{\"held by a read that never ended\": true}".to_vec(),
                }],
                n_records_read: 250,
                held: acdlink::store::Held::Keep,
                ..Default::default()
            })
            .unwrap();
    }
    let status = sandbox.acdlink_with_env(&["status"], &[("ACDLINK_E2E_KEY", API_KEY)]);
    assert!(
        String::from_utf8_lossy(&status.stdout)
            .contains("0 record(s) in 0 batch(es), 250 held (a file being read)"),
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        stderr(&status)
    );
    let output = run_once(&sandbox);
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("an earlier read ended while it held records (it failed, or the process stopped): dropped them, never sent; the connector reads them again connector=history stream=phonelink-intervals n_batches=1"),
        "{text}"
    );
    // The file's 3000 records are held whole (over the limit of 1000), released at its
    // end; the next read then waits for the uploads.
    assert!(
        text.contains("for uploads to make room in the outbox (1000 records at most)"),
        "{text}"
    );
    assert!(
        text.contains("read 3000 record(s), enqueued 3000"),
        "{text}"
    );
    receiver.with(|received| {
        assert_eq!(received.items["queue-intervals"].len(), 3000);
        assert!(received.invalid.is_empty());
        for applications in received.applications.values() {
            assert!(applications.values().all(|n| *n == 1));
        }
    });
    assert_eq!(names(&import_dir.join("archive")), ["history.csv"]);
}

#[test]
fn acdlink_read_writes_out_what_would_be_sent_and_not_the_records_of_a_rejected_file() {
    let sandbox = Sandbox::new();
    let import_dir = sandbox.path().join("in");
    std::fs::create_dir(&import_dir).unwrap();
    let header = "queue,start,offered,handled,abandoned,handle_time\n";
    std::fs::write(
        import_dir.join("a-good.csv"),
        format!("{header}Q1,2024-03-04 08:00,10,9,1,60\nQ2,2024-03-04 08:00,5,5,0,30\n"),
    )
    .unwrap();
    // 4000 good rows (more than one block of encoded records, so pages of them are held
    // before the bad row is reached), then a bad one: the whole file is rejected.
    let mut bad = String::from(header);
    for queue in 0..4000 {
        bad.push_str(&format!("Q{queue},2024-03-04 08:00,1,1,0,0\n"));
    }
    bad.push_str("Q5,2024-03-04 08:00,lots,2,0,0\n");
    std::fs::write(import_dir.join("b-bad.csv"), bad).unwrap();
    write_intervals_config(&sandbox, "", "files", "", &import_dir);
    let output = sandbox.acdlink(&[
        "read",
        "files",
        "--stream",
        "phonelink-intervals",
        "--max-records",
        "1000",
    ]);
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    let queues: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["queue_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(queues, ["Q1", "Q2"]);
    assert!(
        text.contains("read 2 phonelink-intervals record(s) from `files` since the beginning (nothing committed) into stdout in "),
        "{text}"
    );
    let dropped = text
        .split(", 1 rejected, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("a count of dropped records");
    assert!(
        dropped >= 1000
            && text
                .contains("dropped with the files they came from (rejected, or imported before)"),
        "{text}"
    );
    assert!(
        text.contains("rejected b-bad.csv:4002:3 (offered)"),
        "{text}"
    );
    // `read` never commits: both files are still where they were.
    assert_eq!(names(&import_dir), ["a-good.csv", "b-bad.csv"]);
}
