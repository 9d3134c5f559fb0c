//! Throughput and memory of the CSV connector on a large interval-layout file, against the
//! raw limit measured in the same run: the `csv` crate reading the same file into nothing.
//!
//! ```text
//! cargo bench -p acdlink-connector-csv --bench throughput -- [--mb N] [--max-records N] [--rounds N] [--only reject-file|skip-row]
//! ```
//!
//! Each measurement is taken `--rounds` times (default 2), interleaved, and the best rate
//! is printed, so that a neighbour's burst of work on a small machine distorts no ratio.
//!
//! The file is generated into a temporary directory, first at a quarter of `--mb` and then
//! at `--mb` (default 1024), so that the two peak RSS figures show whether memory grows
//! with the file. For each size it prints the raw rate, the connector's rate through its
//! `read` pages with `on_bad_row = "reject-file"` and with `"skip-row"` (every page, held
//! ones included, as the host stores them), each as a ratio of the raw rate, with the
//! cores the connector's best pass used (CPU seconds per wall second): on a VM that does
//! not always give the process both cores, the ratio moves with it.

use acdlink_connector_api::{
    measure::{cpu_seconds, peak_rss_mib},
    sdk::{parse_settings, Connector, OpenContext},
    time::SourceTimeZone,
    ReadRequest, StreamKind,
};
use acdlink_connector_csv::CsvConnector;
use std::{
    io::{BufWriter, Write},
    path::Path,
    time::Instant,
};

/// The same allocator as the `acdlink` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    mb: u64,
    max_records: u32,
    rounds: u32,
    /// Only this policy (for profiling), or both.
    only: Option<String>,
}

