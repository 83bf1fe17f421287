//! Envelope encryption for tenant secrets (GitLab tokens, webhook secrets).
//!
//! Each tenant has its own random data key. Secrets are sealed with AES-256-GCM under that data
//! key, with associated data naming the tenant, the owning object and the field, so a ciphertext
//! copied to another row or column fails to open. Data keys are stored only wrapped by a master
//! key from a versioned [`MasterKeyRing`]; every wrapped key names the master key version that
//! wrapped it, which is what lets `keys rotate` re-wrap under the newest key while old ones still
//! open.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::SecretString;
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// First byte of a sealed secret: lets the format change later without guessing.
const SEALED_FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid master key ring: {0}")]
    InvalidKeyRing(String),
    #[error("master key version {0} is not in the key ring")]
    UnknownKeyVersion(u32),
    /// Deliberately carries no detail: which check failed is of no use to an attacker's oracle.
    #[error("ciphertext cannot be opened (tampered, truncated, or bound to another object)")]
    Decrypt,
    #[error("decrypted secret is not valid UTF-8")]
    NotUtf8,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A 256-bit key that is wiped from memory on drop and never printed.
#[derive(Clone)]
struct KeyBytes(Zeroizing<[u8; KEY_LEN]>);

impl KeyBytes {
    fn random() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut()).expect("the operating system's random source failed");
        Self(bytes)
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(array)))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.0))
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> (Vec<u8>, [u8; NONCE_LEN]) {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let ciphertext = self
            .cipher()
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        (ciphertext, nonce)
    }

    fn open(&self, aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let nonce = Nonce::try_from(nonce).map_err(|_| Error::Decrypt)?;
        self.cipher().decrypt(&nonce, Payload { msg: ciphertext, aad }).map(Zeroizing::new).map_err(|_| Error::Decrypt)
    }
}

/// What a sealed value is bound to. Opening it under any other binding fails.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub tenant: &'a str,
    /// The row that owns the secret, e.g. a connection or hook id.
    pub object: &'a str,
    /// The column, e.g. `access_token`.
    pub field: &'a str,
}

impl Binding<'_> {
    /// Length-prefixed so that no two different bindings encode to the same bytes.
    fn encode(&self, purpose: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for part in [purpose, self.tenant, self.object, self.field] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// A tenant's data key, in memory only after unwrapping.
#[derive(Clone)]
pub struct DataKey(KeyBytes);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }

    /// Seals `plaintext`: format byte, random 96-bit nonce, then ciphertext with its tag.
    pub fn seal(&self, binding: Binding<'_>, plaintext: &[u8]) -> Vec<u8> {
        let (ciphertext, nonce) = self.0.seal(&binding.encode("secret"), plaintext);
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEALED_FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn seal_str(&self, binding: Binding<'_>, plaintext: &str) -> Vec<u8> {
        self.seal(binding, plaintext.as_bytes())
    }

    pub fn open(&self, binding: Binding<'_>, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match sealed.split_first() {
            Some((&SEALED_FORMAT_V1, rest)) if rest.len() > NONCE_LEN => {
                let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
                self.0.open(&binding.encode("secret"), nonce, ciphertext)
            }
            _ => Err(Error::Decrypt),
        }
    }

    /// Opens a sealed string into a [`SecretString`], which never prints its value.
    pub fn open_string(&self, binding: Binding<'_>, sealed: &[u8]) -> Result<SecretString> {
        let bytes = self.open(binding, sealed)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::NotUtf8)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

/// A data key as stored: wrapped by the master key of `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub version: u32,
    /// Nonce followed by the wrapped key and its tag.
    pub bytes: Vec<u8>,
}

/// The master keys, by version. The highest version wraps new data keys; the older ones only
/// unwrap, until `keys rotate` has re-wrapped everything and the operator removes them.
#[derive(Clone)]
pub struct MasterKeyRing {
    keys: BTreeMap<u32, KeyBytes>,
}

