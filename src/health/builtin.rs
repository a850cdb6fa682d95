//! Ready-made checks: TCP connect, and on Linux memory and disk thresholds.

use std::time::Duration;

use super::check::{CheckFuture, HealthCheck};

/// Healthy when a TCP connection to `addr` can be opened within the budget.
///
/// The address is resolved on every run, so DNS changes are followed.
/// Critical by default.
///
/// ```
/// use tower_ops::health::{HealthCheck, TcpCheck};
///
/// let check = TcpCheck::new("postgres", "127.0.0.1:5432").critical(false);
/// assert_eq!(check.name(), "postgres");
/// ```
#[derive(Clone, Debug)]
pub struct TcpCheck {
    name: String,
    addr: String,
    critical: bool,
    timeout: Option<Duration>,
}

impl TcpCheck {
    /// Connects to `addr` (`host:port`).
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            addr: addr.into(),
            critical: true,
            timeout: None,
        }
    }

    /// Sets whether the check is critical.
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Its own time budget.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl HealthCheck for TcpCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            tokio::net::TcpStream::connect(self.addr.as_str())
                .await
                .map(drop)
                .map_err(|e| format!("connect to {}: {e}", self.addr).into())
        })
    }

    fn is_critical(&self) -> bool {
        self.critical
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// Redis answers `PING` (feature `redis`).
///
/// Keeps one reconnecting multiplexed connection, made on the first check; a
/// Redis that went away and came back is reported healthy again without a restart.
///
/// ```
/// use tower_ops::health::{HealthCheck, RedisCheck};
///
/// let check = RedisCheck::new("cache", "redis://127.0.0.1:6379/")?.critical(false);
/// assert_eq!(check.name(), "cache");
/// assert!(!check.is_critical());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Clone)]
pub struct RedisCheck {
    name: String,
    client: redis::Client,
    connection: std::sync::Arc<tokio::sync::OnceCell<redis::aio::ConnectionManager>>,
    critical: bool,
    timeout: Option<Duration>,
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show only where it points.
        f.debug_struct("RedisCheck")
            .field("name", &self.name)
            .field(
                "addr",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("critical", &self.critical)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis")]
impl RedisCheck {
    /// Checks the Redis at `url` (`redis://[:password@]host:port/db`). Fails only
    /// when the URL is malformed; nothing is connected until the first check.
    pub fn new(name: impl Into<String>, url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            name: name.into(),
            client: redis::Client::open(url)?,
            connection: Default::default(),
            critical: true,
            timeout: None,
        })
    }

    /// Sets whether the check is critical.
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Its own time budget.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

#[cfg(feature = "redis")]
impl HealthCheck for RedisCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let connection = self
                .connection
                .get_or_try_init(|| {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(Duration::from_secs(1)))
                        .set_response_timeout(Some(Duration::from_secs(1)))
                        .set_number_of_retries(1);
                    self.client.get_connection_manager_with_config(config)
                })
                .await?;
            let reply: String = redis::cmd("PING")
                .query_async(&mut connection.clone())
                .await?;
            if reply == "PONG" {
                Ok(())
            } else {
                Err(format!("PING answered {reply:?}").into())
            }
        })
    }

    fn is_critical(&self) -> bool {
        self.critical
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// A minimum of free space, as a share of the total and/or in bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Threshold {
    min_ratio: f64,
    min_bytes: u64,
}

impl Threshold {
    /// `Err` with a message when `available` of `total` is below the minimum.
    fn judge(&self, what: &str, available: u64, total: u64) -> Result<(), String> {
        let ratio = if total == 0 {
            1.0
        } else {
            // Precision loss is irrelevant at the scale of a percentage.
            #[allow(clippy::cast_precision_loss)]
            let r = available as f64 / total as f64;
            r
        };
        if available < self.min_bytes || ratio < self.min_ratio {
            return Err(format!(
                "{what}: {} MiB available of {} MiB ({:.1}%), minimum {} MiB and {:.1}%",
                available / (1024 * 1024),
                total / (1024 * 1024),
                ratio * 100.0,
                self.min_bytes / (1024 * 1024),
                self.min_ratio * 100.0,
            ));
        }
        Ok(())
    }
}

