//! Model prices and the cost of a call.
//!
//! A [`PriceTable`] maps model names to a [`ModelPrice`] in US dollars per million tokens. It starts
//! from built-in list prices of common models ([`PriceTable::builtin`], list prices at the time of
//! writing; check your contract) and can be extended or overridden from TOML:
//!
//! ```
//! use wattos_core::llm::Usage;
//! use wattos_llm::pricing::PriceTable;
//!
//! let table = PriceTable::builtin().merged(PriceTable::from_toml(r#"
//!     [models."my-finetune"]
//!     input = 1.0
//!     cached_input = 0.5
//!     output = 4.0
//! "#).unwrap());
//! let usage = Usage { input_tokens: 1_000_000, output_tokens: 500_000, cached_input_tokens: 200_000 };
//! let cost = table.cost("my-finetune", &usage).unwrap();
//! assert!((cost.input_usd - 0.8).abs() < 1e-9);        // 800k uncached tokens
//! assert!((cost.cached_input_usd - 0.1).abs() < 1e-9);  // 200k cached tokens
//! assert!((cost.output_usd - 2.0).abs() < 1e-9);
//! // Dated snapshots resolve to their family by longest prefix.
//! assert!(table.get("gpt-4o-mini-2024-07-18").is_some());
//! assert!(table.cost("unknown-model", &usage).is_none());
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use wattos_core::llm::{Cost, Usage};
use wattos_core::{Error, Result};

/// Price of one model in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Uncached input tokens.
    pub input: f64,
    /// Cached input tokens (defaults to `input` when the provider has no cache discount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Output tokens.
    #[serde(default)]
    pub output: f64,
}

impl ModelPrice {
    /// A price with a cache discount.
    pub const fn new(input: f64, cached_input: f64, output: f64) -> Self {
        Self {
            input,
            cached_input: Some(cached_input),
            output,
        }
    }

    /// A model that costs nothing (self-hosted).
    pub const FREE: Self = Self::new(0.0, 0.0, 0.0);

    /// The cost of `usage` at this price. Cached tokens are a subset of `input_tokens`.
    pub fn cost(&self, usage: &Usage) -> Cost {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
        Cost {
            input_usd: per(uncached, self.input),
            cached_input_usd: per(cached, self.cached_input.unwrap_or(self.input)),
            output_usd: per(usage.output_tokens, self.output),
        }
    }
}

/// Model name to price, with longest-prefix lookup for dated snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Prices by model name (or name prefix).
    #[serde(default)]
    pub models: HashMap<String, ModelPrice>,
}

/// Built-in list prices (USD per million tokens: input, cached input, output).
const BUILTIN: &[(&str, f64, f64, f64)] = &[
    // OpenAI
    ("gpt-4o", 2.50, 1.25, 10.00),
    ("gpt-4o-mini", 0.15, 0.075, 0.60),
    ("gpt-4.1", 2.00, 0.50, 8.00),
    ("gpt-4.1-mini", 0.40, 0.10, 1.60),
    ("gpt-4.1-nano", 0.10, 0.025, 0.40),
    ("gpt-5", 1.25, 0.125, 10.00),
    ("gpt-5-mini", 0.25, 0.025, 2.00),
    ("gpt-5-nano", 0.05, 0.005, 0.40),
    ("o3", 2.00, 0.50, 8.00),
    ("o3-mini", 1.10, 0.55, 4.40),
    ("o4-mini", 1.10, 0.275, 4.40),
    ("gpt-3.5-turbo", 0.50, 0.50, 1.50),
    ("text-embedding-3-small", 0.02, 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.13, 0.0),
    ("text-embedding-ada-002", 0.10, 0.10, 0.0),
    // Anthropic (cached = cache read price)
    ("claude-3-5-haiku", 0.80, 0.08, 4.00),
    ("claude-3-haiku", 0.25, 0.03, 1.25),
    ("claude-3-5-sonnet", 3.00, 0.30, 15.00),
    ("claude-3-7-sonnet", 3.00, 0.30, 15.00),
    ("claude-sonnet-4", 3.00, 0.30, 15.00),
    ("claude-opus-4", 15.00, 1.50, 75.00),
    ("claude-haiku-4-5", 1.00, 0.10, 5.00),
    ("claude-opus-4-5", 5.00, 0.50, 25.00),
    // Google Gemini (prompts up to 200k tokens)
    ("gemini-2.5-pro", 1.25, 0.31, 10.00),
    ("gemini-2.5-flash", 0.30, 0.075, 2.50),
    ("gemini-2.5-flash-lite", 0.10, 0.025, 0.40),
    ("gemini-2.0-flash", 0.10, 0.025, 0.40),
    ("gemini-2.0-flash-lite", 0.075, 0.075, 0.30),
    ("gemini-1.5-flash", 0.075, 0.01875, 0.30),
    ("gemini-1.5-pro", 1.25, 0.3125, 5.00),
];

