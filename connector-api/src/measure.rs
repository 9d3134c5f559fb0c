//! What a benchmark measures of its own process besides wall time: CPU seconds and peak
//! resident memory. Linux only (`/proc/self`); elsewhere the figures are missing.
//! The connectors' and the host's benches share these, and a vendor's bench may too.

/// CPU seconds (user and system, all threads) this process has used so far; 0 where
/// `/proc/self/stat` cannot be read. Unlike wall time, it hardly depends on what else the
/// machine is doing.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are the 12th and 13th, in clock ticks of 1/100 s on Linux.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size of this process so far, in MiB, if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn figures_of_this_process_are_read() {
        // Burn a little CPU so that the clock has ticked.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(super::cpu_seconds() > 0.0);
        assert!(super::peak_rss_mib().is_some_and(|mib| mib > 0.5));
    }
}
