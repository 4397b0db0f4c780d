//! Redis state: every operation is one Lua script (or one command), so it is atomic and exact
//! across all processes that share the server. Time comes from the Redis server (`TIME`), so clients
//! with skewed clocks still agree on windows.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{RedisError, Script};
use wattos_core::state::{
    Admission, BudgetLine, BudgetStore, CacheStore, Reservation, StateKey, WindowCharge,
    WindowStore,
};
use wattos_core::{Error, Result};

use super::RedisPool;

const SUM_FN: &str = r"
local function sum_of(key, now, win)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - win)
  local s = 0
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local v = string.match(m, ':(%-?%d+)$')
    if v then s = s + tonumber(v) end
  end
  return s
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

const ACQUIRE: &str = r"
local id = ARGV[1]
for i = 1, #KEYS do
  local limit = tonumber(ARGV[(i - 1) * 3 + 2])
  local win = tonumber(ARGV[(i - 1) * 3 + 3])
  local amt = tonumber(ARGV[(i - 1) * 3 + 4])
  local s = sum_of(KEYS[i], now, win)
  if s + amt > limit then
    local entries = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
    local ra = win
    local rem = s
    for j = 1, #entries, 2 do
      rem = rem - tonumber(string.match(entries[j], ':(%-?%d+)$') or '0')
      if rem + amt <= limit then
        ra = tonumber(entries[j + 1]) + win - now
        break
      end
    end
    return {i, ra}
  end
end
for i = 1, #KEYS do
  local win = tonumber(ARGV[(i - 1) * 3 + 3])
  redis.call('ZADD', KEYS[i], now, id .. ':' .. i .. ':' .. ARGV[(i - 1) * 3 + 4])
  redis.call('PEXPIRE', KEYS[i], win + 1000)
end
return {0, 0}
";

const ADJUST: &str = r"
redis.call('ZADD', KEYS[1], now, ARGV[1] .. ':adj:' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
return 0
";

const CURRENT: &str = r"
return sum_of(KEYS[1], now, tonumber(ARGV[1]))
";

const RESERVE: &str = r"
local amt = tonumber(ARGV[1])
for i = 1, #KEYS do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  if cur + amt > tonumber(ARGV[(i - 1) * 2 + 2]) then return {i, cur} end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[1])
  local ttl = tonumber(ARGV[(i - 1) * 2 + 3])
  if ttl > 0 and redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return {0, 0}
";

const SETTLE: &str = r"
for i = 1, #KEYS do redis.call('INCRBY', KEYS[i], ARGV[1]) end
return 0
";

/// Redis-backed implementation of every state trait. Cheap to clone (one multiplexed connection).
///
/// Keys are `<prefix><StateKey>`; give every deployment (and every test) its own prefix.
#[derive(Clone)]
pub struct RedisState {
    conns: RedisPool,
    prefix: String,
    acquire: Script,
    adjust: Script,
    current: Script,
    reserve: Script,
    settle: Script,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn backend(e: RedisError) -> Error {
    Error::unavailable(format!("redis: {e}")).with_source(e)
}

impl RedisState {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`) and prefixes every key with `prefix`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::Unavailable`] when Redis cannot be reached;
    /// [`wattos_core::ErrorKind::InvalidInput`] for a malformed URL.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self> {
        Ok(Self::from_pool(RedisPool::connect(url, 1).await?, prefix))
    }

    /// Wraps an existing connection manager.
    pub fn from_connection(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        let pool = RedisPool::from_connections(vec![conn])
            .unwrap_or_else(|| unreachable!("one connection was given"));
        Self::from_pool(pool, prefix)
    }

    /// Spreads commands over the connections of `pool`.
    pub fn from_pool(pool: RedisPool, prefix: impl Into<String>) -> Self {
        let with_sum = |body: &str| Script::new(&format!("{SUM_FN}{body}"));
        Self {
            conns: pool,
            prefix: prefix.into(),
            acquire: with_sum(ACQUIRE),
            adjust: with_sum(ADJUST),
            current: with_sum(CURRENT),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, k: &StateKey) -> String {
        let mut s = String::with_capacity(self.prefix.len() + k.as_str().len());
        s.push_str(&self.prefix);
        s.push_str(k.as_str());
        s
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl WindowStore for RedisState {
    async fn try_acquire(&self, charges: &[WindowCharge]) -> Result<Admission> {
        if charges.is_empty() {
            return Ok(Admission::Admitted);
        }
        let mut inv = self.acquire.prepare_invoke();
        inv.arg(uuid::Uuid::new_v4().simple().to_string());
        for c in charges {
            inv.key(self.key(&c.key));
            inv.arg(c.limit).arg(ms(c.window)).arg(c.amount);
        }
        let mut conn = self.conns.get();
        let (index, retry_ms): (i64, i64) = inv.invoke_async(&mut conn).await.map_err(backend)?;
        Ok(if index == 0 {
            Admission::Admitted
        } else {
            Admission::Rejected {
                index: usize::try_from(index - 1).unwrap_or(0),
                retry_after: Duration::from_millis(u64::try_from(retry_ms).unwrap_or(0)),
            }
        })
    }

    async fn adjust(&self, key: &StateKey, window: Duration, delta: i64) -> Result<()> {
        let mut conn = self.conns.get();
        let _: i64 = self
            .adjust
            .key(self.key(key))
            .arg(uuid::Uuid::new_v4().simple().to_string())
            .arg(ms(window))
            .arg(delta)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn current(&self, key: &StateKey, window: Duration) -> Result<i64> {
        let mut conn = self.conns.get();
        self.current
            .key(self.key(key))
            .arg(ms(window))
            .invoke_async(&mut conn)
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl BudgetStore for RedisState {
    async fn reserve(&self, lines: &[BudgetLine], amount_nanos: i64) -> Result<Reservation> {
        if lines.is_empty() {
            return Ok(Reservation::Reserved);
        }
        let mut inv = self.reserve.prepare_invoke();
        inv.arg(amount_nanos);
        for l in lines {
            inv.key(self.key(&l.key));
            inv.arg(l.limit_nanos).arg(l.ttl.map_or(0, ms));
        }
        let mut conn = self.conns.get();
        let (index, committed): (i64, i64) = inv.invoke_async(&mut conn).await.map_err(backend)?;
        Ok(if index == 0 {
            Reservation::Reserved
        } else {
            Reservation::Exceeded {
                index: usize::try_from(index - 1).unwrap_or(0),
                committed_nanos: committed,
            }
        })
    }

    async fn settle(&self, keys: &[StateKey], delta_nanos: i64) -> Result<()> {
        if keys.is_empty() || delta_nanos == 0 {
            return Ok(());
        }
        let mut inv = self.settle.prepare_invoke();
        inv.arg(delta_nanos);
        for k in keys {
            inv.key(self.key(k));
        }
        let mut conn = self.conns.get();
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(backend)?;
        Ok(())
    }

    async fn committed(&self, key: &StateKey) -> Result<i64> {
        let mut conn = self.conns.get();
        let v: Option<i64> = redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(v.unwrap_or(0))
    }
}

#[async_trait]
impl CacheStore for RedisState {
    async fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conns.get();
        redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await
            .map_err(backend)
    }

    async fn put(&self, key: &StateKey, value: Vec<u8>, ttl: Duration) -> Result<()> {
        let mut conn = self.conns.get();
        let _: () = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ms(ttl))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
