//! Prefixed, time-sortable identifiers (`evt_…`, `dlv_…`).
//!
//! Underneath is a UUIDv7 written as 32 lowercase hex digits: its first 48 bits are the Unix
//! time in milliseconds, so ids sort by creation time as plain strings. That is what lets every
//! list use the id itself as its pagination cursor. The prefix tells a human (and a support
//! ticket) what kind of object an id names; clients treat the whole string as opaque.

use uuid::Uuid;

/// The kinds of object Herald names, with their prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Destination,
    Event,
    Delivery,
    Attempt,
    Token,
    CallbackEndpoint,
    Callback,
    Recovery,
}

impl Kind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Destination => "dst_",
            Kind::Event => "evt_",
            Kind::Delivery => "dlv_",
            Kind::Attempt => "att_",
            Kind::Token => "tok_",
            Kind::CallbackEndpoint => "cbe_",
            Kind::Callback => "cb_",
            Kind::Recovery => "rec_",
        }
    }
}

/// A new id of the given kind, e.g. `evt_0193b1c2d3e47f8a9b0c1d2e3f405162`.
pub fn new_id(kind: Kind) -> String {
    let mut s = String::with_capacity(kind.prefix().len() + 32);
    s.push_str(kind.prefix());
    s.push_str(
        Uuid::now_v7()
            .simple()
            .encode_lower(&mut Uuid::encode_buffer()),
    );
    s
}

/// Whether `id` looks like an id of this kind. Used to answer 404 early for ids that cannot
/// exist, without a database round trip.
pub fn is_valid(kind: Kind, id: &str) -> bool {
    id.strip_prefix(kind.prefix())
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The smallest id of this kind that can be created at or after `ms`. Ids begin with their
/// creation time, so `id >= time_bound(kind, t)` selects what was created from `t` on, and
/// `id < time_bound(kind, t)` what came before — time ranges on the indexes that already
/// lead with the id, with no index on `created_at`.
pub fn time_bound(kind: Kind, ms: crate::domain::time::Millis) -> String {
    // UUIDv7 keeps 48 bits of milliseconds; the 80 bits after them are at their minimum.
    let ms = (ms.max(0) as u64) & 0xffff_ffff_ffff;
    format!("{}{ms:012x}{}", kind.prefix(), "0".repeat(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation_time() {
        let a = new_id(Kind::Event);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(Kind::Event);
        assert!(a.starts_with("evt_") && is_valid(Kind::Event, &a));
        assert!(a < b, "{a} should sort before {b}");
    }

    #[test]
    fn ids_generated_in_one_millisecond_are_distinct_and_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| new_id(Kind::Delivery)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids);
    }

    #[test]
    fn an_id_of_another_kind_is_not_valid() {
        assert!(!is_valid(Kind::Delivery, &new_id(Kind::Event)));
        assert!(!is_valid(Kind::Event, "evt_xyz"));
    }

    #[test]
    fn a_time_bound_sorts_between_ids_created_before_and_after_it() {
        let before = new_id(Kind::Delivery);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let bound = time_bound(Kind::Delivery, chrono::Utc::now().timestamp_millis());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = new_id(Kind::Delivery);
        assert!(
            before < bound && bound <= after,
            "{before} < {bound} <= {after}"
        );
        assert!(is_valid(Kind::Delivery, &bound));
    }
}
