//! Layered raw configuration (TOML file, then `WATTOS_*` environment variables) and a reader that
//! collects every problem instead of stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::secret::Secret;

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "WATTOS_";
/// Environment variable naming the configuration file.
pub const CONFIG_FILE_ENV: &str = "WATTOS_CONFIG";

/// The environment variable that sets `key` (`server.bind` -> `WATTOS_SERVER__BIND`).
pub fn env_var_for(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// Where a raw value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file.
    File(String),
    /// An environment variable.
    Env(String),
}

#[derive(Debug, Clone)]
struct Entry {
    value: toml::Value,
    origin: Origin,
}

/// One configuration problem, naming the setting and the variable that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `database.url`.
    pub key: String,
    /// The environment variable for the key.
    pub env_var: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.key, self.env_var, self.message)
    }
}

/// Every problem found in the configuration. Its `Display` lists them all, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in key order.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration: {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for crate::Error {
    fn from(e: ConfigError) -> Self {
        crate::Error::invalid_input(e.to_string())
    }
}

/// A value type a setting can hold.
pub trait ConfigValue: Sized {
    /// Converts a raw value (a string for environment variables).
    ///
    /// # Errors
    /// A message saying what was expected.
    fn from_raw(v: &toml::Value) -> Result<Self, String>;
}

fn as_text(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.trim().to_owned()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("expected a single value, got {}", other.type_str())),
    }
}

macro_rules! from_str_value {
    ($($t:ty => $what:literal),* $(,)?) => {$(
        impl ConfigValue for $t {
            fn from_raw(v: &toml::Value) -> Result<Self, String> {
                let s = as_text(v)?;
                s.parse::<$t>().map_err(|_| format!("expected {}, got '{}'", $what, s))
            }
        }
    )*};
}

from_str_value! {
    u16 => "an integer 0..=65535",
    u32 => "a non-negative integer",
    u64 => "a non-negative integer",
    usize => "a non-negative integer",
    f64 => "a number",
    SocketAddr => "a socket address such as 127.0.0.1:8080",
}

impl ConfigValue for bool {
    fn from_raw(v: &toml::Value) -> Result<Self, String> {
        match as_text(v)?.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(format!("expected true or false, got '{other}'")),
        }
    }
}

impl ConfigValue for String {
    fn from_raw(v: &toml::Value) -> Result<Self, String> {
        let s = as_text(v)?;
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(s)
    }
}

impl ConfigValue for PathBuf {
    fn from_raw(v: &toml::Value) -> Result<Self, String> {
        String::from_raw(v).map(PathBuf::from)
    }
}

impl<T: ConfigValue> ConfigValue for Secret<T> {
    fn from_raw(v: &toml::Value) -> Result<Self, String> {
        T::from_raw(v).map(Secret::new)
    }
}

impl ConfigValue for Vec<String> {
    fn from_raw(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Array(items) => items.iter().map(String::from_raw).collect(),
            other => Ok(as_text(other)?
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()),
        }
    }
}

impl ConfigValue for Duration {
    fn from_raw(v: &toml::Value) -> Result<Self, String> {
        let s = as_text(v)?;
        parse_duration(&s).ok_or_else(|| {
            format!("expected a duration such as 500ms, 30s, 5m or 1h (bare numbers are milliseconds), got '{s}'")
        })
    }
}

/// Parses `250ms`, `30s`, `5m`, `2h` or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "" | "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

