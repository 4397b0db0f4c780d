//! Graph state: a typed, serde-serialisable value that nodes update with partial updates, merged by
//! per-field [`Reducer`]s.
//!
//! Declare a state with [`graph_state!`](crate::graph_state), which generates the state struct, a partial
//! update struct (every field optional, with a builder method per field) and the [`State`] impl that merges
//! an update field by field with the reducer named for it.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::ops::AddAssign;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The state a graph carries from step to step.
///
/// `apply` must be deterministic: checkpoints may store only the updates of a step and replay them.
pub trait State: Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// A partial update written by a node (usually every field optional).
    type Update: Clone
        + Default
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;

    /// Merges an update into the state.
    fn apply(&mut self, update: Self::Update);
}

/// Merges a new value of a field into the current one.
pub trait Reducer<T> {
    /// Folds `update` into `current`.
    fn reduce(current: &mut T, update: T);
}

/// The last write wins.
#[derive(Debug)]
pub enum Replace {}

impl<T> Reducer<T> for Replace {
    fn reduce(current: &mut T, update: T) {
        *current = update;
    }
}

/// Appends a list (messages, results of fan-out branches).
#[derive(Debug)]
pub enum Append {}

impl<T> Reducer<Vec<T>> for Append {
    fn reduce(current: &mut Vec<T>, update: Vec<T>) {
        current.extend(update);
    }
}

/// Adds numbers (counters, token totals).
#[derive(Debug)]
pub enum Sum {}

impl<T: AddAssign> Reducer<T> for Sum {
    fn reduce(current: &mut T, update: T) {
        *current += update;
    }
}

/// Merges maps key by key; the update's entries win.
#[derive(Debug)]
pub enum Merge {}

impl<K: Ord, V> Reducer<BTreeMap<K, V>> for Merge {
    fn reduce(current: &mut BTreeMap<K, V>, update: BTreeMap<K, V>) {
        current.extend(update);
    }
}

impl<K: Eq + Hash, V, H: std::hash::BuildHasher> Reducer<HashMap<K, V, H>> for Merge {
    fn reduce(current: &mut HashMap<K, V, H>, update: HashMap<K, V, H>) {
        current.extend(update);
    }
}

/// Keeps the larger value.
#[derive(Debug)]
pub enum Max {}

impl<T: PartialOrd> Reducer<T> for Max {
    fn reduce(current: &mut T, update: T) {
        if update > *current {
            *current = update;
        }
    }
}

/// Declares a graph state and its partial update type.
///
/// ```
/// use wattos_agents::{graph_state, State, Append, Replace, Sum};
///
/// graph_state! {
///     /// A research run.
///     #[derive(Debug, PartialEq)]
///     pub struct Research / ResearchUpdate {
///         /// The question.
///         pub question: String => Replace,
///         /// Findings from every branch.
///         pub findings: Vec<String> => Append,
///         /// Steps taken.
///         pub steps: u32 => Sum,
///     }
/// }
///
/// let mut s = Research::default();
/// s.apply(ResearchUpdate::default().question("why?".into()).steps(1));
/// s.apply(ResearchUpdate::default().findings(vec!["a".into()]).steps(1));
/// s.apply(ResearchUpdate::default().findings(vec!["b".into()]));
/// assert_eq!(s.findings, ["a", "b"]);
/// assert_eq!(s.steps, 2);
/// assert_eq!(s.question, "why?");
/// ```
///
/// The crate using the macro needs `serde` (with `derive`) as a dependency.
#[macro_export]
macro_rules! graph_state {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident / $update:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty => $reducer:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Default, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(default)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
        }

        #[doc = concat!("A partial update of [`", stringify!($name), "`]: only the fields that are set are merged.")]
        #[derive(Clone, Default, Debug, ::serde::Serialize, ::serde::Deserialize)]
        #[allow(missing_docs)]
        $vis struct $update {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                $fvis $field: ::core::option::Option<$ty>,
            )*
        }

        #[allow(missing_docs, dead_code)]
        impl $update {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                #[must_use]
                $fvis fn $field(mut self, value: $ty) -> Self {
                    self.$field = ::core::option::Option::Some(value);
                    self
                }
            )*
        }

        impl $crate::State for $name {
            type Update = $update;
            fn apply(&mut self, update: $update) {
                $(
                    if let ::core::option::Option::Some(v) = update.$field {
                        <$reducer as $crate::Reducer<$ty>>::reduce(&mut self.$field, v);
                    }
                )*
            }
        }
    };
}

/// Helper for states that are a plain value replaced by each update (`State::Update = Self`).
#[macro_export]
macro_rules! replace_state {
    ($ty:ty) => {
        impl $crate::State for $ty {
            type Update = $ty;
            fn apply(&mut self, update: $ty) {
                *self = update;
            }
        }
    };
}

/// A state that is only its own serialised form: handy in tests.
pub type JsonValue = serde_json::Value;

/// Deserialises a value that a checkpoint stored.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> wattos_core::Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| crate::error::GraphError::Corrupt(format!("cannot decode {what}: {e}")).into())
}

/// Serialises a value for a checkpoint.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> wattos_core::Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| wattos_core::Error::internal(format!("cannot encode {what}: {e}")))
}
