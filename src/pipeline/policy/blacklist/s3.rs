//! Blacklist objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto): a `HEAD` per
//! object and tick tells whether its ETag changed, a streamed `GET` reads it. Requests are signed
//! with AWS Signature Version 4 (`AWS4-HMAC-SHA256`, header form); without credentials they go
//! unsigned (public buckets). Runs on the blacklist's side thread only: blocking is its job.

use super::super::config::S3Source;
use crate::digest::{hex, hmac_sha256};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SHA-256 of an empty payload: every request here (HEAD, GET) has none.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Credentials of one source, resolved at start-up from the config or the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN` (temporary credentials), sent as `x-amz-security-token`.
    pub session_token: Option<String>,
}

/// One object, ready to be requested.
#[derive(Clone, Debug)]
pub struct S3Object {
    /// `http://127.0.0.1:9000/bucket/key` (path style) or `https://bucket.host/key`.
    url: String,
    /// The `Host` header exactly as the HTTP client sends it (signed).
    host: String,
    /// The URI-encoded path (signed).
    path: String,
    region: String,
    credentials: Option<Credentials>,
    /// For logs: `s3://bucket/key`.
    pub name: String,
}

/// What a `HEAD` or `GET` failed with, as an operator reads it in the log.
pub type S3Error = String;

impl S3Object {
    /// `credentials` resolved by the caller (config first, then `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`).
    pub fn new(source: &S3Source, credentials: Option<Credentials>) -> Result<Self, String> {
        let (scheme, rest) = source
            .endpoint
            .split_once("://")
            .filter(|(s, _)| *s == "http" || *s == "https")
            .ok_or_else(|| format!("endpoint `{}` must start with http:// or https://", source.endpoint))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(format!("endpoint `{}` must be scheme://host[:port] without a path", source.endpoint));
        }
        // The Host header leaves out the scheme's default port; signing must match it.
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let authority = authority.strip_suffix(default_port).unwrap_or(authority);
        let key_path: String = source.key.split('/').map(uri_encode).collect::<Vec<_>>().join("/");
        let (host, path) = if source.path_style {
            (authority.to_owned(), format!("/{}/{key_path}", uri_encode(&source.bucket)))
        } else {
            (format!("{}.{authority}", source.bucket), format!("/{key_path}"))
        };
        Ok(S3Object {
            url: format!("{scheme}://{host}{path}"),
            host,
            path,
            region: source.region.clone(),
            credentials,
            name: format!("s3://{}/{}", source.bucket, source.key),
        })
    }

    /// The object's ETag now (`HEAD`).
    pub fn etag(&self, agent: &ureq::Agent) -> Result<String, S3Error> {
        let mut resp = self.request(agent, "HEAD")?;
        etag_of(&mut resp, &self.name)
    }

    /// Streams the object: `read` gets its body; the ETag it had comes back with `read`'s
    /// result.
    pub fn get<T>(
        &self,
        agent: &ureq::Agent,
        read: impl FnOnce(&mut dyn Read) -> Result<T, String>,
    ) -> Result<(String, T), S3Error> {
        let mut resp = self.request(agent, "GET")?;
        let etag = etag_of(&mut resp, &self.name)?;
        // No size limit: a list of 10 million numbers is ~150 MB, streamed line by line.
        let mut body = resp.into_body().into_with_config().limit(u64::MAX).reader();
        let value = read(&mut body).map_err(|e| format!("{}: {e}", self.name))?;
        Ok((etag, value))
    }

    fn request(&self, agent: &ureq::Agent, method: &str) -> Result<ureq::http::Response<ureq::Body>, S3Error> {
        let amz_date = amz_date(SystemTime::now());
        let mut headers = vec![("x-amz-content-sha256", EMPTY_SHA256.to_owned()), ("x-amz-date", amz_date.clone())];
        if let Some(c) = &self.credentials {
            if let Some(token) = &c.session_token {
                headers.push(("x-amz-security-token", token.clone()));
            }
            let auth = authorization(method, &self.host, &self.path, &headers, &amz_date, &self.region, c);
            headers.push(("authorization", auth));
        }
        let mut req = match method {
            "HEAD" => agent.head(&self.url),
            _ => agent.get(&self.url),
        };
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let mut resp = req.call().map_err(|e| format!("{method} {}: {e}", self.name))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            // S3 explains itself in an XML body (`<Code>NoSuchKey</Code>`); a HEAD has none.
            let text = if method == "GET" {
                resp.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default()
            } else {
                String::new()
            };
            let code = xml_field(&text, "Code").unwrap_or("");
            return Err(format!("{method} {}: HTTP {status} {code}", self.name).trim_end().to_owned());
        }
        Ok(resp)
    }
}

