//! Property tests of the credential parsing every request goes through: whatever the
//! `app-token` and `authorization` headers hold, reading and verifying them answers a
//! credential or a 401, never panics, and never accepts what was not signed with the key.

use auth::{jwt_kid, read_credential, verify_jwt, Credential, KeyInfo};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::ErrorCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{json, Value};

fn key() -> KeyInfo {
    KeyInfo {
        id: "5f1c0e2b9a8d7c6b5a4f3e2d".into(),
        app_id: Some("5f1c0e2b9a8d7c6b5a4f3e2e".into()),
        secret: "the-real-secret".into(),
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JWT header: a mix of real and hostile `alg`s and `kid`s.
fn header() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        Just(json!("HS256")),
        Just(json!("HS512")),
        Just(json!("none")),
        Just(json!("None")),
        Just(json!("RS256")),
        Just(json!("ES256")),
        Just(json!("")),
        json_value(),
    ];
    let kid = prop_oneof![
        Just(json!("5f1c0e2b9a8d7c6b5a4f3e2d")),
        Just(json!("' OR 1=1 --")),
        Just(json!("../../etc/passwd")),
        Just(json!("")),
        Just(json!("k\u{0}id")),
        "k{200,300}".prop_map(Value::from),
        json_value(),
    ];
    (alg, kid).prop_map(|(alg, kid)| json!({"alg": alg, "typ": "JWT", "kid": kid}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_header_bytes_never_panic(
        app_token in prop::option::of(prop::collection::vec(any::<u8>(), 0..600)),
        authorization in prop::option::of(prop::collection::vec(any::<u8>(), 0..600)),
    ) {
        match read_credential(app_token.as_deref(), authorization.as_deref()) {
            Ok(Some(Credential::Jwt { kid, token })) => {
                prop_assert!(!kid.is_empty() && kid.len() <= auth::MAX_KID_LEN);
                prop_assert!(kid.bytes().all(|b| b.is_ascii_graphic()));
                let _ = verify_jwt(&token, &key());
            }
            Ok(Some(Credential::AppToken(token))) => {
                prop_assert!(!token.is_empty() && token.len() <= auth::MAX_APP_TOKEN_LEN);
                prop_assert!(token.bytes().all(|b| b.is_ascii_graphic()));
            }
            Ok(None) => prop_assert!(app_token.is_none() && authorization.is_none()),
            Err(e) => prop_assert_eq!(e.code, ErrorCode::Unauthorized),
        }
    }

    /// Tokens built from hostile headers and any claims, signed with anything but the key's
    /// secret (or not at all), are never accepted; well-formed ones fail as 401s.
    #[test]
    fn forged_tokens_are_refused(
        header in header(),
        claims in json_value(),
        signature in "[A-Za-z0-9_-]{0,90}",
    ) {
        let token = format!("{}.{}.{}", b64(&header), b64(&claims), signature);
        if let Ok(kid) = jwt_kid(&token) {
            prop_assert!(kid.len() <= auth::MAX_KID_LEN);
        }
        let bearer = format!("Bearer {token}");
        if let Err(e) = read_credential(None, Some(bearer.as_bytes())) {
            prop_assert_eq!(e.code, ErrorCode::Unauthorized);
        }
        let verdict = verify_jwt(&token, &key());
        prop_assert!(verdict.is_err(), "accepted a forged token: {token}");
        prop_assert_eq!(verdict.unwrap_err().code, ErrorCode::Unauthorized);
    }

    /// A real token with any claims: accepted only with a scope the key may sign.
    #[test]
    fn signed_tokens_with_any_claims_never_panic(claims in json_value()) {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key().id);
        let Ok(token) = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(key().secret.as_bytes()),
        ) else {
            return Ok(());
        };
        if let Ok(principal) = verify_jwt(&token, &key()) {
            prop_assert!(matches!(claims["scope"].as_str(), Some("app" | "appUser")));
            let key = key();
            prop_assert_eq!(principal.app_id().map(|a| a.as_str()), key.app_id.as_deref());
        }
    }
}

#[test]
fn unsigned_and_hs_rs_confused_tokens_are_refused() {
    let claims = json!({"scope": "app"});
    for alg in ["none", "None", "NONE", "RS256", "ES256", "PS256", "EdDSA"] {
        let header = json!({"alg": alg, "kid": key().id});
        for signature in ["", "AAAA"] {
            let token = format!("{}.{}.{signature}", b64(&header), b64(&claims));
            assert_eq!(
                jwt_kid(&token).unwrap_err().code,
                ErrorCode::Unauthorized,
                "{alg}"
            );
            assert!(verify_jwt(&token, &key()).is_err(), "{alg}");
        }
    }
}

#[test]
fn injected_and_oversized_kids_are_refused_before_any_lookup() {
    let claims = json!({"scope": "app"});
    for kid in [
        "",
        "k\u{0}id",
        "has space",
        &"k".repeat(auth::MAX_KID_LEN + 1),
    ] {
        let header = json!({"alg": "HS256", "kid": kid});
        let token = format!("{}.{}.sig", b64(&header), b64(&claims));
        assert!(jwt_kid(&token).is_err(), "{kid:?}");
    }
    assert!(read_credential(Some("a\u{1}b".as_bytes()), None).is_err());
    let long = "t".repeat(auth::MAX_APP_TOKEN_LEN + 1);
    assert!(read_credential(Some(long.as_bytes()), None).is_err());
}
