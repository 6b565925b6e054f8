//! Typed identifiers: a message, an inbound message, a client, a link, a phone number, an SMSC's
//! message id.
//! Nothing on the path from ingress to SMPP passes these around as bare strings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl $name {
            pub fn parse(s: &str) -> Option<Self> {
                if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                u64::from_str_radix(s, 16).ok().map($name)
            }

            pub fn to_bytes(self) -> [u8; 8] {
                self.0.to_be_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:016x}", self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| serde::de::Error::custom("an id must be 16 hex digits"))
            }
        }
    };
}

hex_id!(
    /// smsgate's id for one accepted message, unique across shards, nodes and restarts.
    ///
    /// Layout of the 64 bits, high to low: 41 bits of milliseconds since 2024-01-01 UTC
    /// (good until 2093), 7 bits of node id, 6 bits of shard id, 10 bits of sequence within the
    /// millisecond (1,024 ids per ms per shard; the generator borrows the next millisecond when
    /// a burst exhausts them). Rendered as 16 lower-case hex digits.
    MessageId
);

hex_id!(
    /// smsgate's id for one inbound message (MO), drawn from the same per-shard
    /// [`IdGenerator`] as [`MessageId`]s, so the two never share a number (the webhook
    /// outbox orders events by it). Rendered as 16 lower-case hex digits.
    InboundId
);

impl MessageId {
    /// Milliseconds between the Unix epoch and 2024-01-01T00:00:00Z.
    pub const EPOCH_MS: u64 = 1_704_067_200_000;
}

/// A campaign (CP1 on-build, `POST /api/v1/campaigns`): an id from the same generator as
/// messages, so unique the same way; 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CampaignId(pub MessageId);

impl CampaignId {
    pub fn parse(s: &str) -> Option<Self> {
        MessageId::parse(s).map(CampaignId)
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for CampaignId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Generates [`MessageId`]s for one shard. Shard-local: no atomics, no locks.
#[derive(Debug)]
pub struct IdGenerator {
    /// `node << 6 | shard`, already shifted into place.
    origin: u64,
    /// Last millisecond used (since [`MessageId::EPOCH_MS`]) and the next sequence in it.
    last_ms: u64,
    seq: u64,
}

impl IdGenerator {
    const SEQ_BITS: u32 = 10;
    const SHARD_BITS: u32 = 6;
    const NODE_BITS: u32 = 7;

    pub fn new(node: u8, shard: usize) -> Self {
        let node = u64::from(node) & ((1 << Self::NODE_BITS) - 1);
        let shard = (shard as u64) & ((1 << Self::SHARD_BITS) - 1);
        IdGenerator { origin: ((node << Self::SHARD_BITS) | shard) << Self::SEQ_BITS, last_ms: 0, seq: 0 }
    }

    /// Next id; `now_unix_ms` is injected so tests drive the clock.
    pub fn next(&mut self, now_unix_ms: u64) -> MessageId {
        let now = now_unix_ms.saturating_sub(MessageId::EPOCH_MS);
        if now > self.last_ms {
            self.last_ms = now;
            self.seq = 0;
        } else if self.seq >= (1 << Self::SEQ_BITS) {
            // Burst exhausted this millisecond: borrow the next one, ids stay unique and ordered.
            self.last_ms += 1;
            self.seq = 0;
        }
        let id = (self.last_ms << (Self::SEQ_BITS + Self::SHARD_BITS + Self::NODE_BITS)) | self.origin | self.seq;
        self.seq += 1;
        MessageId(id)
    }
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Arc<str>);

        // By hand, as a plain string: deriving needs serde's `rc` feature for `Arc<str>`.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name(Arc::from(s.as_ref())))
            }
        }

        impl $name {
            pub fn new(s: &str) -> Self {
                $name(Arc::from(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_id!(
    /// An SMPP link's name, the key of `[links.NAME]` in `smpp_rules.toml`.
    LinkId
);
name_id!(
    /// A client's name, from `[[clients]]` in `config/smsgate.toml`.
    ClientId
);
name_id!(
    /// The message id an SMSC gave in submit_sm_resp (or names in a receipt), as received.
    SmscMessageId
);

/// A destination or source phone number in E.164 form, kept without the `+`, shown with it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Msisdn(pub String);

impl Serialize for Msisdn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Msisdn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Msisdn::parse_e164(&s).ok_or_else(|| serde::de::Error::custom("not an E.164 number"))
    }
}

impl Msisdn {
    /// Accepts `+` followed by 8 to 15 digits, the first not 0 (E.164).
    pub fn parse_e164(s: &str) -> Option<Self> {
        let digits = s.strip_prefix('+')?;
        let ok =
            (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        ok.then(|| Msisdn(digits.to_owned()))
    }

    /// The digits without `+`, as SMPP carries them with TON international.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered_through_a_burst() {
        let mut g = IdGenerator::new(3, 1);
        let now = MessageId::EPOCH_MS + 1_000;
        let ids: Vec<_> = (0..5_000).map(|_| g.next(now)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let later = g.next(now + 1);
        assert!(later > ids[4_999]);
    }

    #[test]
    fn ids_differ_between_shards_in_the_same_ms() {
        let now = MessageId::EPOCH_MS + 7;
        let a = IdGenerator::new(0, 0).next(now);
        let b = IdGenerator::new(0, 1).next(now);
        assert_ne!(a, b);
    }

    #[test]
    fn message_id_round_trips_through_text() {
        let id = IdGenerator::new(1, 2).next(MessageId::EPOCH_MS + 99);
        assert_eq!(MessageId::parse(&id.to_string()), Some(id));
        assert_eq!(MessageId::parse("xyz"), None);
        assert_eq!(MessageId::parse("00000000000000zz"), None);
    }

    #[test]
    fn e164_numbers() {
        assert_eq!(Msisdn::parse_e164("+4915112345678").unwrap().digits(), "4915112345678");
        for bad in ["4915112345678", "+0491511", "+49151abc5678", "+1234567", "+1234567890123456", "+"] {
            assert!(Msisdn::parse_e164(bad).is_none(), "{bad}");
        }
    }
}