fn etag_of(resp: &mut ureq::http::Response<ureq::Body>, name: &str) -> Result<String, S3Error> {
    resp.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_owned())
        .ok_or_else(|| format!("{name}: the answer has no ETag"))
}

fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

/// RFC 3986 percent-encoding of everything but unreserved characters, as SigV4 wants for
/// each path segment (S3 paths are encoded once).
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> [u8; 32] {
    hmac_sha256(key, &[data.as_bytes()])
}

/// `20130524T000000Z` of `t`, UTC.
fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let ts = jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(0)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// The `Authorization` header of a request without a query string or payload. `headers`:
/// lowercase names; with `host` they are all signed.
fn authorization(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
    amz_date: &str,
    region: &str,
    c: &Credentials,
) -> String {
    let mut signed: Vec<(&str, &str)> = vec![("host", host)];
    signed.extend(headers.iter().map(|(k, v)| (*k, v.trim())));
    signed.sort_by(|a, b| a.0.cmp(b.0));
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_names = signed.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    let canonical = format!("{method}\n{path}\n\n{canonical_headers}\n{signed_names}\n{EMPTY_SHA256}");
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let k_date = hmac(format!("AWS4{}", c.secret_access_key).as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, "s3");
    let k_signing = hmac(&k_service, "aws4_request");
    let signature = hex(&hmac(&k_signing, &to_sign));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
        c.access_key_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of AWS's SigV4 documentation for S3 ("GET Object", header-based
    /// authentication, single chunk): a signature computed by AWS, not by this code.
    #[test]
    fn aws_documented_get_object_signature() {
        let c = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let headers = vec![
            ("range", "bytes=0-9".to_owned()),
            ("x-amz-content-sha256", EMPTY_SHA256.to_owned()),
            ("x-amz-date", "20130524T000000Z".to_owned()),
        ];
        let auth = authorization(
            "GET",
            "examplebucket.s3.amazonaws.com",
            "/test.txt",
            &headers,
            "20130524T000000Z",
            "us-east-1",
            &c,
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    fn source(endpoint: &str, path_style: bool) -> S3Source {
        S3Source {
            endpoint: endpoint.into(),
            bucket: "lists".into(),
            key: "opt out/de.txt".into(),
            region: "eu-central-1".into(),
            path_style,
            access_key_id: None,
            secret_access_key: None,
        }
    }

    #[test]
    fn urls_hosts_and_paths() {
        let o = S3Object::new(&source("http://127.0.0.1:9000", true), None).unwrap();
        assert_eq!(o.url, "http://127.0.0.1:9000/lists/opt%20out/de.txt");
        assert_eq!((o.host.as_str(), o.path.as_str()), ("127.0.0.1:9000", "/lists/opt%20out/de.txt"));
        let o = S3Object::new(&source("https://s3.eu-central-1.amazonaws.com:443/", false), None).unwrap();
        assert_eq!(o.url, "https://lists.s3.eu-central-1.amazonaws.com/opt%20out/de.txt");
        assert_eq!(o.name, "s3://lists/opt out/de.txt");
        assert!(S3Object::new(&source("ftp://x", true), None).is_err());
        assert!(S3Object::new(&source("http://x/path", true), None).is_err());
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(1_369_353_600)), "20130524T000000Z");
        assert_eq!(xml_field("<Error><Code>NoSuchKey</Code></Error>", "Code"), Some("NoSuchKey"));
    }
}