impl Default for Threshold {
    fn default() -> Self {
        Self {
            min_ratio: 0.05,
            min_bytes: 0,
        }
    }
}

/// Healthy while enough memory is available (Linux).
///
/// Inside a cgroup v2 with a memory limit (a container), "available" is the
/// limit minus the working set (usage less inactive file cache), as the
/// kubelet counts it; otherwise `MemAvailable` of `/proc/meminfo`. Non-critical
/// by default (low memory degrades rather than takes the service out).
/// Default minimum: 5% available.
#[cfg(target_os = "linux")]
#[cfg_attr(docsrs, doc(cfg(target_os = "linux")))]
#[derive(Clone, Debug)]
pub struct MemoryCheck {
    name: String,
    threshold: Threshold,
    critical: bool,
}

#[cfg(target_os = "linux")]
impl Default for MemoryCheck {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_os = "linux")]
impl MemoryCheck {
    /// A check named `memory` with the default threshold.
    pub fn new() -> Self {
        Self {
            name: "memory".to_owned(),
            threshold: Threshold::default(),
            critical: false,
        }
    }

    /// Renames the check.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The least share of memory that must be available (0.0 to 1.0).
    pub fn min_available_ratio(mut self, ratio: f64) -> Self {
        self.threshold.min_ratio = ratio.clamp(0.0, 1.0);
        self
    }

    /// The least number of bytes that must be available.
    pub fn min_available_bytes(mut self, bytes: u64) -> Self {
        self.threshold.min_bytes = bytes;
        self
    }

    /// Sets whether the check is critical.
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    fn read(root: &std::path::Path) -> Result<(u64, u64), String> {
        let read = |p: &str| std::fs::read_to_string(root.join(p));
        if let (Ok(max), Ok(current), Ok(stat)) = (
            read("sys/fs/cgroup/memory.max"),
            read("sys/fs/cgroup/memory.current"),
            read("sys/fs/cgroup/memory.stat"),
        ) && let Some(found) = cgroup_memory(&max, &current, &stat)
        {
            return Ok(found);
        }
        let meminfo = read("proc/meminfo").map_err(|e| format!("read /proc/meminfo: {e}"))?;
        parse_meminfo(&meminfo).ok_or_else(|| "unreadable /proc/meminfo".to_owned())
    }
}

#[cfg(target_os = "linux")]
impl HealthCheck for MemoryCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        let threshold = self.threshold;
        Box::pin(async move {
            // Off the runtime's threads: file reads can stall.
            let (total, available) =
                tokio::task::spawn_blocking(|| Self::read(std::path::Path::new("/")))
                    .await
                    .map_err(|e| e.to_string())??;
            threshold.judge("memory", available, total)?;
            Ok(())
        })
    }

    fn is_critical(&self) -> bool {
        self.critical
    }
}

/// `(total, available)` in bytes from `/proc/meminfo`.
fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |key: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            kb.checked_mul(1024)
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?;
    Some((total, available.min(total)))
}

/// `(limit, available)` in bytes from cgroup v2 files, when a limit is set.
fn cgroup_memory(max: &str, current: &str, stat: &str) -> Option<(u64, u64)> {
    let limit: u64 = max.trim().parse().ok()?;
    let usage: u64 = current.trim().parse().ok()?;
    let inactive_file = stat
        .lines()
        .find_map(|l| l.strip_prefix("inactive_file ")?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let working_set = usage.saturating_sub(inactive_file);
    Some((limit, limit.saturating_sub(working_set)))
}

/// Healthy while the file system holding `path` has enough free space (Linux).
///
/// Uses `statvfs` on a blocking thread, so a hung network mount cannot stall
/// the runtime (the check then times out). Counts the space available to
/// unprivileged users. Non-critical by default; default minimum 5% free.
///
/// ```
/// use tower_ops::health::{DiskCheck, HealthCheck};
///
/// let check = DiskCheck::new("/var/lib/app").min_free_bytes(1 << 30);
/// assert_eq!(check.name(), "disk");
/// ```
#[cfg(target_os = "linux")]
#[cfg_attr(docsrs, doc(cfg(target_os = "linux")))]
#[derive(Clone, Debug)]
pub struct DiskCheck {
    name: String,
    path: std::path::PathBuf,
    threshold: Threshold,
    critical: bool,
}

#[cfg(target_os = "linux")]
impl DiskCheck {
    /// A check named `disk` on the file system holding `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            name: "disk".to_owned(),
            path: path.into(),
            threshold: Threshold::default(),
            critical: false,
        }
    }

    /// Renames the check.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The least share of the file system that must be free (0.0 to 1.0).
    pub fn min_free_ratio(mut self, ratio: f64) -> Self {
        self.threshold.min_ratio = ratio.clamp(0.0, 1.0);
        self
    }

    /// The least number of bytes that must be free.
    pub fn min_free_bytes(mut self, bytes: u64) -> Self {
        self.threshold.min_bytes = bytes;
        self
    }

    /// Sets whether the check is critical.
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }
}