fn insert_path(table: &mut toml::Table, parts: &[&str], value: toml::Value) {
    match parts {
        [] => {}
        [leaf] => {
            table.insert((*leaf).to_owned(), value);
        }
        [head, rest @ ..] => {
            let slot = table
                .entry((*head).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !slot.is_table() {
                *slot = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = slot {
                insert_path(t, rest, value);
            }
        }
    }
}

/// Merged raw settings plus the problems found while reading them.
#[derive(Debug, Default)]
pub struct ConfigReader {
    entries: BTreeMap<String, Entry>,
    used: BTreeSet<String>,
    problems: Vec<ConfigProblem>,
}

impl ConfigReader {
    /// Layers `file` (TOML text and its name for messages) under the `WATTOS_*` variables in `env`.
    /// A file that does not parse is recorded as a problem (reported by [`ConfigReader::finish`]).
    pub fn new(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut reader = Self::default();
        if let Some((name, text)) = file {
            match text.parse::<toml::Table>() {
                Ok(table) => reader.flatten("", &table, name),
                Err(e) => reader.problems.push(ConfigProblem {
                    key: "<file>".into(),
                    env_var: CONFIG_FILE_ENV.into(),
                    message: format!("{name} is not valid TOML: {e}"),
                }),
            }
        }
        for (var, value) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if var == CONFIG_FILE_ENV {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace("__", ".");
            reader.entries.insert(
                key,
                Entry {
                    value: toml::Value::String(value),
                    origin: Origin::Env(var),
                },
            );
        }
        reader
    }

    fn flatten(&mut self, prefix: &str, table: &toml::Table, file: &str) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => self.flatten(&key, t, file),
                other => {
                    self.entries.insert(
                        key,
                        Entry {
                            value: other.clone(),
                            origin: Origin::File(file.to_owned()),
                        },
                    );
                }
            }
        }
    }

    /// Records a problem for `key`.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.to_owned(),
            env_var: env_var_for(key),
            message: message.into(),
        });
    }

    /// Where `key`'s value came from, if set.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.entries.get(key).map(|e| &e.origin)
    }

    /// Whether any key under `section.` is set.
    pub fn has_section(&self, section: &str) -> bool {
        let prefix = format!("{section}.");
        self.entries.keys().any(|k| k.starts_with(&prefix))
    }

    /// Reads an optional setting; a malformed value is recorded and yields `None`.
    pub fn optional<T: ConfigValue>(&mut self, key: &str) -> Option<T> {
        self.used.insert(key.to_owned());
        let entry = self.entries.get(key)?;
        match T::from_raw(&entry.value) {
            Ok(v) => Some(v),
            Err(msg) => {
                let msg = match &entry.origin {
                    Origin::File(f) => format!("{msg} (set in {f})"),
                    Origin::Env(_) => msg,
                };
                self.problem(key, msg);
                None
            }
        }
    }

    /// Reads a setting with a default.
    pub fn or<T: ConfigValue>(&mut self, key: &str, default: T) -> T {
        self.optional(key).unwrap_or(default)
    }

    /// Reads a required setting; when missing, records `"required: {why}"`.
    pub fn required<T: ConfigValue>(&mut self, key: &str, why: &str) -> Option<T> {
        let present = self.entries.contains_key(key);
        let v = self.optional(key);
        if !present {
            self.problem(key, format!("required {why}"));
        }
        v
    }

    /// Takes the whole `section` as a TOML table (for crates that deserialize their own section with
    /// serde), marking its keys as read. Environment values arrive as strings. `None` when unset.
    pub fn section(&mut self, section: &str) -> Option<toml::Table> {
        let prefix = format!("{section}.");
        let keys: Vec<String> = self
            .entries
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        if keys.is_empty() {
            return None;
        }
        let mut root = toml::Table::new();
        for key in keys {
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            let parts: Vec<&str> = key[prefix.len()..].split('.').collect();
            insert_path(&mut root, &parts, entry.value.clone());
            self.used.insert(key);
        }
        Some(root)
    }

    /// Marks every key under `section.` as known (for sections another crate reads later).
    pub fn allow_section(&mut self, section: &str) {
        let prefix = format!("{section}.");
        let keys: Vec<_> = self
            .entries
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        self.used.extend(keys);
    }

    /// Problems so far (without unknown-key checks).
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }

    /// Ends reading: reports every problem, plus every setting nobody read (likely a typo).
    ///
    /// # Errors
    /// [`ConfigError`] listing all problems.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        let unknown: Vec<_> = self
            .entries
            .iter()
            .filter(|(k, _)| !self.used.contains(*k))
            .map(|(k, e)| (k.clone(), e.origin.clone()))
            .collect();
        for (key, origin) in unknown {
            let from = match origin {
                Origin::File(f) => format!("in {f}"),
                Origin::Env(v) => format!("from {v}"),
            };
            self.problem(&key, format!("unknown setting ({from})"));
        }
        if self.problems.is_empty() {
            return Ok(());
        }
        self.problems.sort_by(|a, b| a.key.cmp(&b.key));
        Err(ConfigError {
            problems: self.problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("fast"), None);
        assert_eq!(parse_duration("10 parsecs"), None);
    }

    #[test]
    fn env_overrides_file_and_names_are_mapped() {
        let env = vec![(
            "WATTOS_SERVER__BIND".to_string(),
            "0.0.0.0:9000".to_string(),
        )];
        let mut r = ConfigReader::new(Some(("t.toml", "[server]\nbind = \"127.0.0.1:1\"\n")), env);
        let addr: SocketAddr = r.optional("server.bind").unwrap();
        assert_eq!(addr.port(), 9000);
        assert_eq!(
            env_var_for("database.max_connections"),
            "WATTOS_DATABASE__MAX_CONNECTIONS"
        );
        r.finish().unwrap();
    }

    #[test]
    fn sections_are_rebuilt_as_tables() {
        let mut r = ConfigReader::new(
            Some((
                "t",
                "[llm]\ndefault = \"a\"\n[[llm.providers]]\nkind = \"openai\"\n[llm.router.retry]\nmax = 2\n",
            )),
            vec![(
                "WATTOS_LLM__ROUTER__STRATEGY".into(),
                "lowest_latency".into(),
            )],
        );
        let t = r.section("llm").unwrap();
        assert_eq!(t["default"].as_str(), Some("a"));
        assert_eq!(t["providers"][0]["kind"].as_str(), Some("openai"));
        assert_eq!(t["router"]["retry"]["max"].as_integer(), Some(2));
        assert_eq!(t["router"]["strategy"].as_str(), Some("lowest_latency"));
        assert!(r.section("nothing").is_none());
        r.finish().unwrap();
    }

    #[test]
    fn lists_accept_arrays_and_commas() {
        let mut r = ConfigReader::new(
            Some(("t", "a = [\"x\", \"y\"]")),
            vec![("WATTOS_B".into(), "p, q,,r".into())],
        );
        assert_eq!(r.optional::<Vec<String>>("a").unwrap(), vec!["x", "y"]);
        assert_eq!(r.optional::<Vec<String>>("b").unwrap(), vec!["p", "q", "r"]);
    }
}
