//! Stage 6: route. The link the client named (direct), a pool the client named (smooth
//! weighted round robin over its healthy members), or the `[[routes]]` of smpp_rules.toml
//! by destination prefix (then sender and client). A message is routed once; the decision is
//! kept in its record.

pub mod pool;
pub mod prefix;

use super::parse::Target;
use crate::config::Rules;
use crate::ids::{ClientId, LinkId, Msisdn};
use crate::smpp::link::LinkTable;
use pool::SmoothWrr;
use prefix::{PrefixRoutes, RouteTarget};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    UnknownLink(LinkId),
    UnknownPool(String),
    /// The request named no target and no `[[routes]]` entry matches.
    NoRoute,
    /// Every member of the pool is down or has all its windows full.
    PoolUnavailable(String),
}

/// Where a message goes and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    pub link: LinkId,
    /// For the record: `link:100`, `pool:eu`, `prefix:49 pool:eu`, ...
    pub via: String,
}

struct Pool {
    members: Vec<LinkId>,
    /// Shard-local selection state: each shard runs its own round robin.
    wrr: RefCell<SmoothWrr>,
}

/// The rules in force on one shard. A reload swaps the router (and with it the link table);
/// a request takes the router once at its start and keeps it to the end.
pub struct Live {
    router: RefCell<Rc<Router>>,
}

impl Live {
    pub fn new(router: Router) -> Rc<Live> {
        Rc::new(Live { router: RefCell::new(Rc::new(router)) })
    }

    pub fn router(&self) -> Rc<Router> {
        self.router.borrow().clone()
    }

    pub fn links(&self) -> Arc<LinkTable> {
        self.router.borrow().links.clone()
    }

    pub fn swap(&self, router: Router) {
        *self.router.borrow_mut() = Rc::new(router);
    }
}

/// One shard's router, built from the rules in force.
pub struct Router {
    links: Arc<LinkTable>,
    pools: HashMap<String, Pool>,
    routes: PrefixRoutes,
}

impl Router {
    pub fn new(links: Arc<LinkTable>, rules: &Rules) -> Self {
        let pools = rules
            .pools
            .iter()
            .map(|(name, p)| {
                let pool = Pool {
                    members: p.members.iter().map(|m| LinkId::new(&m.link)).collect(),
                    wrr: RefCell::new(SmoothWrr::new(p.members.iter().map(|m| m.weight))),
                };
                (name.clone(), pool)
            })
            .collect();
        Router { links, pools, routes: PrefixRoutes::new(&rules.routes) }
    }

    pub fn links(&self) -> &LinkTable {
        &self.links
    }

    pub fn links_arc(&self) -> &Arc<LinkTable> {
        &self.links
    }

    /// Each pool's members, for dashboards.
    pub fn pools(&self) -> impl Iterator<Item = (&str, &[LinkId])> {
        self.pools.iter().map(|(n, p)| (n.as_str(), p.members.as_slice()))
    }

    /// Stage 6a: which link or pool the message goes to (no member picked yet), so the rate
    /// limits can be checked on that target before a member is chosen.
    pub fn resolve(&self, target: &Target, to: &Msisdn, from: &str, client: &ClientId) -> Result<Resolved, RouteError> {
        let (dest, via) = match target {
            Target::Link(link) => (Dest::Link(link.clone()), format!("link:{link}")),
            Target::Pool(pool) => (Dest::Pool(pool.clone()), format!("pool:{pool}")),
            Target::Routes => match self.routes.find(to.digits(), from, client.as_str()) {
                None => return Err(RouteError::NoRoute),
                Some((prefix, RouteTarget::Link(l))) => {
                    (Dest::Link(LinkId::new(l)), format!("prefix:{prefix} link:{l}"))
                }
                Some((prefix, RouteTarget::Pool(p))) => (Dest::Pool(p.clone()), format!("prefix:{prefix} pool:{p}")),
            },
        };
        match &dest {
            Dest::Link(l) if !self.links.contains(l) => Err(RouteError::UnknownLink(l.clone())),
            Dest::Pool(p) if !self.pools.contains_key(p) => Err(RouteError::UnknownPool(p.clone())),
            _ => Ok(Resolved { dest, via }),
        }
    }

    /// Stage 6b: the link. A pool picks by smooth weighted round robin among members that are
    /// up and have a free window slot.
    pub fn select(&self, resolved: Resolved) -> Result<Routed, RouteError> {
        let Resolved { dest, via } = resolved;
        match dest {
            Dest::Link(link) => Ok(Routed { link, via }),
            Dest::Pool(name) => {
                let pool = self.pools.get(&name).ok_or_else(|| RouteError::UnknownPool(name.clone()))?;
                let usable = |i: usize| self.links.get(&pool.members[i]).is_some_and(|e| e.has_capacity());
                let chosen = pool.wrr.borrow_mut().pick(usable).ok_or(RouteError::PoolUnavailable(name))?;
                let link = pool.members[chosen].clone();
                Ok(Routed { via: format!("{via} link:{link}"), link })
            }
        }
    }
}

/// A link or a pool, before a pool member is picked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    Link(LinkId),
    Pool(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub dest: Dest,
    via: String,
}
