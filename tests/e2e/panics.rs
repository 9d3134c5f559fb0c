//! A connector that panics in `read` gives the host an error value; the host keeps running
//! and reports it.

use super::*;
use acdlink::session::{Session, SessionError};
use acdlink_connector_api::ErrorKind;
use acdlink_tests::{stderr, Sandbox};

#[test]
fn a_panic_in_read_is_an_error_value_and_the_host_goes_on() {
    let sandbox = Sandbox::new();
    sandbox.add_plugin("acdlink-fixture-read-panics");
    sandbox.add_plugin("acdlink-connector-demo-plugin");
    let registry = registry(Some(sandbox.plugin_dir()));
    let panicky = registry
        .find("panicky")
        .expect("the panicking fixture loaded");
    let mut session = Session::open("p", panicky, &serde_json::json!({}), &utc()).unwrap();
    let day = window("2024-03-04T00:00:00Z", "2024-03-05T00:00:00Z");
    let read = |session: &mut Session| {
        session
            .read_pages(StreamKind::PHONELINK_INTERVALS, Some(day), None, 10, |_| {
                ControlFlow::Continue(())
            })
            .expect_err("reading a panicking connector fails")
    };
    match read(&mut session) {
        SessionError::Connector {
            operation, error, ..
        } => {
            assert_eq!(operation, "read");
            assert_eq!(error.kind, ErrorKind::PANICKED);
            assert_eq!(
                error.message.as_str(),
                "connector panicked in read: deliberate panic in read"
            );
        }
        other => panic!("expected a connector error, found {other}"),
    }
    // The instance is poisoned; every further call says so instead of running it again.
    match read(&mut session) {
        SessionError::Connector { error, .. } => {
            assert_eq!(error.kind, ErrorKind::PANICKED);
            assert!(
                error.message.contains("unusable after it panicked in read"),
                "{error}"
            );
        }
        other => panic!("expected a connector error, found {other}"),
    }
    // A fresh instance of the same plugin works, and so does every other plugin.
    let mut fresh = Session::open("p2", panicky, &serde_json::json!({}), &utc()).unwrap();
    assert_eq!(
        fresh.check().unwrap().message.as_str(),
        "fine until you read"
    );
    let demo = registry.find("demo").unwrap();
    let mut demo =
        Session::open("demo", demo, &serde_json::json!({ "queues": 1 }), &utc()).unwrap();
    assert_eq!(
        read_json(&mut demo, StreamKind::PHONELINK_INTERVALS, day, 50).len(),
        96
    );
}

#[test]
fn the_binary_reports_a_panicking_read_and_exits_with_failure() {
    let sandbox = Sandbox::new();
    sandbox.add_plugin("acdlink-fixture-read-panics");
    sandbox.write_config("[[connector]]\nname = \"flaky\"\nplugin = \"panicky\"\n");
    let output = sandbox.acdlink(&[
        "read",
        "flaky",
        "--stream",
        "phonelink",
        "--from",
        "2024-03-04",
        "--to",
        "2024-03-05",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "an orderly exit, not an abort: {output:?}"
    );
    let text = stderr(&output);
    assert!(
        text.contains("error: connector `flaky`: read failed: connector panicked in read: deliberate panic in read [panicked]"),
        "{text}"
    );
}
