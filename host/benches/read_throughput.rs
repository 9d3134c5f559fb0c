//! Read throughput of the demo connector through the plugin-library path and the built-in
//! path, in the same run, so the result is a ratio as well as two rates.
//!
//! ```text
//! cargo build --release -p acdlink-connector-demo-plugin
//! cargo bench -p acdlink --bench read_throughput -- [--records N] [--batch N] [--rounds N] [--stream intervals|timelink]
//! ```
//!
//! Both paths go through the same host code (`Session::read_pages`, with batch validation);
//! the only difference is where the connector's code lives. Rounds alternate between the
//! paths so that neither gets a warmer machine.

use acdlink::{
    registry::{LoadOptions, Plugin, Registry},
    session::Session,
};
use acdlink_connector_api::{
    measure::peak_rss_mib, time::SourceTimeZone, Records, StreamKind, TimeWindow, UtcMillis,
};
use std::{ops::ControlFlow, path::PathBuf, time::Instant};

/// The same allocator as the `acdlink` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    n_records: u64,
    batch: u32,
    rounds: u32,
    stream: StreamKind,
}

fn parse_options() -> Options {
    let mut options = Options {
        n_records: 10_000_000,
        batch: 4096,
        rounds: 3,
        stream: StreamKind::PHONELINK_INTERVALS,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--records" => options.n_records = value().parse().expect("--records: a number"),
            "--batch" => options.batch = value().parse().expect("--batch: a number"),
            "--rounds" => options.rounds = value().parse().expect("--rounds: a number"),
            "--stream" => {
                options.stream = match value().as_str() {
                    "intervals" => StreamKind::PHONELINK_INTERVALS,
                    "timelink" => StreamKind::TIMELINK,
                    other => panic!("--stream: expected intervals or timelink, found {other}"),
                }
            }
            // cargo bench passes --bench to harness-less benches.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// The demo plugin library built in the same profile as this benchmark.
fn demo_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark has a path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the benchmark lives in target/<profile>/deps");
    let path = dir.join(format!(
        "{}acdlink_connector_demo_plugin{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --release -p acdlink-connector-demo-plugin` (or the profile this benchmark runs in)",
        path.display()
    );
    path
}

/// Reads the whole window once; returns (records, seconds).
fn read_once(
    plugin: &Plugin,
    options: &Options,
    settings: &serde_json::Value,
    window: TimeWindow,
) -> (u64, f64) {
    let mut session =
        Session::open("bench", plugin, settings, &SourceTimeZone::utc()).expect("open the demo");
    let mut n_records = 0u64;
    let mut checksum = 0u64;
    let started = Instant::now();
    session
        .read_pages(options.stream, Some(window), None, options.batch, |batch| {
            n_records += batch.records.len() as u64;
            // Touch every record so that nothing can be skipped.
            checksum = checksum.wrapping_add(match &batch.records {
                Records::QueueIntervals(records) => {
                    records.iter().map(|r| u64::from(r.offered)).sum()
                }
                Records::AgentStatuses(records) => records.iter().map(|r| r.start.0 as u64).sum(),
                Records::ContactEvents(records) => records.len() as u64,
            });
            ControlFlow::Continue(())
        })
        .expect("read the demo");
    let seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(checksum);
    (n_records, seconds)
}

fn pick_best(seconds: &mut [f64]) -> f64 {
    seconds.iter().copied().fold(f64::MAX, f64::min)
}

fn pick_median(seconds: &mut [f64]) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn main() {
    let options = parse_options();
    let builtin = Registry::load(&LoadOptions {
        include_builtins: true,
        ..LoadOptions::default()
    });
    let mut library = Registry::default();
    let library_path = demo_library();
    library.load_file(&library_path, true);
    assert!(library.failures().is_empty(), "{:?}", library.failures());
    let builtin = builtin.find("demo").expect("the demo is built in");
    let library = library.find("demo").expect("the demo library loaded");

    // 200 queues at 15 minutes: the window holds `n_records` intervals. For TimeLink, 2000
    // agents yield about 190 statuses each per working day.
    let (settings, length_ms) = match options.stream {
        StreamKind::TIMELINK => (
            serde_json::json!({ "agents": 2000, "queues": 1 }),
            86_400_000 / 250_000,
        ),
        _ => (
            serde_json::json!({ "queues": 200, "interval_minutes": 15 }),
            900_000 / 200,
        ),
    };
    let from = UtcMillis(1_672_531_200_000); // 2023-01-01T00:00:00Z
    let window = TimeWindow::new(
        from,
        UtcMillis(from.0 + options.n_records as i64 * length_ms),
    );
    println!(
        "demo {} over {window}, batches of {}, {} round(s), library {}",
        options.stream,
        options.batch,
        options.rounds,
        library_path.display()
    );

    let mut seconds_of: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut n_read = [0u64; 2];
    for round in 1..=options.rounds {
        for (index, (name, plugin)) in [("library", library), ("built-in", builtin)]
            .into_iter()
            .enumerate()
        {
            let (n_records, seconds) = read_once(plugin, &options, &settings, window);
            println!(
                "round {round} {name:>8}: {n_records} records in {seconds:.3} s = {:.2} M records/s",
                n_records as f64 / seconds / 1e6
            );
            seconds_of[index].push(seconds);
            n_read[index] = n_records;
        }
    }
    assert_eq!(n_read[0], n_read[1], "both paths read the same records");
    for (label, pick) in [
        ("best", pick_best as fn(&mut [f64]) -> f64),
        ("median", pick_median),
    ] {
        let rate = |index: usize| n_read[index] as f64 / pick(&mut seconds_of[index].clone()) / 1e6;
        println!(
            "{label}: library {:.2} M records/s, built-in {:.2} M records/s, library/built-in = {:.3}",
            rate(0),
            rate(1),
            rate(0) / rate(1)
        );
    }
    if let Some(peak) = peak_rss_mib() {
        println!("peak RSS {peak:.1} MiB");
    }
}
