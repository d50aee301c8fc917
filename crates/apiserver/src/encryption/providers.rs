//! The value transformers, in upstream's stored format so an etcd written by either server
//! reads the same: `k8s:enc:<provider>:v1:<key name>:` followed by the sealed bytes.
//! aesgcm: 12-byte random nonce + ciphertext + tag, the store key as associated data;
//! aescbc: 16-byte random IV + PKCS#7-padded ciphertext; secretbox: 24-byte random nonce +
//! XSalsa20-Poly1305 box.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use rand::RngCore;

pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    Identity,
    AesGcm,
    AesCbc,
    Secretbox,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::AesGcm => "aesgcm",
            Self::AesCbc => "aescbc",
            Self::Secretbox => "secretbox",
        }
    }
}

/// One reader/writer: a provider with one key (identity has none).
pub struct Provider {
    pub kind: ProviderKind,
    /// The stored prefix that selects this key (empty for identity).
    prefix: Vec<u8>,
    key: Vec<u8>,
}

impl Provider {
    pub fn identity() -> Self {
        Self {
            kind: ProviderKind::Identity,
            prefix: Vec::new(),
            key: Vec::new(),
        }
    }

    pub fn keyed(kind: ProviderKind, name: &str, key: &[u8]) -> Result<Self, String> {
        let ok = match kind {
            ProviderKind::AesGcm | ProviderKind::AesCbc => matches!(key.len(), 16 | 24 | 32),
            ProviderKind::Secretbox => key.len() == 32,
            ProviderKind::Identity => true,
        };
        if !ok {
            let want = if kind == ProviderKind::Secretbox {
                "32"
            } else {
                "16, 24 or 32"
            };
            return Err(format!(
                "Invalid value: the key is {} bytes; {} needs {want} bytes (base64 of random bytes, e.g. `head -c 32 /dev/urandom | base64`)",
                key.len(),
                kind.name()
            ));
        }
        Ok(Self {
            kind,
            prefix: format!("k8s:enc:{}:v1:{name}:", kind.name()).into_bytes(),
            key: key.to_vec(),
        })
    }

    /// Whether this provider wrote `stored`.
    pub fn reads(&self, stored: &[u8]) -> bool {
        match self.kind {
            ProviderKind::Identity => !stored.starts_with(ENCRYPTED_PREFIX),
            _ => stored.starts_with(&self.prefix),
        }
    }

    pub fn seal(&self, store_key: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = self.prefix.clone();
        match self.kind {
            ProviderKind::Identity => out.extend_from_slice(plain),
            ProviderKind::AesGcm => {
                let mut nonce = [0u8; 12];
                rand::rng().fill_bytes(&mut nonce);
                let payload = Payload {
                    msg: plain,
                    aad: store_key,
                };
                let sealed = match self.key.len() {
                    16 => aes_gcm::Aes128Gcm::new_from_slice(&self.key)
                        .map_err(err)?
                        .encrypt((&nonce).into(), payload),
                    24 => {
                        aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(
                            &self.key,
                        )
                        .map_err(err)?
                        .encrypt((&nonce).into(), payload)
                    }
                    _ => aes_gcm::Aes256Gcm::new_from_slice(&self.key)
                        .map_err(err)?
                        .encrypt((&nonce).into(), payload),
                }
                .map_err(err)?;
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
            }
            ProviderKind::AesCbc => {
                let mut iv = [0u8; 16];
                rand::rng().fill_bytes(&mut iv);
                let sealed = match self.key.len() {
                    16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&self.key, &iv)
                        .map_err(err)?
                        .encrypt_padded_vec_mut::<Pkcs7>(plain),
                    24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(&self.key, &iv)
                        .map_err(err)?
                        .encrypt_padded_vec_mut::<Pkcs7>(plain),
                    _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(&self.key, &iv)
                        .map_err(err)?
                        .encrypt_padded_vec_mut::<Pkcs7>(plain),
                };
                out.extend_from_slice(&iv);
                out.extend_from_slice(&sealed);
            }
            ProviderKind::Secretbox => {
                use crypto_secretbox::XSalsa20Poly1305;
                let mut nonce = [0u8; 24];
                rand::rng().fill_bytes(&mut nonce);
                let sealed = XSalsa20Poly1305::new_from_slice(&self.key)
                    .map_err(err)?
                    .encrypt((&nonce).into(), plain)
                    .map_err(err)?;
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
            }
        }
        Ok(out)
    }

    /// Opens a value this provider [`reads`](Self::reads).
    pub fn open(&self, store_key: &[u8], stored: &[u8]) -> Result<Vec<u8>, String> {
        let body = &stored[self.prefix.len()..];
        match self.kind {
            ProviderKind::Identity => Ok(body.to_vec()),
            ProviderKind::AesGcm => {
                if body.len() < 12 + 16 {
                    return Err("the data is too short to be aesgcm ciphertext".into());
                }
                let (nonce, sealed) = body.split_at(12);
                let payload = Payload {
                    msg: sealed,
                    aad: store_key,
                };
                match self.key.len() {
                    16 => aes_gcm::Aes128Gcm::new_from_slice(&self.key)
                        .map_err(err)?
                        .decrypt(nonce.into(), payload),
                    24 => {
                        aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(
                            &self.key,
                        )
                        .map_err(err)?
                        .decrypt(nonce.into(), payload)
                    }
                    _ => aes_gcm::Aes256Gcm::new_from_slice(&self.key)
                        .map_err(err)?
                        .decrypt(nonce.into(), payload),
                }
                .map_err(|_| "aesgcm: the data does not authenticate with this key".to_string())
            }
            ProviderKind::AesCbc => {
                if body.len() < 32 || !body.len().is_multiple_of(16) {
                    return Err("the data is not a whole number of aescbc blocks".into());
                }
                let (iv, sealed) = body.split_at(16);
                let bad = |_| "aescbc: invalid padding (wrong key?)".to_string();
                match self.key.len() {
                    16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&self.key, iv)
                        .map_err(err)?
                        .decrypt_padded_vec_mut::<Pkcs7>(sealed)
                        .map_err(bad),
                    24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&self.key, iv)
                        .map_err(err)?
                        .decrypt_padded_vec_mut::<Pkcs7>(sealed)
                        .map_err(bad),
                    _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&self.key, iv)
                        .map_err(err)?
                        .decrypt_padded_vec_mut::<Pkcs7>(sealed)
                        .map_err(bad),
                }
            }
            ProviderKind::Secretbox => {
                use crypto_secretbox::XSalsa20Poly1305;
                if body.len() < 24 + 16 {
                    return Err("the data is too short to be secretbox ciphertext".into());
                }
                let (nonce, sealed) = body.split_at(24);
                XSalsa20Poly1305::new_from_slice(&self.key)
                    .map_err(err)?
                    .decrypt(nonce.into(), sealed)
                    .map_err(|_| "secretbox: the data does not authenticate with this key".into())
            }
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}
