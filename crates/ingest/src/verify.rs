//! Proving a delivery came from the GitLab hook we installed: its secret token, compared in
//! constant time, and when present its Standard Webhooks signature (GitLab 19+): base64 of
//! HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the base64 part of
//! the `whsec_` signing token, with the timestamp no more than 5 minutes off.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far `webhook-timestamp` may be from our clock, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing or wrong X-Gitlab-Token")]
    Token,
    #[error("invalid webhook-signature")]
    Signature,
    #[error("missing or malformed webhook-id or webhook-timestamp")]
    SignedHeaders,
    #[error("webhook-timestamp is more than 5 minutes away")]
    Stale,
}

/// What a delivery says about itself.
pub struct Presented<'a> {
    pub token: Option<&'a [u8]>,
    pub signature: Option<&'a str>,
    pub webhook_id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub body: &'a [u8],
}

/// What we know of the hook.
pub struct Expected<'a> {
    pub token: &'a str,
    pub signing_token: &'a str,
}

/// The hook's secret, from the headers alone: checked before a body is read.
pub fn verify_token(presented: Option<&[u8]>, expected: &str) -> Result<(), Rejection> {
    if presented.is_some_and(|t| bool::from(t.ct_eq(expected.as_bytes()))) { Ok(()) } else { Err(Rejection::Token) }
}

pub fn verify(presented: &Presented<'_>, expected: &Expected<'_>, now_unix: i64) -> Result<(), Rejection> {
    verify_token(presented.token, expected.token)?;
    // The token alone is enough: GitLab stops signing when its signing feature is switched off
    // (and before GitLab 19 never signs), even for a hook installed with a signing token, and
    // a refused delivery is lost (GitLab does not retry it) and counts towards disabling the
    // hook. A signature that is there must verify.
    let Some(signature) = presented.signature else {
        return Ok(());
    };
    let (Some(id), Some(timestamp)) = (presented.webhook_id, presented.timestamp) else {
        return Err(Rejection::SignedHeaders);
    };
    let sent: i64 = timestamp.trim().parse().map_err(|_| Rejection::SignedHeaders)?;
    // abs_diff: a difference past i64 (a timestamp near i64::MIN) must not wrap into the window.
    if now_unix.abs_diff(sent) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(Rejection::Stale);
    }
    let key = expected.signing_token.strip_prefix("whsec_").and_then(|k| BASE64.decode(k).ok()).ok_or(Rejection::Signature)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| Rejection::Signature)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(presented.body);
    let expected_mac = mac.finalize().into_bytes();
    // A space-separated list of `v1,<base64>`; any one matching is enough (key rotation).
    let matches = signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|b64| BASE64.decode(b64).is_ok_and(|candidate| bool::from(candidate.as_slice().ct_eq(expected_mac.as_slice()))));
    if matches { Ok(()) } else { Err(Rejection::Signature) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn sign(id: &str, ts: i64, body: &[u8]) -> String {
        let key = BASE64.decode(&SIGNING[6..]).unwrap();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    fn expected() -> Expected<'static> {
        Expected { token: "s3cret-token", signing_token: SIGNING }
    }

    fn presented<'a>(token: Option<&'a [u8]>, signature: Option<&'a str>, ts: &'a str, body: &'a [u8]) -> Presented<'a> {
        Presented { token, signature, webhook_id: Some("msg_1"), timestamp: Some(ts), body }
    }

    #[test]
    fn good_token_and_signature_pass() {
        let now = 1_800_000_000;
        let body = br#"{"object_kind":"push"}"#;
        let sig = sign("msg_1", now, body);
        let ts = now.to_string();
        assert_eq!(verify(&presented(Some(b"s3cret-token"), Some(&sig), &ts, body), &expected(), now), Ok(()));
        // Several signatures, one valid (GitLab may rotate keys).
        let several = format!("v1,AAAA {sig}");
        assert_eq!(verify(&presented(Some(b"s3cret-token"), Some(&several), &ts, body), &expected(), now), Ok(()));
        // Token only: GitLab before signing, or with signing switched off, even for a hook
        // installed with a signing token.
        assert_eq!(verify(&presented(Some(b"s3cret-token"), None, &ts, body), &expected(), now), Ok(()));
    }

    #[test]
    fn every_forgery_is_refused() {
        let now = 1_800_000_000;
        let body = br#"{"object_kind":"push"}"#;
        let sig = sign("msg_1", now, body);
        let ts = now.to_string();
        let e = expected();
        let cases: Vec<(Presented<'_>, Rejection)> = vec![
            (presented(None, Some(&sig), &ts, body), Rejection::Token),
            (presented(Some(b"s3cret-tokeN"), Some(&sig), &ts, body), Rejection::Token),
            (presented(Some(b"s3cret-token-longer"), Some(&sig), &ts, body), Rejection::Token),
            (presented(Some(b""), Some(&sig), &ts, body), Rejection::Token),
            (presented(Some(b"s3cret-token"), Some(&sig), &ts, br#"{"object_kind":"tag_push"}"#), Rejection::Signature),
            (presented(Some(b"s3cret-token"), Some("v1,bm90IGEgc2lnbmF0dXJl"), &ts, body), Rejection::Signature),
            (presented(Some(b"s3cret-token"), Some("v2,whatever"), &ts, body), Rejection::Signature),
            (Presented { webhook_id: Some("msg_2"), ..presented(Some(b"s3cret-token"), Some(&sig), &ts, body) }, Rejection::Signature),
            (Presented { webhook_id: None, ..presented(Some(b"s3cret-token"), Some(&sig), &ts, body) }, Rejection::SignedHeaders),
            (presented(Some(b"s3cret-token"), Some(&sig), "yesterday", body), Rejection::SignedHeaders),
        ];
        for (p, want) in cases {
            assert_eq!(verify(&p, &e, now), Err(want));
        }
        // A signature made with the right key but replayed past the window, or from the future.
        for skew in [TOLERANCE_SECONDS + 1, -(TOLERANCE_SECONDS + 1)] {
            let then = now - skew;
            let sig = sign("msg_1", then, body);
            let ts = then.to_string();
            assert_eq!(verify(&presented(Some(b"s3cret-token"), Some(&sig), &ts, body), &e, now), Err(Rejection::Stale));
        }
        // Timestamps at the ends of i64: stale, however the difference to now is computed.
        for then in [i64::MIN, i64::MIN + now, i64::MAX] {
            let sig = sign("msg_1", then, body);
            let ts = then.to_string();
            assert_eq!(verify(&presented(Some(b"s3cret-token"), Some(&sig), &ts, body), &e, now), Err(Rejection::Stale), "{then}");
        }
        // Another hook's signing key does not verify.
        let other = Expected { token: "s3cret-token", signing_token: "whsec_b3RoZXIta2V5LW9mLWFub3RoZXItaG9vaw==" };
        assert_eq!(verify(&presented(Some(b"s3cret-token"), Some(&sig), &ts, body), &other, now), Err(Rejection::Signature));
    }
}
