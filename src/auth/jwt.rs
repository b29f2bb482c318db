//! JSON Web Tokens: HS256 verified by hand, so the algorithm is pinned (no `alg: none`, no
//! RS/HS confusion), and RS256/ES256 with the auth service's public keys
//! ([`PublicKeys`](super::keys::PublicKeys), checked by `jsonwebtoken`). Every algorithm's
//! claims go through one check ([`check_claims`]). Keys are read from disk at startup;
//! nothing is ever fetched.
//!
//! Key rotation: a token signed with any of the configured secrets is accepted, so the auth
//! service can start signing with a new secret while tokens signed with the old one are
//! still live; the old one is dropped from the list once those have expired.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use std::sync::Arc;

use super::keys::PublicKeys;
use super::AuthError;

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iss: Option<String>,
    aud: Option<Audience>,
}

/// RFC 7519 allows `aud` as one string or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, want: &str) -> bool {
        match self {
            Audience::One(a) => a == want,
            Audience::Many(all) => all.iter().any(|a| a == want),
        }
    }
}

/// What a token must satisfy besides its signature and lifetime.
#[derive(Debug, Clone, Default)]
pub struct JwtPolicy {
    /// Accepted HS256 secrets: the current one first, then those being rotated out.
    pub secrets: Vec<Vec<u8>>,
    /// Public keys for RS256 and ES256 tokens (`--jwt-public-keys`).
    pub public_keys: Arc<PublicKeys>,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` must be or contain it.
    pub audience: Option<String>,
    /// Seconds a token is still accepted after `exp` and already before `nbf`: the auth
    /// service's clock and the pod's are never exactly in step.
    pub leeway_secs: u32,
}

/// Verifies `token` with `secret` at `now` (seconds since the epoch) and returns its `sub`.
pub fn verify_hs256(token: &str, secret: &[u8], now: i64) -> Result<String, AuthError> {
    let policy = JwtPolicy {
        secrets: vec![secret.to_vec()],
        ..JwtPolicy::default()
    };
    verify(token, &policy, now)
}

/// Verifies `token` against `policy` at `now` (seconds since the epoch); returns its `sub`.
pub fn verify(token: &str, policy: &JwtPolicy, now: i64) -> Result<String, AuthError> {
    verify_identity(token, policy, now).map(|id| id.user)
}

/// [`verify`], also returning when the token stops being accepted.
pub fn verify_identity(
    token: &str,
    policy: &JwtPolicy,
    now: i64,
) -> Result<super::Identity, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("a JWT has three dot-separated parts"));
    };
    let header: Header = decode_json(h)?;
    let claims: Claims = match header.alg.as_str() {
        "HS256" if !policy.secrets.is_empty() => {
            verify_hmac(h, p, s, &policy.secrets)?;
            decode_json(p)?
        }
        "RS256" | "ES256" if !policy.public_keys.is_empty() => {
            let alg = match header.alg.as_str() {
                "RS256" => jsonwebtoken::Algorithm::RS256,
                _ => jsonwebtoken::Algorithm::ES256,
            };
            policy
                .public_keys
                .verify(token, alg, header.kid.as_deref())?
        }
        _ => return Err(AuthError::UnsupportedAlg(header.alg)),
    };
    check_claims(claims, policy, now)
}

/// HS256: the MAC of `h.p` under any of `secrets`, compared in constant time per secret.
fn verify_hmac(h: &str, p: &str, s: &str, secrets: &[Vec<u8>]) -> Result<(), AuthError> {
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
    let signed_by = |secret: &Vec<u8>| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).is_ok()
    };
    match secrets.iter().any(signed_by) {
        true => Ok(()),
        false => Err(AuthError::BadSignature),
    }
}

/// Issuer, audience, lifetime (with leeway) and subject: the same rules for every algorithm.
fn check_claims(
    claims: Claims,
    policy: &JwtPolicy,
    now: i64,
) -> Result<super::Identity, AuthError> {
    if policy.issuer.is_some() && claims.iss != policy.issuer {
        return Err(AuthError::WrongIssuer);
    }
    if let Some(want) = &policy.audience {
        if !claims.aud.as_ref().is_some_and(|a| a.contains(want)) {
            return Err(AuthError::WrongAudience);
        }
    }
    let exp = claims.exp.ok_or(AuthError::MissingExp)?;
    let leeway = f64::from(policy.leeway_secs);
    if (now as f64) >= exp + leeway {
        return Err(AuthError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| (now as f64) + leeway < nbf) {
        return Err(AuthError::NotYetValid);
    }
    let user = claims.sub.ok_or(AuthError::MissingSub)?;
    Ok(super::Identity {
        user,
        // The first whole second at which `now >= exp + leeway` holds.
        expires_at: Some((exp + leeway).ceil() as i64),
    })
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed("header or claims are not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("header or claims are not JSON"))
}

/// Signs `claims` (a JSON object) with HS256. Used by tests and benches (the load generator signs its own).
pub fn sign_hs256(claims_json: &str, secret: &[u8]) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims_json.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{h}.{p}.{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn accepts_a_valid_token() {
        let t = sign_hs256(r#"{"sub":"alice","exp":1800000060}"#, b"k");
        assert_eq!(verify_hs256(&t, b"k", NOW).unwrap(), "alice");
    }

    #[test]
    fn rejects_wrong_key_expiry_missing_claims_and_alg_none() {
        let t = sign_hs256(r#"{"sub":"alice","exp":1800000060}"#, b"k");
        assert!(matches!(
            verify_hs256(&t, b"other", NOW),
            Err(AuthError::BadSignature)
        ));
        let t = sign_hs256(r#"{"sub":"alice","exp":1799999999}"#, b"k");
        assert!(matches!(
            verify_hs256(&t, b"k", NOW),
            Err(AuthError::Expired)
        ));
        let t = sign_hs256(r#"{"sub":"alice"}"#, b"k");
        assert!(matches!(
            verify_hs256(&t, b"k", NOW),
            Err(AuthError::MissingExp)
        ));
        let t = sign_hs256(r#"{"exp":1800000060}"#, b"k");
        assert!(matches!(
            verify_hs256(&t, b"k", NOW),
            Err(AuthError::MissingSub)
        ));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","exp":1800000060}"#)
        );
        assert!(matches!(
            verify_hs256(&none, b"k", NOW),
            Err(AuthError::UnsupportedAlg(_))
        ));
        assert!(matches!(
            verify_hs256("a.b", b"k", NOW),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn rotated_secrets_issuer_and_audience() {
        let policy = JwtPolicy {
            secrets: vec![b"new".to_vec(), b"old".to_vec()],
            issuer: Some("https://auth.example".into()),
            audience: Some("chat".into()),
            leeway_secs: 0,
            ..JwtPolicy::default()
        };
        let claims =
            r#"{"sub":"alice","exp":1800000060,"iss":"https://auth.example","aud":"chat"}"#;
        for key in [&b"new"[..], b"old"] {
            assert_eq!(
                verify(&sign_hs256(claims, key), &policy, NOW).unwrap(),
                "alice"
            );
        }
        let err = |claims: &str, key: &[u8]| verify(&sign_hs256(claims, key), &policy, NOW);
        assert!(matches!(
            err(claims, b"retired"),
            Err(AuthError::BadSignature)
        ));
        let many =
            r#"{"sub":"a","exp":1800000060,"iss":"https://auth.example","aud":["x","chat"]}"#;
        assert!(err(many, b"new").is_ok());
        let other = r#"{"sub":"a","exp":1800000060,"iss":"https://evil.example","aud":"chat"}"#;
        assert!(matches!(err(other, b"new"), Err(AuthError::WrongIssuer)));
        let no_iss = r#"{"sub":"a","exp":1800000060,"aud":"chat"}"#;
        assert!(matches!(err(no_iss, b"new"), Err(AuthError::WrongIssuer)));
        let wrong = r#"{"sub":"a","exp":1800000060,"iss":"https://auth.example","aud":["x"]}"#;
        assert!(matches!(err(wrong, b"new"), Err(AuthError::WrongAudience)));
        let no_aud = r#"{"sub":"a","exp":1800000060,"iss":"https://auth.example"}"#;
        assert!(matches!(err(no_aud, b"new"), Err(AuthError::WrongAudience)));
    }

    #[test]
    fn leeway_extends_exp_and_nbf_by_that_many_seconds() {
        let t = sign_hs256(r#"{"sub":"a","exp":1800000000,"nbf":1800000000}"#, b"k");
        let policy = |leeway_secs| JwtPolicy {
            secrets: vec![b"k".to_vec()],
            leeway_secs,
            ..JwtPolicy::default()
        };
        let at = |now, leeway| verify(&t, &policy(leeway), now);
        assert!(matches!(at(1_800_000_000, 0), Err(AuthError::Expired)));
        assert_eq!(at(1_800_000_009, 10).unwrap(), "a");
        assert!(matches!(at(1_800_000_010, 10), Err(AuthError::Expired)));
        assert_eq!(at(1_799_999_990, 10).unwrap(), "a", "nbf 10 s ahead");
        assert!(matches!(at(1_799_999_989, 10), Err(AuthError::NotYetValid)));
    }
}
