//! Typed configuration from a TOML file plus `WATTOS_*` environment variables, validated at start.
//!
//! * Nested keys map to variables with `__`: `server.bind` is `WATTOS_SERVER__BIND`.
//! * The file comes from `--config`/[`CONFIG_FILE_ENV`]; without one, only variables and defaults apply.
//! * Validation collects *every* problem and reports them together ([`ConfigError`]), naming each
//!   setting and its variable. Unknown settings are problems too (typos must not pass silently).
//! * There are no hidden localhost fallbacks: the default [`DeploymentMode::Embedded`] uses in-process
//!   stores and needs no external service; [`DeploymentMode::Shared`] requires the URLs of Postgres,
//!   Redis and NATS explicitly.
//!
//! ```
//! use wattos_core::config::{Config, DeploymentMode};
//!
//! let cfg = Config::from_sources(None, Vec::<(String, String)>::new()).unwrap();
//! assert_eq!(cfg.mode, DeploymentMode::Embedded);
//!
//! let err = Config::from_sources(None, vec![("WATTOS_MODE".into(), "shared".into())]).unwrap_err();
//! let text = err.to_string();
//! assert!(text.contains("WATTOS_DATABASE__URL"));
//! assert!(text.contains("WATTOS_REDIS__URL"));
//! assert!(text.contains("WATTOS_NATS__URL"));
//! ```

mod reader;
mod secret;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use reader::{
    CONFIG_FILE_ENV, ConfigError, ConfigProblem, ConfigReader, ConfigValue, ENV_PREFIX, Origin,
    env_var_for, parse_duration,
};
pub use secret::Secret;

use crate::resilience::{BreakerConfig, Jitter, RetryPolicy};
use crate::telemetry::{LogFormat, TelemetryConfig};

/// Where shared state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentMode {
    /// One process, in-process stores under `data_dir`, local models. No external service needed.
    #[default]
    Embedded,
    /// Many identical instances: Postgres, Redis and NATS hold all shared state.
    Shared,
}

impl ConfigValue for DeploymentMode {
    fn from_raw(v: &toml::Value) -> Result<Self, String> {
        match String::from_raw(v)?.as_str() {
            "embedded" => Ok(Self::Embedded),
            "shared" => Ok(Self::Shared),
            other => Err(format!("expected 'embedded' or 'shared', got '{other}'")),
        }
    }
}

impl ConfigValue for LogFormat {
    fn from_raw(v: &toml::Value) -> Result<Self, String> {
        String::from_raw(v)?.parse()
    }
}

impl ConfigValue for Jitter {
    fn from_raw(v: &toml::Value) -> Result<Self, String> {
        match String::from_raw(v)?.as_str() {
            "none" => Ok(Self::None),
            "full" => Ok(Self::Full),
            other => Err(format!("expected 'none' or 'full', got '{other}'")),
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Listen address. Default `127.0.0.1:8080`.
    pub bind: SocketAddr,
    /// Per-request timeout (streams excluded once started). Default 60 s.
    pub request_timeout: Duration,
    /// Largest accepted request body in bytes. Default 10 MiB.
    pub body_limit_bytes: usize,
    /// Longest time a client may take to send a request body. Bodies are received before the
    /// request takes a concurrency slot, and one still arriving after this answers 408. Default 15 s.
    pub body_read_timeout: Duration,
    /// Requests served at once before load shedding (503 + Retry-After). Default 512.
    pub max_concurrent_requests: usize,
    /// Work that outlives its request (agent runs, also streamed ones whose client left) running
    /// at once, all tenants together; more is refused with 503 + Retry-After. Default 256.
    pub max_background_tasks: usize,
    /// The same per tenant; more is refused with 429 + Retry-After. Default 16.
    pub max_background_tasks_per_tenant: usize,
    /// How long shutdown waits for in-flight requests and streams. Default 30 s.
    pub shutdown_grace: Duration,
    /// Origins allowed by CORS; empty disables CORS.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(60),
            body_limit_bytes: 10 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(15),
            max_concurrent_requests: 512,
            max_background_tasks: 256,
            max_background_tasks_per_tenant: 16,
            shutdown_grace: Duration::from_secs(30),
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// PostgreSQL settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// `postgres://` URL.
    pub url: Secret<String>,
    /// Default size of every pool (`database.max_connections`). Default 10.
    pub max_connections: u32,
    /// How long to wait for a pooled connection. Default 5 s.
    pub acquire_timeout: Duration,
    /// The size of each connection pool an instance opens (`database.pools.*`).
    pub pools: PoolSizes,
}

/// Most connections any one pool may be given.
pub const MAX_POOL_SIZE: u32 = 1000;

/// The size of each PostgreSQL pool an instance opens. Pools open connections on demand (none at
/// start) up to their size, so the sum is what one instance may hold at peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizes {
    /// Tenants, API keys, tenant configuration and the audit log (`database.pools.tenancy`).
    pub tenancy: u32,
    /// RAG collections and documents, agent runs (`database.pools.app`).
    pub app: u32,
    /// pgvector chunk tables (`database.pools.vectors`).
    pub vectors: u32,
    /// The usage writer and usage reports (`database.pools.usage`; default 2: one batch writer).
    pub usage: u32,
    /// Agent checkpoints (`database.pools.checkpoints`).
    pub checkpoints: u32,
    /// Conversations and feedback (`database.pools.conversations`).
    pub conversations: u32,
}

impl PoolSizes {
    /// Every pool at `size`, except `usage` (at most 2).
    pub fn uniform(size: u32) -> Self {
        Self {
            tenancy: size,
            app: size,
            vectors: size,
            usage: size.min(2),
            checkpoints: size,
            conversations: size,
        }
    }

