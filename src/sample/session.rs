//! Signed session cookies and CSRF tokens of the sample seller center.
//!
//! Both are stateless HMAC-SHA256 values over a server secret, so a session saved by clerk
//! (a Playwright `storageState`) and a form rendered before a restart stay valid after the
//! server restarts with the same secret — which is what lets clerk's tests stop and start
//! the server between a draft and its approved submit.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "sc_session";

/// Secret used when none is configured: fixed so that sessions survive restarts.
pub const DEFAULT_SECRET: &str = "clerk-sample-seller-center/built-in-secret/v1";

/// How long a session created by `POST /login` lasts.
pub const LOGIN_SESSION_SECS: i64 = 8 * 3600;

/// The sample users and their passwords.
pub const USERS: [(&str, &str); 3] = [
    ("ops", "ops-pass"),
    ("alice", "alice-pass"),
    ("carol", "carol-pass"),
];

/// Signs and checks session cookies and CSRF tokens with one secret.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl Signer {
    pub fn new(secret: Option<&str>) -> Signer {
        Signer {
            secret: secret.unwrap_or(DEFAULT_SECRET).as_bytes().to_vec(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length (long keys are hashed, short ones padded), so this
        // cannot fail whatever secret the operator passes.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC-SHA256 accepts keys of any length")
    }

    fn sign(&self, message: &str) -> String {
        let mut mac = self.mac();
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn verify(&self, message: &str, signature_hex: &str) -> bool {
        let Ok(sig) = hex::decode(signature_hex) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(message.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&sig).is_ok()
    }

    /// The cookie value `user|expiry_unix|hex(hmac_sha256(secret, "user|expiry_unix"))`.
    pub fn session_value(&self, user: &str, expiry_unix: i64) -> String {
        let payload = format!("{user}|{expiry_unix}");
        let sig = self.sign(&payload);
        format!("{payload}|{sig}")
    }

    /// The user and expiry of a cookie value when its signature is valid and it expires after
    /// `now_unix`. Invalid and expired values are indistinguishable on purpose: both mean
    /// "not signed in".
    pub fn check_session(&self, value: &str, now_unix: i64) -> Option<(String, i64)> {
        let (payload, sig) = value.rsplit_once('|')?;
        let (user, expiry) = payload.split_once('|')?;
        let expiry: i64 = expiry.parse().ok()?;
        if user.is_empty() || !self.verify(payload, sig) || expiry <= now_unix {
            return None;
        }
        Some((user.to_owned(), expiry))
    }

    /// The CSRF token of `user`'s forms about `order_id`: stateless, so valid across restarts.
    pub fn csrf_token(&self, user: &str, order_id: &str) -> String {
        self.sign(&format!("csrf|{user}|{order_id}"))
    }

    /// True when `token` is the CSRF token of `user` for `order_id`.
    pub fn check_csrf(&self, user: &str, order_id: &str, token: &str) -> bool {
        self.verify(&format!("csrf|{user}|{order_id}"), token)
    }
}

/// True when `user`/`password` is one of [`USERS`].
pub fn password_ok(user: &str, password: &str) -> bool {
    USERS.iter().any(|(u, p)| *u == user && *p == password)
}

/// The `sc_session` cookie value in a `Cookie:` header, if any.
pub fn cookie_from_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_roundtrip_expiry_and_tamper() {
        let s = Signer::new(None);
        let v = s.session_value("ops", 1_000);
        assert_eq!(s.check_session(&v, 999), Some(("ops".to_owned(), 1_000)));
        assert_eq!(
            s.check_session(&v, 1_000),
            None,
            "expired at its expiry second"
        );
        assert_eq!(s.check_session(&v.replacen("ops", "alice", 1), 0), None);
        assert_eq!(Signer::new(Some("other")).check_session(&v, 0), None);
        assert_eq!(s.check_session("garbage", 0), None);
    }

    #[test]
    fn csrf_is_bound_to_user_and_order() {
        let s = Signer::new(None);
        let t = s.csrf_token("ops", "SO-100001");
        assert!(s.check_csrf("ops", "SO-100001", &t));
        assert!(!s.check_csrf("alice", "SO-100001", &t));
        assert!(!s.check_csrf("ops", "SO-100002", &t));
    }

    #[test]
    fn finds_cookie_among_others() {
        assert_eq!(
            cookie_from_header("a=1; sc_session=x|1|ab; b=2"),
            Some("x|1|ab")
        );
        assert_eq!(cookie_from_header("a=1"), None);
    }
}
