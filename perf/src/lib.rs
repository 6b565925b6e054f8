//! perf: the tools that measure smsgate. The binaries are `smsc-sim` (an SMSC simulator),
//! `loadgen` (the HTTP load generator) and `bare-server` (the machine's HTTP ceiling).
//!
//! Layout, in the order a load test uses it:
//! - [`http1`]: a minimal HTTP/1.1 keep-alive client, much cheaper per request than the
//!   servers it measures, so that the load generator is never the bottleneck.
//! - [`report`]: latency histograms turned into what a person reads: a percentile table, an
//!   `.hgrm` percentile distribution file (HdrHistogram's format, read back for plots) and an
//!   SVG plot of latency by percentile.
pub mod http1;
pub mod report;
