//! Public keys of the auth service, for RS256 and ES256 tokens: PEM files (one key each) or
//! JWKS documents (`{"keys":[…]}`, as an auth service publishes them), read from disk at
//! startup. The signature check is `jsonwebtoken`'s; the claims are checked by the same code
//! as HS256 tokens (`jwt::check_claims`), so every algorithm obeys one policy.
//!
//! Rotation: list the new key beside the old one (two files, or two JWKs). A token whose
//! header names a `kid` is checked against that key only, and refused when no key has it; a
//! token without `kid` is tried against every key of its algorithm. A key is bound to one
//! algorithm (RSA keys to RS256, P-256 keys to ES256): a public key is never used as an HMAC
//! secret, so the RS256/HS256 confusion cannot happen.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::AuthError;

/// One verification key.
pub struct PublicKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    key: DecodingKey,
}

/// Every configured public key; empty when only HS256 secrets are used.
#[derive(Default)]
pub struct PublicKeys(Vec<PublicKey>);

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.0.iter().map(|k| (&k.kid, k.alg)).collect();
        f.debug_tuple("PublicKeys").field(&kids).finish()
    }
}

impl PublicKeys {
    /// Loads every file; the error names the file and why it holds no usable key.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<PublicKeys, String> {
        let mut keys = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let found = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            keys.extend(found);
        }
        Ok(PublicKeys(keys))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the signature of `token` (header `alg` and optional `kid` already read) and
    /// returns its claims part, still to be checked against the policy.
    pub fn verify<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<T, AuthError> {
        let candidates: Vec<&PublicKey> = (self.0.iter())
            .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
            .collect();
        if candidates.is_empty() {
            return Err(match kid {
                Some(kid) => AuthError::UnknownKey(kid.to_owned()),
                None => AuthError::UnsupportedAlg(format!("{alg:?}")),
            });
        }
        let mut signature_only = Validation::new(alg);
        signature_only.required_spec_claims.clear();
        signature_only.validate_exp = false;
        signature_only.validate_aud = false;
        for k in candidates {
            match jsonwebtoken::decode::<T>(token, &k.key, &signature_only) {
                Ok(data) => return Ok(data.claims),
                Err(e) if is_signature(&e) => continue,
                Err(_) => return Err(AuthError::Malformed("claims are not a JSON object")),
            }
        }
        Err(AuthError::BadSignature)
    }
}

fn is_signature(e: &jsonwebtoken::errors::Error) -> bool {
    use jsonwebtoken::errors::ErrorKind as K;
    matches!(
        e.kind(),
        K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::Base64(_)
    )
}

