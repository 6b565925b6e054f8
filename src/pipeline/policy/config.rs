//! Configuration of the policy stage: `[policy]` in `config/smsgate.toml` (global defaults) and
//! each client's `senders` and `[clients.policy]` overrides.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[policy]`: contact-policy rules applied after the rate limits and before routing.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Local files of numbers that never receive messages: one E.164 number per line (`+`
    /// optional), `#` starts a comment, blank lines ignored. Default none.
    pub blacklist_files: Vec<PathBuf>,
    /// How often a side thread compares the files' modification times and reloads them all
    /// when one changed, ms. Default 1000.
    pub blacklist_reload_ms: u64,
    /// CP2: the same text to the same number within this many seconds is refused with
    /// `duplicate`. 0 (default): off. Shared by every node through Redis when `redis.url`
    /// is set; without Redis each shard remembers only what it saw itself.
    pub duplicate_window_s: u64,
    /// CP1: messages to one number per calendar day (UTC). Default none. Needs Redis.
    pub daily_cap: Option<u32>,
    /// CP1: messages to one number per calendar week (Monday to Sunday, UTC). Default none.
    /// Needs Redis.
    pub weekly_cap: Option<u32>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            blacklist_files: Vec::new(),
            blacklist_reload_ms: 1_000,
            duplicate_window_s: 0,
            daily_cap: None,
            weekly_cap: None,
        }
    }
}

impl PolicyConfig {
    pub fn blacklist_reload(&self) -> Duration {
        Duration::from_millis(self.blacklist_reload_ms)
    }

    pub fn has_caps(&self) -> bool {
        self.daily_cap.is_some() || self.weekly_cap.is_some()
    }

    /// What is wrong, as (key under `policy`, reason); `None` when valid.
    pub fn invalid(&self) -> Option<(&'static str, &'static str)> {
        if self.blacklist_reload_ms == 0 {
            return Some(("blacklist_reload_ms", "must be greater than 0"));
        }
        if self.duplicate_window_s > 366 * 86_400 {
            return Some(("duplicate_window_s", "must be at most a year (31622400 s)"));
        }
        if self.daily_cap == Some(0) {
            return Some(("daily_cap", "must be at least 1 (leave it out for no cap)"));
        }
        if self.weekly_cap == Some(0) {
            return Some(("weekly_cap", "must be at least 1 (leave it out for no cap)"));
        }
        if self.blacklist_files.iter().any(|p| p.as_os_str().is_empty()) {
            return Some(("blacklist_files", "a path must not be empty"));
        }
        None
    }
}

/// `[clients.policy]`: which of the global `[policy]` strategies apply to this client. Each
/// is on by default (when configured globally); `false` turns it off for this client.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientPolicy {
    /// The blacklist files. Default true.
    pub blacklist: bool,
    /// CP2 duplicate suppression. Default true.
    pub duplicate: bool,
    /// CP1 daily and weekly caps. Default true.
    pub caps: bool,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy { blacklist: true, duplicate: true, caps: true }
    }
}

/// A configured sender (`"ACME"`, `"+4912345"`, `"12345"`) if `parse` would accept it as a
/// `from`, else `None` (a config error).
pub fn sender_key(s: &str) -> Option<String> {
    if let Some(digits) = s.strip_prefix('+') {
        let ok = (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        return ok.then(|| s.to_owned());
    }
    let ok = (1..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        || (1..=11).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
            && !s.starts_with(' ');
    ok.then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c: PolicyConfig = toml::from_str("").unwrap();
        assert_eq!(c, PolicyConfig::default());
        assert!(c.invalid().is_none());
        assert!(toml::from_str::<PolicyConfig>("daily_capp = 3").is_err());
        let c: PolicyConfig = toml::from_str("daily_cap = 0").unwrap();
        assert_eq!(c.invalid().map(|(k, _)| k), Some("daily_cap"));
        let p: ClientPolicy = toml::from_str("caps = false").unwrap();
        assert!(p.blacklist && p.duplicate && !p.caps);
    }

    #[test]
    fn sender_keys() {
        assert_eq!(sender_key("+4912345").as_deref(), Some("+4912345"));
        assert_eq!(sender_key("ACME").as_deref(), Some("ACME"));
        assert_eq!(sender_key("12345").as_deref(), Some("12345"));
        assert_eq!(sender_key(""), None);
        assert_eq!(sender_key("+49x"), None);
        assert_eq!(sender_key("A VERY LONG NAME"), None);
    }
}
