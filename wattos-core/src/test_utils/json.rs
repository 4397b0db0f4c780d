//! proptest strategies for hostile JSON of the right shape: objects with a known set of keys whose
//! values are anything (numbers at the edges of every integer type, huge and fractional floats,
//! strings, booleans, null, short arrays). What a tenant admin or API client can send.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Numbers that break naive arithmetic (zero, -1, type maxima, 1e300, fractions), plus any.
pub fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(-1)),
        Just(json!(u32::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1e300)),
        Just(json!(-0.0)),
        Just(json!(0.5)),
        any::<u32>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
    ]
}

/// Any JSON leaf, mostly numbers.
pub fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => number(),
        1 => any::<bool>().prop_map(Value::from),
        2 => "\\PC{0,20}".prop_map(Value::from),
        1 => Just(Value::Null),
        1 => prop::collection::vec("[a-z0-9_.-]{0,10}", 0..3).prop_map(|v| json!(v)),
    ]
}

/// An object holding some of `keys`, each with any [`leaf`].
pub fn object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(keys), leaf()), 0..=keys.len()).prop_map(|kv| {
        Value::Object(
            kv.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

/// A tenant configuration body (`PUT /v1/admin/config`, `TenantConfig`) of the right shape with
/// hostile values in every section.
pub fn tenant_config() -> impl Strategy<Value = Value> {
    (
        object(&[
            "per_key_rpm",
            "per_user_rpm",
            "per_tenant_rpm",
            "burst",
            "max_concurrent",
        ]),
        object(&["monthly_usd", "monthly_tokens"]),
        object(&["default_top_k", "max_documents"]),
        object(&["max_steps", "approval_required_tools"]),
        object(&["audit_days", "data_days"]),
        prop::collection::vec("[a-z0-9.-]{0,300}", 0..4),
        prop::option::of("[a-z0-9.-]{0,300}"),
    )
        .prop_map(|(rl, b, rag, agents, ret, models, default)| {
            json!({
                "rate_limits": rl, "budgets": b, "rag": rag, "agents": agents,
                "retention": ret, "allowed_models": models, "default_model": default,
            })
        })
}
