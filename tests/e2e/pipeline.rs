//! The pipeline end to end: the real binary reads the demo connector into its outbox and
//! uploads it to the strict reference receiver, through failures, refusals, pauses and
//! `kill -9`; the receiver must end with exactly the data of the window, each item once.

use acdlink_tests::{
    receiver::{Fault, Receiver, API_KEY},
    stderr, stdout, Sandbox,
};
use std::{collections::BTreeMap, process::Command, time::Duration};

fn pipeline_config(receiver: &Receiver, history_days: u32, queues: u32, batch_size: u32) -> String {
    format!(
        "[upload]\ntype = \"http\"\nbase_url = \"{}\"\napi_key = {{ env = \"ACDLINK_E2E_KEY\" }}\nintegration_configuration_id = 42\nexternal_system = \"e2e\"\nbatch_size = {batch_size}\nconcurrency = 2\ntimeout_secs = 5\n\n[[connector]]\nname = \"hq\"\nplugin = \"demo\"\ntimezone = \"Europe/Berlin\"\nhistory_days = {history_days}\n[connector.settings]\nqueues = {queues}\nagents = 5\n",
        receiver.base_url
    )
}

/// The binary with the API key in its environment (every command resolves the secrets).
fn acdlink(sandbox: &Sandbox, args: &[&str]) -> std::process::Output {
    sandbox.acdlink_with_env(args, &[("ACDLINK_E2E_KEY", API_KEY)])
}

fn run_once(sandbox: &Sandbox) -> std::process::Output {
    acdlink(sandbox, &["run", "--once"])
}

/// `acdlink run` (the service) in the background, its stderr to `stderr`.
fn start_service(sandbox: &Sandbox, stderr: std::process::Stdio) -> std::process::Child {
    Command::new(acdlink_tests::acdlink_binary())
        .arg("--config")
        .arg(sandbox.path().join("acdlink.toml"))
        .arg("run")
        .env("ACDLINK_E2E_KEY", API_KEY)
        .env("RUST_BACKTRACE", "0")
        .stderr(stderr)
        .spawn()
        .expect("start acdlink run")
}

