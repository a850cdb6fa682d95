//! A [`Backend`] on Redis: GCRA in one Lua script per check.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::backend::{Backend, BackendError, BackendFuture, BackendRequest, Decision};

/// GCRA over one key holding the theoretical arrival time (TAT) in integer
/// microseconds. Rejections write nothing; acceptances store the new TAT with a
/// TTL equal to the time until the bucket is full again, so idle keys vanish.
///
/// KEYS[1] the bucket; ARGV interval (µs per request), burst, cost, and the time in
/// µs since the epoch, or -1 to read the server clock with `TIME`.
/// Returns {allowed (0/1), remaining, µs until whole (allowed) or until allowed}.
const SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local capacity = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - capacity
if allow_at > now then
  return {0, 0, allow_at - now}
end
local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, math.floor((now + capacity - new_tat) / interval), new_tat - now}
";

/// Whose clock a [`RedisBackend`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeSource {
    /// The Redis server's `TIME`: one clock for every instance (the default).
    #[default]
    Server,
    /// Each instance's own clock, sent with the check. For managed Redis that
    /// rejects `TIME` in scripts; the instances' clocks must then be in sync.
    Client,
}

/// Shares limits between instances through Redis.
///
/// One `EVALSHA` per check (falling back to `EVAL` once when the script is not
/// cached), on a multiplexed connection that reconnects by itself. State is one
/// string key per bucket, `rl:<policy>:<key>`, holding integer microseconds, with
/// a TTL. Works on Redis, Valkey and managed services that allow Lua; Cluster
/// works too since every check touches one key.
///
/// ```no_run
/// use tower_ops::rate_limit::{Quota, RateLimitLayer, RedisBackend, FailureMode};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = RateLimitLayer::with_quota(Quota::per_minute(100))
///     .backend(RedisBackend::new("redis://127.0.0.1:6379")?)
///     .failure_mode(FailureMode::Local)
///     .key_secret("shared by every instance");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    connection: OnceLock<ConnectionManager>,
    config: ConnectionManagerConfig,
    script: redis::Script,
    prefix: String,
    time: TimeSource,
}

impl RedisBackend {
    /// A backend for the Redis at `url` (`redis://host:port/db`). Connects lazily,
    /// so the server may start after the application.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        let client = redis::Client::open(url).map_err(BackendError::new)?;
        Ok(Self::from_parts(
            client,
            TimeSource::Server,
            "rl:".to_owned(),
            default_config(),
        ))
    }

    fn from_parts(
        client: redis::Client,
        time: TimeSource,
        prefix: String,
        config: ConnectionManagerConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                connection: OnceLock::new(),
                config,
                script: redis::Script::new(SCRIPT),
                prefix,
                time,
            }),
        }
    }

    fn rebuild(
        self,
        f: impl FnOnce(&mut TimeSource, &mut String, &mut ConnectionManagerConfig),
    ) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            client: shared.client.clone(),
            connection: OnceLock::new(),
            config: shared.config.clone(),
            script: redis::Script::new(SCRIPT),
            prefix: shared.prefix.clone(),
            time: shared.time,
        });
        let (mut time, mut prefix, mut config) = (inner.time, inner.prefix, inner.config);
        f(&mut time, &mut prefix, &mut config);
        Self::from_parts(inner.client, time, prefix, config)
    }

    /// Whose clock to read (server `TIME` by default).
    pub fn time_source(self, time: TimeSource) -> Self {
        self.rebuild(|t, _, _| *t = time)
    }

    /// The prefix of every key (`rl:` by default).
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.rebuild(|_, p, _| *p = prefix)
    }

    /// How long to wait for a connection (100 ms by default) and for a reply
    /// (50 ms by default). The layer's own timeout bounds the whole check too.
    pub fn timeouts(self, connect: Duration, response: Duration) -> Self {
        self.rebuild(|_, _, c| {
            *c = c
                .clone()
                .set_connection_timeout(Some(connect))
                .set_response_timeout(Some(response));
        })
    }

    fn connection(&self) -> Result<ConnectionManager, BackendError> {
        if let Some(c) = self.inner.connection.get() {
            return Ok(c.clone());
        }
        let c = ConnectionManager::new_lazy_with_config(
            self.inner.client.clone(),
            self.inner.config.clone(),
        )
        .map_err(BackendError::new)?;
        Ok(self.inner.connection.get_or_init(|| c).clone())
    }
}

fn default_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(100)))
        .set_response_timeout(Some(Duration::from_millis(50)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_secs(1))
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.inner.prefix)
            .field("time", &self.inner.time)
            .finish_non_exhaustive()
    }
}

impl Backend for RedisBackend {
    fn check(&self, request: BackendRequest) -> BackendFuture {
        let this = self.clone();
        Box::pin(async move {
            let mut connection = this.connection()?;
            let inner = &this.inner;
            let interval = u64::try_from(request.quota.replenish_interval().as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let now: i64 = match inner.time {
                TimeSource::Server => -1,
                TimeSource::Client => i64::try_from(request.now_micros).unwrap_or(i64::MAX),
            };
            let key = format!("{}{}:{}", inner.prefix, request.policy, request.key);
            let (allowed, remaining, micros): (i64, i64, i64) = inner
                .script
                .key(key)
                .arg(interval)
                .arg(request.quota.burst_size())
                .arg(request.cost.max(1))
                .arg(now)
                .invoke_async(&mut connection)
                .await
                .map_err(BackendError::new)?;
            Ok(Decision::new(
                allowed == 1,
                u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                Duration::from_micros(u64::try_from(micros.max(0)).unwrap_or(0)),
            ))
        })
    }
}