    /// The most connections one instance opens: the sum of every pool.
    pub fn total(&self) -> u32 {
        self.tenancy + self.app + self.vectors + self.usage + self.checkpoints + self.conversations
    }

    fn read(r: &mut ConfigReader, default: u32) -> Self {
        let d = Self::uniform(default);
        let size = |r: &mut ConfigReader, name: &str, default: u32| {
            let key = format!("database.pools.{name}");
            let v: u32 = r.or(&key, default);
            if v == 0 || v > MAX_POOL_SIZE {
                r.problem(&key, format!("must be 1..={MAX_POOL_SIZE}"));
            }
            v
        };
        Self {
            tenancy: size(r, "tenancy", d.tenancy),
            app: size(r, "app", d.app),
            vectors: size(r, "vectors", d.vectors),
            usage: size(r, "usage", d.usage),
            checkpoints: size(r, "checkpoints", d.checkpoints),
            conversations: size(r, "conversations", d.conversations),
        }
    }
}

/// Redis settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL.
    pub url: Secret<String>,
    /// Multiplexed connections each Redis client of an instance (rate limits, revocations, router
    /// budgets and windows) spreads its commands over (`redis.pool_size`). Default 2.
    pub pool_size: usize,
}

/// Most multiplexed connections one Redis client may open.
pub const MAX_REDIS_POOL_SIZE: usize = 64;

/// NATS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsConfig {
    /// `nats://` URL.
    pub url: Secret<String>,
}

/// Local model settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelsConfig {
    /// Folder the model fetch script fills. Default `$XDG_CACHE_HOME/wattos/models` or
    /// `$HOME/.cache/wattos/models`.
    pub dir: PathBuf,
}

/// Resilience defaults for outbound calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResilienceConfig {
    /// Circuit breaker settings.
    pub breaker: BreakerConfig,
    /// Retry settings.
    pub retry: RetryPolicy,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Embedded or shared.
    pub mode: DeploymentMode,
    /// Folder for embedded stores. Default `./wattos-data`.
    pub data_dir: PathBuf,
    /// HTTP server.
    pub server: ServerConfig,
    /// PostgreSQL (required in shared mode).
    pub database: Option<DatabaseConfig>,
    /// Redis (required in shared mode).
    pub redis: Option<RedisConfig>,
    /// NATS JetStream (required in shared mode).
    pub nats: Option<NatsConfig>,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
    /// Local models.
    pub models: ModelsConfig,
    /// Outbound-call resilience defaults.
    pub resilience: ResilienceConfig,
}

/// The raw inputs of a configuration: the file (name and text), if any, and the environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// The file's name and contents.
    pub file: Option<(String, String)>,
    /// Environment variables (all of them; only `WATTOS_*` are settings).
    pub env: Vec<(String, String)>,
}

