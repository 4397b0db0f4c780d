//! Health checks for the server's own dependencies: the data folder, the local models and every
//! configured external service.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use wattos_core::health::{ComponentHealth, HealthCheck};

/// Checks that the embedded data folder exists (creating it) and is writable.
#[derive(Debug, Clone)]
pub struct DataDirCheck {
    dir: PathBuf,
}

impl DataDirCheck {
    /// Checks `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait]
impl HealthCheck for DataDirCheck {
    fn name(&self) -> &str {
        "data_dir"
    }

    async fn check(&self) -> ComponentHealth {
        let dir = self.dir.clone();
        let probe = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let file = dir.join(format!(".health-{}", std::process::id()));
            std::fs::write(&file, b"ok")?;
            std::fs::remove_file(&file)
        })
        .await;
        match probe {
            Ok(Ok(())) => ComponentHealth::healthy(),
            Ok(Err(e)) => {
                ComponentHealth::unhealthy(format!("{} is not writable: {e}", self.dir.display()))
            }
            Err(e) => ComponentHealth::unhealthy(format!("check failed: {e}")),
        }
    }
}

/// Checks that the local model files are present. Not critical: the server runs without local models,
/// only the local providers are unavailable.
#[derive(Debug, Clone)]
pub struct LocalModelsCheck {
    dir: PathBuf,
}

impl LocalModelsCheck {
    /// Files the default local models need, relative to the models folder.
    pub const REQUIRED: [&'static str; 3] = [
        "all-minilm-l6-v2/model.safetensors",
        "all-minilm-l6-v2/tokenizer.json",
        "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    ];

    /// Checks the models folder `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait]
impl HealthCheck for LocalModelsCheck {
    fn name(&self) -> &str {
        "local_models"
    }

    fn critical(&self) -> bool {
        false
    }

    async fn check(&self) -> ComponentHealth {
        let missing: Vec<_> = Self::REQUIRED
            .iter()
            .filter(|f| !self.dir.join(f).is_file())
            .copied()
            .collect();
        if missing.is_empty() {
            ComponentHealth::healthy()
        } else {
            ComponentHealth::unhealthy(format!(
                "missing in {}: {} (run scripts/fetch-models.sh)",
                self.dir.display(),
                missing.join(", ")
            ))
        }
    }
}

/// Checks that a configured service accepts TCP connections. Used for Postgres, Redis and NATS until
/// their clients register protocol-level checks.
#[derive(Debug, Clone)]
pub struct TcpReachableCheck {
    name: String,
    host: String,
    port: u16,
    timeout: Duration,
}

impl TcpReachableCheck {
    /// A check named `name` for the host and port of `url` (`default_port` when the URL has none).
    /// Returns `None` when the URL has no host.
    pub fn from_url(name: &str, url: &str, default_port: u16) -> Option<Self> {
        let parsed = url::Url::parse(url).ok()?;
        let host = parsed.host_str()?.trim_matches(['[', ']']).to_owned();
        Some(Self {
            name: name.to_owned(),
            host,
            port: parsed.port().unwrap_or(default_port),
            timeout: Duration::from_secs(1),
        })
    }
}

#[async_trait]
impl HealthCheck for TcpReachableCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> ComponentHealth {
        let connect = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(_)) => ComponentHealth::healthy(),
            Ok(Err(e)) => {
                ComponentHealth::unhealthy(format!("{}:{} unreachable: {e}", self.host, self.port))
            }
            Err(_) => ComponentHealth::unhealthy(format!(
                "{}:{} did not accept a connection within {} ms",
                self.host,
                self.port,
                self.timeout.as_millis()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_core::health::HealthStatus;

    #[test]
    fn url_parsing_strips_credentials() {
        let c =
            TcpReachableCheck::from_url("postgres", "postgres://u:secret@db.internal:6543/x", 5432)
                .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("db.internal", 6543));
        let c = TcpReachableCheck::from_url("redis", "redis://cache", 6379).unwrap();
        assert_eq!(c.port, 6379);
        assert!(TcpReachableCheck::from_url("x", "not a url", 1).is_none());
    }

    #[tokio::test]
    async fn closed_port_is_unhealthy() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = TcpReachableCheck::from_url("x", &format!("redis://127.0.0.1:{port}"), 1).unwrap();
        assert_eq!(c.check().await.status, HealthStatus::Unhealthy);
    }

    #[tokio::test]
    async fn missing_models_are_reported_by_name() {
        let dir = std::env::temp_dir().join(format!("wattos-no-models-{}", std::process::id()));
        let h = LocalModelsCheck::new(dir).check().await;
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert!(h.detail.unwrap().contains("fetch-models.sh"));
    }
}
