//! Per-request decisions before SMPP: JSON parse and validation
//! (`smsgate::pipeline::parse::parse_submit`), the router (`smsgate::pipeline::route`) and the
//! L1 limiter cell (`smsgate::pipeline::limit::l1`).
//!
//! - `parse_submit/*`: a typical body (link named), and one with `client_ref` and a UCS-2 text.
//! - `route/*`: `resolve` + `select` for a named link, for a pool of three weighted links, and
//!   for `[[routes]]` by longest destination prefix among 200; `route/wrr_pick`: the smooth
//!   weighted round robin alone.
//! - `l1/*`: one GCRA decision of a conforming request (probe + commit), and of a refused one.
//!
//! The links have no sessions here, so a pool finds no member with a free window: the pool case
//! measures resolve plus a failed select (every member examined), the most work `select` does.
//!
//! Run: `cargo bench --bench request`.

use criterion::{criterion_group, criterion_main, Criterion};
use smsgate::config::Rules;
use smsgate::ids::{ClientId, LinkId, Msisdn};
use smsgate::pipeline::limit::l1::{Gcra, GcraTable, Rate};
use smsgate::pipeline::parse::{parse_submit, Target};
use smsgate::pipeline::route::pool::SmoothWrr;
use smsgate::pipeline::route::Router;
use smsgate::smpp::link::{LinkSettings, LinkTable};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_submit");
    let plain = br#"{"to":"+4915112345678","from":"ACME","text":"Your code is 482913. Valid 10 minutes","link":"100"}"#;
    let rich = r#"{"to":"+4915112345678","from":"+4930123456","text":"Ваш код 482913. Действителен 10 минут","pool":"de","client_ref":"order-2026-11-23-000123"}"#;
    g.bench_function("link_gsm7", |b| b.iter(|| parse_submit(black_box(plain)).expect("valid")));
    g.bench_function("pool_ucs2_client_ref", |b| b.iter(|| parse_submit(black_box(rich.as_bytes())).expect("valid")));
    g.finish();
}

fn rules() -> Rules {
    let mut toml = String::new();
    for l in ["100", "200", "300"] {
        let _ = write!(
            toml,
            "[links.\"{l}\"]\nhost = \"127.0.0.1\"\nport = 2775\nsystem_id = \"s\"\npassword = \"p\"\nesme_rate = 1000\n\n"
        );
    }
    toml.push_str("[pools.de]\nmembers = [{ link = \"100\", weight = 3 }, { link = \"200\", weight = 2 }, { link = \"300\" }]\n\n");
    for i in 0..200 {
        let _ = write!(toml, "[[routes]]\nprefix = \"{}\"\nlink = \"{}\"\n\n", 4900 + i, ["100", "200", "300"][i % 3]);
    }
    toml.push_str("[[routes]]\nprefix = \"49151\"\npool = \"de\"\n");
    toml::from_str(&toml).expect("benchmark rules parse")
}

fn route(c: &mut Criterion) {
    let rules = rules();
    let links = Arc::new(LinkTable::new(
        rules.links.keys().map(|l| (LinkId::new(l), LinkSettings::default(), Vec::new())),
        2,
        None,
    ));
    let router = Router::new(links, &rules);
    let to = Msisdn::parse_e164("+4915112345678").expect("valid number");
    let client = ClientId::new("demo");
    let mut g = c.benchmark_group("route");
    for (name, target) in [
        ("link", Target::Link(LinkId::new("100"))),
        ("pool", Target::Pool("de".into())),
        ("prefix_routes", Target::Routes),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let resolved = router.resolve(black_box(&target), &to, "ACME", &client);
                resolved.map(|r| router.select(r))
            })
        });
    }
    let mut wrr = SmoothWrr::new([3, 2, 1]);
    g.bench_function("wrr_pick", |b| b.iter(|| wrr.pick(|i| black_box(i) < 3)));
    g.finish();
}

fn l1(c: &mut Criterion) {
    let mut g = c.benchmark_group("l1");
    let origin = Instant::now();
    let mut table = GcraTable::new(origin);
    // Fast enough that every request conforms, and a cell that is always empty.
    let open = table.add(Rate::new(1e9, 1_000));
    let mut closed = Gcra::new(Rate::new(1.0, 1));
    closed.check(1, 0).expect("first request conforms");
    let mut now = origin;
    g.bench_function("conforming", |b| {
        b.iter(|| {
            now += Duration::from_nanos(10);
            let ok = table.probe(open, 1, now).expect("conforms");
            table.commit(open, ok);
        })
    });
    g.bench_function("refused", |b| b.iter(|| black_box(closed.check(1, black_box(1_000)))));
    g.finish();
}

criterion_group!(benches, parse, route, l1);
criterion_main!(benches);