impl ConfigSources {
    /// Reads the process environment and the file named by `file` or [`CONFIG_FILE_ENV`].
    ///
    /// # Errors
    /// [`ConfigError`] when the named file cannot be read.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let path = file.map(Path::to_path_buf).or_else(|| {
            env.iter()
                .find(|(k, _)| k == CONFIG_FILE_ENV)
                .map(|(_, v)| PathBuf::from(v))
        });
        let file = match &path {
            None => None,
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => Some((p.display().to_string(), t)),
                Err(e) => {
                    return Err(ConfigError {
                        problems: vec![ConfigProblem {
                            key: "<file>".into(),
                            env_var: CONFIG_FILE_ENV.into(),
                            message: format!("cannot read {}: {e}", p.display()),
                        }],
                    });
                }
            },
        };
        Ok(Self { file, env })
    }

    /// The file as `(name, text)`.
    pub fn file(&self) -> Option<(&str, &str)> {
        self.file.as_ref().map(|(n, t)| (n.as_str(), t.as_str()))
    }

    /// A reader over these sources.
    pub fn reader(&self) -> ConfigReader {
        ConfigReader::new(self.file(), self.env.iter().cloned())
    }
}

fn default_models_dir(env: &[(String, String)]) -> PathBuf {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(xdg) = get("XDG_CACHE_HOME").filter(|s| !s.is_empty()) {
        return Path::new(&xdg).join("wattos/models");
    }
    match get("HOME").filter(|s| !s.is_empty()) {
        Some(home) => Path::new(&home).join(".cache/wattos/models"),
        None => PathBuf::from(".cache/wattos/models"),
    }
}

fn check_scheme(r: &mut ConfigReader, key: &str, url: &Secret<String>, schemes: &[&str]) {
    let ok = schemes
        .iter()
        .any(|s| url.expose().starts_with(&format!("{s}://")));
    if !ok {
        r.problem(
            key,
            format!(
                "must be a URL starting with {}",
                schemes.join("://, ") + "://"
            ),
        );
    }
}

