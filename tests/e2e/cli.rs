//! The `acdlink` binary's foundation commands against the built-in demo connector.

use super::*;
use acdlink::session::Session;
use acdlink_tests::{stderr, stdout, Sandbox};

const DEMO_CONFIG: &str = "[[connector]]\nname = \"hq\"\nplugin = \"demo\"\ntimezone = \"Europe/Berlin\"\n\n[connector.settings]\nqueues = 3\nagents = 4\n";

#[test]
fn read_prints_the_connectors_records_as_json_lines_in_its_time_zone() {
    let sandbox = Sandbox::new();
    sandbox.write_config(DEMO_CONFIG);
    let output = sandbox.acdlink(&[
        "read",
        "hq",
        "--stream",
        "phonelink",
        "--from",
        "2024-03-04",
        "--to",
        "2024-03-05",
        "--max-records",
        "10",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    // A local Berlin day (UTC+1 in March): 96 intervals of 3 queues from 23:00 UTC.
    assert_eq!(printed.len(), 3 * 96);
    assert_eq!(printed[0]["start"], "2024-03-03T23:00:00Z");
    assert_eq!(printed[0]["queue_id"], "Q0001");
    assert_eq!(printed[0]["channel"], "calls");
    assert!(
        stderr(&output).contains("read 288 phonelink-intervals record(s) from `hq`"),
        "{}",
        stderr(&output)
    );

    // Exactly what the built-in yields through the library for the same window.
    let registry = registry(None);
    let mut session = Session::open(
        "hq",
        registry.find("demo").unwrap(),
        &serde_json::json!({ "queues": 3, "agents": 4 }),
        &zone("Europe/Berlin"),
    )
    .unwrap();
    let expected = read_json(
        &mut session,
        StreamKind::PHONELINK_INTERVALS,
        window("2024-03-03T23:00:00Z", "2024-03-04T23:00:00Z"),
        4096,
    );
    assert!(
        printed == expected,
        "the binary printed other records than the library read"
    );
}

#[test]
fn check_and_discover_use_the_configured_settings() {
    let sandbox = Sandbox::new();
    sandbox.write_config(DEMO_CONFIG);
    let check = sandbox.acdlink(&["check", "hq"]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert_eq!(
        stdout(&check).trim(),
        "hq: ok: demo source ready: 3 queues, 4 agents, 15-minute intervals, time zone Europe/Berlin"
    );
    let discover = sandbox.acdlink(&["discover", "hq", "--json"]);
    assert!(discover.status.success(), "{}", stderr(&discover));
    let document: serde_json::Value = serde_json::from_str(&stdout(&discover)).unwrap();
    let queues: Vec<&str> = document["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["Q0001", "Q0002", "Q0003"]);
    assert_eq!(document["agents"].as_array().unwrap().len(), 4);
    assert!(document["activities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == "AUX-2"));
}

#[test]
fn bad_configuration_names_file_line_and_key() {
    let sandbox = Sandbox::new();
    let path =
        sandbox.write_config("[[connector]]\nname = \"hq\"\nplugin = \"demo\"\nqueues = 3\n");
    let output = sandbox.acdlink(&["check", "hq"]);
    assert_eq!(output.status.code(), Some(1));
    let expected = format!("error: {}:7:1: unknown field `queues`", path.display());
    assert!(
        stderr(&output).starts_with(&expected),
        "{}",
        stderr(&output)
    );

    sandbox.write_config("[[connector]]\nname = \"hq\"\nplugin = \"avaya\"\n");
    let output = sandbox.acdlink(&[
        "read",
        "hq",
        "--stream",
        "timelink",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let expected = format!(
        "error: {}:6:10: connector `hq`: no plugin of kind `avaya` is loaded; loaded kinds: csv, demo",
        path.display()
    );
    assert!(
        stderr(&output).starts_with(&expected),
        "{}",
        stderr(&output)
    );
    // The service refuses to start the same way, before it reads or uploads anything.
    sandbox.write_config(
        "[upload]\ntype = \"file\"\npath = \"out\"\n\n[[connector]]\nname = \"hq\"\nplugin = \"avaya\"\n",
    );
    let output = sandbox.acdlink(&["run", "--once"]);
    assert_eq!(output.status.code(), Some(1));
    let expected = format!(
        "error: {}:10:10: connector `hq`: no plugin of kind `avaya` is loaded",
        path.display()
    );
    assert!(
        stderr(&output).starts_with(&expected),
        "{}",
        stderr(&output)
    );
    assert!(!sandbox.path().join("out").exists());
}

#[test]
fn bad_arguments_say_what_was_expected() {
    let sandbox = Sandbox::new();
    sandbox.write_config(DEMO_CONFIG);
    let backwards = sandbox.acdlink(&[
        "read",
        "hq",
        "--stream",
        "timelink",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-01",
    ]);
    assert_eq!(backwards.status.code(), Some(1));
    assert!(
        stderr(&backwards)
            .contains("--to (2023-12-31T23:00:00Z) must be after --from (2024-01-01T23:00:00Z)"),
        "{}",
        stderr(&backwards)
    );

    let garbled = sandbox.acdlink(&[
        "read",
        "hq",
        "--stream",
        "timelink",
        "--from",
        "yesterday",
        "--to",
        "2024-01-01",
    ]);
    assert_eq!(garbled.status.code(), Some(1));
    assert!(
        stderr(&garbled).contains("--from: expected a date (2024-03-01)"),
        "{}",
        stderr(&garbled)
    );
    assert!(
        stderr(&garbled).contains("found \"yesterday\""),
        "{}",
        stderr(&garbled)
    );

    let unknown = sandbox.acdlink(&["check", "nowhere"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains(
            "no connector `nowhere`: configured connectors: hq; connector kinds: csv, demo"
        ),
        "{}",
        stderr(&unknown)
    );

    let no_window = sandbox.acdlink(&["read", "hq", "--stream", "timelink"]);
    assert_eq!(no_window.status.code(), Some(1));
    assert!(
        stderr(&no_window).contains("is read by time window: give both --from and --to"),
        "{}",
        stderr(&no_window)
    );
}

const SECRET_CONFIG: &str = "[upload]\ntype = \"http\"\nbase_url = \"http://127.0.0.1:9\"\napi_key = { env = \"ACDLINK_E2E_API_KEY\" }\nintegration_configuration_id = 42\n\n[[connector]]\nname = \"hq\"\nplugin = \"demo\"\n[connector.settings]\nqueues = 2\n\n[[connector]]\nname = \"typo\"\nplugin = \"demo\"\n[connector.settings]\nqueue = 2\n";

#[test]
fn config_check_opens_every_connector_and_reports_each_problem() {
    let sandbox = Sandbox::new();
    sandbox.write_config(SECRET_CONFIG);
    let output =
        sandbox.acdlink_with_env(&["config", "check"], &[("ACDLINK_E2E_API_KEY", "k-123")]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("upload: http to http://127.0.0.1:9 (integration 42, api key <redacted: environment variable ACDLINK_E2E_API_KEY>)"), "{text}");
    assert!(
        text.contains("connector `hq`: ok: demo 0.1.0 (built-in (acdlink-connector-demo))"),
        "{text}"
    );
    assert!(
        text.contains(
            "error: connector `typo`: open failed: invalid setting `queue`: unknown field `queue`"
        ),
        "{text}"
    );
    assert!(
        stderr(&output).contains("error: 1 of 2 connector(s) have errors"),
        "{}",
        stderr(&output)
    );
    assert!(
        !text.contains("k-123"),
        "the secret is never printed: {text}"
    );
}

#[test]
fn config_show_redacts_secrets_and_a_missing_secret_names_line_and_key() {
    let sandbox = Sandbox::new();
    let path = sandbox.write_config(SECRET_CONFIG);
    let output = sandbox.acdlink_with_env(&["config", "show"], &[("ACDLINK_E2E_API_KEY", "k-123")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown: toml::Table = stdout(&output).parse().expect("config show prints TOML");
    assert_eq!(
        shown["upload"]["api_key"].as_str(),
        Some("<redacted: environment variable ACDLINK_E2E_API_KEY>")
    );
    assert_eq!(
        shown["connector"][0]["history_days"].as_integer(),
        Some(1095)
    );
    assert!(!stdout(&output).contains("k-123"));

    let missing = sandbox.acdlink(&["config", "show"]);
    assert_eq!(missing.status.code(), Some(1));
    let expected = format!(
        "error: {}:7:11: key `upload.api_key`: environment variable ACDLINK_E2E_API_KEY is not set",
        path.display()
    );
    assert!(
        stderr(&missing).starts_with(&expected),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn config_show_prints_a_configuration_that_reads_back_the_same() {
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "[upload]\ntype = \"file\"\npath = \"out\"\n\n[[connector]]\nname = \"hq\"\nplugin = \"demo\"\ntimelink = false\n[connector.settings]\nqueues = 3\n",
    );
    let shown = sandbox.acdlink(&["config", "show"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    // The shown text is itself a valid configuration, and showing it again changes nothing.
    let copy = Sandbox::new();
    std::fs::write(copy.path().join("acdlink.toml"), stdout(&shown)).unwrap();
    let check = copy.acdlink(&["config", "check"]);
    assert!(check.status.success(), "{}", stderr(&check));
    let again = copy.acdlink(&["config", "show"]);
    assert_eq!(stdout(&again), stdout(&shown));
}

#[test]
fn an_unknown_phonelink_form_names_file_line_and_the_choices() {
    let sandbox = Sandbox::new();
    let path = sandbox.write_config(
        "[[connector]]\nname = \"x\"\nplugin = \"demo\"\nphonelink_form = \"calls\"\n",
    );
    let output = sandbox.acdlink(&["config", "check"]);
    assert_eq!(output.status.code(), Some(1));
    let expected = format!(
        "error: {}:7:18: unknown variant `calls`, expected `intervals` or `contacts`",
        path.display()
    );
    assert!(
        stderr(&output).starts_with(&expected),
        "{}",
        stderr(&output)
    );
}
