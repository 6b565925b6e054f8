//! The dashboard page, `GET /dashboard`: the files `scripts/build-dashboard.sh` builds from
//! `dashboard/` with Vite, embedded in the binary (no network at run time, no CDN).
//!
//! The page signs in with an API key (`GET /api/v1/dashboard/whoami`), then reads the JSON
//! endpoints of this module's siblings, the history endpoints, and the live feed of refusals
//! (`GET /api/v1/dashboard/refusals`, Server-Sent Events).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

const INDEX: &str = include_str!("../../dashboard/dist/index.html");
const APP_JS: &str = include_str!("../../dashboard/dist/assets/app.js");
const APP_CSS: &str = include_str!("../../dashboard/dist/assets/app.css");

/// The page's only scripts and styles are its own; nothing else may load.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:";

/// The file at `/dashboard/<path>` (`""` is the page), or None.
pub fn asset(path: &[&str]) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match path {
        [] | [""] | ["index.html"] => (INDEX, "text/html; charset=utf-8"),
        ["assets", "app.js"] => (APP_JS, "text/javascript; charset=utf-8"),
        ["assets", "app.css"] => (APP_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_embedded() {
        assert!(INDEX.contains("/dashboard/assets/app.js"), "built with base /dashboard/");
        assert!(asset(&[]).is_some());
        assert!(asset(&["assets", "app.css"]).is_some());
        assert!(asset(&["assets", "other.js"]).is_none());
    }
}
