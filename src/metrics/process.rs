//! Process metrics read from `/proc` on each scrape.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Linux exports CPU times in `USER_HZ` ticks, fixed at 100 for user space on every
/// architecture the kernel supports today.
const TICKS_PER_SECOND: f64 = 100.0;

/// A collector of the standard process metrics: `process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds` and
/// `process_start_time_seconds`.
///
/// It reads `/proc/self` on each scrape; elsewhere than Linux, or when `/proc` is
/// not mounted, it reports nothing. Register it with
/// `registry.register_collector(Box::new(ProcessCollector::new()))`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessCollector {
    _private: (),
}

impl ProcessCollector {
    /// The collector.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let stats = ProcessStats::read();
        if let Some(cpu) = stats.cpu_seconds {
            let m = ConstCounter::new(cpu);
            m.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                m.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(Unit::Bytes),
                stats.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                None,
                stats.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit)",
                None,
                stats.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch in seconds",
                Some(Unit::Seconds),
                stats.start_time_seconds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(v) = value {
                let m = ConstGauge::new(v);
                m.encode(encoder.encode_descriptor(name, help, unit.as_ref(), m.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

impl ProcessStats {
    fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let stat = read("/proc/self/stat");
        let (cpu_seconds, start_ticks) = stat.as_deref().map_or((None, None), parse_stat);
        let boot = read("/proc/stat").as_deref().and_then(parse_boot_time);
        Self {
            cpu_seconds,
            resident_bytes: read("/proc/self/status").as_deref().and_then(parse_rss),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: read("/proc/self/limits").as_deref().and_then(parse_max_fds),
            start_time_seconds: boot
                .zip(start_ticks)
                .map(|(b, t)| b as f64 + t as f64 / TICKS_PER_SECOND),
        }
    }
}

/// `(utime + stime in seconds, starttime in ticks)` from `/proc/self/stat`. The
/// command name may hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_stat(stat: &str) -> (Option<f64>, Option<u64>) {
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return (None, None);
    };
    // Field 3 (state) is index 0; utime is field 14, stime 15, starttime 22.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let cpu = num(11)
        .zip(num(12))
        .map(|(u, s)| (u + s) as f64 / TICKS_PER_SECOND);
    (cpu, num(19))
}

fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn parse_rss(status: &str) -> Option<u64> {
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

fn parse_max_fds(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 \
                    4 0 4200 123456789 1000 18446744073709551615";
        assert_eq!(parse_stat(stat), (Some(3.0), Some(4200)));
        assert_eq!(parse_stat("garbage"), (None, None));
        assert_eq!(parse_stat("1 (x) S"), (None, None));
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t    2048 kB\nVmData: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_rss("VmRSS: lots"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 1048576              files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read();
        assert!(s.cpu_seconds.is_some());
        assert!(s.resident_bytes.unwrap() > 0);
        assert!(s.open_fds.unwrap() >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = s.start_time_seconds.unwrap();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0);
    }
}
