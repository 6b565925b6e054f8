//! Hot reload of `smpp_rules.toml` (SIGHUP, `POST /api/v1/admin/reload`).
//!
//! The new file is read and validated completely first; a bad file changes nothing. Then a
//! [`Plan`] says what changes: sessions of links whose bind is unchanged stay bound (their
//! traffic is not interrupted); added links bind; removed links, and links whose SMSC,
//! credentials, bind mode, session count or window changed, drain and unbind (changed ones
//! then bind anew); rates, pools and routes apply at once. Shard 0 builds the plan and every
//! shard applies it (`app.rs`).

use crate::config::{BindConfig, Rules, SmppConfig};
use crate::ids::LinkId;
use crate::smpp::link::{LinkSettings, LinkTable};
use crate::smpp::session::{BindMode, SessionConfig};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// What a reload does, computed once and applied by every shard.
#[derive(Debug)]
pub struct Plan {
    pub links: Arc<LinkTable>,
    pub rules: Arc<Rules>,
    pub summary: Summary,
}

/// The answer of a reload: which links changed how.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Sessions replaced: the SMSC, credentials, bind mode, session count or window changed.
    pub rebound: Vec<String>,
    /// Same sessions, other rates or settings.
    pub retuned: Vec<String>,
    pub unchanged: Vec<String>,
}

/// The link table for `rules`, keeping the sessions of `reuse` where they bind the same way.
pub fn link_table(rules: &Rules, smpp: &SmppConfig, nr_shards: usize, reuse: Option<&LinkTable>) -> LinkTable {
    let links = rules.links.iter().map(|(name, l)| {
        let link = LinkId::new(name);
        let modes: &[BindMode] = match l.bind {
            BindConfig::Transceiver => &[BindMode::Transceiver],
            BindConfig::TransmitterReceiver => &[BindMode::Transmitter, BindMode::Receiver],
        };
        let sessions = (0..l.sessions)
            .flat_map(|index| modes.iter().map(move |&mode| (index, mode)))
            .map(|(index, mode)| SessionConfig {
                link: link.clone(),
                index,
                mode,
                host: l.host.clone(),
                port: l.port,
                system_id: l.system_id.clone(),
                password: l.password.clone(),
                system_type: l.system_type.clone(),
                window: l.window,
                response_timeout: Duration::from_millis(smpp.response_timeout_ms),
                enquire_link_interval: Duration::from_millis(smpp.enquire_link_interval_ms),
                reconnect_delay: Duration::from_millis(smpp.reconnect_delay_ms),
                reconnect_max: Duration::from_millis(smpp.reconnect_max_ms.max(smpp.reconnect_delay_ms)),
                unbind_timeout: Duration::from_millis(smpp.unbind_timeout_ms),
                max_rate: l.esme_rate,
                throttle_pause: Duration::from_millis(l.throttle_pause_ms),
            })
            .collect();
        let settings = LinkSettings { long_messages: l.long_messages, receipt_id_format: l.receipt_id_format };
        (link, settings, sessions)
    });
    LinkTable::new(links, nr_shards, reuse)
}

/// Compares the running rules with validated new ones.
pub fn plan(old_links: &LinkTable, old_rules: &Rules, new_rules: Rules, smpp: &SmppConfig, nr_shards: usize) -> Plan {
    let links = link_table(&new_rules, smpp, nr_shards, Some(old_links));
    let mut summary = Summary::default();
    for (name, new) in &new_rules.links {
        let id = LinkId::new(name);
        match old_rules.links.get(name) {
            None => summary.added.push(name.clone()),
            Some(_) if !all_sessions_kept(&links, old_links, &id) => summary.rebound.push(name.clone()),
            Some(old) if old != new => summary.retuned.push(name.clone()),
            Some(_) => summary.unchanged.push(name.clone()),
        }
    }
    summary.removed = old_rules.links.keys().filter(|k| !new_rules.links.contains_key(*k)).cloned().collect();
    Plan { links: Arc::new(links), rules: Arc::new(new_rules), summary }
}

fn all_sessions_kept(new: &LinkTable, old: &LinkTable, link: &LinkId) -> bool {
    let (Some(n), Some(o)) = (new.slots(link), old.slots(link)) else { return false };
    n.len() == o.len() && (0..n.len()).all(|i| new.same_session(old, link, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LinkConfig;

    fn link(port: u16, rate: u32) -> LinkConfig {
        toml::from_str(&format!(
            "host = \"127.0.0.1\"\nport = {port}\nsystem_id = \"gw\"\npassword = \"pw\"\nesme_rate = {rate}\n"
        ))
        .unwrap()
    }

    fn rules(links: &[(&str, LinkConfig)]) -> Rules {
        Rules { links: links.iter().map(|(n, l)| (n.to_string(), l.clone())).collect(), ..Rules::default() }
    }

    #[test]
    fn a_plan_keeps_unchanged_sessions_and_names_every_change() {
        let smpp = SmppConfig::default();
        let old_rules =
            rules(&[("keep", link(1, 10)), ("rate", link(2, 10)), ("move", link(3, 10)), ("gone", link(4, 10))]);
        let old = link_table(&old_rules, &smpp, 2, None);
        let new_rules =
            rules(&[("keep", link(1, 10)), ("rate", link(2, 99)), ("move", link(30, 10)), ("new", link(5, 10))]);
        let plan = plan(&old, &old_rules, new_rules, &smpp, 2);
        let s = &plan.summary;
        assert_eq!(s.unchanged, vec!["keep"]);
        assert_eq!(s.retuned, vec!["rate"]);
        assert_eq!(s.rebound, vec!["move"]);
        assert_eq!(s.added, vec!["new"]);
        assert_eq!(s.removed, vec!["gone"]);
        assert!(plan.links.same_session(&old, &LinkId::new("keep"), 0));
        assert!(plan.links.same_session(&old, &LinkId::new("rate"), 0));
        assert!(!plan.links.same_session(&old, &LinkId::new("move"), 0));
    }
}
