//! Build providers from configuration, so that switching vendors is a config change only.
//!
//! A [`ProviderConfig`] is tagged by `kind` (`openai`, `azure`, `anthropic`, `gemini`, `ollama`,
//! `openai_compatible`). API keys come from `api_key` (kept as a [`Secret`]) or from the
//! environment variable named by `api_key_env` (default: the vendor's usual variable, e.g.
//! `OPENAI_API_KEY`). Unknown settings are rejected so typos fail at start.
//!
//! ```
//! use wattos_llm::registry::{BuildContext, ProviderConfig};
//!
//! let cfg = ProviderConfig::from_toml(r#"
//!     kind = "anthropic"
//!     model = "claude-sonnet-4-20250514"
//!     api_key_env = "MY_ANTHROPIC_KEY"
//!     timeout = "30s"
//! "#).unwrap();
//! assert_eq!(cfg.kind(), "anthropic");
//! # #[cfg(feature = "anthropic")] {
//! let build = BuildContext::from_env().with_env_map([("MY_ANTHROPIC_KEY", "sk-ant-test")]);
//! let model = wattos_llm::registry::build_chat_model_with(&cfg, &build).unwrap();
//! assert_eq!(model.name(), "anthropic/claude-sonnet-4-20250514");
//! # }
//! // A typo is an error, not a silently ignored setting.
//! assert!(ProviderConfig::from_toml("kind = \"openai\"\nmodle = \"gpt-4o\"").is_err());
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use wattos_core::config::Secret;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::ChatModel;
use wattos_core::{Error, Result};

use crate::pricing::{ModelPrice, PriceTable, Pricing};
use crate::provider::{HttpSettings, ProviderOptions};

fn secret<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Secret<String>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

/// Settings every kind shares.
macro_rules! common_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Name for logs and metrics.
            #[serde(default)]
            pub name: Option<String>,
            /// The model every call uses (see [`ProviderOptions::model`]).
            #[serde(default)]
            pub model: Option<String>,
            /// The API key (prefer `api_key_env`).
            #[serde(default, deserialize_with = "secret")]
            pub api_key: Option<Secret<String>>,
            /// Environment variable holding the API key.
            #[serde(default)]
            pub api_key_env: Option<String>,
            /// Upper bound per HTTP call, e.g. `"30s"` (the request deadline wins when earlier).
            #[serde(default)]
            pub timeout: Option<String>,
            /// Extra headers sent with every request.
            #[serde(default)]
            pub headers: BTreeMap<String, String>,
            /// A fixed price for this deployment (else the price table by model name).
            #[serde(default)]
            pub price: Option<ModelPrice>,
            $($(#[$fmeta])* #[serde(default)] pub $field: $ty,)*
        }
    };
}

common_fields! {
    /// OpenAI, or any OpenAI-compatible server (`kind = "openai_compatible"`).
    pub struct OpenAiSettings {
        /// Base URL with the version prefix (`.../v1`). Required for `openai_compatible`.
        pub base_url: Option<String>,
        /// `OpenAI-Organization` header.
        pub organization: Option<String>,
        /// `OpenAI-Project` header.
        pub project: Option<String>,
        /// `max_tokens` or `max_completion_tokens`.
        pub max_tokens_field: Option<crate_max_tokens::MaxTokensFieldSetting>,
        /// Embedding model, for [`build_embedding_model`].
        pub embedding_model: Option<String>,
        /// Embedding vector size (required for models the crate does not know).
        pub embedding_dimensions: Option<usize>,
    }
}

common_fields! {
    /// Azure OpenAI. `model` names the deployed model (for pricing and logs only).
    pub struct AzureSettings {
        /// Resource endpoint, `https://<resource>.openai.azure.com`.
        pub endpoint: String,
        /// Chat deployment name.
        pub deployment: String,
        /// `api-version` (default `2024-10-21`).
        pub api_version: Option<String>,
        /// `max_tokens` or `max_completion_tokens`.
        pub max_tokens_field: Option<crate_max_tokens::MaxTokensFieldSetting>,
        /// Embedding deployment name.
        pub embedding_deployment: Option<String>,
        /// The model behind the embedding deployment.
        pub embedding_model: Option<String>,
        /// Embedding vector size.
        pub embedding_dimensions: Option<usize>,
    }
}