fn parse_options() -> Options {
    let mut options = Options {
        mb: 1024,
        max_records: 4096,
        rounds: 2,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--mb" => options.mb = value().parse().expect("--mb: a number of megabytes"),
            "--only" => options.only = Some(value()),
            "--rounds" => options.rounds = value().parse().expect("--rounds: a number"),
            "--max-records" => {
                options.max_records = value().parse().expect("--max-records: a number")
            }
            // cargo bench passes --bench to harness-less benches.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// Writes an interval file of about `n_bytes`: 200 queues, 15-minute intervals from
/// 2024-01-01 on, as a WFM export would. Returns the number of data rows.
fn generate(path: &Path, n_bytes: u64) -> u64 {
    let file = std::fs::File::create(path).expect("create the benchmark file");
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let header = "queue;queue_name;date;time;offered;handled;abandoned;handle_time\n";
    out.write_all(header.as_bytes()).expect("write");
    let mut n_written = header.len() as u64;
    let mut n_rows = 0u64;
    let mut date = jiff::civil::date(2024, 1, 1);
    let mut line = String::with_capacity(128);
    'days: loop {
        for interval in 0..96u32 {
            for queue in 0..200u32 {
                let offered = (queue * 7 + interval * 3) % 40;
                let handled = offered - offered / 8;
                let abandoned = offered - handled;
                line.clear();
                use std::fmt::Write as _;
                writeln!(
                    line,
                    "Q{queue:03};Queue {queue} Störung;{:02}.{:02}.{};{:02}:{:02};{offered};{handled};{abandoned};{},5",
                    date.day(),
                    date.month(),
                    date.year(),
                    interval / 4,
                    interval % 4 * 15,
                    handled * 170
                )
                .expect("format a row");
                out.write_all(line.as_bytes()).expect("write");
                n_written += line.len() as u64;
                n_rows += 1;
                if n_written >= n_bytes {
                    break 'days;
                }
            }
        }
        date = date.tomorrow().expect("a next day");
    }
    out.flush().expect("flush");
    n_rows
}

/// The raw limit: the csv crate reading every row into nothing.
fn raw_rows(path: &Path) -> u64 {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(true)
        .from_path(path)
        .expect("open the file");
    let mut record = csv::ByteRecord::new();
    let mut n_rows = 0u64;
    while reader.read_byte_record(&mut record).expect("read a row") {
        n_rows += 1;
    }
    n_rows
}

/// The connector's records through its read pages (records dropped after each page, as
/// the host drops them once stored), and the seconds its first page took.
fn connector_rows(dir: &Path, on_bad_row: &str, max_records: u32) -> (u64, f64) {
    let settings = serde_json::json!({
        "settle_secs": 0,
        "after_import": "keep",
        "on_bad_row": on_bad_row,
        "phonelink": {
            "import_dir": dir,
            "layout": "intervals",
            "interval_minutes": 15,
            "format": {
                "separator": ";", "decimal_comma": true,
                "date_format": "DD.MM.YYYY", "time_format": "hh:mm"
            },
            "columns": {
                "queue": "queue", "queue_name": "queue_name", "date": "date", "time": "time",
                "offered": "offered", "handled": "handled", "abandoned": "abandoned",
                "handle_time": "handle_time"
            }
        }
    });
    let settings = parse_settings(&settings.to_string()).expect("benchmark settings");
    let zone = SourceTimeZone::new("Europe/Berlin").expect("a known zone");
    let mut connector =
        CsvConnector::open(settings, &OpenContext::new("bench", zone)).expect("open the connector");
    let mut request = ReadRequest::incremental(StreamKind::PHONELINK_INTERVALS, None, max_records);
    let mut n_records = 0u64;
    let started = Instant::now();
    let mut first_page_secs = None;
    loop {
        let batch = connector.read(&request).expect("read a page");
        first_page_secs.get_or_insert_with(|| started.elapsed().as_secs_f64());
        assert!(
            batch.rejects.is_empty(),
            "the generated file has no bad rows"
        );
        n_records += batch.records.len() as u64;
        match batch.next_cursor.into_option() {
            Some(cursor) => request.cursor = Some(cursor).into(),
            None => return (n_records, first_page_secs.unwrap_or_default()),
        }
    }
}

fn rate(n_rows: u64, seconds: f64) -> f64 {
    n_rows as f64 / seconds
}

fn main() {
    let options = parse_options();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("intervals.csv");
    for mb in [(options.mb / 4).max(1), options.mb] {
        let n_rows = generate(&path, mb * 1024 * 1024);
        let n_bytes = std::fs::metadata(&path).map_or(0, |metadata| metadata.len());
        println!(
            "file: {:.0} MB, {n_rows} rows (interval layout, 200 queues, max_records {})",
            n_bytes as f64 / 1_048_576.0,
            options.max_records
        );
        let policies = ["reject-file", "skip-row"];
        let mut best_raw = 0f64;
        // Per policy: the best rate, the share of its time before the first page, and the
        // cores it used (CPU seconds per wall second: a VM does not always give both).
        let mut best = [(0f64, 0f64, 0f64); 2];
        for _ in 0..options.rounds.max(1) {
            let started = Instant::now();
            let n_raw = raw_rows(&path);
            best_raw = best_raw.max(rate(n_raw, started.elapsed().as_secs_f64()));
            assert_eq!(n_raw, n_rows);
            for (policy, best) in policies.iter().zip(best.iter_mut()) {
                if options.only.as_deref().is_some_and(|only| only != *policy) {
                    continue;
                }
                let started = Instant::now();
                let cpu_before = cpu_seconds();
                let (n_records, first_page_secs) =
                    connector_rows(dir.path(), policy, options.max_records);
                let seconds = started.elapsed().as_secs_f64();
                let cpu = cpu_seconds() - cpu_before;
                eprintln!("    {policy}: {seconds:.2} s wall, {cpu:.2} s CPU");
                assert_eq!(n_records, n_rows, "every row became a record");
                if rate(n_records, seconds) > best.0 {
                    *best = (
                        rate(n_records, seconds),
                        first_page_secs / seconds,
                        cpu / seconds,
                    );
                }
            }
        }
        println!("  raw csv crate (ByteRecord into nothing): {best_raw:>12.0} rows/s");
        for (policy, (connector_rate, first_page_share, cores)) in policies.iter().zip(best) {
            if options.only.as_deref().is_some_and(|only| only != *policy) {
                continue;
            }
            println!(
                "  connector, on_bad_row = {policy:<11}: {connector_rate:>12.0} rows/s = {:.1} % of raw ({:.0} % of the time before the first page, {cores:.1} cores)",
                connector_rate / best_raw * 100.0,
                first_page_share * 100.0
            );
        }
        match peak_rss_mib() {
            Some(mib) => println!("  peak RSS after the {mb} MB file: {mib:.1} MB"),
            None => println!("  peak RSS after the {mb} MB file: unknown"),
        }
    }
}
