//! The gateway's session token: 256 bits from the OS CSPRNG, URL-safe base64
//! in the browser, stored only as its SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The token as the browser holds it (43 characters).
pub struct Token(String);

/// SHA-256 of the token: what stores key sessions by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

/// The first 128 bits of the token hash: what the memory store keys by
/// (half the bytes per session; 2^64 work to find any collision).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey(pub [u8; 16]);

impl TokenHash {
    pub fn key(&self) -> TokenKey {
        let mut k = [0u8; 16];
        k.copy_from_slice(&self.0[..16]);
        TokenKey(k)
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

impl Token {
    /// A new token from the operating system's CSPRNG.
    pub fn generate() -> Token {
        let mut bytes = [0u8; 32];
        // rand's OsRng reads getrandom(2); a failure there is not recoverable.
        rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut bytes)
            .expect("the OS CSPRNG failed");
        Token(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        hash_presented(self.0.as_bytes()).expect("a generated token is well-formed")
    }
}

/// Hashes a token a client presented; `None` if it cannot be one of ours
/// (malformed tokens never reach a store).
pub fn hash_presented(value: &[u8]) -> Option<TokenHash> {
    if value.len() != 43
        || !value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return None;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Some(TokenHash(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_characters_and_distinct() {
        let a = Token::generate();
        let b = Token::generate();
        assert_eq!(a.as_str().len(), 43);
        assert_ne!(a.as_str(), b.as_str());
        assert!(hash_presented(a.as_str().as_bytes()).is_some());
        assert_eq!(format!("{a:?}"), "Token(<redacted>)");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(hash_presented(b"short").is_none());
        assert!(hash_presented(&[b'a'; 44]).is_none());
        assert!(hash_presented(&[b'='; 43]).is_none());
        assert!(hash_presented(&[b'a'; 43]).is_some());
    }
}
