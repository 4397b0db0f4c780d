//! Fuzz harness for JWT authentication, shared by the cargo-fuzz target `jwt` in `fuzz/` and the
//! corpus replay test (`tests/fuzz_corpus.rs`). It panics only when it finds a bug.
#![doc(hidden)]

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wattos_core::ErrorKind;
use wattos_core::tenancy::{Authenticator, Credentials};

use crate::auth::{JwtAuthenticator, JwtConfig, JwtKeys, MAX_EXP_SECS, MemoryRevocations};

const SECRET: &[u8] = b"the-fuzzing-hs256-secret-of-32-bytes!!";

struct Fixture {
    rt: tokio::runtime::Runtime,
    jwt: JwtAuthenticator,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
        jwt: JwtAuthenticator::new(
            JwtConfig::new(JwtKeys::Hs256(SECRET.to_vec())),
            Arc::new(MemoryRevocations::new()),
        )
        .expect("an HS256 authenticator"),
    })
}

/// A token whose payload is `payload` verbatim, correctly signed: the parser behind the signature
/// check sees arbitrary claims (numbers of any size, wrong types, missing fields).
fn signed(header: &[u8], payload: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let msg = format!("{}.{}", b64.encode(header), b64.encode(payload));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("HMAC takes keys of any length");
    mac.update(msg.as_bytes());
    format!("{msg}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// Authenticates a token built from `data`: the first byte picks a correctly
/// signed token with `data` as its claims (1), signed claims around an arbitrary `exp` (2); any
/// other first byte: the rest as a raw token.
/// Whatever it is, the answer is an identity whose expiry is a real time, or `unauthenticated`.
pub fn jwt(data: &[u8]) {
    let header = br#"{"alg":"HS256","typ":"JWT"}"#;
    let token = match data.split_first() {
        Some((1, rest)) => signed(header, rest),
        Some((2, rest)) => {
            let exp = String::from_utf8_lossy(rest);
            let claims = format!(r#"{{"sub":"s","tenant":"acme","exp":{exp}}}"#);
            signed(header, claims.as_bytes())
        }
        Some((_, rest)) => String::from_utf8_lossy(rest).into_owned(),
        None => String::new(),
    };
    let f = fixture();
    match f
        .rt
        .block_on(f.jwt.authenticate(&Credentials::Bearer(token)))
    {
        Ok(identity) => {
            let exp = identity
                .expires_at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            assert!(exp.is_some_and(|e| e <= MAX_EXP_SECS), "{exp:?}");
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}"),
    }
}
