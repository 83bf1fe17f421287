//! Delivery verification with arbitrary headers: no panic, and nothing passes that does not carry
//! the hook's own secret and, when it is signed, a fresh timestamp and a signature by the hook's own key.

#![no_main]

use connector_fuzz::{HOOK_TOKEN, NOW, OTHER_SIGNING_TOKEN, SIGNING_TOKEN, delivery};
use connector_ingest::presented;
use connector_ingest::verify::{Expected, Rejection, TOLERANCE_SECONDS, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (headers, body) = delivery(input);
    let presented = presented(&headers, body);
    let expected = Expected { token: HOOK_TOKEN, signing_token: SIGNING_TOKEN };
    if verify(&presented, &expected, NOW).is_err() {
        return;
    }
    assert_eq!(presented.token, Some(HOOK_TOKEN.as_bytes()), "accepted without the hook's token");
    // The token alone is accepted (GitLab does not always sign); a signature present must verify.
    let Some(signature) = presented.signature else { return };
    let sent: i64 = presented.timestamp.and_then(|t| t.trim().parse().ok()).expect("accepted a signature without a timestamp");
    assert!(NOW.abs_diff(sent) <= TOLERANCE_SECONDS as u64, "accepted a timestamp {sent} away from {NOW}");
    let other = Expected { signing_token: OTHER_SIGNING_TOKEN, ..expected };
    assert_eq!(verify(&presented, &other, NOW), Err(Rejection::Signature), "{signature:?} verifies under another hook's key too");
});
