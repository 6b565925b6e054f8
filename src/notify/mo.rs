//! Inbound messages (MO): the parts the state store keeps, the message they make, which client
//! it goes to (`[[mo_routes]]`), and the JSON its webhook carries.
//!
//! The inbound driver (`src/inbound.rs`) turns each deliver_sm that is not a receipt into one
//! [`MoPart`] and has the store keep it before the SMSC gets its deliver_sm_resp. The store
//! (`state/embedded.rs`) gathers the parts of a concatenated message in a [`MoGroup`] (any
//! order, a resent part ignored) and, once all are there, [`assemble`]s the message, routes it
//! with the [`MoRouter`] and owes its webhook in the same transaction. A group still missing
//! parts after `inbound.reassembly_timeout_ms` is assembled from what came, marked
//! `incomplete`. Nothing here does I/O.

use crate::config::{ClientConfig, MoRouteConfig};
use crate::ids::{ClientId, InboundId, LinkId};
use crate::smpp::concat::PartOf;
use crate::smpp::encoding;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One deliver_sm that is not a receipt, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoPart {
    /// Given on arrival; a message takes the id of its lowest-numbered part.
    pub id: InboundId,
    pub link: LinkId,
    /// source_addr and destination_addr as the SMSC sent them.
    pub from: String,
    pub to: String,
    pub data_coding: u8,
    /// Where it sits in a concatenated message; `None` for a whole message.
    pub part_of: Option<PartOf>,
    /// The text octets, UDH removed (short_message, or message_payload when that is empty).
    pub octets: Vec<u8>,
    pub received_at_ms: u64,
}

impl MoPart {
    /// The key its partners share: link, addresses, reference and total (the reference alone
    /// repeats across senders). `None` for a whole message.
    pub fn group_key(&self) -> Option<Vec<u8>> {
        let p = self.part_of?;
        let mut key = Vec::with_capacity(self.link.as_str().len() + self.from.len() + self.to.len() + 6);
        for field in [self.link.as_str(), &self.from, &self.to] {
            key.extend_from_slice(field.as_bytes());
            key.push(0);
        }
        key.extend_from_slice(&p.reference.to_be_bytes());
        key.push(p.total);
        Some(key)
    }
}

/// The parts of one concatenated message that have arrived, by part number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoGroup {
    /// When its first part arrived; the reassembly timeout counts from here.
    pub first_at_ms: u64,
    /// Sorted by part number, one per number.
    pub parts: Vec<MoPart>,
}

impl MoGroup {
    /// Adds a part; `false` (and nothing changes) if its number is already there: an SMSC that
    /// resends a part whose deliver_sm_resp it missed.
    pub fn add(&mut self, part: MoPart) -> bool {
        let seq = part.part_of.map_or(0, |p| p.seq);
        match self.parts.binary_search_by_key(&seq, |p| p.part_of.map_or(0, |p| p.seq)) {
            Ok(_) => false,
            Err(at) => {
                if self.parts.is_empty() {
                    self.first_at_ms = part.received_at_ms;
                }
                self.parts.insert(at, part);
                true
            }
        }
    }

    pub fn is_complete(&self) -> bool {
        self.parts.first().and_then(|p| p.part_of).is_some_and(|p| usize::from(p.total) == self.parts.len())
    }
}

/// An inbound message as it is kept, read (`GET /api/v1/inbound/{id}`) and posted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub id: InboundId,
    /// The client its route names; `None`: no `[[mo_routes]]` entry matched (kept and counted,
    /// posted nowhere).
    pub client: Option<ClientId>,
    pub link: LinkId,
    pub from: String,
    pub to: String,
    /// The text; `None` for binary data codings (then `octets_hex` holds the octets).
    pub text: Option<String>,
    pub octets_hex: Option<String>,
    pub data_coding: u8,
    /// Parts the message was sent in (1 for a whole message) and the numbers that arrived.
    pub total_parts: u8,
    pub parts_received: Vec<u8>,
    /// Some parts never arrived within `inbound.reassembly_timeout_ms`.
    pub incomplete: bool,
    /// When its first part arrived, and when it was complete (or given up waiting for), Unix ms.
    pub received_at_ms: u64,
    pub completed_at_ms: u64,
}

