//! The policy stage without Redis, on injected time.

use super::*;
use crate::pipeline::parse::{parse_submit, SubmitRequest};
use futures_lite::future::block_on;

fn client(name: &str, extra: &str) -> ClientConfig {
    toml::from_str(&format!("name = \"{name}\"\napi_key = \"0123456789abcdef\"\n{extra}")).unwrap()
}

fn policy(config: &str, clients: &[ClientConfig], blacklist: &str) -> Policy {
    let config: PolicyConfig = toml::from_str(config).unwrap();
    let b = blacklist::Blacklist::from_text(blacklist).unwrap();
    let shared = Arc::new(arc_swap::ArcSwap::from_pointee(b));
    let node = PolicyNode::new(&config, clients, &RedisConfig::default(), shared).unwrap();
    Policy::new(Arc::new(node)).unwrap()
}

fn req(from: &str, to: &str, text: &str) -> SubmitRequest {
    let body = serde_json::json!({"to": to, "from": from, "text": text, "link": "100"});
    parse_submit(body.to_string().as_bytes()).unwrap()
}

/// Wall time of the CP1 calendar; unused without Redis.
const NOW_MS: u64 = 1_796_428_800_000;

fn status(r: Result<Admitted, PolicyRejection>) -> Option<&'static str> {
    r.err().map(|e| e.status.as_str())
}

#[test]
fn registered_senders_only() {
    let clients = [client("acme", "senders = [\"ACME\", \"+4912345\"]"), client("other", "")];
    let p = policy("", &clients, "");
    let (acme, other, now) = (ClientId::new("acme"), ClientId::new("other"), Instant::now());
    for from in ["ACME", "+4912345"] {
        assert_eq!(status(block_on(p.check(&acme, &req(from, "+4915112345678", "hi"), now, NOW_MS))), None, "{from}");
    }
    for from in ["EVIL", "4912345", "acme", "+4912346"] {
        assert_eq!(
            status(block_on(p.check(&acme, &req(from, "+4915112345678", "hi"), now, NOW_MS))),
            Some("unregistered_sender"),
            "{from}"
        );
    }
    assert_eq!(status(block_on(p.check(&other, &req("EVIL", "+4915112345678", "hi"), now, NOW_MS))), None);
}

#[test]
fn blacklisted_numbers_are_refused_unless_switched_off() {
    let clients = [client("acme", ""), client("other", "[policy]\nblacklist = false")];
    let p = policy("", &clients, "+4915100000001\n");
    let now = Instant::now();
    let r = block_on(p.check(&ClientId::new("acme"), &req("ACME", "+4915100000001", "hi"), now, NOW_MS));
    assert_eq!(status(r), Some("blacklist"));
    let r = block_on(p.check(&ClientId::new("acme"), &req("ACME", "+4915100000002", "hi"), now, NOW_MS));
    assert_eq!(status(r), None);
    let r = block_on(p.check(&ClientId::new("other"), &req("ACME", "+4915100000001", "hi"), now, NOW_MS));
    assert_eq!(status(r), None);
}

#[test]
fn duplicates_within_the_window_on_this_shard() {
    let clients = [client("acme", ""), client("other", "[policy]\nduplicate = false")];
    let p = policy("duplicate_window_s = 60", &clients, "");
    let (acme, t0) = (ClientId::new("acme"), Instant::now());
    let m = req("ACME", "+4915112345678", "code 1234");
    assert_eq!(status(block_on(p.check(&acme, &m, t0, NOW_MS))), None);
    assert_eq!(status(block_on(p.check(&acme, &m, t0 + Duration::from_secs(30), NOW_MS))), Some("duplicate"));
    // Another text, another number: not duplicates.
    assert_eq!(status(block_on(p.check(&acme, &req("ACME", "+4915112345678", "code 9999"), t0, NOW_MS))), None);
    assert_eq!(status(block_on(p.check(&acme, &req("ACME", "+4915112345679", "code 1234"), t0, NOW_MS))), None);
    assert_eq!(status(block_on(p.check(&acme, &m, t0 + Duration::from_secs(61), NOW_MS))), None);
    let other = ClientId::new("other");
    assert_eq!(status(block_on(p.check(&other, &m, t0 + Duration::from_secs(62), NOW_MS))), None);
}

