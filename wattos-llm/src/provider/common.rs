//! Pieces every provider shares: options, model selection, `extra` merging, cost.

#![cfg_attr(not(feature = "remote-all"), allow(dead_code))]

use serde_json::{Map, Value};
use wattos_core::llm::ChatResponse;
use wattos_core::{Error, Result};

use std::time::Duration;

use crate::pricing::Pricing;

/// Default ceiling for one HTTP call when the request context has no deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Default TCP connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the HTTP client a provider uses.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Upper bound for one call (the context deadline wins when earlier).
    pub timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Extra headers sent with every request (e.g. a gateway's routing header).
    pub headers: Vec<(String, String)>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            headers: Vec::new(),
        }
    }
}

/// Options common to every remote provider.
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    /// Name for logs and metrics (defaults to `<vendor>/<model>` or the vendor name).
    pub name: Option<String>,
    /// Model that every call uses. When set, [`wattos_core::llm::ChatRequest::model`] is treated as an
    /// alias already resolved to this deployment and ignored; when unset, the request's model is sent.
    pub model: Option<String>,
    /// HTTP client settings.
    pub http: HttpSettings,
    /// How calls are priced (built-in price table by default).
    pub pricing: Pricing,
}

impl ProviderOptions {
    /// Options with a fixed model.
    pub fn with_model(model: impl Into<String>) -> Self {
        Self {
            model: Some(model.into()),
            ..Self::default()
        }
    }

    /// The display name: explicit name, else `vendor/model`, else the vendor.
    pub(crate) fn display_name(&self, vendor: &str) -> String {
        match (&self.name, &self.model) {
            (Some(n), _) => n.clone(),
            (None, Some(m)) => format!("{vendor}/{m}"),
            (None, None) => vendor.to_owned(),
        }
    }

    /// The model to send for a request.
    pub(crate) fn resolve_model(&self, requested: &str) -> Result<String> {
        match &self.model {
            Some(m) => Ok(m.clone()),
            None if requested.trim().is_empty() => Err(Error::invalid_field(
                "model",
                "no model in the request and none configured for the provider",
            )),
            None => Ok(requested.to_owned()),
        }
    }

    /// Sets `resp.cost` from the pricing.
    pub(crate) fn price(&self, mut resp: ChatResponse) -> ChatResponse {
        resp.cost = self.pricing.cost(&resp.model, &resp.usage);
        resp
    }
}

/// Merges `extra` into a vendor body: objects merge recursively, anything else replaces.
pub(crate) fn merge_extra(body: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (k, v) in extra {
        match (body.get_mut(k), v) {
            (Some(Value::Object(dst)), Value::Object(src)) => merge_extra(dst, src),
            _ => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Removes the `known` keys from `fields` and returns the rest (unknown vendor fields to pass through).
pub(crate) fn unknown_fields(mut fields: Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    for k in known {
        fields.remove(*k);
    }
    fields.retain(|_, v| !v.is_null());
    fields
}

/// `f32` to JSON without binary noise (0.2f32 becomes 0.2, not 0.20000000298023224).
pub(crate) fn f32_value(v: f32) -> Value {
    let s = v.to_string();
    s.parse::<f64>().map(Value::from).unwrap_or(Value::Null)
}

/// A fresh id for vendors that do not assign one.
pub(crate) fn generated_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_merges_deeply() {
        let mut body = json!({"a": 1, "cfg": {"x": 1, "y": 2}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let extra = json!({"cfg": {"y": 3, "z": 4}, "b": true})
            .as_object()
            .cloned()
            .unwrap_or_default();
        merge_extra(&mut body, &extra);
        assert_eq!(
            Value::Object(body),
            json!({"a": 1, "b": true, "cfg": {"x": 1, "y": 3, "z": 4}})
        );
    }
}