common_fields! {
    /// Anthropic Messages.
    pub struct AnthropicSettings {
        /// Base URL without `/v1`.
        pub base_url: Option<String>,
        /// `anthropic-version` header.
        pub version: Option<String>,
        /// `anthropic-beta` header.
        pub beta: Option<String>,
        /// `max_tokens` when a request has none.
        pub default_max_tokens: Option<u32>,
    }
}

common_fields! {
    /// Google Gemini.
    pub struct GeminiSettings {
        /// Base URL with the version (`.../v1beta`).
        pub base_url: Option<String>,
        /// Embedding model.
        pub embedding_model: Option<String>,
        /// Embedding vector size (sent as `outputDimensionality`).
        pub embedding_dimensions: Option<usize>,
        /// Gemini `taskType` for embeddings.
        pub embedding_task_type: Option<String>,
    }
}

common_fields! {
    /// Ollama.
    pub struct OllamaSettings {
        /// Server URL (default `http://127.0.0.1:11434`).
        pub base_url: Option<String>,
        /// `keep_alive` per request.
        pub keep_alive: Option<String>,
        /// Embedding model.
        pub embedding_model: Option<String>,
        /// Embedding vector size.
        pub embedding_dimensions: Option<usize>,
    }
}

/// The `max_tokens_field` setting, usable without the `openai` feature.
mod crate_max_tokens {
    use serde::Deserialize;

    /// Which field carries the output-token limit.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum MaxTokensFieldSetting {
        /// `max_tokens`.
        MaxTokens,
        /// `max_completion_tokens`.
        MaxCompletionTokens,
    }
}

pub use crate_max_tokens::MaxTokensFieldSetting;

/// One provider, chosen by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderConfig {
    /// OpenAI.
    Openai(OpenAiSettings),
    /// Azure OpenAI.
    Azure(AzureSettings),
    /// Anthropic.
    Anthropic(AnthropicSettings),
    /// Google Gemini.
    Gemini(GeminiSettings),
    /// Ollama.
    Ollama(OllamaSettings),
    /// Any OpenAI-compatible endpoint (vLLM, LM Studio, Together, llama.cpp server...).
    OpenaiCompatible(OpenAiSettings),
    // ---- LOCAL KIND ---------------------------------------------------------------------------
    // `kind = "local"` (candle SmolLM2 chat / MiniLM embeddings, feature `local`) is added here by
    // the local-models work: a `Local(LocalSettings)` variant, plus one arm in `build_chat_model_with`
    // and `build_embedding_model_with` that constructs `crate::local::{SmolLm, MiniLmEmbedder}`.
    // -------------------------------------------------------------------------------------------
}

impl ProviderConfig {
    /// Parses one provider table from TOML.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] naming the problem (unknown kind or setting, bad type).
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text)
            .map_err(|e| Error::invalid_field("provider", format!("invalid provider config: {e}")))
    }

    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Openai(_) => "openai",
            Self::Azure(_) => "azure",
            Self::Anthropic(_) => "anthropic",
            Self::Gemini(_) => "gemini",
            Self::Ollama(_) => "ollama",
            Self::OpenaiCompatible(_) => "openai_compatible",
        }
    }
}

/// Several named providers, e.g. a `[providers.<name>]` table in a config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Providers by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
}

impl ProvidersConfig {
    /// Parses `[providers.<name>]` tables from TOML.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] naming the problem.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            Error::invalid_field("providers", format!("invalid providers config: {e}"))
        })
    }
}

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What building needs besides the config: where environment variables come from and the price
/// table used when a provider has no fixed `price`.
#[derive(Clone)]
pub struct BuildContext {
    env: EnvLookup,
    prices: Arc<PriceTable>,
}

impl std::fmt::Debug for BuildContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildContext")
            .field("prices", &self.prices.models.len())
            .finish_non_exhaustive()
    }
}

impl Default for BuildContext {
    fn default() -> Self {
        Self::from_env()
    }
}

impl BuildContext {
    /// The process environment and the built-in price table.
    pub fn from_env() -> Self {
        Self {
            env: Arc::new(|k| std::env::var(k).ok()),
            prices: Arc::new(PriceTable::builtin()),
        }
    }

    /// Looks variables up in `vars` first, then in the process environment.
    pub fn with_env_map<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let fallback = self.env.clone();
        self.env = Arc::new(move |k| map.get(k).cloned().or_else(|| fallback(k)));
        self
    }

    /// Uses `prices` for providers without a fixed price.
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.prices = Arc::new(prices);
        self
    }
}

