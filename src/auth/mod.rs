//! Identity, decided before the WebSocket upgrade: a request that fails here gets `401` and
//! never becomes a socket. A user id found inside a message is never trusted.

mod jwt;
mod keys;

pub use jwt::{sign_hs256, verify, verify_hs256, verify_identity, JwtPolicy};
pub use keys::PublicKeys;

use crate::protocol::valid_user_id;

/// How a connecting client proves who it is.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// JWT (HS256 with secrets, RS256/ES256 with public keys) from `Authorization: Bearer <t>`
    /// or `?token=<t>`; `sub` is the user id.
    Jwt(JwtPolicy),
    /// Development only: the user id is taken from `?user_id=`, unauthenticated.
    Dev,
}

/// Why a connection attempt was refused with 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token (JWT mode) or no `user_id` (dev mode) in the request.
    #[error("no credentials: send Authorization: Bearer <jwt> or ?token=<jwt>")]
    Missing,
    /// Dev mode without `?user_id=`.
    #[error("dev auth needs ?user_id=<id>")]
    MissingUserId,
    /// The token is not three base64url JSON parts.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm no configured key verifies: anything but HS256 (with
    /// a secret), RS256 or ES256 (with a public key of that type), including `none`.
    #[error("token algorithm {0:?} is not accepted by any configured key")]
    UnsupportedAlg(String),
    /// The header's `kid` names no configured public key.
    #[error("token key id {0:?} is not one of the configured public keys")]
    UnknownKey(String),
    /// The signature does not match: wrong secret or key, or a tampered token.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `exp` is required: tokens without expiry are refused.
    #[error("token has no exp claim")]
    MissingExp,
    /// `--jwt-issuer` is set and `iss` is missing or another issuer.
    #[error("token issuer is not the one configured")]
    WrongIssuer,
    /// `--jwt-audience` is set and `aud` is missing or does not name it.
    #[error("token audience does not include this gateway")]
    WrongAudience,
    /// `sub` carries the user id and is required.
    #[error("token has no sub claim")]
    MissingSub,
    /// The user id is empty, too long or contains control characters.
    #[error("user id must be 1 to 128 bytes without control characters")]
    InvalidUserId,
}

/// Who a connection is, and until when its credentials hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// Seconds since the epoch from which the token is no longer accepted (its `exp` plus
    /// `--jwt-leeway-secs`); `None` in dev mode. A connection still open then is closed
    /// unless it sent a fresh token (`refresh`).
    pub expires_at: Option<i64>,
}

/// Why a token sent on an open socket was refused (the connection keeps its old token).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("{0}")]
    Invalid(#[from] AuthError),
    #[error("the token is for another user than this connection's")]
    OtherUser,
    #[error("this pod does not use tokens (dev auth)")]
    NoTokens,
}

/// The credential-bearing parts of an upgrade request.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    pub bearer: Option<&'a str>,
    pub token_param: Option<String>,
    pub user_id_param: Option<String>,
}

impl Authenticator {
    /// Returns the authenticated user and when the credentials expire.
    pub fn authenticate(&self, c: &Credentials<'_>, now_secs: i64) -> Result<Identity, AuthError> {
        let id = match self {
            Authenticator::Jwt(policy) => {
                let token = c
                    .bearer
                    .or(c.token_param.as_deref())
                    .ok_or(AuthError::Missing)?;
                verify_identity(token, policy, now_secs)?
            }
            Authenticator::Dev => Identity {
                user: c.user_id_param.clone().ok_or(AuthError::MissingUserId)?,
                expires_at: None,
            },
        };
        if !valid_user_id(&id.user) {
            return Err(AuthError::InvalidUserId);
        }
        Ok(id)
    }

    /// Checks a fresh token sent on `user`'s open socket; returns its new expiry.
    pub fn refresh(&self, token: &str, user: &str, now_secs: i64) -> Result<i64, RefreshError> {
        let Authenticator::Jwt(policy) = self else {
            return Err(RefreshError::NoTokens);
        };
        let id = verify_identity(token, policy, now_secs)?;
        match (id.user == user, id.expires_at) {
            (true, Some(at)) => Ok(at),
            (true, None) => Err(RefreshError::Invalid(AuthError::MissingExp)),
            (false, _) => Err(RefreshError::OtherUser),
        }
    }
}
