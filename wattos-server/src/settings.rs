//! The server's settings: the core [`Config`] plus the sections only the server reads (`auth`,
//! `models.local_*`, `llm.providers`), validated together so one message lists every problem.

use std::path::Path;

use wattos_core::config::{
    Config, ConfigError, ConfigReader, ConfigSources, DeploymentMode, Secret,
};
use wattos_llm::local::ModelRef;
use wattos_llm::registry::ProvidersConfig;

/// Whether requests must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: every request acts as the system principal of tenant `default`.
    /// The default in embedded mode (which listens on 127.0.0.1 by default).
    None,
    /// API keys or JWTs are required on every API route. The default in shared mode.
    Required,
}

/// JWT verification settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// Shared HS256 secret (at least 32 bytes).
    pub hs256_secret: Option<Secret<String>>,
    /// JWKS URL for RS256/ES256 keys.
    pub jwks_url: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
}

/// Authentication settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// Whether authentication is required.
    pub mode: AuthMode,
    /// Server-side pepper for API key hashes (required when authentication is on).
    pub key_pepper: Option<Secret<String>>,
    /// JWT settings, when JWTs are accepted.
    pub jwt: Option<JwtSettings>,
}

/// Which local models to load at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModelSettings {
    /// Serve SmolLM2-135M-Instruct as `smollm2-135m-instruct`.
    pub chat: bool,
    /// Serve all-MiniLM-L6-v2 as `all-minilm-l6-v2`.
    pub embeddings: bool,
    /// Where the chat model's GGUF file comes from (`models.local_chat_from`): a path or a Hub
    /// reference (`owner/name[@revision]/file.gguf`); the model cache folder when unset.
    pub chat_from: Option<ModelRef>,
    /// Where the embedding model's folder comes from (`models.local_embeddings_from`): a path or
    /// a Hub repository (`sentence-transformers/all-MiniLM-L6-v2`); the model cache folder when
    /// unset.
    pub embeddings_from: Option<ModelRef>,
}

fn model_ref(r: &mut ConfigReader, key: &str) -> Option<ModelRef> {
    let spec: String = r.optional(key)?;
    match ModelRef::parse(&spec) {
        Ok(m) => Some(m),
        Err(e) => {
            r.problem(key, e.to_string());
            None
        }
    }
}

/// Everything the server is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Core settings (server, mode, stores, telemetry, resilience).
    pub core: Config,
    /// Authentication.
    pub auth: AuthSettings,
    /// Local models.
    pub local_models: LocalModelSettings,
    /// Remote providers served by name (`[llm.providers.<name>]`).
    pub providers: ProvidersConfig,
    /// Model groups, aliases, fallbacks and deployment knobs (`[llm.router]`).
    pub router: crate::gateway::routing::RouterConfig,
    /// Role, job queue and worker settings (`server.role`, `jobs.*`, `redis.key_prefix`).
    pub jobs: crate::jobs::JobSettings,
    /// Platform events (`events.*`).
    pub events: crate::events::EventSettings,
    /// Conversation retention (`conversations.*`).
    pub conversations: crate::conversations::ConversationSettings,
}

impl Settings {
    /// Loads from the environment and the file named by `file` or `WATTOS_CONFIG`.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let sources = ConfigSources::load(file)?;
        Self::from_sources(&sources)
    }

    /// Builds the settings from explicit sources.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem.
    pub fn from_sources(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let mut r = sources.reader();
        let core = Config::read(&mut r, &sources.env);
        let auth = read_auth(&mut r, core.mode);
        let local_models = LocalModelSettings {
            chat: r.or("models.local_chat", true),
            embeddings: r.or("models.local_embeddings", true),
            chat_from: model_ref(&mut r, "models.local_chat_from"),
            embeddings_from: model_ref(&mut r, "models.local_embeddings_from"),
        };
        let (providers, router) = read_providers(&mut r);
        let jobs = crate::jobs::JobSettings::read(&mut r);
        let events = crate::events::EventSettings::read(&mut r, &core);
        let conversations = crate::conversations::ConversationSettings::read(&mut r);
        if crate::events::prefixes_overlap(&events.subject_prefix, &jobs.subject_prefix) {
            r.problem(
                "events.subject_prefix",
                format!(
                    "overlaps jobs.subject_prefix '{}': the two streams need disjoint subjects",
                    jobs.subject_prefix
                ),
            );
        }
        r.finish()?;
        Ok(Self {
            core,
            auth,
            local_models,
            providers,
            router,
            jobs,
            events,
            conversations,
        })
    }
}

