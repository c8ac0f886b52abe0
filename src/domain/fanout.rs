//! Fan-out: which destinations an event goes to, and in which initial state.

use serde_json::Value;

use super::filter::{Filter, FilterLimits};
use super::model::Destination;
use super::state::DeliveryStatus;
use super::topic;

/// The deliveries one event creates: `(destination, initial status)`.
///
/// Every enabled destination of the tenant whose topic patterns and filter match gets a
/// `scheduled` delivery. A disabled destination that would have matched gets a `skipped` one,
/// so nothing is silently dropped and the event can be recovered after re-enabling. An event
/// that names one `destination_id` goes to that destination only, whatever its patterns.
pub fn plan<'a>(
    destinations: &'a [Destination],
    topic_name: &str,
    metadata: &Value,
    data: &Value,
    target: Option<&str>,
) -> Vec<(&'a Destination, DeliveryStatus)> {
    destinations
        .iter()
        .filter(|d| match target {
            Some(id) => d.id == id,
            None => {
                topic::matches_any(&d.topics, topic_name)
                    && d.filter.as_ref().is_none_or(|f| {
                        // Filters are validated when a destination is saved, so a parse error
                        // here means the row was edited by hand: match nothing, loudly.
                        Filter::parse_with(f, FilterLimits::STORED)
                            .map(|f| f.matches_event(topic_name, metadata, data))
                            .unwrap_or_else(|e| {
                                tracing::warn!(destination_id = %d.id, error = %e, "stored filter is invalid");
                                false
                            })
                    })
            }
        })
        .map(|d| {
            let status = if d.enabled {
                DeliveryStatus::Scheduled
            } else {
                DeliveryStatus::Skipped
            };
            (d, status)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{DestinationKind, DestinationOptions};
    use serde_json::json;

    fn dest(id: &str, topics: &[&str], enabled: bool, filter: Option<Value>) -> Destination {
        Destination {
            id: id.into(),
            tenant_id: "t".into(),
            kind: DestinationKind::Webhook,
            url: Some("https://example.com".into()),
            amqp: None,
            description: None,
            topics: topics.iter().map(|s| s.to_string()).collect(),
            filter,
            headers: Default::default(),
            options: DestinationOptions::default(),
            enabled,
            disabled_reason: None,
            disabled_at: None,
            secrets: vec![],
            created_at: 0,
            updated_at: 0,
        }
    }

    fn ids(p: &[(&Destination, DeliveryStatus)]) -> Vec<(String, DeliveryStatus)> {
        p.iter().map(|(d, s)| (d.id.clone(), *s)).collect()
    }

    #[test]
    fn matching_destinations_are_scheduled_and_disabled_ones_skipped() {
        let ds = vec![
            dest("a", &["*"], true, None),
            dest("b", &["job.*"], true, None),
            dest("c", &["render.done"], true, None),
            dest("d", &["job.done"], false, None),
        ];
        let p = plan(&ds, "job.done", &json!({}), &json!({}), None);
        assert_eq!(
            ids(&p),
            vec![
                ("a".into(), DeliveryStatus::Scheduled),
                ("b".into(), DeliveryStatus::Scheduled),
                ("d".into(), DeliveryStatus::Skipped),
            ]
        );
    }

    #[test]
    fn a_filter_narrows_the_fan_out() {
        let ds = vec![dest("a", &["*"], true, Some(json!({"data.ok": true})))];
        assert_eq!(
            plan(&ds, "x", &json!({}), &json!({"ok": true}), None).len(),
            1
        );
        assert!(plan(&ds, "x", &json!({}), &json!({"ok": false}), None).is_empty());
    }

    #[test]
    fn a_targeted_event_goes_to_that_destination_only() {
        let ds = vec![
            dest("a", &["*"], true, None),
            dest("b", &["other"], true, None),
        ];
        let p = plan(&ds, "job.done", &json!({}), &json!({}), Some("b"));
        assert_eq!(ids(&p), vec![("b".into(), DeliveryStatus::Scheduled)]);
    }
}