impl fmt::Debug for MasterKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeyRing").field("versions", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl MasterKeyRing {
    /// Parses `VERSION:BASE64KEY` entries separated by commas, whitespace or newlines, e.g.
    /// `1:3q2+7w...=,2:q83v...=`. Each key is 32 bytes of standard base64.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut keys = BTreeMap::new();
        for entry in spec.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()) {
            let (version, key) =
                entry.split_once(':').ok_or_else(|| Error::InvalidKeyRing("each entry must look like VERSION:BASE64KEY".into()))?;
            let version: u32 =
                version.parse().map_err(|_| Error::InvalidKeyRing(format!("key version {version:?} is not a positive integer")))?;
            if version == 0 {
                return Err(Error::InvalidKeyRing("key versions start at 1".into()));
            }
            let bytes = Zeroizing::new(
                BASE64.decode(key).map_err(|_| Error::InvalidKeyRing(format!("key version {version} is not valid base64")))?,
            );
            let key = KeyBytes::from_slice(&bytes)
                .ok_or_else(|| Error::InvalidKeyRing(format!("key version {version} must decode to 32 bytes")))?;
            if keys.insert(version, key).is_some() {
                return Err(Error::InvalidKeyRing(format!("key version {version} appears twice")));
            }
        }
        if keys.is_empty() {
            return Err(Error::InvalidKeyRing("no keys given".into()));
        }
        Ok(Self { keys })
    }

    /// A new random key ring entry, `VERSION:BASE64KEY`, for operators and development mode.
    pub fn generate_entry(version: u32) -> String {
        format!("{version}:{}", BASE64.encode(KeyBytes::random().0.as_ref()))
    }

    pub fn newest_version(&self) -> u32 {
        *self.keys.keys().next_back().expect("a key ring is never empty")
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// Wraps `key` under the newest master key, bound to `tenant`.
    pub fn wrap(&self, tenant: &str, key: &DataKey) -> WrappedKey {
        self.wrap_with(self.newest_version(), tenant, key).expect("the newest version is in the ring")
    }

    /// Wraps `key` under master key `version`, bound to `tenant`.
    pub fn wrap_with(&self, version: u32, tenant: &str, key: &DataKey) -> Result<WrappedKey> {
        let master = self.keys.get(&version).ok_or(Error::UnknownKeyVersion(version))?;
        let (ciphertext, nonce) = master.seal(&wrap_aad(tenant, version), key.0.0.as_ref());
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Ok(WrappedKey { version, bytes })
    }

    pub fn unwrap(&self, tenant: &str, wrapped: &WrappedKey) -> Result<DataKey> {
        let master = self.keys.get(&wrapped.version).ok_or(Error::UnknownKeyVersion(wrapped.version))?;
        if wrapped.bytes.len() <= NONCE_LEN {
            return Err(Error::Decrypt);
        }
        let (nonce, ciphertext) = wrapped.bytes.split_at(NONCE_LEN);
        let plain = master.open(&wrap_aad(tenant, wrapped.version), nonce, ciphertext)?;
        KeyBytes::from_slice(&plain).map(DataKey).ok_or(Error::Decrypt)
    }
}

/// The master key version is bound too, so a wrapped key relabelled with another version fails.
fn wrap_aad(tenant: &str, version: u32) -> Vec<u8> {
    Binding { tenant, object: &version.to_string(), field: "data_key" }.encode("wrap")
}

/// `bytes` random bytes, base64url without padding: for webhook secret tokens.
pub fn random_token(bytes: usize) -> String {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*buf)
}

