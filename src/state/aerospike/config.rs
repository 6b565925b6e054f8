//! `[state.aerospike]`: where the cluster is and how the backend talks to it.

use serde::Deserialize;

/// The Aerospike backend's settings. Checked by [`AerospikeConfig::invalid`] at start-up.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AerospikeConfig {
    /// Seed nodes, `host:port` each (the client discovers the rest of the cluster).
    /// Default `["127.0.0.1:3000"]`.
    pub hosts: Vec<String>,
    /// The namespace (configured on the server; see docs/aerospike.md). Default `smsgate`.
    pub namespace: String,
    /// The set holding every record of this gateway (messages, receipt lookups, outbox).
    /// Default `smsgate`. At most 50 characters.
    pub set: String,
    /// Time to live of message records, receipt lookups and parked receipts, seconds.
    /// Operational state only: a receipt later than this no longer finds its message.
    /// Default 604800 (7 days). The namespace needs `nsup-period` > 0 for TTLs.
    pub ttl_s: u32,
    /// Deadline of one command (a batch read or write call), milliseconds. Default 500.
    pub timeout_ms: u32,
    /// Deadline of one whole state batch (its reads and its writes), milliseconds: past it
    /// the batch fails, its callers get 503, nothing of it is acknowledged. Default 2000.
    pub apply_timeout_ms: u32,
    /// Deadline to reach the cluster at start-up, milliseconds. Default 5000.
    pub connect_timeout_ms: u32,
    /// Records per batch call (a state batch of more is split). Default 256.
    pub max_batch_records: usize,
    /// Batch calls of one state batch in flight at once. Default 8 (FACTS.md: 16-64 single
    /// commands or ~8 batch calls in flight is where throughput stops growing).
    pub max_in_flight: usize,
    /// While the cluster is unreachable, how often the writer probes it, milliseconds.
    /// Default 500.
    pub probe_interval_ms: u32,
}

impl Default for AerospikeConfig {
    fn default() -> Self {
        AerospikeConfig {
            hosts: vec!["127.0.0.1:3000".to_owned()],
            namespace: "smsgate".to_owned(),
            set: "smsgate".to_owned(),
            ttl_s: 7 * 24 * 3600,
            timeout_ms: 500,
            apply_timeout_ms: 2_000,
            connect_timeout_ms: 5_000,
            max_batch_records: 256,
            max_in_flight: 8,
            probe_interval_ms: 500,
        }
    }
}

impl AerospikeConfig {
    /// The first invalid key (relative to `state.aerospike`) and why, if any.
    pub fn invalid(&self) -> Option<(&'static str, String)> {
        if self.hosts.is_empty() {
            return Some(("hosts", "name at least one seed node as \"host:port\"".to_owned()));
        }
        for h in &self.hosts {
            let ok = h
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Some(("hosts", format!("{h:?} is not \"host:port\" (port 1-65535)")));
            }
        }
        if !name_ok(&self.namespace, 31) {
            return Some(("namespace", "1-31 characters, no spaces, `:` or `;`".to_owned()));
        }
        if !name_ok(&self.set, 50) {
            return Some(("set", "1-50 characters, no spaces, `:` or `;`".to_owned()));
        }
        for (key, v) in [
            ("ttl_s", self.ttl_s),
            ("timeout_ms", self.timeout_ms),
            ("apply_timeout_ms", self.apply_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("probe_interval_ms", self.probe_interval_ms),
        ] {
            if v == 0 {
                return Some((key, "must be greater than 0".to_owned()));
            }
        }
        if self.apply_timeout_ms < self.timeout_ms {
            return Some(("apply_timeout_ms", "must be at least timeout_ms".to_owned()));
        }
        if !(1..=5_000).contains(&self.max_batch_records) {
            return Some(("max_batch_records", "must be 1-5000".to_owned()));
        }
        if !(1..=256).contains(&self.max_in_flight) {
            return Some(("max_in_flight", "must be 1-256".to_owned()));
        }
        None
    }
}

/// An Aerospike namespace or set name: printable, no separators the info protocol uses.
fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_graphic() && c != ':' && c != ';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(AerospikeConfig::default().invalid(), None);
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let bad = |f: fn(&mut AerospikeConfig)| {
            let mut c = AerospikeConfig::default();
            f(&mut c);
            c.invalid().map(|(k, _)| k)
        };
        assert_eq!(bad(|c| c.hosts.clear()), Some("hosts"));
        assert_eq!(bad(|c| c.hosts = vec!["localhost".into()]), Some("hosts"));
        assert_eq!(bad(|c| c.hosts = vec!["h:0".into()]), Some("hosts"));
        assert_eq!(bad(|c| c.namespace = String::new()), Some("namespace"));
        assert_eq!(bad(|c| c.set = "a b".into()), Some("set"));
        assert_eq!(bad(|c| c.ttl_s = 0), Some("ttl_s"));
        assert_eq!(bad(|c| c.apply_timeout_ms = 10), Some("apply_timeout_ms"));
        assert_eq!(bad(|c| c.max_batch_records = 0), Some("max_batch_records"));
        assert_eq!(bad(|c| c.max_in_flight = 1_000), Some("max_in_flight"));
    }
}