#[cfg_attr(not(feature = "remote"), allow(dead_code))]
struct Common<'a> {
    name: &'a Option<String>,
    model: &'a Option<String>,
    api_key: &'a Option<Secret<String>>,
    api_key_env: &'a Option<String>,
    timeout: &'a Option<String>,
    headers: &'a BTreeMap<String, String>,
    price: &'a Option<ModelPrice>,
}

#[cfg_attr(not(feature = "remote"), allow(unused_macros))]
macro_rules! common {
    ($s:expr) => {
        Common {
            name: &$s.name,
            model: &$s.model,
            api_key: &$s.api_key,
            api_key_env: &$s.api_key_env,
            timeout: &$s.timeout,
            headers: &$s.headers,
            price: &$s.price,
        }
    };
}

#[cfg_attr(not(feature = "remote-all"), allow(dead_code))]
impl Common<'_> {
    fn options(
        &self,
        b: &BuildContext,
        default_price: Option<ModelPrice>,
    ) -> Result<ProviderOptions> {
        let mut http = HttpSettings::default();
        if let Some(t) = self.timeout {
            http.timeout = wattos_core::config::parse_duration(t)
                .filter(|d| *d > Duration::ZERO)
                .ok_or_else(|| {
                    Error::invalid_field(
                        "timeout",
                        "expected a duration such as \"30s\" or \"500ms\"",
                    )
                })?;
        }
        http.headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let pricing = match self.price.or(default_price) {
            Some(p) => Pricing::Fixed(p),
            None => Pricing::Table(b.prices.clone()),
        };
        Ok(ProviderOptions {
            name: self.name.clone(),
            model: self.model.clone(),
            http,
            pricing,
        })
    }

    /// The key from `api_key`, else `api_key_env`, else `default_env`.
    fn key(&self, b: &BuildContext, default_env: Option<&str>) -> Option<String> {
        if let Some(k) = self.api_key {
            return Some(k.expose().clone());
        }
        let var = self.api_key_env.as_deref().or(default_env)?;
        (b.env)(var).filter(|v| !v.is_empty())
    }

    fn required_key(&self, b: &BuildContext, default_env: &str) -> Result<String> {
        self.key(b, Some(default_env)).ok_or_else(|| {
            let var = self.api_key_env.as_deref().unwrap_or(default_env);
            Error::invalid_field(
                "api_key",
                format!("no API key: set api_key or the environment variable {var}"),
            )
        })
    }
}

#[cfg_attr(feature = "remote-all", allow(dead_code))]
fn missing_feature(kind: &str, feature: &str) -> Error {
    Error::invalid_field(
        "kind",
        format!("provider kind '{kind}' needs wattos-llm's cargo feature '{feature}'"),
    )
}

/// Builds a chat model from the process environment and built-in prices.
///
/// # Errors
/// [`wattos_core::ErrorKind::InvalidInput`] for a missing key, bad setting, or a kind whose cargo
/// feature is off.
pub fn build_chat_model(cfg: &ProviderConfig) -> Result<Arc<dyn ChatModel>> {
    build_chat_model_with(cfg, &BuildContext::from_env())
}

/// Builds a chat model.
///
/// # Errors
/// As for [`build_chat_model`].
#[allow(unused_variables)]
pub fn build_chat_model_with(cfg: &ProviderConfig, b: &BuildContext) -> Result<Arc<dyn ChatModel>> {
    match cfg {
        #[cfg(feature = "openai")]
        ProviderConfig::Openai(s) | ProviderConfig::OpenaiCompatible(s) => Ok(Arc::new(
            crate::provider::openai::OpenAiChat::new(openai_config(cfg, s, b)?)?,
        )),
        #[cfg(feature = "azure")]
        ProviderConfig::Azure(s) => Ok(Arc::new(crate::provider::openai::OpenAiChat::azure(
            azure_config(s, b)?,
        )?)),
        #[cfg(feature = "anthropic")]
        ProviderConfig::Anthropic(s) => {
            use crate::provider::anthropic::{AnthropicChat, AnthropicConfig};
            let c = common!(s);
            let mut a = AnthropicConfig::new(c.required_key(b, "ANTHROPIC_API_KEY")?);
            if let Some(u) = &s.base_url {
                a.base_url = u.clone();
            }
            if let Some(v) = &s.version {
                a.version = v.clone();
            }
            a.beta = s.beta.clone();
            if let Some(m) = s.default_max_tokens {
                a.default_max_tokens = m;
            }
            a.options = c.options(b, None)?;
            Ok(Arc::new(AnthropicChat::new(a)?))
        }
        #[cfg(feature = "gemini")]
        ProviderConfig::Gemini(s) => Ok(Arc::new(crate::provider::gemini::GeminiChat::new(
            gemini_config(s, b)?,
        )?)),
        #[cfg(feature = "ollama")]
        ProviderConfig::Ollama(s) => Ok(Arc::new(crate::provider::ollama::OllamaChat::new(
            ollama_config(s, b)?,
        )?)),
        // LOCAL KIND: `ProviderConfig::Local(s) => Ok(Arc::new(crate::local::SmolLm::...))`.
        #[allow(unreachable_patterns)]
        other => Err(missing_feature(other.kind(), feature_of(other))),
    }
}