#[cfg(target_os = "linux")]
impl HealthCheck for DiskCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        let path = self.path.clone();
        let threshold = self.threshold;
        Box::pin(async move {
            let stat = tokio::task::spawn_blocking(move || rustix::fs::statvfs(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("statvfs {}: {e}", self.path.display()))?;
            let total = stat.f_blocks.saturating_mul(stat.f_frsize);
            let available = stat.f_bavail.saturating_mul(stat.f_frsize);
            threshold.judge("disk", available, total)?;
            Ok(())
        })
    }

    fn is_critical(&self) -> bool {
        self.critical
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed() {
        let text = "MemTotal:       16000000 kB\nMemFree:  1 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some((16_000_000 * 1024, 4_000_000 * 1024))
        );
        assert_eq!(parse_meminfo("MemTotal: x kB"), None);
        assert_eq!(parse_meminfo(""), None);
        // Hostile: an overflowing value is refused, not wrapped.
        assert_eq!(
            parse_meminfo("MemTotal: 18446744073709551615 kB\nMemAvailable: 1 kB"),
            None
        );
    }

    #[test]
    fn cgroup_limit_counts_working_set() {
        let stat = "anon 1\ninactive_file 100\nactive_file 5\n";
        assert_eq!(cgroup_memory("1000\n", "600\n", stat), Some((1000, 500)));
        assert_eq!(cgroup_memory("max\n", "600\n", stat), None);
        assert_eq!(cgroup_memory("1000", "5000", ""), Some((1000, 0)));
    }

    #[test]
    fn thresholds_judge_ratio_and_bytes() {
        let t = Threshold {
            min_ratio: 0.1,
            min_bytes: 0,
        };
        assert!(t.judge("disk", 20, 100).is_ok());
        let err = t.judge("disk", 5, 100).unwrap_err();
        assert!(err.contains("5.0%"), "{err}");
        let t = Threshold {
            min_ratio: 0.0,
            min_bytes: 50,
        };
        assert!(t.judge("memory", 49, 100).is_err());
        assert!(t.judge("memory", 0, 0).is_err());
        assert!(Threshold::default().judge("disk", 0, 0).is_ok());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn real_memory_and_disk_checks_run() {
        let memory = MemoryCheck::new().min_available_ratio(0.0);
        assert!(memory.check().await.is_ok());
        let disk = DiskCheck::new("/").min_free_ratio(0.0);
        assert!(disk.check().await.is_ok());
        let impossible = DiskCheck::new("/")
            .min_free_ratio(1.0)
            .min_free_bytes(u64::MAX);
        assert!(impossible.check().await.is_err());
        let missing = DiskCheck::new("/no/such/dir/here");
        assert!(
            missing
                .check()
                .await
                .unwrap_err()
                .to_string()
                .contains("statvfs")
        );
    }

    #[tokio::test]
    async fn tcp_check_connects_or_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert!(TcpCheck::new("up", &addr).check().await.is_ok());
        drop(listener);
        let err = TcpCheck::new("down", &addr).check().await.unwrap_err();
        assert!(err.to_string().contains(&addr));
    }
}
