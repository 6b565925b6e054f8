//! Destination-prefix routes: the longest matching prefix wins; among routes with the same
//! prefix, one that names the client and the sender beats one that names one of them, which
//! beats one that names neither. An empty prefix is the default route.

use crate::config::RouteConfig;

/// Where a matching route sends the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    Link(String),
    Pool(String),
}

#[derive(Clone, Debug)]
struct Entry {
    prefix: String,
    sender: Option<String>,
    client: Option<String>,
    target: RouteTarget,
}

impl Entry {
    fn specificity(&self) -> (usize, u8) {
        (self.prefix.len(), u8::from(self.client.is_some()) * 2 + u8::from(self.sender.is_some()))
    }
}

#[derive(Clone, Debug, Default)]
pub struct PrefixRoutes {
    /// Most specific first, so the first match is the answer.
    entries: Vec<Entry>,
}

impl PrefixRoutes {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut entries: Vec<Entry> = routes
            .iter()
            .filter_map(|r| {
                let target = match (&r.link, &r.pool) {
                    (Some(l), _) => RouteTarget::Link(l.clone()),
                    (None, Some(p)) => RouteTarget::Pool(p.clone()),
                    (None, None) => return None,
                };
                Some(Entry { prefix: r.prefix.clone(), sender: r.sender.clone(), client: r.client.clone(), target })
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.specificity()));
        PrefixRoutes { entries }
    }

    /// The route for a destination (E.164 digits without `+`), sender and client; with the
    /// matched prefix for the record.
    pub fn find(&self, to: &str, sender: &str, client: &str) -> Option<(&str, &RouteTarget)> {
        self.entries
            .iter()
            .find(|e| {
                to.starts_with(&e.prefix)
                    && e.sender.as_deref().is_none_or(|s| s == sender)
                    && e.client.as_deref().is_none_or(|c| c == client)
            })
            .map(|e| (e.prefix.as_str(), &e.target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, sender: Option<&str>, client: Option<&str>, link: &str) -> RouteConfig {
        RouteConfig {
            prefix: prefix.into(),
            sender: sender.map(Into::into),
            client: client.map(Into::into),
            link: Some(link.into()),
            pool: None,
        }
    }

    #[test]
    fn longest_prefix_wins_then_the_most_specific() {
        let routes = PrefixRoutes::new(&[
            route("", None, None, "default"),
            route("49", None, None, "de"),
            route("49151", None, None, "de-telekom"),
            route("49151", Some("BANK"), None, "de-telekom-bank"),
            route("49151", Some("BANK"), Some("acme"), "de-telekom-bank-acme"),
            route("44", None, Some("acme"), "uk-acme"),
        ]);
        let link = |to, from, client| match routes.find(to, from, client) {
            Some((_, RouteTarget::Link(l))) => l.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(link("4915112345678", "X", "c"), "de-telekom");
        assert_eq!(link("4917012345678", "X", "c"), "de");
        assert_eq!(link("4915112345678", "BANK", "c"), "de-telekom-bank");
        assert_eq!(link("4915112345678", "BANK", "acme"), "de-telekom-bank-acme");
        assert_eq!(link("447700900000", "X", "acme"), "uk-acme");
        assert_eq!(link("447700900000", "X", "other"), "default");
        assert_eq!(link("3312345678", "X", "c"), "default");
        assert_eq!(routes.find("3312345678", "X", "c").map(|(p, _)| p), Some(""));
    }

    #[test]
    fn no_default_route_means_no_match() {
        let routes = PrefixRoutes::new(&[route("49", None, None, "de")]);
        assert!(routes.find("3312345678", "X", "c").is_none());
    }
}