/// The message `parts` make (sorted by part number, at least one), at `now_ms`.
pub fn assemble(parts: &[MoPart], now_ms: u64) -> Option<InboundMessage> {
    let first = parts.first()?;
    let total = first.part_of.map_or(1, |p| p.total);
    let octets: Vec<u8> = parts.iter().flat_map(|p| p.octets.iter().copied()).collect();
    let text = encoding::decode(first.data_coding, &octets);
    let octets_hex = text.is_none().then(|| crate::digest::hex(&octets));
    let parts_received: Vec<u8> = parts.iter().map(|p| p.part_of.map_or(1, |p| p.seq)).collect();
    Some(InboundMessage {
        id: first.id,
        client: None,
        link: first.link.clone(),
        from: first.from.clone(),
        to: first.to.clone(),
        text,
        octets_hex,
        data_coding: first.data_coding,
        total_parts: total,
        incomplete: parts_received.len() < usize::from(total),
        parts_received,
        received_at_ms: parts.iter().map(|p| p.received_at_ms).min().unwrap_or(now_ms),
        completed_at_ms: now_ms,
    })
}

/// The event id of an inbound message's webhook.
pub fn event_id(id: InboundId) -> String {
    format!("{id}.inbound")
}

/// The JSON body of an inbound message's webhook (schema in README.md, "Inbound messages").
pub fn payload(m: &InboundMessage) -> serde_json::Value {
    serde_json::json!({
        "event_id": event_id(m.id),
        "event": "inbound",
        "inbound_id": m.id.to_string(),
        "from": m.from,
        "to": m.to,
        "text": m.text,
        "octets_hex": m.octets_hex,
        "data_coding": m.data_coding,
        "link": m.link.as_str(),
        "segments": { "total": m.total_parts, "received": m.parts_received },
        "incomplete": m.incomplete,
        "timestamps": { "received_ms": m.received_at_ms, "completed_ms": m.completed_at_ms },
    })
}

// === routing ===

/// Counters of inbound messages (the store counts; metrics read). Relaxed: monotonic counts.
#[derive(Debug, Default)]
pub struct InboundStats {
    /// deliver_sm kept as MO parts (a whole message is one part).
    pub parts: AtomicU64,
    /// Resent parts ignored (their number had already arrived).
    pub duplicate_parts: AtomicU64,
    /// Messages assembled and kept.
    pub messages: AtomicU64,
    /// Messages no `[[mo_routes]]` entry matched.
    pub unrouted: AtomicU64,
    /// Messages delivered incomplete after the reassembly timeout.
    pub incomplete: AtomicU64,
}

#[derive(Debug)]
struct Route {
    /// Destination address without `+`.
    to: String,
    /// Lower case.
    keyword: Option<String>,
    client: ClientId,
}

/// Which client an inbound message goes to. Built from `[[mo_routes]]` and the clients'
/// `mo_url`; a reload swaps the routes (lock-free) while the store keeps routing.
#[derive(Debug)]
pub struct MoRouter {
    routes: ArcSwap<Vec<Route>>,
    urls: HashMap<ClientId, String>,
    stats: Arc<InboundStats>,
}

impl MoRouter {
    /// Routes checked by `config::check_mo_clients` (a route naming an unknown client or one
    /// without `mo_url` routes nothing).
    pub fn new(clients: &[ClientConfig], routes: &[MoRouteConfig], stats: Arc<InboundStats>) -> Self {
        let urls = clients.iter().filter_map(|c| c.mo_url.clone().map(|u| (c.name.clone(), u))).collect();
        MoRouter { routes: ArcSwap::from_pointee(table(routes)), urls, stats }
    }

    /// Puts the routes of a reloaded rules file in force.
    pub fn swap(&self, routes: &[MoRouteConfig]) {
        self.routes.store(Arc::new(table(routes)));
    }

    pub fn stats(&self) -> &InboundStats {
        &self.stats
    }

    /// The client and URL for a message to `to` with `text`: a route for that address whose
    /// keyword is the text's first word, else one without a keyword.
    pub fn route(&self, to: &str, text: Option<&str>) -> Option<(ClientId, &str)> {
        let to = to.strip_prefix('+').unwrap_or(to);
        let first_word = text.and_then(|t| t.split_whitespace().next()).map(str::to_lowercase);
        let routes = self.routes.load();
        let keyed = routes.iter().find(|r| r.to == to && r.keyword.is_some() && r.keyword == first_word);
        let route = keyed.or_else(|| routes.iter().find(|r| r.to == to && r.keyword.is_none()))?;
        let url = self.urls.get(&route.client)?;
        Some((route.client.clone(), url.as_str()))
    }