/// `run --once` until it succeeds (retries wait for their backoff), at most `tries` times.
fn run_until_done(sandbox: &Sandbox, tries: usize) {
    for _ in 0..tries {
        let output = run_once(sandbox);
        if output.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    panic!("run --once did not succeed after {tries} tries");
}

/// The queue intervals `acdlink read` yields for the window the receiver's items span,
/// as natural key -> (offered, handled, abandoned).
fn expected_intervals(
    sandbox: &Sandbox,
    received: &BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, (u64, u64, u64)> {
    let starts: Vec<&str> = received
        .values()
        .map(|item| item["timestamp"].as_str().unwrap())
        .collect();
    let from = starts.iter().min().unwrap().to_string();
    let last: jiff::Timestamp = starts.iter().max().unwrap().parse().unwrap();
    let to = (last + jiff::SignedDuration::from_mins(15)).to_string();
    let output = acdlink(
        sandbox,
        &[
            "read",
            "hq",
            "--stream",
            "phonelink-intervals",
            "--from",
            &from,
            "--to",
            &to,
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                format!(
                    "{}|{}|{}",
                    record["queue_id"].as_str().unwrap(),
                    record["channel"].as_str().unwrap(),
                    record["start"].as_str().unwrap()
                ),
                (
                    record["offered"].as_u64().unwrap(),
                    record["handled"].as_u64().unwrap(),
                    record["abandoned"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn received_intervals(receiver: &Receiver) -> BTreeMap<String, serde_json::Value> {
    receiver.with(|received| {
        received
            .items
            .get("queue-intervals")
            .cloned()
            .unwrap_or_default()
    })
}

/// Every item was applied exactly once, on every endpoint.
fn assert_each_applied_once(receiver: &Receiver) {
    receiver.with(|received| {
        assert!(
            received.invalid.is_empty(),
            "invalid bodies: {:?}",
            received.invalid
        );
        for (endpoint, applications) in &received.applications {
            let twice: Vec<_> = applications
                .iter()
                .filter(|(_, n)| **n != 1)
                .take(5)
                .collect();
            assert!(
                twice.is_empty(),
                "{endpoint}: applied more than once: {twice:?}"
            );
        }
    });
}

fn assert_matches_read(sandbox: &Sandbox, receiver: &Receiver) {
    let received = received_intervals(receiver);
    assert!(!received.is_empty(), "queue intervals arrived");
    let expected = expected_intervals(sandbox, &received);
    let actual: BTreeMap<String, (u64, u64, u64)> = received
        .iter()
        .map(|(key, item)| {
            (
                key.clone(),
                (
                    item["offered"].as_u64().unwrap(),
                    item["handled"].as_u64().unwrap(),
                    item["abandoned"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        actual.len(),
        expected.len(),
        "as many intervals as `acdlink read` yields"
    );
    assert!(
        actual == expected,
        "the receiver's intervals differ from `acdlink read`"
    );
}

#[test]
fn a_history_import_arrives_exactly_once_and_matches_read() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    sandbox.write_config(&pipeline_config(&receiver, 3, 4, 200));
    let output = run_once(&sandbox);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_matches_read(&sandbox, &receiver);
    // Three local days and today: at least 3 * 96 intervals per queue.
    assert!(received_intervals(&receiver).len() >= 4 * 96 * 3);
    let statuses = receiver.with(|received| {
        received
            .items
            .get("agent-statuses")
            .map_or(0, BTreeMap::len)
    });
    assert!(statuses > 100, "agent statuses arrived: {statuses}");
    assert_each_applied_once(&receiver);

    // The next cycle re-reads the reconciliation window and sends nothing unchanged.
    let n_requests = receiver.with(|received| received.n_requests);
    let again = run_once(&sandbox);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("enqueued 0 new or changed"),
        "{}",
        stderr(&again)
    );
    assert_eq!(receiver.with(|received| received.n_requests), n_requests);
}

#[test]
fn after_500s_dropped_connections_and_429s_everything_arrives_once() {
    let receiver = Receiver::start();
    receiver.push_faults([
        Fault::Status(500, None),
        Fault::Drop,
        Fault::Status(503, None),
        Fault::Status(429, Some(1)),
        Fault::Slow(Duration::from_millis(300)),
        Fault::Status(502, None),
    ]);
    let sandbox = Sandbox::new();
    sandbox.write_config(&pipeline_config(&receiver, 1, 3, 100));
    let first = run_once(&sandbox);
    assert_eq!(
        first.status.code(),
        Some(1),
        "failures are reported: {}",
        stderr(&first)
    );
    assert!(stderr(&first).contains("to retry"), "{}", stderr(&first));
    run_until_done(&sandbox, 20);
    assert_matches_read(&sandbox, &receiver);
    assert_each_applied_once(&receiver);
}

#[test]
fn a_refused_batch_is_quarantined_and_shown_while_the_rest_arrive() {
    let receiver = Receiver::start();
    receiver.refuse_bodies_containing("agent0002@demo.example");
    let sandbox = Sandbox::new();
    // Three days of history always hold a weekday, when agent0002 works (it has the
    // weekend off), whatever day the test runs on.
    sandbox.write_config(&pipeline_config(&receiver, 3, 2, 1000));
    let output = run_once(&sandbox);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("quarantined"),
        "{}",
        stderr(&output)
    );
    let status = acdlink(&sandbox, &["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let text = stdout(&status);
    assert!(text.contains("quarantined batch(es)"), "{text}");
    assert!(text.contains("agent-statuses record(s)"), "{text}");
    assert!(
        text.contains("status 400: {\"error\":\"refused: contains agent0002@demo.example\"}"),
        "{text}"
    );
    // Everything else arrived, and a second cycle does not retry the refused batch.
    assert_matches_read(&sandbox, &receiver);
    let requests = receiver.with(|received| received.n_requests);
    assert!(run_once(&sandbox).status.success());
    assert_eq!(receiver.with(|received| received.n_requests), requests);

    // The WFM is fixed; the operator sends the batch again.
    receiver.stop_refusing();
    let unknown = acdlink(&sandbox, &["requeue", "99999"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no quarantined batch 99999"),
        "{}",
        stderr(&unknown)
    );
    let requeued = acdlink(&sandbox, &["requeue", "--all"]);
    assert!(requeued.status.success(), "{}", stderr(&requeued));
    assert!(
        stderr(&requeued).contains(" batch(es) back in the outbox"),
        "{}",
        stderr(&requeued)
    );
    assert!(run_once(&sandbox).status.success());
    assert!(!stdout(&acdlink(&sandbox, &["status"])).contains("quarantined batch(es)"));
    let agent_0002 = receiver.with(|received| {
        received.items["agent-statuses"]
            .values()
            .filter(|item| item["agentIdentifier"] == "agent0002@demo.example")
            .count()
    });
    assert!(agent_0002 > 0, "the requeued statuses arrived");
    assert_each_applied_once(&receiver);
}

#[test]
fn resume_imports_what_was_missed_while_paused() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    sandbox.write_config(&pipeline_config(&receiver, 1, 2, 500));
    let paused = acdlink(&sandbox, &["pause", "hq"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    let skipped = run_once(&sandbox);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    assert!(
        stderr(&skipped).contains("connector `hq`: skipped (paused)"),
        "{}",
        stderr(&skipped)
    );
    assert!(stdout(&acdlink(&sandbox, &["status"])).contains("paused since"));
    assert_eq!(receiver.with(|received| received.n_requests), 0);

    assert!(acdlink(&sandbox, &["resume", "hq"]).status.success());
    let resumed = run_once(&sandbox);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_matches_read(&sandbox, &receiver);
    assert_each_applied_once(&receiver);
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_doubles_nothing() {
    let receiver = Receiver::start();
    // Slow answers keep the upload going long enough to be interrupted.
    receiver.push_faults((0..400).map(|_| Fault::Slow(Duration::from_millis(4))));
    let sandbox = Sandbox::new();
    sandbox.write_config(&pipeline_config(&receiver, 12, 12, 50));
    let mut state: u64 = 0x5eed;
    let mut n_killed_while_uploading = 0;
    for round in 0..10 {
        let n_requests_before = receiver.with(|received| received.n_requests);
        let mut child = start_service(&sandbox, std::process::Stdio::null());
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Checkpoints carry the import forward from round to round, so later rounds are
        // killed while uploading.
        let pause_ms = 300 + (state >> 33) % 2500;
        std::thread::sleep(Duration::from_millis(pause_ms));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let n_requests = receiver.with(|received| received.n_requests);
        eprintln!("round {round}: killed after {pause_ms} ms; {n_requests} requests so far");
        if n_requests > n_requests_before {
            n_killed_while_uploading += 1;
        }
        // Enough rounds in both phases: reading into the outbox (the first ones) and
        // uploading (once the checkpoints have carried the import through).
        if round >= 3 && n_killed_while_uploading >= 2 {
            break;
        }
    }
    assert!(
        n_killed_while_uploading >= 1,
        "no round killed acdlink while it uploaded"
    );
    let n_before_final = receiver.with(|received| received.n_requests);
    run_until_done(&sandbox, 20);
    let n_after = receiver.with(|received| received.n_requests);
    eprintln!("{n_before_final} requests before the final run, {n_after} after");
    assert_matches_read(&sandbox, &receiver);
    assert_each_applied_once(&receiver);
}

#[test]
fn a_full_outbox_pauses_reading_and_the_backfill_goes_on_after_uploads() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    let config = format!(
        "[host]\nmax_outbox_records = 1000\n\n{}",
        pipeline_config(&receiver, 3, 4, 200)
    );
    // Sandbox::write_config puts its own [host] table first; this test needs its own.
    std::fs::write(sandbox.path().join("acdlink.toml"), config).unwrap();
    let output = run_once(&sandbox);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("for uploads to make room in the outbox (1000 records at most)"),
        "{}",
        stderr(&output)
    );
    assert_matches_read(&sandbox, &receiver);
    assert_each_applied_once(&receiver);
}

#[test]
fn reconciliation_sends_again_exactly_the_changed_records() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    let config = pipeline_config(&receiver, 1, 3, 500);
    sandbox.write_config(&config);
    assert!(run_once(&sandbox).status.success());
    let before = received_intervals(&receiver);

    // The ACD corrects queue Q0002: three more abandoned contacts in every interval.
    sandbox.write_config(&format!(
        "{config}[connector.settings.corrections]\nQ0002 = 3\n"
    ));
    let output = run_once(&sandbox);
    assert!(output.status.success(), "{}", stderr(&output));
    let after = received_intervals(&receiver);
    let sent_again: Vec<String> = receiver.with(|received| {
        received.applications["queue-intervals"]
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(key, _)| key.clone())
            .collect()
    });
    assert!(
        !sent_again.is_empty(),
        "the corrected intervals were sent again"
    );
    // 24 hours of reconciliation: the newest interval and the 95 before it.
    assert_eq!(sent_again.len(), 96, "{sent_again:?}");
    for key in &sent_again {
        assert!(
            key.starts_with("Q0002|"),
            "only the corrected queue is sent again: {key}"
        );
        let (old, new) = (&before[key], &after[key]);
        assert_eq!(
            new["abandoned"].as_u64(),
            old["abandoned"].as_u64().map(|n| n + 3),
            "{key}"
        );
        assert_eq!(
            new["offered"].as_u64(),
            old["offered"].as_u64().map(|n| n + 3),
            "{key}"
        );
    }
    receiver.with(|received| {
        let applied_more = received.applications["agent-statuses"]
            .values()
            .filter(|n| **n > 1)
            .count();
        assert_eq!(
            applied_more, 0,
            "agent statuses did not change and were not sent again"
        );
    });
}

/// Writes `count` agent-status lines for `agent` into `dir/name`.
fn drop_file(dir: &std::path::Path, name: &str, agent: &str, count: i64) {
    let start = 1_709_542_800_000i64;
    let lines: Vec<String> = (0..count)
        .map(|n| {
            format!(
                "{agent},AVAIL,{},{}",
                start + n * 60_000,
                start + (n + 1) * 60_000
            )
        })
        .collect();
    std::fs::write(dir.join(name), lines.join("\n")).unwrap();
}

#[test]
fn an_incremental_batch_stored_but_not_committed_is_recognised_by_its_state_after_a_crash() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    sandbox.add_plugin("acdlink-fixture-drop-folder");
    let drop_dir = sandbox.path().join("drop");
    std::fs::create_dir(&drop_dir).unwrap();
    drop_file(&drop_dir, "a.txt", "tina", 3);
    drop_file(&drop_dir, "b.txt", "tom", 4);
    sandbox.write_config(&format!(
        "[upload]\ntype = \"http\"\nbase_url = \"{}\"\napi_key = {{ env = \"ACDLINK_E2E_KEY\" }}\nintegration_configuration_id = 42\n\n[[connector]]\nname = \"folder\"\nplugin = \"drop-folder\"\n[connector.settings]\ndir = \"{}\"\n",
        receiver.base_url,
        drop_dir.display()
    ));

    // The host stores the first file's batch with its state, then dies before commit.
    let crashed = sandbox.acdlink_with_env(
        &["run", "--once"],
        &[
            ("ACDLINK_E2E_KEY", API_KEY),
            ("ACDLINK_FIXTURE_ABORT_IN_COMMIT", "1"),
        ],
    );
    assert!(!crashed.status.success(), "the fixture aborts in commit");
    assert_eq!(
        receiver.with(|received| received.n_requests),
        0,
        "nothing was uploaded yet"
    );
    assert!(
        drop_dir.join("a.txt").exists() && drop_dir.join("b.txt").exists(),
        "the source is not touched before commit"
    );
    assert!(!drop_dir.join("archive").exists());

    // After the restart the stored state says a.txt was read: it is not read again.
    let output = run_once(&sandbox);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("connector `folder`: read 4 record(s), enqueued 4"),
        "only b.txt is read now: {}",
        stderr(&output)
    );
    assert_each_applied_once(&receiver);
    let agents: BTreeMap<String, usize> = receiver.with(|received| {
        received.items["agent-statuses"]
            .values()
            .fold(BTreeMap::new(), |mut agents, item| {
                *agents
                    .entry(item["agentIdentifier"].as_str().unwrap().to_string())
                    .or_default() += 1;
                agents
            })
    });
    assert_eq!(
        agents,
        BTreeMap::from([("tina".to_string(), 3), ("tom".to_string(), 4)])
    );
    // Committed now: both files are archived.
    assert!(drop_dir.join("archive/a.txt").exists() && drop_dir.join("archive/b.txt").exists());
    assert!(!drop_dir.join("a.txt").exists());
}

#[test]
fn the_drop_folder_library_passes_the_conformance_kit() {
    let sandbox = Sandbox::new();
    sandbox.add_plugin("acdlink-fixture-drop-folder");
    let drop_dir = sandbox.path().join("drop");
    std::fs::create_dir(&drop_dir).unwrap();
    for (name, agent) in [("a.txt", "tina"), ("b.txt", "tom"), ("c.txt", "uma")] {
        drop_file(&drop_dir, name, agent, 5);
    }
    let registry = acdlink::registry::Registry::load(&acdlink::registry::LoadOptions {
        plugin_dirs: vec![sandbox.plugin_dir()],
        allow_insecure_plugins: false,
        include_builtins: false,
    });
    let plugin = registry.find("drop-folder").expect("the fixture loaded");
    let window = acdlink_connector_api::TimeWindow::new(
        acdlink_connector_api::UtcMillis(0),
        acdlink_connector_api::UtcMillis(1),
    );
    let report = acdlink_connector_api::conformance::Conformance::new(
        &serde_json::json!({ "dir": drop_dir }),
        window,
    )
    .max_records(5)
    .run_module(plugin.module)
    .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.streams[0].n_records, 15);
    assert_eq!(report.streams[0].n_pages, 3);
}

/// Waits until the receiver's queue intervals stop changing (and are not empty).
fn wait_until_received_settles(receiver: &Receiver, limit: Duration) {
    let started = std::time::Instant::now();
    let mut last = (0, std::time::Instant::now());
    while started.elapsed() < limit {
        let n = received_intervals(receiver).len();
        if n != last.0 {
            last = (n, std::time::Instant::now());
        } else if n > 0 && last.1.elapsed() > Duration::from_millis(1500) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the receiver did not settle within {limit:?} ({} intervals)",
        last.0
    );
}

#[test]
fn the_service_uploads_while_a_failing_connector_backs_off_and_stops_cleanly_on_sigterm() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    sandbox.add_plugin("acdlink-fixture-read-panics");
    sandbox.write_config(&format!(
        "{}\n[[connector]]\nname = \"flaky\"\nplugin = \"panicky\"\n",
        pipeline_config(&receiver, 2, 3, 100)
    ));
    let log = sandbox.path().join("service.log");
    let mut child = start_service(&sandbox, std::fs::File::create(&log).unwrap().into());
    // The demo's history arrives although `flaky` panics on every read.
    wait_until_received_settles(&receiver, Duration::from_secs(60));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "acdlink run did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{log}");
    assert!(
        log.contains("stopped: what was read is in the outbox"),
        "{log}"
    );
    assert!(
        log.contains("stream backs off after a failure") && log.contains("flaky"),
        "{log}"
    );
    assert_matches_read(&sandbox, &receiver);
    assert_each_applied_once(&receiver);
}

#[test]
fn run_once_reports_a_failing_connector_and_delivers_the_others() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    sandbox.add_plugin("acdlink-fixture-read-panics");
    sandbox.write_config(&format!(
        "{}\n[[connector]]\nname = \"flaky\"\nplugin = \"panicky\"\n",
        pipeline_config(&receiver, 1, 2, 100)
    ));
    let output = run_once(&sandbox);
    assert!(!output.status.success(), "a connector failed");
    let text = stderr(&output);
    assert!(text.contains("connector `flaky`"), "{text}");
    assert!(text.contains("failed: "), "{text}");
    assert!(text.contains("connector `hq`: read "), "{text}");
    assert_matches_read(&sandbox, &receiver);
    assert_each_applied_once(&receiver);
    // `status` keeps the failure until a read succeeds.
    let status = stdout(&acdlink(&sandbox, &["status"]));
    assert!(status.contains("last errors:"), "{status}");
    assert!(
        status.contains("`flaky` phonelink-intervals: 1 failed read(s) since"),
        "{status}"
    );
    assert!(status.contains("deliberate panic in read"), "{status}");
    assert!(!status.contains("`hq`"), "{status}");
}

#[test]
fn a_second_service_on_the_same_state_directory_is_refused() {
    let receiver = Receiver::start();
    let sandbox = Sandbox::new();
    sandbox.write_config(&pipeline_config(&receiver, 1, 2, 100));
    let mut first = start_service(&sandbox, std::process::Stdio::null());
    wait_until_received_settles(&receiver, Duration::from_secs(60));
    let second = run_once(&sandbox);
    first.kill().unwrap();
    let _ = first.wait();
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains(&format!(
            "another acdlink (process {}) is running on the state directory",
            first.id()
        )),
        "{}",
        stderr(&second)
    );
    // The lock goes with the process, however it ended.
    assert!(run_once(&sandbox).status.success());
}