/// Builds an embedding model from the process environment and built-in prices.
///
/// # Errors
/// As for [`build_chat_model`], plus [`wattos_core::ErrorKind::InvalidInput`] when the config has no
/// `embedding_model` or the vendor (Anthropic) has no embeddings.
pub fn build_embedding_model(cfg: &ProviderConfig) -> Result<Arc<dyn EmbeddingModel>> {
    build_embedding_model_with(cfg, &BuildContext::from_env())
}

/// Builds an embedding model.
///
/// # Errors
/// As for [`build_embedding_model`].
#[allow(unused_variables)]
pub fn build_embedding_model_with(
    cfg: &ProviderConfig,
    b: &BuildContext,
) -> Result<Arc<dyn EmbeddingModel>> {
    let need = |m: &Option<String>| {
        m.clone()
            .ok_or_else(|| Error::invalid_field("embedding_model", "is required for embeddings"))
    };
    match cfg {
        #[cfg(feature = "openai")]
        ProviderConfig::Openai(s) | ProviderConfig::OpenaiCompatible(s) => {
            Ok(Arc::new(crate::provider::openai::OpenAiEmbeddings::new(
                openai_config(cfg, s, b)?,
                need(&s.embedding_model)?,
                s.embedding_dimensions,
            )?))
        }
        #[cfg(feature = "azure")]
        ProviderConfig::Azure(s) => {
            let deployment = s.embedding_deployment.clone().ok_or_else(|| {
                Error::invalid_field("embedding_deployment", "is required for Azure embeddings")
            })?;
            Ok(Arc::new(crate::provider::openai::OpenAiEmbeddings::azure(
                azure_config(s, b)?,
                &deployment,
                need(&s.embedding_model)?,
                s.embedding_dimensions,
            )?))
        }
        ProviderConfig::Anthropic(_) => Err(Error::invalid_field(
            "kind",
            "Anthropic has no embeddings API; configure another provider for embeddings",
        )),
        #[cfg(feature = "gemini")]
        ProviderConfig::Gemini(s) => Ok(Arc::new(crate::provider::gemini::GeminiEmbeddings::new(
            gemini_config(s, b)?,
            need(&s.embedding_model)?,
            s.embedding_dimensions,
            s.embedding_task_type.clone(),
        )?)),
        #[cfg(feature = "ollama")]
        ProviderConfig::Ollama(s) => Ok(Arc::new(crate::provider::ollama::OllamaEmbeddings::new(
            ollama_config(s, b)?,
            need(&s.embedding_model)?,
            s.embedding_dimensions,
        )?)),
        // LOCAL KIND: `ProviderConfig::Local(s) => Ok(Arc::new(crate::local::MiniLmEmbedder::...))`.
        #[allow(unreachable_patterns)]
        other => Err(missing_feature(other.kind(), feature_of(other))),
    }
}

#[cfg_attr(feature = "remote-all", allow(dead_code))]
fn feature_of(cfg: &ProviderConfig) -> &'static str {
    match cfg {
        ProviderConfig::Openai(_) | ProviderConfig::OpenaiCompatible(_) => "openai",
        ProviderConfig::Azure(_) => "azure",
        ProviderConfig::Anthropic(_) => "anthropic",
        ProviderConfig::Gemini(_) => "gemini",
        ProviderConfig::Ollama(_) => "ollama",
    }
}

#[cfg(feature = "openai")]
fn max_tokens(
    s: Option<MaxTokensFieldSetting>,
    default: crate::provider::openai::MaxTokensField,
) -> crate::provider::openai::MaxTokensField {
    use crate::provider::openai::MaxTokensField;
    match s {
        Some(MaxTokensFieldSetting::MaxTokens) => MaxTokensField::MaxTokens,
        Some(MaxTokensFieldSetting::MaxCompletionTokens) => MaxTokensField::MaxCompletionTokens,
        None => default,
    }
}

