//! Domain values written into SQL text as literals.
//!
//! Statuses go into the statement text, not into bound parameters: Postgres matches a partial
//! index such as `deliveries_due … WHERE status IN ('scheduled', 'retrying')` only when the
//! query's own predicate names those constants (a generic plan with `$1` cannot use it). The
//! statements that need them are built once, at first use, into a `static` [`Sql`], so the
//! text sent is the same as a hand-written literal and costs nothing per call. Those
//! statements live next to the queries that run them (`queries/`, the dialects); this module
//! holds what writes the literals.

use std::sync::LazyLock;

use crate::domain::state::DeliveryStatus;

/// A statement built once from domain constants.
pub(crate) type Sql = LazyLock<String>;

/// `'delivering'`.
pub(crate) fn status(s: DeliveryStatus) -> String {
    text(s.as_str())
}

/// `'scheduled', 'retrying'`: the inside of an `IN (…)`.
pub(crate) fn statuses(ss: &[DeliveryStatus]) -> String {
    ss.iter().map(|s| status(*s)).collect::<Vec<_>>().join(", ")
}

/// A string literal, quotes doubled.
pub(crate) fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_statuses_read_as_the_partial_index_predicate_spells_them() {
        assert_eq!(statuses(DeliveryStatus::PENDING), "'scheduled', 'retrying'");
    }

    #[test]
    fn quotes_inside_a_literal_are_doubled() {
        assert_eq!(text("it's"), "'it''s'");
    }
}
