//! The cost metrics add to the hot path (issue 7): what one submit and one SMSC answer record,
//! through the same calls the pipeline and the session make.
//!
//! - `answer`: one API answer (outcome counter, per-second bucket, latency histogram), i.e.
//!   `observe::events::finished` without building a `Submitted`.
//! - `smsc_answer`: one submit_sm_resp (command_status tally, per-link bucket, histogram).
//! - `rejection`: one refusal with its (layer, reason) label.
//! - `instant_now`: the clock read each of the above includes (the real paths read it too).
//! - `collect`: a reader merging one shard (what a scrape pays per shard).
//!
//! Run: `cargo bench --bench metrics`.

use criterion::{criterion_group, criterion_main, Criterion};
use smsgate::ids::LinkId;
use smsgate::observe::metrics::{self, Outcome, Reason, RejectLabel};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn record(c: &mut Criterion) {
    let link = LinkId::new("100");
    let started = Instant::now();
    c.bench_function("answer", |b| {
        b.iter(|| {
            let now = Instant::now();
            metrics::with(|m| {
                m.answer(Outcome::Accepted, None, Some(now.saturating_duration_since(black_box(started))), now)
            })
        })
    });
    c.bench_function("smsc_answer", |b| {
        b.iter(|| {
            let now = Instant::now();
            metrics::with(|m| m.smsc_answer(black_box(&link), 0, Duration::from_micros(350), now))
        })
    });
    let label = RejectLabel { layer: "parse", reason: Reason::Named("invalid_to") };
    c.bench_function("rejection", |b| {
        b.iter(|| metrics::with(|m| m.answer(Outcome::Rejected, Some(black_box(label.clone())), None, Instant::now())))
    });
    // The clock read every recording path above includes, for scale.
    c.bench_function("instant_now", |b| b.iter(Instant::now));
    c.bench_function("collect", |b| b.iter(|| black_box(metrics::collect().totals.outcomes)));
}

criterion_group!(benches, record);
criterion_main!(benches);
