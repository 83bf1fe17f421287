//! What the fuzz targets share: how an input becomes a delivery, and the hook they verify against.
//!
//! An input is a block of `name: value` header lines, a blank line, then the body; without a
//! blank line the whole input is the body. Lines that are not valid HTTP headers are skipped,
//! since hyper refuses them before any handler runs. `scripts/fuzz` builds the seed corpus in
//! this form from the real fixtures.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The hook the `verify` target checks deliveries against (`scripts/fuzz` signs seeds with it).
pub const HOOK_TOKEN: &str = "fuzz-hook-token-0001";
pub const SIGNING_TOKEN: &str = "whsec_ZnV6ei1zaWduaW5nLWtleS0wMDAwMDAwMDAwMDE=";
/// Another hook's signing token: a delivery it accepts must not verify under this one.
pub const OTHER_SIGNING_TOKEN: &str = "whsec_b3RoZXItaG9vay1zaWduaW5nLWtleS0wMDAwMDE=";
/// The clock the `verify` target runs at; seeds carry it as their `webhook-timestamp`.
pub const NOW: i64 = 1_800_000_000;

pub fn delivery(input: &[u8]) -> (HeaderMap, &[u8]) {
    let (head, body) = match input.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&input[..i], &input[i + 2..]),
        None => (&input[..0], input),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    (headers, body)
}
