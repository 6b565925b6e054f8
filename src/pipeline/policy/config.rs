//! Configuration of the policy stage: `[policy]` in `config/smsgate.toml` (global defaults) and
//! each client's `senders` and `[clients.policy]` overrides.

use super::blacklist::s3::{Credentials, S3Object};
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
    /// CP1: messages to one number per calendar week (Monday to Sunday). Default none.
    /// Needs Redis.
    pub weekly_cap: Option<u32>,
    /// CP1: the IANA time zone whose calendar days and weeks the caps count (`Europe/Berlin`).
    /// Default `UTC`. Every node must have the same zone and a synchronised clock.
    pub time_zone: String,
    /// CP1: `global` (default) counts messages to a number from every client together;
    /// `client` counts each client's messages to a number apart.
    pub caps_scope: CapsScope,
    /// Blacklist objects in S3-compatible buckets (`[[policy.blacklist_s3]]`), reloaded when
    /// their ETag changes (checked every `blacklist_reload_ms`) or on demand. Default none.
    pub blacklist_s3: Vec<S3Source>,
    /// The longest one S3 request may take, the whole body of a GET included, ms. Default 60000.
    pub blacklist_s3_timeout_ms: u64,
    /// How long a campaign (and its reservations' bookkeeping) is kept on Redis after it was
    /// created, s. Default 691200 (8 days: a reservation counts in its build's week).
    pub campaign_ttl_s: u64,
}

/// Whose messages CP1 counts together.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CapsScope {
    #[default]
    Global,
    Client,
}

/// `[[policy.blacklist_s3]]`: one object of numbers in the blacklist file format.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Source {
    /// `http(s)://host[:port]` of the S3 API: `https://s3.eu-central-1.amazonaws.com`,
    /// `http://minio.internal:9000`.
    pub endpoint: String,
    pub bucket: String,
    pub key: String,
    /// The signing region. Default `us-east-1` (MinIO's default too).
    #[serde(default = "default_region")]
    pub region: String,
    /// `true` (default): `endpoint/bucket/key` (MinIO, most S3-compatible servers); `false`:
    /// virtual-hosted `bucket.endpoint/key` (AWS).
    #[serde(default = "yes")]
    pub path_style: bool,
    /// Credentials; both or neither. Neither: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
    /// (and `AWS_SESSION_TOKEN`) from the environment, else unsigned requests.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn yes() -> bool {
    true
}

impl S3Source {
    /// The credentials this source signs with: its own, else the environment's, else none.
    pub fn credentials(&self) -> Option<Credentials> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (id, secret) = match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => (env("AWS_ACCESS_KEY_ID")?, env("AWS_SECRET_ACCESS_KEY")?),
        };
        let session_token = if self.access_key_id.is_some() { None } else { env("AWS_SESSION_TOKEN") };
        Some(Credentials { access_key_id: id, secret_access_key: secret, session_token })
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            blacklist_files: Vec::new(),
            blacklist_reload_ms: 1_000,
            duplicate_window_s: 0,
            daily_cap: None,
            weekly_cap: None,
            time_zone: "UTC".into(),
            caps_scope: CapsScope::Global,
            blacklist_s3: Vec::new(),
            blacklist_s3_timeout_ms: 60_000,
            campaign_ttl_s: 8 * 86_400,
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

    /// The zone of `time_zone`; `Err` names what is wrong with it.
    pub fn zone(&self) -> Result<jiff::tz::TimeZone, String> {
        jiff::tz::TimeZone::get(&self.time_zone).map_err(|e| {
            format!("`{}` is not a known IANA time zone (like `Europe/Berlin` or `UTC`): {e}", self.time_zone)
        })
    }

    /// What is wrong, as (key under `policy`, reason); `None` when valid.
    pub fn invalid(&self) -> Option<(String, String)> {
        let bad = |k: &str, r: &str| Some((k.to_owned(), r.to_owned()));
        if self.blacklist_reload_ms == 0 {
            return bad("blacklist_reload_ms", "must be greater than 0");
        }
        if self.blacklist_s3_timeout_ms == 0 {
            return bad("blacklist_s3_timeout_ms", "must be greater than 0");
        }
        if self.campaign_ttl_s == 0 {
            return bad("campaign_ttl_s", "must be greater than 0");
        }
        if self.duplicate_window_s > 366 * 86_400 {
            return bad("duplicate_window_s", "must be at most a year (31622400 s)");
        }
        if self.daily_cap == Some(0) {
            return bad("daily_cap", "must be at least 1 (leave it out for no cap)");
        }
        if self.weekly_cap == Some(0) {
            return bad("weekly_cap", "must be at least 1 (leave it out for no cap)");
        }
        if self.blacklist_files.iter().any(|p| p.as_os_str().is_empty()) {
            return bad("blacklist_files", "a path must not be empty");
        }
        if let Err(e) = self.zone() {
            return Some(("time_zone".into(), e));
        }
        for (i, s) in self.blacklist_s3.iter().enumerate() {
            let key = |k: &str| format!("blacklist_s3[{i}].{k}");
            if s.bucket.is_empty() || s.key.is_empty() || s.region.is_empty() {
                return Some((key("bucket"), "bucket, key and region must not be empty".into()));
            }
            if s.access_key_id.is_some() != s.secret_access_key.is_some() {
                return Some((key("access_key_id"), "give access_key_id and secret_access_key together".into()));
            }
            if let Err(e) = S3Object::new(s, None) {
                return Some((key("endpoint"), e));
            }
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
    /// This client's CP1 daily cap instead of `policy.daily_cap`. Default: the global one.
    pub daily_cap: Option<u32>,
    /// This client's CP1 weekly cap instead of `policy.weekly_cap`. Default: the global one.
    pub weekly_cap: Option<u32>,
}

impl ClientPolicy {
    pub fn has_caps(&self) -> bool {
        self.daily_cap.is_some() || self.weekly_cap.is_some()
    }

    /// What is wrong, as (key under `clients[i].policy`, reason).
    pub fn invalid(&self) -> Option<(&'static str, &'static str)> {
        if self.daily_cap == Some(0) {
            return Some(("daily_cap", "must be at least 1 (leave it out for the global cap)"));
        }
        if self.weekly_cap == Some(0) {
            return Some(("weekly_cap", "must be at least 1 (leave it out for the global cap)"));
        }
        None
    }
}

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy { blacklist: true, duplicate: true, caps: true, daily_cap: None, weekly_cap: None }
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
        assert_eq!(c.invalid().map(|(k, _)| k).as_deref(), Some("daily_cap"));
        let c: PolicyConfig = toml::from_str("time_zone = 'Mars/Olympus'").unwrap();
        assert_eq!(c.invalid().map(|(k, _)| k).as_deref(), Some("time_zone"));
        let c: PolicyConfig = toml::from_str("time_zone = 'Europe/Berlin'\ncaps_scope = 'client'").unwrap();
        assert!(c.invalid().is_none() && c.caps_scope == CapsScope::Client);
        let s3 = "[[blacklist_s3]]\nendpoint = 'http://127.0.0.1:9000'\nbucket = 'b'\nkey = 'k'\naccess_key_id = 'x'\n";
        let c: PolicyConfig = toml::from_str(s3).unwrap();
        assert_eq!(c.invalid().map(|(k, _)| k).as_deref(), Some("blacklist_s3[0].access_key_id"));
        let c: PolicyConfig =
            toml::from_str(&s3.replace("http:", "ftp:").replace("access_key_id = 'x'\n", "")).unwrap();
        assert_eq!(c.invalid().map(|(k, _)| k).as_deref(), Some("blacklist_s3[0].endpoint"));
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
