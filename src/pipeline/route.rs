//! Stage 6: route. Today: the link the client named (direct routing). Pools and prefix routes
//! come with issue 4 and plug in here.

use super::parse::Target;
use crate::ids::LinkId;
use crate::smpp::link::LinkTable;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    UnknownLink(LinkId),
    UnknownPool(String),
}

pub struct Router {
    links: Arc<LinkTable>,
}

impl Router {
    pub fn new(links: Arc<LinkTable>) -> Self {
        Router { links }
    }

    pub fn links(&self) -> &LinkTable {
        &self.links
    }

    pub fn route(&self, target: &Target) -> Result<LinkId, RouteError> {
        match target {
            Target::Link(link) if self.links.contains(link) => Ok(link.clone()),
            Target::Link(link) => Err(RouteError::UnknownLink(link.clone())),
            Target::Pool(pool) => Err(RouteError::UnknownPool(pool.clone())),
        }
    }
}
