//! HS256 JSON Web Tokens, verified by hand so that the algorithm is pinned and nothing else
//! (no `alg: none`, no RS/HS confusion, no JWK fetching) can ever be accepted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::AuthError;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
}

/// Verifies `token` with `secret` at `now` (seconds since the epoch) and returns its `sub`.
pub fn verify_hs256(token: &str, secret: &[u8], now: i64) -> Result<String, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("a JWT has three dot-separated parts"));
    };
    let header: Header = decode_json(h)?;
    if header.alg != "HS256" {
        return Err(AuthError::UnsupportedAlg(header.alg));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig)
        .map_err(|_| AuthError::BadSignature)?;
    let claims: Claims = decode_json(p)?;
    let exp = claims.exp.ok_or(AuthError::MissingExp)?;
    if (now as f64) >= exp {
        return Err(AuthError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| (now as f64) < nbf) {
        return Err(AuthError::NotYetValid);
    }
    claims.sub.ok_or(AuthError::MissingSub)
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
}