    /// Counts a kept message (and whether it was routed and complete).
    pub fn count(&self, m: &InboundMessage) {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        if m.client.is_none() {
            self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
        }
        if m.incomplete {
            self.stats.incomplete.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Default for MoRouter {
    fn default() -> Self {
        MoRouter::new(&[], &[], Arc::default())
    }
}

fn table(routes: &[MoRouteConfig]) -> Vec<Route> {
    routes
        .iter()
        .map(|r| Route {
            to: r.address().to_owned(),
            keyword: r.keyword.as_deref().map(str::to_lowercase),
            client: ClientId::new(&r.client),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: u64, seq: Option<(u8, u8)>, octets: &[u8], at: u64) -> MoPart {
        MoPart {
            id: InboundId(id),
            link: LinkId::new("100"),
            from: "4915112345678".into(),
            to: "12345".into(),
            data_coding: 0,
            part_of: seq.map(|(total, seq)| PartOf { reference: 7, total, seq }),
            octets: octets.to_vec(),
            received_at_ms: at,
        }
    }

    #[test]
    fn parts_in_any_order_make_the_message_once() {
        let mut g = MoGroup::default();
        assert!(g.add(part(3, Some((3, 3)), b"!", 30)));
        assert!(g.add(part(1, Some((3, 1)), b"Hel", 31)));
        assert!(!g.add(part(9, Some((3, 1)), b"XXX", 32)), "a resent part changes nothing");
        assert!(!g.is_complete());
        assert!(g.add(part(2, Some((3, 2)), b"lo", 33)));
        assert!(g.is_complete());
        assert_eq!(g.first_at_ms, 30);
        let m = assemble(&g.parts, 40).unwrap();
        assert_eq!(m.text.as_deref(), Some("Hello!"));
        assert_eq!(
            (m.id, m.total_parts, m.parts_received.clone(), m.incomplete),
            (InboundId(1), 3, vec![1, 2, 3], false)
        );
        assert_eq!((m.received_at_ms, m.completed_at_ms), (30, 40));
        assert_eq!(part(1, Some((3, 1)), b"", 0).group_key(), part(2, Some((3, 2)), b"x", 5).group_key());
        assert_ne!(part(1, Some((3, 1)), b"", 0).group_key(), part(1, Some((4, 1)), b"", 0).group_key());
        assert_eq!(part(1, None, b"", 0).group_key(), None);
    }

    #[test]
    fn what_came_is_delivered_incomplete_and_binary_as_hex() {
        let m = assemble(&[part(1, Some((3, 1)), b"Hel", 1), part(3, Some((3, 3)), b"!", 2)], 9).unwrap();
        assert_eq!((m.text.as_deref(), m.incomplete, m.parts_received.clone()), (Some("Hel!"), true, vec![1, 3]));
        let mut bin = part(1, None, &[0xCA, 0xFE], 1);
        bin.data_coding = 0x04;
        let m = assemble(&[bin], 1).unwrap();
        assert_eq!(
            (m.text.as_deref(), m.octets_hex.as_deref(), m.total_parts, m.incomplete),
            (None, Some("cafe"), 1, false)
        );
        let body = payload(&m);
        assert_eq!(body["event"], "inbound");
        assert_eq!(body["event_id"], format!("{}.inbound", m.id));
    }

    #[test]
    fn keyword_routes_beat_plain_ones() {
        let clients: Vec<ClientConfig> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                let url = if *n == "c" { String::new() } else { format!("mo_url = \"http://127.0.0.1:9/{n}\"\n") };
                toml::from_str(&format!("name = \"{n}\"\napi_key = \"k\"\n{url}")).unwrap()
            })
            .collect();
        let routes: Vec<MoRouteConfig> = toml::from_str::<crate::config::Rules>(
            "[[mo_routes]]\nto = \"+12345\"\nclient = \"a\"\n\
             [[mo_routes]]\nto = \"12345\"\nkeyword = \"Stop\"\nclient = \"b\"\n\
             [[mo_routes]]\nto = \"777\"\nclient = \"c\"\n",
        )
        .unwrap()
        .mo_routes;
        let router = MoRouter::new(&clients, &routes, Arc::default());
        let client = |to: &str, text: &str| router.route(to, Some(text)).map(|(c, _)| c.to_string());
        assert_eq!(client("12345", "hello"), Some("a".into()));
        assert_eq!(client("+12345", "STOP please"), Some("b".into()));
        assert_eq!(client("12345", "stopping"), Some("a".into()), "a keyword is a whole word");
        assert_eq!(client("54321", "STOP"), None);
        assert_eq!(client("777", "x"), None, "a client without mo_url gets nothing");
        assert_eq!(router.route("12345", None).map(|(_, u)| u), Some("http://127.0.0.1:9/a"));
        router.swap(&routes[1..2]);
        assert_eq!(client("12345", "hello"), None);
        assert_eq!(client("12345", "stop"), Some("b".into()));
    }
}