#[test]
fn a_released_message_is_no_duplicate() {
    let p = policy("duplicate_window_s = 60", &[client("acme", "")], "");
    let (acme, t0) = (ClientId::new("acme"), Instant::now());
    let m = req("ACME", "+4915112345678", "code 1234");
    let admitted = block_on(p.check(&acme, &m, t0, NOW_MS)).unwrap();
    block_on(p.release(admitted));
    let again = block_on(p.check(&acme, &m, t0 + Duration::from_secs(1), NOW_MS));
    assert!(again.is_ok());
    assert_eq!(status(block_on(p.check(&acme, &m, t0 + Duration::from_secs(2), NOW_MS))), Some("duplicate"));
}

#[test]
fn caps_without_redis_are_off() {
    let p = policy("daily_cap = 1\nweekly_cap = 1", &[client("acme", "")], "");
    let (acme, now) = (ClientId::new("acme"), Instant::now());
    for _ in 0..3 {
        assert_eq!(status(block_on(p.check(&acme, &req("ACME", "+4915112345678", "hi"), now, NOW_MS))), None);
    }
}

#[test]
fn answers_403_and_failed_precondition_with_the_status() {
    use crate::ingress::reply::{grpc_status, ErrorReply, GrpcCode};
    use crate::pipeline::Rejection;
    for status in [
        PolicyStatus::UnregisteredSender,
        PolicyStatus::Blacklist,
        PolicyStatus::Duplicate,
        PolicyStatus::DailyCp,
        PolicyStatus::WeeklyCp,
        PolicyStatus::NotInCampaign,
        PolicyStatus::AlreadySent,
    ] {
        let http = ErrorReply::from(Rejection::Policy(PolicyRejection::new(status)));
        assert_eq!(http.status.as_u16(), 403);
        assert_eq!(http.code, status.as_str());
        assert_eq!(http.retry_after_s, None);
        let grpc = grpc_status(Rejection::Policy(PolicyRejection::new(status)));
        assert_eq!(grpc.code, GrpcCode::FailedPrecondition);
        assert_eq!(grpc.reply.code, status.as_str());
        let (_, label) = crate::observe::events::classify(&Rejection::Policy(PolicyRejection::new(status)));
        let label = label.unwrap();
        assert_eq!((label.layer, label.reason.to_string()), ("policy", status.as_str().to_owned()));
    }
}

#[test]
fn config_keys_are_validated_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "").unwrap();
    let load = |extra: &str, client_extra: &str| {
        let f = dir.path().join("smsgate.toml");
        let text = format!(
            "[smpp]\nrules_file = \"{}\"\n{extra}\n[[clients]]\nname = \"acme\"\napi_key = \"0123456789abcdef\"\n{client_extra}\n",
            rules.display()
        );
        std::fs::write(&f, text).unwrap();
        crate::config::load(&f)
    };
    let ok = load("[policy]\nduplicate_window_s = 60\ndaily_cap = 3\n", "senders = [\"ACME\", \"+4912345\"]").unwrap();
    assert_eq!(ok.config.policy.daily_cap, Some(3));
    assert_eq!(ok.config.clients[0].senders, ["ACME", "+4912345"]);
    assert!(ok.config.clients[0].policy.caps);
    assert_eq!(load("[policy]\nweekly_cap = 0\n", "").unwrap_err().key, "policy.weekly_cap");
    assert_eq!(load("", "senders = [\"far too long a name\"]").unwrap_err().key, "clients[0].senders");
    assert_eq!(load("[policy]\nblacklist = 1\n", "").unwrap_err().key, "policy.blacklist");
    let e = load("", "[clients.policy]\ndaily_cap = 0").unwrap_err();
    assert_eq!(e.key, "clients[0].policy.daily_cap");
    let e = load("[policy]\ntime_zone = \"Europe/Nowhere\"\n", "").unwrap_err();
    assert_eq!(e.key, "policy.time_zone");
    let e = load("", "[clients.policy]\ncap = false").unwrap_err();
    assert!(e.key.contains("cap"), "{e}");
}
