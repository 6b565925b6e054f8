//! Stage 2: authenticate the API key of `Authorization: Bearer <key>`.

use crate::config::ClientConfig;
use crate::ids::ClientId;
use std::collections::HashMap;

/// Why a request is not authenticated. The answer never says whether a key exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    UnknownKey,
}

/// API keys → clients, built from `[[clients]]` in `config/smsgate.toml`.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    keys: HashMap<String, ClientId>,
}

impl Auth {
    pub fn new(clients: &[ClientConfig]) -> Self {
        Auth { keys: clients.iter().map(|c| (c.api_key.clone(), c.name.clone())).collect() }
    }

    /// `header`: the raw value of the Authorization header, if any.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<ClientId, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
        let (scheme, key) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        self.keys.get(key.trim()).cloned().ok_or(AuthError::UnknownKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_keys() {
        // Parsed, so fields added to `[[clients]]` later take their defaults here.
        let client: ClientConfig = toml::from_str("name = \"acme\"\napi_key = \"0123456789abcdef\"").unwrap();
        let auth = Auth::new(&[client]);
        assert_eq!(auth.authenticate(Some(b"Bearer 0123456789abcdef")).unwrap().as_str(), "acme");
        assert_eq!(auth.authenticate(Some(b"bearer 0123456789abcdef")).unwrap().as_str(), "acme");
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(auth.authenticate(Some(b"Basic abc")), Err(AuthError::Malformed));
        assert_eq!(auth.authenticate(Some(b"0123456789abcdef")), Err(AuthError::Malformed));
        assert_eq!(auth.authenticate(Some(b"Bearer nope")), Err(AuthError::UnknownKey));
        assert_eq!(auth.authenticate(Some(&[0xff, 0xfe])), Err(AuthError::Malformed));
    }
}