/// A Standard Webhooks signing secret as GitLab takes it: `whsec_` and base64 of 32 random bytes.
pub fn random_signing_secret() -> String {
    let mut buf = Zeroizing::new([0u8; 32]);
    getrandom::fill(buf.as_mut()).expect("the operating system's random source failed");
    format!("whsec_{}", BASE64.encode(buf.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn binding<'a>(tenant: &'a str, object: &'a str, field: &'a str) -> Binding<'a> {
        Binding { tenant, object, field }
    }

    #[test]
    fn seal_then_open_round_trips() {
        let key = DataKey::generate();
        let b = binding("t1", "c1", "access_token");
        let sealed = key.seal_str(b, "glpat-secret");
        assert_ne!(&sealed[1 + NONCE_LEN..], b"glpat-secret");
        assert_eq!(key.open_string(b, &sealed).unwrap().expose_secret(), "glpat-secret");
    }

    #[test]
    fn nonces_are_fresh_each_time() {
        let key = DataKey::generate();
        let b = binding("t1", "c1", "access_token");
        assert_ne!(key.seal_str(b, "same"), key.seal_str(b, "same"));
    }

    #[test]
    fn every_tampered_byte_fails() {
        let key = DataKey::generate();
        let b = binding("t1", "c1", "access_token");
        let sealed = key.seal_str(b, "glpat-secret");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(matches!(key.open(b, &bad), Err(Error::Decrypt)), "byte {i} flipped still opened");
        }
        assert!(matches!(key.open(b, &sealed[..sealed.len() - 1]), Err(Error::Decrypt)));
        assert!(matches!(key.open(b, &[]), Err(Error::Decrypt)));
    }

    #[test]
    fn another_binding_fails() {
        let key = DataKey::generate();
        let sealed = key.seal_str(binding("t1", "c1", "access_token"), "glpat-secret");
        for other in [
            binding("t2", "c1", "access_token"),
            binding("t1", "c2", "access_token"),
            binding("t1", "c1", "webhook_secret"),
            // Length prefixes keep shifted boundaries apart.
            binding("t1c", "1", "access_token"),
        ] {
            assert!(matches!(key.open(other, &sealed), Err(Error::Decrypt)), "{other:?} opened");
        }
    }

    #[test]
    fn another_tenants_key_fails() {
        let b = binding("t1", "c1", "access_token");
        let sealed = DataKey::generate().seal_str(b, "glpat-secret");
        assert!(DataKey::generate().open(b, &sealed).is_err());
    }

    #[test]
    fn key_ring_parses_and_rejects() {
        let spec = format!("{},{}", MasterKeyRing::generate_entry(1), MasterKeyRing::generate_entry(3));
        let ring = MasterKeyRing::parse(&spec).unwrap();
        assert_eq!(ring.newest_version(), 3);
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![1, 3]);
        // Newlines separate entries too, as in a mounted file.
        assert!(MasterKeyRing::parse(&spec.replace(',', "\n")).is_ok());

        for bad in ["", "1", "x:AAAA", "0:AAAA", "1:!!!", "1:AAAA"] {
            assert!(MasterKeyRing::parse(bad).is_err(), "{bad:?} accepted");
        }
        let dup = format!("{},{}", MasterKeyRing::generate_entry(2), MasterKeyRing::generate_entry(2));
        assert!(MasterKeyRing::parse(&dup).is_err());
        assert!(!format!("{ring:?}").contains(&spec[2..10]), "Debug must not print key material");
    }

    #[test]
    fn wrap_unwrap_and_rotation() {
        let old = MasterKeyRing::parse(&MasterKeyRing::generate_entry(1)).unwrap();
        let data_key = DataKey::generate();
        let b = binding("t1", "c1", "access_token");
        let sealed = data_key.seal_str(b, "glpat-secret");
        let wrapped = old.wrap("t1", &data_key);
        assert_eq!(wrapped.version, 1);

        // Another tenant's name, or a relabelled version, does not unwrap.
        assert!(old.unwrap("t2", &wrapped).is_err());
        let both = format!("{},{}", MasterKeyRing::generate_entry(1), MasterKeyRing::generate_entry(2));
        let unrelated = MasterKeyRing::parse(&both).unwrap();
        assert!(unrelated.unwrap("t1", &wrapped).is_err());

        // Rotation: a ring with the old key and a new one unwraps the old and wraps under the new.
        let new_entry = MasterKeyRing::generate_entry(2);
        let old_entry = format!("1:{}", BASE64.encode(old.keys[&1].0.as_ref()));
        let rotated = MasterKeyRing::parse(&format!("{old_entry},{new_entry}")).unwrap();
        let rewrapped = rotated.wrap("t1", &rotated.unwrap("t1", &wrapped).unwrap());
        assert_eq!(rewrapped.version, 2);
        let relabelled = WrappedKey { version: 1, bytes: rewrapped.bytes.clone() };
        assert!(rotated.unwrap("t1", &relabelled).is_err());

        // Once re-wrapped, the old master key can go and the secret still opens.
        let only_new = MasterKeyRing::parse(&new_entry).unwrap();
        let key = only_new.unwrap("t1", &rewrapped).unwrap();
        assert_eq!(key.open_string(b, &sealed).unwrap().expose_secret(), "glpat-secret");
        assert!(matches!(only_new.unwrap("t1", &wrapped), Err(Error::UnknownKeyVersion(1))));
    }
}