fn read_auth(r: &mut ConfigReader, mode: DeploymentMode) -> AuthSettings {
    let default_mode = match mode {
        DeploymentMode::Embedded => "none",
        DeploymentMode::Shared => "required",
    };
    let mode = match r
        .or::<String>("auth.mode", default_mode.to_owned())
        .as_str()
    {
        "none" => AuthMode::None,
        "required" => AuthMode::Required,
        other => {
            r.problem(
                "auth.mode",
                format!("expected 'none' or 'required', got '{other}'"),
            );
            AuthMode::Required
        }
    };
    let key_pepper: Option<Secret<String>> = if mode == AuthMode::Required {
        r.required("auth.key_pepper", "when auth.mode is 'required'")
    } else {
        r.optional("auth.key_pepper")
    };
    if let Some(p) = &key_pepper
        && p.expose().len() < 16
    {
        r.problem("auth.key_pepper", "must be at least 16 characters");
    }
    let jwt = JwtSettings {
        hs256_secret: r.optional("auth.jwt.hs256_secret"),
        jwks_url: r.optional("auth.jwt.jwks_url"),
        issuer: r.optional("auth.jwt.issuer"),
        audience: r.optional("auth.jwt.audience"),
    };
    if let Some(s) = &jwt.hs256_secret
        && s.expose().len() < 32
    {
        r.problem("auth.jwt.hs256_secret", "must be at least 32 bytes");
    }
    if jwt.hs256_secret.is_some() && jwt.jwks_url.is_some() {
        r.problem("auth.jwt", "set either hs256_secret or jwks_url, not both");
    }
    let jwt = (jwt.hs256_secret.is_some() || jwt.jwks_url.is_some()).then_some(jwt);
    AuthSettings {
        mode,
        key_pepper,
        jwt,
    }
}

fn read_providers(
    r: &mut ConfigReader,
) -> (ProvidersConfig, crate::gateway::routing::RouterConfig) {
    let Some(llm) = r.section("llm") else {
        return Default::default();
    };
    let mut table = toml::Table::new();
    let mut router = crate::gateway::routing::RouterConfig::default();
    for (k, v) in llm {
        if k == "providers" {
            table.insert(k, v);
        } else if k == "router" {
            let t = match v {
                toml::Value::Table(t) => t,
                _ => toml::Table::new(),
            };
            match crate::gateway::routing::RouterConfig::from_table(t) {
                Ok(c) => router = c,
                Err(e) => r.problem("llm.router", e.message().to_owned()),
            }
        } else {
            r.problem(
                &format!("llm.{k}"),
                "unknown setting (only llm.providers.<name> and llm.router are read)",
            );
        }
    }
    let text = toml::to_string(&table).unwrap_or_default();
    let providers = match ProvidersConfig::from_toml(&text) {
        Ok(p) => p,
        Err(e) => {
            r.problem("llm.providers", e.message().to_owned());
            ProvidersConfig::default()
        }
    };
    (providers, router)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(file: &str, env: &[(&str, &str)]) -> ConfigSources {
        ConfigSources {
            file: Some(("wattos.toml".into(), file.into())),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn providers_are_read_from_llm_providers() {
        let s = Settings::from_sources(&sources(
            "[llm.providers.gpt-4o-mini]\nkind = \"openai\"\nmodel = \"gpt-4o-mini\"\napi_key_env = \"OPENAI_API_KEY\"\n",
            &[],
        ))
        .unwrap();
        let p = &s.providers.providers["gpt-4o-mini"];
        assert_eq!(p.kind(), "openai");
        assert_eq!(s.auth.mode, AuthMode::None);
        assert!(s.local_models.chat && s.local_models.embeddings);
    }

    #[test]
    fn bad_provider_and_auth_settings_are_listed_together() {
        let err = Settings::from_sources(&sources(
            "[llm]\nroutr = 1\n[llm.providers.x]\nkind = \"openai\"\nmodle = \"typo\"\n",
            &[
                ("WATTOS_AUTH__MODE", "maybe"),
                ("WATTOS_MODELS__LOCAL_CHAT", "perhaps"),
            ],
        ))
        .unwrap_err()
        .to_string();
        for needle in [
            "llm.routr",
            "llm.providers",
            "auth.mode",
            "models.local_chat",
            "auth.key_pepper",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }

    #[test]
    fn shared_mode_turns_authentication_on() {
        let s = Settings::from_sources(&sources(
            "",
            &[
                ("WATTOS_MODE", "shared"),
                ("WATTOS_DATABASE__URL", "postgres://db/w"),
                ("WATTOS_REDIS__URL", "redis://cache"),
                ("WATTOS_NATS__URL", "nats://bus"),
                ("WATTOS_AUTH__KEY_PEPPER", "0123456789abcdef"),
            ],
        ))
        .unwrap();
        assert_eq!(s.auth.mode, AuthMode::Required);
    }
}