impl Config {
    /// Loads from the process environment and the file named by `file` or [`CONFIG_FILE_ENV`].
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem (including an unreadable file).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let sources = ConfigSources::load(file)?;
        Self::from_sources(sources.file(), sources.env.clone())
    }

    /// Builds the configuration from a file's text (name, contents) and environment pairs.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem.
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut r = ConfigReader::new(file, env.iter().cloned());
        let cfg = Self::read(&mut r, &env);
        r.finish()?;
        Ok(cfg)
    }

    /// Reads the core sections from `r`, recording problems there. Crates with their own sections
    /// read them from the same reader before calling [`ConfigReader::finish`].
    pub fn read(r: &mut ConfigReader, env: &[(String, String)]) -> Self {
        let d = ServerConfig::default();
        let server = ServerConfig {
            bind: r.or("server.bind", d.bind),
            request_timeout: r.or("server.request_timeout", d.request_timeout),
            body_limit_bytes: r.or("server.body_limit_bytes", d.body_limit_bytes),
            body_read_timeout: r.or("server.body_read_timeout", d.body_read_timeout),
            max_concurrent_requests: r
                .or("server.max_concurrent_requests", d.max_concurrent_requests),
            max_background_tasks: r.or("server.max_background_tasks", d.max_background_tasks),
            max_background_tasks_per_tenant: r.or(
                "server.max_background_tasks_per_tenant",
                d.max_background_tasks_per_tenant,
            ),
            shutdown_grace: r.or("server.shutdown_grace", d.shutdown_grace),
            cors_allowed_origins: r.or("server.cors_allowed_origins", Vec::new()),
        };
        for (key, value) in [
            (
                "server.max_concurrent_requests",
                server.max_concurrent_requests,
            ),
            ("server.max_background_tasks", server.max_background_tasks),
            (
                "server.max_background_tasks_per_tenant",
                server.max_background_tasks_per_tenant,
            ),
        ] {
            if !(1..=1_000_000).contains(&value) {
                r.problem(key, "must be 1..=1000000");
            }
        }
        if !(1024..=1 << 30).contains(&server.body_limit_bytes) {
            r.problem(
                "server.body_limit_bytes",
                "must be 1024..=1073741824 (1 KiB to 1 GiB)",
            );
        }
        for (key, value, max) in [
            ("server.request_timeout", server.request_timeout, HOUR),
            ("server.body_read_timeout", server.body_read_timeout, HOUR),
            ("server.shutdown_grace", server.shutdown_grace, HOUR),
        ] {
            if value.is_zero() || value > max {
                r.problem(key, "must be greater than zero and at most 1h");
            }
        }
        for origin in &server.cors_allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                r.problem(
                    "server.cors_allowed_origins",
                    format!("'{origin}' is not an http(s) origin"),
                );
            }
        }

        let mode: DeploymentMode = r.or("mode", DeploymentMode::Embedded);
        let shared = mode == DeploymentMode::Shared;
        let why = "in shared mode";

        let db_url: Option<Secret<String>> = if shared {
            r.required("database.url", why)
        } else {
            r.optional("database.url")
        };
        // Read (and validated) with or without a URL, so a pool setting alone is not "unknown".
        let max_connections: u32 = r.or("database.max_connections", 10);
        if max_connections == 0 || max_connections > MAX_POOL_SIZE {
            r.problem(
                "database.max_connections",
                format!("must be 1..={MAX_POOL_SIZE}"),
            );
        }
        let acquire_timeout: Duration = r.or("database.acquire_timeout", Duration::from_secs(5));
        if acquire_timeout.is_zero() {
            r.problem("database.acquire_timeout", "must be greater than zero");
        }
        let pools = PoolSizes::read(r, max_connections.clamp(1, MAX_POOL_SIZE));
        let database = db_url.map(|url| {
            check_scheme(r, "database.url", &url, &["postgres", "postgresql"]);
            DatabaseConfig {
                url,
                max_connections,
                acquire_timeout,
                pools,
            }
        });
        let redis_url: Option<Secret<String>> = if shared {
            r.required("redis.url", why)
        } else {
            r.optional("redis.url")
        };
        let redis_pool: usize = r.or("redis.pool_size", 2);
        if redis_pool == 0 || redis_pool > MAX_REDIS_POOL_SIZE {
            r.problem(
                "redis.pool_size",
                format!("must be 1..={MAX_REDIS_POOL_SIZE}"),
            );
        }
        let redis = redis_url.map(|url| {
            check_scheme(r, "redis.url", &url, &["redis", "rediss"]);
            RedisConfig {
                url,
                pool_size: redis_pool.clamp(1, MAX_REDIS_POOL_SIZE),
            }
        });
        let nats_url: Option<Secret<String>> = if shared {
            r.required("nats.url", why)
        } else {
            r.optional("nats.url")
        };
        let nats = nats_url.map(|url| {
            check_scheme(r, "nats.url", &url, &["nats", "tls"]);
            NatsConfig { url }
        });

        let td = TelemetryConfig::default();
        let telemetry = TelemetryConfig {
            log_format: r.or("telemetry.log_format", td.log_format),
            log_filter: r.or("telemetry.log_filter", td.log_filter),
            service_name: r.or("telemetry.service_name", td.service_name),
            otlp_endpoint: r.optional("telemetry.otlp_endpoint"),
        };
        if let Err(e) = crate::telemetry::parse_filter(&telemetry.log_filter) {
            r.problem("telemetry.log_filter", e);
        }

        let bd = BreakerConfig::default();
        let breaker = BreakerConfig {
            failure_threshold: r.or("resilience.breaker.failure_threshold", bd.failure_threshold),
            reset_timeout: r.or("resilience.breaker.reset_timeout", bd.reset_timeout),
            monitoring_window: r.or("resilience.breaker.monitoring_window", bd.monitoring_window),
            half_open_max_probes: r.or(
                "resilience.breaker.half_open_max_probes",
                bd.half_open_max_probes,
            ),
            success_threshold: r.or("resilience.breaker.success_threshold", bd.success_threshold),
        };
        for (key, v) in [
            (
                "resilience.breaker.failure_threshold",
                breaker.failure_threshold,
            ),
            (
                "resilience.breaker.half_open_max_probes",
                breaker.half_open_max_probes,
            ),
            (
                "resilience.breaker.success_threshold",
                breaker.success_threshold,
            ),
        ] {
            if v == 0 {
                r.problem(key, "must be at least 1");
            }
        }
        let rd = RetryPolicy::default();
        let retry = RetryPolicy {
            max_attempts: r.or("resilience.retry.max_attempts", rd.max_attempts),
            base_delay: r.or("resilience.retry.base_delay", rd.base_delay),
            multiplier: r.or("resilience.retry.multiplier", rd.multiplier),
            max_delay: r.or("resilience.retry.max_delay", rd.max_delay),
            jitter: r.or("resilience.retry.jitter", rd.jitter),
            honor_retry_after: r.or("resilience.retry.honor_retry_after", rd.honor_retry_after),
        };
        if retry.max_attempts == 0 {
            r.problem("resilience.retry.max_attempts", "must be at least 1");
        }
        if !(retry.multiplier >= 1.0 && retry.multiplier <= 10.0) {
            r.problem("resilience.retry.multiplier", "must be between 1 and 10");
        }

        Self {
            mode,
            data_dir: r.or("data_dir", PathBuf::from("wattos-data")),
            server,
            database,
            redis,
            nats,
            telemetry,
            models: ModelsConfig {
                dir: r.or("models.dir", default_models_dir(env)),
            },
            resilience: ResilienceConfig { breaker, retry },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_embedded_and_local() {
        let c = Config::from_sources(None, env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(c.mode, DeploymentMode::Embedded);
        assert!(c.database.is_none() && c.redis.is_none() && c.nats.is_none());
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.models.dir, PathBuf::from("/home/u/.cache/wattos/models"));
        assert_eq!(c.resilience.breaker.failure_threshold, 5);
        assert_eq!(c.resilience.retry.max_attempts, 3);
    }

    #[test]
    fn every_problem_is_listed_by_name() {
        let err = Config::from_sources(
            Some((
                "wattos.toml",
                "[server]\nbind = \"nope\"\nmax_concurrent_requests = 0\n",
            )),
            env(&[
                ("WATTOS_MODE", "shared"),
                ("WATTOS_REDIS__URL", "http://wrong"),
                ("WATTOS_SERVER__REQUEST_TIMEOUT", "soon"),
                ("WATTOS_SERVR__BIND", "typo"),
            ]),
        )
        .unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "database.url",
            "nats.url",
            "redis.url",
            "server.bind",
            "server.max_concurrent_requests",
            "server.request_timeout",
            "servr.bind",
        ] {
            assert!(keys.contains(&k), "missing problem for {k}: {err}");
        }
        let text = err.to_string();
        assert!(text.contains("WATTOS_DATABASE__URL"), "{text}");
        assert!(text.contains("wattos.toml"), "{text}");
        assert!(
            text.starts_with("invalid configuration: 7 problems"),
            "{text}"
        );
    }

    #[test]
    fn shared_mode_with_all_urls_is_valid_and_secrets_are_redacted() {
        let c = Config::from_sources(
            None,
            env(&[
                ("WATTOS_MODE", "shared"),
                ("WATTOS_DATABASE__URL", "postgres://user:hunter2@db/wattos"),
                ("WATTOS_REDIS__URL", "redis://:hunter2@cache:6379"),
                ("WATTOS_NATS__URL", "nats://bus:4222"),
            ]),
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(c.database.unwrap().max_connections, 10);
    }

    #[test]
    fn pool_sizes_default_to_max_connections_and_are_validated() {
        let shared = [
            ("WATTOS_MODE", "shared"),
            ("WATTOS_DATABASE__URL", "postgres://db/wattos"),
            ("WATTOS_REDIS__URL", "redis://cache"),
            ("WATTOS_NATS__URL", "nats://bus"),
        ];
        let c = Config::from_sources(None, env(&shared)).unwrap();
        let db = c.database.unwrap();
        assert_eq!(db.pools, PoolSizes::uniform(10));
        assert_eq!((db.pools.usage, db.pools.total()), (2, 52));
        assert_eq!(c.redis.unwrap().pool_size, 2);

        let mut vars = shared.to_vec();
        vars.extend([
            ("WATTOS_DATABASE__MAX_CONNECTIONS", "4"),
            ("WATTOS_DATABASE__POOLS__VECTORS", "16"),
            ("WATTOS_DATABASE__POOLS__USAGE", "1"),
            ("WATTOS_REDIS__POOL_SIZE", "8"),
        ]);
        let c = Config::from_sources(
            Some(("w.toml", "[database.pools]\ncheckpoints = 3\n")),
            env(&vars),
        )
        .unwrap();
        let p = c.database.unwrap().pools;
        assert_eq!(
            p,
            PoolSizes {
                tenancy: 4,
                app: 4,
                vectors: 16,
                usage: 1,
                checkpoints: 3,
                conversations: 4,
            }
        );
        assert_eq!(c.redis.unwrap().pool_size, 8);

        let err = Config::from_sources(
            Some((
                "w.toml",
                "[database]\nmax_connections = 0\n[database.pools]\ntenancy = 5000\nvector = 3\n",
            )),
            env(&[("WATTOS_REDIS__POOL_SIZE", "0")]),
        )
        .unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "database.max_connections",
            "database.pools.tenancy",
            "database.pools.vector",
            "redis.pool_size",
        ] {
            assert!(keys.contains(&k), "missing problem for {k}: {err}");
        }
    }

    #[test]
    fn bad_toml_is_reported() {
        let err = Config::from_sources(Some(("x.toml", "[server")), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("x.toml is not valid TOML"));
    }
}
