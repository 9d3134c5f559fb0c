//! End-to-end throughput of the pipeline: demo connector -> map -> outbox (SQLite) -> http
//! sink -> a loopback receiver that parses every body as JSON. In the same run, the raw
//! limit of the upload step: the same kind of pre-serialised bodies posted with the same
//! client and concurrency to the same receiver. Prints records per second for both, their
//! ratio, and the peak RSS.
//!
//! ```text
//! cargo bench -p acdlink --bench pipeline -- [--days N] [--queues N] [--batch N] [--concurrency N]
//! ```
//!
//! `--days 1095 --queues 200` is the three-year backfill of 200 queues at 15-minute
//! intervals (about 21 million interval records).

use acdlink::{
    config::{Config, UploadConfig},
    http::HttpSink,
    mapping,
    registry::{LoadOptions, Registry},
    store::{now_ms, OutboxBatch, Store},
    upload::{self, Sink},
};
use acdlink_connector_api::{
    measure::{cpu_seconds, peak_rss_mib},
    time::SourceTimeZone,
    StreamKind, TimeWindow, UtcMillis,
};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

/// The same allocator as the `acdlink` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    days: u32,
    queues: u32,
    batch: u32,
    concurrency: u32,
}

fn parse_options() -> Options {
    let mut options = Options {
        days: 30,
        queues: 200,
        batch: 1000,
        concurrency: 4,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> u32 {
            args.next()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--days" => options.days = value(),
            "--queues" => options.queues = value(),
            "--batch" => options.batch = value(),
            "--concurrency" => options.concurrency = value(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// A loopback receiver that parses every body and counts its items, in a child process
/// (this benchmark's own binary with `--serve-receiver`): its memory is not acdlink's, and
/// it competes for the cores as a WFM on the same machine would.
struct CountingReceiver {
    base_url: String,
    child: std::process::Child,
    answers: std::io::BufReader<std::process::ChildStdout>,
}

impl CountingReceiver {
    fn start(n_threads: usize) -> CountingReceiver {
        let mut child = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .args(["--serve-receiver", &n_threads.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the receiver");
        let mut answers = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let base_url = read_line(&mut answers);
        CountingReceiver {
            base_url,
            child,
            answers,
        }
    }

    /// The number of items received so far.
    fn n_items(&mut self) -> u64 {
        let stdin = self.child.stdin.as_mut().expect("piped");
        std::io::Write::write_all(stdin, b"count\n").expect("ask the receiver");
        read_line(&mut self.answers).parse().expect("a count")
    }
}

fn read_line(reader: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("the receiver answers");
    line.trim().to_string()
}

impl Drop for CountingReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The receiver's side: serves until stdin closes, answering `count` with the number of
/// items received.
fn serve_receiver(n_threads: usize) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
    let port = server.server_addr().to_ip().expect("an IP address").port();
    let n_items = Arc::new(AtomicU64::new(0));
    for _ in 0..n_threads {
        let server = Arc::clone(&server);
        let n_items = Arc::clone(&n_items);
        std::thread::spawn(move || {
            while let Ok(mut request) = server.recv() {
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
                let status = match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(value) => {
                        let n = value["data"].as_array().map_or(0, Vec::len) as u64;
                        n_items.fetch_add(n, Ordering::Relaxed);
                        200
                    }
                    Err(_) => 400,
                };
                let _ = request.respond(tiny_http::Response::empty(status));
            }
        });
    }
    println!("http://127.0.0.1:{port}");
    let stdin = std::io::stdin();
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stdin.lock(), &mut line).is_ok_and(|n| n > 0) {
        println!("{}", n_items.load(Ordering::Relaxed));
        line.clear();
    }
}

/// Prints how far the read and the upload have got every 10 seconds.
#[derive(Default)]
struct Ticker {
    n_read: AtomicU64,
    n_delivered: AtomicU64,
    last: std::sync::Mutex<Option<Instant>>,
}

impl acdlink::scheduler::Observer for Ticker {
    fn day(
        &self,
        _: &str,
        _: StreamKind,
        day: TimeWindow,
        report: &acdlink::pipeline::ImportReport,
    ) {
        let n_read = self
            .n_read
            .fetch_add(report.n_read as u64, Ordering::Relaxed);
        let mut last = self.last.lock().expect("not poisoned");
        if last.is_none_or(|last| last.elapsed().as_secs() >= 10) {
            *last = Some(Instant::now());
            let n_delivered = self.n_delivered.load(Ordering::Relaxed);
            eprintln!(
                "  read up to {} ({n_read} records read, {n_delivered} delivered)",
                day.to
            );
        }
    }

    fn upload_progress(&self, report: &acdlink::upload::DrainReport) {
        self.n_delivered
            .store(report.n_delivered_records as u64, Ordering::Relaxed);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve-receiver") {
        return serve_receiver(args[2].parse().expect("a thread count"));
    }
    let options = parse_options();
    let mut receiver = CountingReceiver::start(4);
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::env::set_var("ACDLINK_BENCH_KEY", "bench");
    let text = format!(
        "[host]\nstate_dir = \"state\"\n\n[upload]\ntype = \"http\"\nbase_url = \"{}\"\napi_key = {{ env = \"ACDLINK_BENCH_KEY\" }}\nintegration_configuration_id = 1\nbatch_size = {}\nconcurrency = {}\n\n[[connector]]\nname = \"bench\"\nplugin = \"demo\"\ntimelink = false\nhistory_days = {}\nreconcile_hours = 0\ndelay_secs = 0\n[connector.settings]\nqueues = {}\nagents = 0\n",
        receiver.base_url, options.batch, options.concurrency, options.days, options.queues
    );
    let config = Config::parse(&dir.path().join("acdlink.toml"), &text)
        .expect("the benchmark's configuration");
    let registry = Registry::load(&LoadOptions {
        include_builtins: true,
        ..LoadOptions::default()
    });
    let Some(UploadConfig::Http(http)) = &config.upload else {
        unreachable!("the configuration above is http")
    };
    let sink = HttpSink::new(http).expect("an http client");
    let store = Store::open(&config.state_dir).expect("the state store");
    let raw_config = config.clone();
    println!(
        "pipeline: demo {} queues x {} days of 15-minute intervals, batches of {}, concurrency {}, outbox limit {}",
        options.queues, options.days, options.batch, options.concurrency, config.max_outbox_records
    );

    // End to end, as `acdlink run --once` does it: readers and the uploader at once, with
    // backpressure at the outbox limit.
    drop(store);
    // The receiver runs in a child process: the CPU seconds are acdlink's own work.
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let scheduler = acdlink::scheduler::Scheduler::new(
        std::sync::Arc::new(config),
        std::sync::Arc::new(registry),
        std::sync::Arc::new(sink),
        std::sync::Arc::new(Ticker::default()),
    );
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let summary = runtime
        .block_on(scheduler.run_once())
        .expect("the scheduler");
    let mut n_read = 0;
    for stream in &summary.streams {
        match &stream.result {
            Ok(report) => n_read += report.n_read,
            Err(error) => panic!("connector failed: {error}"),
        }
    }
    assert!(
        summary.upload.stopped.is_none() && summary.upload.n_retried == 0,
        "uploads failed: {:?}",
        summary.upload
    );
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let n_received = receiver.n_items();
    assert_eq!(n_received as usize, n_read, "every record read arrived");
    let end_to_end = n_read as f64 / seconds;
    println!(
        "end to end: {n_read} records in {seconds:.1} s = {:.0} records/s",
        end_to_end
    );
    println!(
        "acdlink's CPU time: {cpu:.1} s = {:.2} µs per record",
        cpu * 1e6 / n_read.max(1) as f64
    );
    let peak_end_to_end = peak_rss_mib();

    // The raw limit of the upload step: the same kind of bodies, pre-serialised.
    let zone = SourceTimeZone::utc();
    let registry = Registry::load(&LoadOptions {
        include_builtins: true,
        ..LoadOptions::default()
    });
    let Some(UploadConfig::Http(http)) = &raw_config.upload else {
        unreachable!("the configuration above is http")
    };
    let sink = HttpSink::new(http).expect("an http client");
    let plugin = registry.find("demo").expect("the demo is built in");
    let mut session = acdlink::session::Session::open(
        "raw",
        plugin,
        &serde_json::json!({ "queues": options.queues, "agents": 0 }),
        &zone,
    )
    .expect("open the demo");
    let day_ms = 86_400_000;
    let from = UtcMillis(now_ms() / day_ms * day_ms - 7 * day_ms);
    let mut bodies: Vec<OutboxBatch> = Vec::new();
    let mut n_raw_records = 0usize;
    session
        .read_pages(
            StreamKind::PHONELINK_INTERVALS,
            Some(TimeWindow::new(from, UtcMillis(from.0 + 7 * day_ms))),
            None,
            4096,
            |batch| {
                let mapped = mapping::map_records(&batch.records, &Default::default());
                for chunk in mapped.items.chunks(options.batch as usize) {
                    n_raw_records += chunk.len();
                    bodies.push(OutboxBatch {
                        id: bodies.len() as i64,
                        connector: "raw".to_string(),
                        endpoint: "queue-intervals".to_string(),
                        n_records: chunk.len(),
                        body: mapping::body(&mapped, chunk, 1, None).into(),
                        idempotency_key: format!("raw-{}", bodies.len()),
                        attempts: 0,
                    });
                }
                std::ops::ControlFlow::Continue(())
            },
        )
        .expect("read the demo");
    // As many records as the end-to-end run (the week's bodies again and again), by
    // `concurrency` workers that each post the next body as soon as the last is answered.
    let n_posts = (n_read.div_ceil(n_raw_records.max(1)) * bodies.len()).max(bodies.len());
    n_raw_records = n_raw_records * n_posts / bodies.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..options.concurrency {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= n_posts {
                    break;
                }
                let batch = &bodies[index % bodies.len()];
                assert_eq!(sink.deliver(batch), upload::Delivery::Delivered);
            });
        }
    });
    let raw_seconds = started.elapsed().as_secs_f64();
    let raw = n_raw_records as f64 / raw_seconds;
    println!(
        "raw upload limit: {n_raw_records} records in {raw_seconds:.1} s = {raw:.0} records/s"
    );
    println!("end to end / raw upload = {:.2}", end_to_end / raw);
    if let Some(peak) = peak_end_to_end {
        println!("peak RSS during the end-to-end run: {peak:.1} MiB");
    }
}