#[cfg(feature = "openai")]
fn openai_config(
    cfg: &ProviderConfig,
    s: &OpenAiSettings,
    b: &BuildContext,
) -> Result<crate::provider::openai::OpenAiConfig> {
    use crate::provider::openai::{OPENAI_BASE_URL, OpenAiConfig};
    let c = common!(s);
    let mut o = if matches!(cfg, ProviderConfig::OpenaiCompatible(_)) {
        let url = s.base_url.clone().ok_or_else(|| {
            Error::invalid_field("base_url", "is required for kind 'openai_compatible'")
        })?;
        OpenAiConfig::compatible(url, c.key(b, None))
    } else {
        let mut o = OpenAiConfig::new(c.required_key(b, "OPENAI_API_KEY")?);
        o.base_url = s
            .base_url
            .clone()
            .unwrap_or_else(|| OPENAI_BASE_URL.to_owned());
        o
    };
    o.organization = s.organization.clone();
    o.project = s.project.clone();
    o.max_tokens_field = max_tokens(s.max_tokens_field, o.max_tokens_field);
    o.options = c.options(b, None)?;
    Ok(o)
}

#[cfg(feature = "azure")]
fn azure_config(
    s: &AzureSettings,
    b: &BuildContext,
) -> Result<crate::provider::azure::AzureConfig> {
    let c = common!(s);
    let mut a = crate::provider::azure::AzureConfig::new(
        s.endpoint.clone(),
        s.deployment.clone(),
        c.required_key(b, "AZURE_OPENAI_API_KEY")?,
    );
    if let Some(v) = &s.api_version {
        a.api_version = v.clone();
    }
    a.max_tokens_field = max_tokens(s.max_tokens_field, a.max_tokens_field);
    a.options = c.options(b, None)?;
    Ok(a)
}

#[cfg(feature = "gemini")]
fn gemini_config(
    s: &GeminiSettings,
    b: &BuildContext,
) -> Result<crate::provider::gemini::GeminiConfig> {
    let c = common!(s);
    let mut g = crate::provider::gemini::GeminiConfig::new(c.required_key(b, "GEMINI_API_KEY")?);
    if let Some(u) = &s.base_url {
        g.base_url = u.clone();
    }
    g.options = c.options(b, None)?;
    Ok(g)
}

#[cfg(feature = "ollama")]
fn ollama_config(
    s: &OllamaSettings,
    b: &BuildContext,
) -> Result<crate::provider::ollama::OllamaConfig> {
    let c = common!(s);
    let mut o = crate::provider::ollama::OllamaConfig::default();
    if let Some(u) = &s.base_url {
        o.base_url = u.clone();
    }
    o.api_key = c.key(b, None).map(Secret::new);
    o.keep_alive = s.keep_alive.clone();
    o.options = c.options(b, Some(ModelPrice::FREE))?;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let all = r#"
            [providers.a]
            kind = "openai"
            model = "gpt-4o-mini"
            api_key = "sk-1"
            [providers.b]
            kind = "azure"
            endpoint = "https://r.openai.azure.com"
            deployment = "d"
            [providers.c]
            kind = "anthropic"
            [providers.d]
            kind = "gemini"
            embedding_model = "text-embedding-004"
            [providers.e]
            kind = "ollama"
            base_url = "http://127.0.0.1:11434"
            [providers.f]
            kind = "openai_compatible"
            base_url = "http://127.0.0.1:8000/v1"
            price = { input = 0.1, output = 0.2 }
        "#;
        let p: ProvidersConfig = toml::from_str(all).unwrap();
        let kinds: Vec<_> = p.providers.values().map(ProviderConfig::kind).collect();
        assert_eq!(
            kinds,
            [
                "openai",
                "azure",
                "anthropic",
                "gemini",
                "ollama",
                "openai_compatible"
            ]
        );
        // The key never shows up in Debug output.
        assert!(!format!("{p:?}").contains("sk-1"));
    }

    #[test]
    fn rejects_unknown_kind_and_settings() {
        assert!(ProviderConfig::from_toml("kind = \"nope\"").is_err());
        assert!(ProviderConfig::from_toml("kind = \"ollama\"\nbase_ur = \"x\"").is_err());
    }
}
