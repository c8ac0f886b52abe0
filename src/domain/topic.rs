//! Topics and topic patterns.
//!
//! A topic is a dot-separated name such as `job.completed` or `render.frame.ready`. A
//! destination subscribes with patterns: an exact topic, `*` (everything), or a pattern whose
//! segments may be `*`. A `*` segment matches exactly one segment, except in last position,
//! where it matches one or more: `job.*` matches `job.completed` and `job.step.done`, not `job`.

pub const MAX_TOPIC_LEN: usize = 255;

fn valid_segment(seg: &str, allow_star: bool) -> bool {
    (allow_star && seg == "*")
        || (!seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'/')))
}

/// Why a topic or pattern is not acceptable, or `None` when it is.
pub fn topic_error(topic: &str) -> Option<String> {
    check(topic, false)
}

pub fn pattern_error(pattern: &str) -> Option<String> {
    check(pattern, true)
}

fn check(s: &str, allow_star: bool) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > MAX_TOPIC_LEN {
        return Some(format!("must be at most {MAX_TOPIC_LEN} characters"));
    }
    if !s.split('.').all(|seg| valid_segment(seg, allow_star)) {
        return Some(if allow_star {
            "must be dot-separated segments of letters, digits, `_-:/`, or `*`".into()
        } else {
            "must be dot-separated segments of letters, digits and `_-:/`".into()
        });
    }
    None
}

/// Whether `topic` matches `pattern` (both already validated).
pub fn matches(pattern: &str, topic: &str) -> bool {
    if pattern == "*" || pattern == topic {
        return true;
    }
    let mut p = pattern.split('.').peekable();
    let mut t = topic.split('.');
    while let Some(ps) = p.next() {
        let last = p.peek().is_none();
        match t.next() {
            None => return false,
            Some(_) if ps == "*" && last => return true,
            Some(ts) if ps == "*" || ps == ts => {}
            Some(_) => return false,
        }
    }
    t.next().is_none()
}

/// Whether any of the patterns matches.
pub fn matches_any<S: AsRef<str>>(patterns: &[S], topic: &str) -> bool {
    patterns.iter().any(|p| matches(p.as_ref(), topic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deliberately plain reference: recursion over segment lists.
    fn reference(pattern: &[&str], topic: &[&str]) -> bool {
        match (pattern, topic) {
            ([], []) => true,
            (["*"], [_, ..]) => true,
            ([p, prest @ ..], [t, trest @ ..]) => (*p == "*" || p == t) && reference(prest, trest),
            _ => false,
        }
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("job".to_string()),
            "[a-z0-9_-]{1,4}"
        ]
    }

    proptest! {
        #[test]
        fn the_matcher_agrees_with_the_reference(
            topic in prop::collection::vec(segment(), 1..5),
            pattern in prop::collection::vec(prop_oneof![3 => segment(), 1 => Just("*".to_string())], 1..5),
        ) {
            let (t, p) = (topic.join("."), pattern.join("."));
            prop_assert!(topic_error(&t).is_none());
            prop_assert!(pattern_error(&p).is_none());
            let p_segs: Vec<&str> = pattern.iter().map(String::as_str).collect();
            let t_segs: Vec<&str> = topic.iter().map(String::as_str).collect();
            prop_assert_eq!(matches(&p, &t), reference(&p_segs, &t_segs), "{} vs {}", p, t);
        }

        #[test]
        fn validation_and_matching_never_panic_on_arbitrary_strings(a in ".{0,300}", b in ".{0,300}") {
            let _ = topic_error(&a);
            let _ = pattern_error(&b);
            let _ = matches(&b, &a);
        }
    }

    #[test]
    fn a_star_matches_every_topic() {
        assert!(matches("*", "job.completed"));
        assert!(matches("*", "x"));
    }

    #[test]
    fn exact_patterns_match_only_their_topic() {
        assert!(matches("job.completed", "job.completed"));
        assert!(!matches("job.completed", "job.completed.late"));
        assert!(!matches("job.completed", "job"));
    }

    #[test]
    fn a_trailing_star_matches_one_or_more_segments() {
        assert!(matches("job.*", "job.completed"));
        assert!(matches("job.*", "job.step.done"));
        assert!(!matches("job.*", "job"));
        assert!(!matches("job.*", "jobs.completed"));
    }

    #[test]
    fn an_inner_star_matches_exactly_one_segment() {
        assert!(matches("job.*.done", "job.step.done"));
        assert!(!matches("job.*.done", "job.a.b.done"));
        assert!(!matches("job.*.done", "job.step.failed"));
    }

    #[test]
    fn malformed_topics_and_patterns_are_explained() {
        assert!(topic_error("job.completed").is_none());
        assert!(topic_error("").is_some());
        assert!(topic_error("job..done").is_some());
        assert!(topic_error("job.*").is_some());
        assert!(topic_error("job done").is_some());
        assert!(topic_error(&"a".repeat(256)).is_some());
        assert!(pattern_error("job.*").is_none());
        assert!(pattern_error("*").is_none());
        assert!(pattern_error("job.**").is_some());
    }
}