/// A JWKS document, or one PEM public key.
fn parse(text: &[u8]) -> Result<Vec<PublicKey>, String> {
    if text.trim_ascii_start().starts_with(b"{") {
        let set: JwkSet = serde_json::from_slice(text).map_err(|e| format!("not a JWKS: {e}"))?;
        if set.keys.is_empty() {
            return Err("the JWKS has no keys".into());
        }
        return set.keys.iter().map(from_jwk).collect();
    }
    if text.windows(11).any(|w| w == b"PRIVATE KEY") {
        // jsonwebtoken would take the public half, but a pod has no business holding the
        // auth service's signing key.
        return Err("a private key: give the pods the public key only".into());
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(text) {
        return Ok(vec![PublicKey {
            kid: None,
            alg: Algorithm::RS256,
            key,
        }]);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(text) {
        return Ok(vec![PublicKey {
            kid: None,
            alg: Algorithm::ES256,
            key,
        }]);
    }
    Err("neither a JWKS document nor an RSA or P-256 public key in PEM".into())
}

/// RSA keys verify RS256 and P-256 keys ES256; a JWK that says otherwise is refused.
fn from_jwk(jwk: &Jwk) -> Result<PublicKey, String> {
    let kid = jwk.common.key_id.clone();
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return Err(format!("key {kid:?}: only RSA and P-256 keys are accepted")),
    };
    if let Some(declared) = jwk.common.key_algorithm {
        if format!("{declared:?}") != format!("{alg:?}") {
            return Err(format!(
                "key {kid:?}: alg {declared:?}, only {alg:?} fits the key"
            ));
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid:?}: {e}"))?;
    Ok(PublicKey { kid, alg, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{verify, JwtPolicy};
    use jsonwebtoken::{EncodingKey, Header};
    use std::sync::Arc;

    const NOW: i64 = 1_800_000_000;
    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

    fn file(name: &str) -> String {
        format!("{DIR}/{name}")
    }

    fn sign(alg: Algorithm, kid: Option<&str>, private: &str, claims: &str) -> String {
        let pem = std::fs::read(file(private)).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn policy(files: &[&str]) -> JwtPolicy {
        let paths: Vec<String> = files.iter().map(|f| file(f)).collect();
        JwtPolicy {
            public_keys: Arc::new(PublicKeys::load(&paths).unwrap()),
            ..JwtPolicy::default()
        }
    }

    const ALICE: &str = r#"{"sub":"alice","exp":1800000060}"#;

    #[test]
    fn rs256_and_es256_tokens_verify_with_pem_keys() {
        let p = policy(&["rsa1_public.pem", "ec1_public.pem"]);
        let rs = sign(Algorithm::RS256, None, "rsa1_private.pem", ALICE);
        let es = sign(Algorithm::ES256, None, "ec1_private.pem", ALICE);
        assert_eq!(verify(&rs, &p, NOW).unwrap(), "alice");
        assert_eq!(verify(&es, &p, NOW).unwrap(), "alice");
        let other = sign(Algorithm::RS256, None, "rsa2_private.pem", ALICE);
        assert!(matches!(
            verify(&other, &p, NOW),
            Err(AuthError::BadSignature)
        ));
        let (head, _) = rs.rsplit_once('.').unwrap();
        let (_, sig) = other.rsplit_once('.').unwrap();
        let spliced = format!("{head}.{sig}");
        assert!(matches!(
            verify(&spliced, &p, NOW),
            Err(AuthError::BadSignature)
        ));
    }

    /// The same claims rules as HS256: expiry, issuer, subject.
    #[test]
    fn claims_are_checked_like_hs256_ones() {
        let mut p = policy(&["rsa1_public.pem"]);
        p.issuer = Some("https://auth.example".into());
        let t = |claims| sign(Algorithm::RS256, None, "rsa1_private.pem", claims);
        let iss = r#"{"sub":"a","exp":1800000060,"iss":"https://auth.example"}"#;
        assert_eq!(verify(&t(iss), &p, NOW).unwrap(), "a");
        let expired = r#"{"sub":"a","exp":1799999999,"iss":"https://auth.example"}"#;
        assert!(matches!(
            verify(&t(expired), &p, NOW),
            Err(AuthError::Expired)
        ));
        assert!(matches!(
            verify(&t(ALICE), &p, NOW),
            Err(AuthError::WrongIssuer)
        ));
        let no_sub = r#"{"exp":1800000060,"iss":"https://auth.example"}"#;
        assert!(matches!(
            verify(&t(no_sub), &p, NOW),
            Err(AuthError::MissingSub)
        ));
    }

    /// A JWKS with two keys: `kid` picks one; an unknown `kid` or a `kid` of the other
    /// algorithm is refused; a token without `kid` is tried against its algorithm's keys.
    #[test]
    fn a_jwks_selects_the_key_by_kid() {
        let p = policy(&["jwks.json"]);
        let rs = sign(
            Algorithm::RS256,
            Some("rsa-2026"),
            "rsa2_private.pem",
            ALICE,
        );
        let es = sign(Algorithm::ES256, Some("ec-2026"), "ec1_private.pem", ALICE);
        assert_eq!(verify(&rs, &p, NOW).unwrap(), "alice");
        assert_eq!(verify(&es, &p, NOW).unwrap(), "alice");
        let plain = sign(Algorithm::RS256, None, "rsa2_private.pem", ALICE);
        assert_eq!(verify(&plain, &p, NOW).unwrap(), "alice");
        let unknown = sign(
            Algorithm::RS256,
            Some("rsa-2025"),
            "rsa1_private.pem",
            ALICE,
        );
        assert!(
            matches!(verify(&unknown, &p, NOW), Err(AuthError::UnknownKey(k)) if k == "rsa-2025")
        );
        let crossed = sign(Algorithm::RS256, Some("ec-2026"), "rsa2_private.pem", ALICE);
        assert!(matches!(
            verify(&crossed, &p, NOW),
            Err(AuthError::UnknownKey(_))
        ));
        let wrong_key = sign(
            Algorithm::RS256,
            Some("rsa-2026"),
            "rsa1_private.pem",
            ALICE,
        );
        assert!(matches!(
            verify(&wrong_key, &p, NOW),
            Err(AuthError::BadSignature)
        ));
    }

    /// The RS256/HS256 confusion: an HS256 token "signed" with the public key's bytes is
    /// refused, since a public key is never an HMAC secret.
    #[test]
    fn a_public_key_is_never_an_hmac_secret() {
        let p = policy(&["rsa1_public.pem"]);
        let public = std::fs::read(file("rsa1_public.pem")).unwrap();
        let forged = crate::auth::sign_hs256(ALICE, &public);
        assert!(
            matches!(verify(&forged, &p, NOW), Err(AuthError::UnsupportedAlg(a)) if a == "HS256")
        );
        let rs = sign(Algorithm::RS256, None, "rsa1_private.pem", ALICE);
        let secrets_only = JwtPolicy {
            secrets: vec![b"k".to_vec()],
            ..JwtPolicy::default()
        };
        assert!(matches!(
            verify(&rs, &secrets_only, NOW),
            Err(AuthError::UnsupportedAlg(_))
        ));
    }

    #[test]
    fn unusable_key_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let cases = [
            (write("junk.pem", "not a key"), "neither a JWKS"),
            (write("empty.json", r#"{"keys":[]}"#), "no keys"),
            (
                write(
                    "private.pem",
                    &std::fs::read_to_string(file("rsa1_private.pem")).unwrap(),
                ),
                "public key only",
            ),
            (dir.path().join("missing.pem"), "No such file"),
        ];
        for (path, why) in cases {
            let e = PublicKeys::load(&[&path]).unwrap_err();
            assert!(
                e.contains(&path.display().to_string()) && e.contains(why),
                "{e}"
            );
        }
        let jwks = std::fs::read_to_string(file("jwks.json")).unwrap();
        let lying = write("lying.json", &jwks.replacen("\"RS256\"", "\"RS512\"", 1));
        let e = PublicKeys::load(&[&lying]).unwrap_err();
        assert!(e.contains("only RS256 fits"), "{e}");
    }
}
