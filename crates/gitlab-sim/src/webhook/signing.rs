//! Standard Webhooks signatures, as GitLab 19.x sends them in `webhook-signature`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const PREFIX: &str = "whsec_";

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the key is the
/// base64-decoded part of the token after `whsec_`. `None` if the token is malformed.
pub fn sign(signing_token: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(signing_token.strip_prefix(PREFIX)?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// Whether a token has the `whsec_` + base64(32 bytes) shape GitLab requires.
pub fn valid_token(token: &str) -> bool {
    token.strip_prefix(PREFIX).and_then(|k| STANDARD.decode(k).ok()).is_some_and(|k| k.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_over_id_timestamp_body() {
        let token = format!("{PREFIX}{}", STANDARD.encode([7u8; 32]));
        assert!(valid_token(&token));
        assert!(!valid_token("whsec_short"));
        let sig = sign(&token, "msg_1", 1_700_000_000, b"{}").unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(b"msg_1.1700000000.{}");
        assert_eq!(sig, format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())));
        assert_ne!(sig, sign(&token, "msg_1", 1_700_000_001, b"{}").unwrap());
    }
}
