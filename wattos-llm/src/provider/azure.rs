//! Azure OpenAI: deployment URLs (`{endpoint}/openai/deployments/{deployment}/chat/completions
//! ?api-version=...`) and the `api-key` header, with the OpenAI codec.
//!
//! ```
//! use wattos_llm::provider::azure::AzureConfig;
//! use wattos_llm::provider::openai::OpenAiChat;
//!
//! let cfg = AzureConfig::new("https://my-resource.openai.azure.com", "gpt4o-prod", "key");
//! let model = OpenAiChat::azure(cfg).unwrap();
//! # let _ = model;
//! ```

use wattos_core::config::Secret;
use wattos_core::{Error, Result};

use crate::http::HttpClient;
use crate::provider::ProviderOptions;
use crate::provider::openai::{Dialect, MaxTokensField, OpenAiChat, OpenAiEmbeddings};

/// The GA API version used unless configured.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// Settings of an Azure OpenAI resource and deployment.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// Resource endpoint, e.g. `https://my-resource.openai.azure.com`.
    pub endpoint: String,
    /// Chat deployment name.
    pub deployment: String,
    /// `api-version` query parameter.
    pub api_version: String,
    /// Key sent as the `api-key` header.
    pub api_key: Secret<String>,
    /// Which field carries `max_tokens` (`max_tokens` unless the deployment needs
    /// `max_completion_tokens`, e.g. for o-series models).
    pub max_tokens_field: MaxTokensField,
    /// Common options. `model` here only names the underlying model for pricing and logs.
    pub options: ProviderOptions,
}

impl AzureConfig {
    /// A deployment on `endpoint` with the default API version.
    pub fn new(
        endpoint: impl Into<String>,
        deployment: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            deployment: deployment.into(),
            api_version: DEFAULT_API_VERSION.to_owned(),
            api_key: Secret::new(api_key.into()),
            max_tokens_field: MaxTokensField::MaxTokens,
            options: ProviderOptions::default(),
        }
    }

    fn check(&self) -> Result<()> {
        if self.endpoint.trim().is_empty() {
            return Err(Error::invalid_field("endpoint", "must not be empty"));
        }
        if self.deployment.trim().is_empty() || self.deployment.contains('/') {
            return Err(Error::invalid_field(
                "deployment",
                "must be a deployment name without '/'",
            ));
        }
        Ok(())
    }

    fn client(&self) -> Result<HttpClient> {
        HttpClient::new(
            PROVIDER,
            &self.options.http,
            vec![("api-key", self.api_key.expose().clone())],
        )
    }

    fn dialect(&self, deployment: &str) -> Dialect {
        Dialect::Azure {
            endpoint: self.endpoint.clone(),
            deployment: deployment.to_owned(),
            api_version: self.api_version.clone(),
        }
    }
}

/// Provider label in errors and metrics.
pub const PROVIDER: &str = "azure_openai";

impl OpenAiChat {
    /// A chat model on an Azure OpenAI deployment.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for an empty endpoint or a bad deployment name.
    pub fn azure(cfg: AzureConfig) -> Result<Self> {
        cfg.check()?;
        let http = cfg.client()?;
        let name = cfg
            .options
            .name
            .clone()
            .unwrap_or_else(|| format!("{PROVIDER}/{}", cfg.deployment));
        let dialect = cfg.dialect(&cfg.deployment);
        Ok(Self::from_parts(
            http,
            dialect,
            cfg.max_tokens_field,
            cfg.options,
            name,
        ))
    }
}

impl OpenAiEmbeddings {
    /// An embedding model on the Azure deployment `deployment` of `cfg`'s resource. `model` names
    /// the underlying model (for dimensions and pricing).
    ///
    /// # Errors
    /// As for [`OpenAiEmbeddings::new`] and [`OpenAiChat::azure`].
    pub fn azure(
        cfg: AzureConfig,
        deployment: &str,
        model: impl Into<String>,
        dimensions: Option<usize>,
    ) -> Result<Self> {
        cfg.check()?;
        let http = cfg.client()?;
        let dialect = cfg.dialect(deployment);
        Self::from_parts(
            http,
            dialect,
            model.into(),
            dimensions,
            cfg.options.pricing,
            cfg.options.name,
        )
    }
}