/// The price of `model` in the built-in table ([`PriceTable::builtin`]), when it has one.
pub fn builtin_price(model: &str) -> Option<ModelPrice> {
    static TABLE: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(PriceTable::builtin).get(model).copied()
}

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Built-in list prices of common OpenAI, Anthropic and Gemini models.
    pub fn builtin() -> Self {
        Self {
            models: BUILTIN
                .iter()
                .map(|&(m, i, c, o)| (m.to_owned(), ModelPrice::new(i, c, o)))
                .collect(),
        }
    }

    /// Parses a table from TOML (`[models."name"] input = .. cached_input = .. output = ..`).
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] describing the TOML problem.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text)
            .map_err(|e| Error::invalid_field("pricing", format!("invalid price table: {e}")))
    }

    /// Adds or replaces one model's price.
    pub fn insert(&mut self, model: impl Into<String>, price: ModelPrice) {
        self.models.insert(model.into(), price);
    }

    /// This table with `other`'s entries added on top (other wins).
    pub fn merged(mut self, other: PriceTable) -> Self {
        self.models.extend(other.models);
        self
    }

    /// The price of `model`: an exact match, else the longest key that prefixes the name at a `-`,
    /// `@` or `:` boundary (so `gpt-4o-mini-2024-07-18` finds `gpt-4o-mini`, never `gpt-4o`). A
    /// leading `models/` (Gemini) is ignored.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        self.models
            .iter()
            .filter(|(k, _)| {
                model.len() > k.len()
                    && model.starts_with(k.as_str())
                    && matches!(model.as_bytes()[k.len()], b'-' | b'@' | b':')
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| p)
    }

    /// The cost of `usage` on `model`, when its price is known.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<Cost> {
        self.get(model).map(|p| p.cost(usage))
    }
}

/// How a provider prices its calls: a fixed price for the deployment, or a lookup by model name.
#[derive(Debug, Clone, PartialEq)]
pub enum Pricing {
    /// Every call costs this (e.g. a deployment with a negotiated price, or a free local model).
    Fixed(ModelPrice),
    /// Look the answering model up in this table.
    Table(std::sync::Arc<PriceTable>),
}

impl Default for Pricing {
    fn default() -> Self {
        Self::Table(std::sync::Arc::new(PriceTable::builtin()))
    }
}

impl Pricing {
    /// The cost of `usage` on `model`, when known.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<Cost> {
        match self {
            Self::Fixed(p) => Some(p.cost(usage)),
            Self::Table(t) => t.cost(model, usage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_lookup_prefers_longest_family() {
        let t = PriceTable::builtin();
        assert_eq!(t.get("gpt-4o-mini-2024-07-18"), t.get("gpt-4o-mini"));
        assert_eq!(t.get("gpt-4o-2024-08-06"), t.get("gpt-4o"));
        assert_ne!(t.get("gpt-4o-mini"), t.get("gpt-4o"));
        assert!(t.get("claude-3-5-sonnet-20241022").is_some());
        assert!(t.get("models/gemini-2.0-flash").is_some());
        assert!(t.get("gpt-4oz").is_none());
    }

    #[test]
    fn cached_tokens_are_priced_separately() {
        let p = ModelPrice::new(2.0, 1.0, 8.0);
        let c = p.cost(&Usage {
            input_tokens: 1000,
            output_tokens: 100,
            cached_input_tokens: 400,
        });
        assert!((c.input_usd - 600.0 * 2.0 / 1e6).abs() < 1e-12);
        assert!((c.cached_input_usd - 400.0 / 1e6).abs() < 1e-12);
        assert!((c.output_usd - 800.0 / 1e6).abs() < 1e-12);
    }

    #[test]
    fn bad_toml_is_a_typed_error() {
        let e = PriceTable::from_toml("[models.x]\ninput = \"cheap\"").unwrap_err();
        assert_eq!(e.kind(), wattos_core::ErrorKind::InvalidInput);
    }
}
