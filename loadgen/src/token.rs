//! HS256 tokens for pods started with `--jwt-secret`. The generator signs its own rather than
//! borrow the gateway's code: a bug shared by signer and verifier would be invisible.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A compact JWS over `claims_json` (a JSON object).
pub fn sign_hs256(claims_json: &str, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims_json.as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

#[cfg(test)]
mod tests {
    /// The vector was computed independently (Python's `hmac` and `base64`).
    #[test]
    fn signs_like_any_other_hs256_implementation() {
        let t = super::sign_hs256(r#"{"sub":"alice","exp":1800000060}"#, b"secret");
        assert_eq!(
            t,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTgwMDAwMDA2MH0.\
             H7E8GZVcUTnLXbizV48W5MTMxqeJV5xcwjHUff0ExYU"
        );
    }
}
