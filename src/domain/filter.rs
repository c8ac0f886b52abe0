//! Destination payload filters.
//!
//! A destination may carry a filter so it only receives the events it cares
//! about. A filter is a small MongoDB-style match language evaluated against
//! the document `{"topic": <string>, "metadata": <object>, "data": <any>}` of
//! each published event:
//!
//! ```json
//! {
//!   "topic": {"$startsWith": "order."},
//!   "data.total": {"$gte": 100},
//!   "$or": [{"metadata.region": "eu"}, {"data.priority": {"$in": ["high", "urgent"]}}]
//! }
//! ```
//!
//! * Every key of a filter object must hold (implicit AND); `{}` matches everything.
//! * A key is a logical operator (`$and` / `$or`: non-empty array of filters,
//!   `$not`: one filter) or a dotted field path. Numeric segments index arrays
//!   (`data.items.0.id`); there is no implicit traversal into arrays, so a
//!   path means exactly one value.
//! * A field's value is either a literal (shorthand for `$eq`; an object with
//!   no `$` keys is a literal too) or an object of comparison operators that
//!   must all hold: `$eq $ne $gt $gte $lt $lte $in $nin $exists $startsWith`.
//! * Equality is deep JSON equality with numbers compared by value (`1 == 1.0`).
//!   Ordering applies to two numbers or two strings; any other pairing, or a
//!   missing field, is simply `false`. `$ne` and `$nin` hold for missing fields.
//!
//! Filters are validated once, when a destination is saved, into an AST
//! ([`Filter`]); matching never fails, so one odd payload cannot make a
//! delivery error out. Errors carry the location of the offending key (e.g.
//! `$and[1].data.score.$gte`) so the API can return a precise 422.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// Maximum nesting of filter objects: the top-level filter is level 1, and each
/// filter under `$and`/`$or`/`$not` and each field's operator object adds one.
/// Bounds recursion in both parsing and matching. Literal operands are data,
/// not structure, and do not count.
pub const MAX_DEPTH: usize = 8;

/// Maximum number of conditions: each comparison (including `$eq` shorthand),
/// each logical operator and each empty sub-filter counts one. Bounds the work
/// done per event for every destination; operand sizes (`$in` lists, literals)
/// are already bounded by the request body limit and cost linear time.
pub const MAX_CONDITIONS: usize = 64;

/// The bounds a filter is validated against: [`MAX_DEPTH`] and [`MAX_CONDITIONS`] unless the
/// operator configured others (`max_filter_depth`, `max_filter_conditions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    pub max_depth: usize,
    pub max_conditions: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            max_depth: MAX_DEPTH,
            max_conditions: MAX_CONDITIONS,
        }
    }
}

impl FilterLimits {
    /// For filters already validated when their destination was saved (possibly under
    /// limits configured higher than the defaults): no new bound applies on reading.
    pub const STORED: FilterLimits = FilterLimits {
        max_depth: usize::MAX,
        max_conditions: usize::MAX,
    };
}

/// A validated payload filter, compiled so matching does no re-validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    root: Node,
}

/// Why a filter was rejected, and where (a dotted/indexed location inside the
/// filter, empty for the filter itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at `{path}`")]
pub struct FilterError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    /// The path is resolved once and every test runs against that value.
    Field {
        path: Vec<Segment>,
        tests: Vec<Test>,
    },
}

/// A path segment, with its array index precomputed so matching never parses.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    key: String,
    index: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Eq(Value),
    Ne(Value),
    Order(OrderOp, Bound),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    StartsWith(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// Ordering operands are restricted to the two types that have a meaningful order.
#[derive(Debug, Clone, PartialEq)]
enum Bound {
    Number(Number),
    String(String),
}

impl Filter {
    /// Validates and compiles. `path` in errors is a JSON-pointer-ish location inside the filter,
    /// e.g. `$and[1].data.score.$gte`, so a 422 can name the offending operator or path.
    pub fn parse(value: &serde_json::Value) -> Result<Filter, FilterError> {
        Self::parse_with(value, FilterLimits::default())
    }

    /// As [`Filter::parse`], within `limits`.
    pub fn parse_with(
        value: &serde_json::Value,
        limits: FilterLimits,
    ) -> Result<Filter, FilterError> {
        let root = Parser {
            conditions: 0,
            limits,
        }
        .filter(value, "", 1)?;
        Ok(Filter { root })
    }

    /// Evaluates against the event document.
    pub fn matches(&self, doc: &serde_json::Value) -> bool {
        self.root.eval(Root::Doc(doc))
    }

    /// Convenience: builds the document {topic, metadata, data} and evaluates it.
    ///
    /// The document is assembled virtually (only `topic` is copied) so large
    /// payloads are not cloned once per destination.
    pub fn matches_event(
        &self,
        topic: &str,
        metadata: &serde_json::Value,
        data: &serde_json::Value,
    ) -> bool {
        let topic = Value::String(topic.to_owned());
        self.root.eval(Root::Event {
            topic: &topic,
            metadata,
            data,
        })
    }
}

fn error(path: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

const LOGICAL_OPERATORS: [&str; 3] = ["$and", "$or", "$not"];
const COMPARISON_OPERATORS: [&str; 10] = [
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$startsWith",
];

struct Parser {
    conditions: usize,
    limits: FilterLimits,
}

impl Parser {
    fn too_deep(&self, path: &str) -> FilterError {
        error(
            path,
            format!(
                "filter is nested more than {} levels deep",
                self.limits.max_depth
            ),
        )
    }

    fn count(&mut self, path: &str) -> Result<(), FilterError> {
        self.conditions += 1;
        if self.conditions > self.limits.max_conditions {
            return Err(error(
                path,
                format!(
                    "filter has more than {} conditions",
                    self.limits.max_conditions
                ),
            ));
        }
        Ok(())
    }

    /// Parses a filter object at nesting level `depth` (1 for the top level).
    fn filter(&mut self, value: &Value, path: &str, depth: usize) -> Result<Node, FilterError> {
        // Checked before looking inside, so absurdly deep input costs nothing.
        if depth > self.limits.max_depth {
            return Err(self.too_deep(path));
        }
        let Value::Object(map) = value else {
            return Err(error(path, "a filter must be a JSON object"));
        };
        let mut nodes = Vec::with_capacity(map.len());
        for (key, operand) in map {
            let here = join(path, key);
            let node = match key.as_str() {
                "$and" => Node::All(self.filter_list(key, operand, &here, depth)?),
                "$or" => Node::Any(self.filter_list(key, operand, &here, depth)?),
                "$not" => {
                    if !operand.is_object() {
                        return Err(error(&here, "`$not` expects a filter object"));
                    }
                    self.count(&here)?;
                    Node::Not(Box::new(self.sub_filter(operand, &here, depth + 1)?))
                }
                op if COMPARISON_OPERATORS.contains(&op) => {
                    return Err(error(
                        &here,
                        format!(
                            "`{op}` compares a field and must be used as {{\"<field path>\": {{\"{op}\": ...}}}}"
                        ),
                    ));
                }
                op if op.starts_with('$') => {
                    return Err(error(&here, format!("unknown operator `{op}`")));
                }
                field => self.field(field, operand, &here, depth)?,
            };
            nodes.push(node);
        }
        if nodes.len() == 1
            && let Some(node) = nodes.pop()
        {
            return Ok(node);
        }
        Ok(Node::All(nodes))
    }

    fn filter_list(
        &mut self,
        op: &str,
        operand: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Vec<Node>, FilterError> {
        let items = match operand {
            Value::Array(items) if !items.is_empty() => items,
            _ => {
                return Err(error(
                    path,
                    format!("`{op}` expects a non-empty array of filters"),
                ));
            }
        };
        self.count(path)?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let here = format!("{path}[{i}]");
                if !item.is_object() {
                    return Err(error(
                        &here,
                        format!("`{op}` elements must be filter objects"),
                    ));
                }
                self.sub_filter(item, &here, depth + 1)
            })
            .collect()
    }

    fn sub_filter(&mut self, value: &Value, path: &str, depth: usize) -> Result<Node, FilterError> {
        // An empty sub-filter is a constant `true` that still costs a step per
        // event, so it counts; otherwise `{"$or": [{}, {}, ...]}` would be unbounded.
        if value.as_object().is_some_and(Map::is_empty) {
            self.count(path)?;
        }
        self.filter(value, path, depth)
    }

    fn field(
        &mut self,
        key: &str,
        operand: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Node, FilterError> {
        let segments = parse_path(key, path)?;
        let tests = match operand {
            Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                if ops.keys().any(|k| !k.starts_with('$')) {
                    return Err(error(
                        path,
                        "a condition object must contain only `$` operators (or none, to compare a literal object)",
                    ));
                }
                if depth + 1 > self.limits.max_depth {
                    return Err(self.too_deep(path));
                }
                ops.iter()
                    .map(|(op, arg)| self.test(op, arg, &join(path, op)))
                    .collect::<Result<Vec<_>, _>>()?
            }
            literal => {
                self.count(path)?;
                vec![Test::Eq(literal.clone())]
            }
        };
        Ok(Node::Field {
            path: segments,
            tests,
        })
    }

    fn test(&mut self, op: &str, arg: &Value, path: &str) -> Result<Test, FilterError> {
        self.count(path)?;
        let test = match op {
            "$eq" => Test::Eq(arg.clone()),
            "$ne" => Test::Ne(arg.clone()),
            "$gt" => Test::Order(OrderOp::Gt, bound(op, arg, path)?),
            "$gte" => Test::Order(OrderOp::Gte, bound(op, arg, path)?),
            "$lt" => Test::Order(OrderOp::Lt, bound(op, arg, path)?),
            "$lte" => Test::Order(OrderOp::Lte, bound(op, arg, path)?),
            "$in" => Test::In(array_operand(op, arg, path)?),
            "$nin" => Test::Nin(array_operand(op, arg, path)?),
            "$exists" => match arg {
                Value::Bool(b) => Test::Exists(*b),
                _ => return Err(error(path, "`$exists` expects a boolean")),
            },
            "$startsWith" => match arg {
                Value::String(s) => Test::StartsWith(s.clone()),
                _ => return Err(error(path, "`$startsWith` expects a string")),
            },
            op if LOGICAL_OPERATORS.contains(&op) => {
                return Err(error(
                    path,
                    format!(
                        "`{op}` combines whole filters and cannot be used inside a field condition"
                    ),
                ));
            }
            op => return Err(error(path, format!("unknown operator `{op}`"))),
        };
        Ok(test)
    }
}

fn bound(op: &str, arg: &Value, path: &str) -> Result<Bound, FilterError> {
    match arg {
        Value::Number(n) => Ok(Bound::Number(n.clone())),
        Value::String(s) => Ok(Bound::String(s.clone())),
        _ => Err(error(path, format!("`{op}` expects a number or a string"))),
    }
}

fn array_operand(op: &str, arg: &Value, path: &str) -> Result<Vec<Value>, FilterError> {
    match arg {
        Value::Array(items) => Ok(items.clone()),
        _ => Err(error(path, format!("`{op}` expects an array"))),
    }
}

fn parse_path(key: &str, path: &str) -> Result<Vec<Segment>, FilterError> {
    if key.is_empty() {
        return Err(error(path, "field path must not be empty"));
    }
    key.split('.')
        .map(|segment| {
            if segment.is_empty() {
                return Err(error(
                    path,
                    format!("field path `{key}` has an empty segment"),
                ));
            }
            Ok(Segment {
                key: segment.to_owned(),
                index: array_index(segment),
            })
        })
        .collect()
}

/// Only canonical decimal integers index arrays (no sign, no leading zeros),
/// so each index has exactly one spelling.
fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    if canonical {
        segment.parse().ok()
    } else {
        None
    }
}

/// The document being matched: either a real JSON value, or the parts of an
/// event, so `matches_event` need not clone the payload into a new document.
#[derive(Clone, Copy)]
enum Root<'a> {
    Doc(&'a Value),
    Event {
        topic: &'a Value,
        metadata: &'a Value,
        data: &'a Value,
    },
}

impl<'a> Root<'a> {
    fn lookup(self, path: &[Segment]) -> Option<&'a Value> {
        let (first, rest) = path.split_first()?;
        let start = match self {
            Root::Doc(doc) => step(doc, first)?,
            Root::Event {
                topic,
                metadata,
                data,
            } => match first.key.as_str() {
                "topic" => topic,
                "metadata" => metadata,
                "data" => data,
                _ => return None,
            },
        };
        rest.iter()
            .try_fold(start, |value, segment| step(value, segment))
    }
}

fn step<'a>(value: &'a Value, segment: &Segment) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map.get(&segment.key),
        Value::Array(items) => items.get(segment.index?),
        _ => None,
    }
}

impl Node {
    fn eval(&self, root: Root<'_>) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|node| node.eval(root)),
            Node::Any(nodes) => nodes.iter().any(|node| node.eval(root)),
            Node::Not(node) => !node.eval(root),
            Node::Field { path, tests } => {
                let value = root.lookup(path);
                tests.iter().all(|test| test.holds(value))
            }
        }
    }
}

impl Test {
    fn holds(&self, field: Option<&Value>) -> bool {
        match self {
            Test::Eq(expected) => field.is_some_and(|v| json_eq(v, expected)),
            Test::Ne(expected) => !field.is_some_and(|v| json_eq(v, expected)),
            Test::Order(op, bound) => field
                .and_then(|v| compare(v, bound))
                .is_some_and(|ordering| op.accepts(ordering)),
            Test::In(candidates) => field.is_some_and(|v| candidates.iter().any(|c| json_eq(v, c))),
            Test::Nin(candidates) => {
                !field.is_some_and(|v| candidates.iter().any(|c| json_eq(v, c)))
            }
            Test::Exists(expected) => field.is_some() == *expected,
            Test::StartsWith(prefix) => {
                matches!(field, Some(Value::String(s)) if s.starts_with(prefix.as_str()))
            }
        }
    }
}

impl OrderOp {
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            OrderOp::Gt => ordering == Ordering::Greater,
            OrderOp::Gte => ordering != Ordering::Less,
            OrderOp::Lt => ordering == Ordering::Less,
            OrderOp::Lte => ordering != Ordering::Greater,
        }
    }
}

/// `field` relative to `bound`; `None` when the types have no common order.
fn compare(field: &Value, bound: &Bound) -> Option<Ordering> {
    match (field, bound) {
        (Value::Number(a), Bound::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Bound::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

/// Deep equality where numbers compare by value, unlike `Value::eq`, which
/// treats `1` and `1.0` as different.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

enum Num {
    Int(i128),
    Float(f64),
}

fn num(n: &Number) -> Option<Num> {
    if let Some(i) = n.as_i64() {
        Some(Num::Int(i128::from(i)))
    } else if let Some(u) = n.as_u64() {
        Some(Num::Int(i128::from(u)))
    } else {
        n.as_f64().map(Num::Float)
    }
}

/// Exact numeric comparison. Integers are not funnelled through `f64`, which
/// would make e.g. 2^53 + 1 equal to 2^53.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (num(a)?, num(b)?) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
        (Num::Int(x), Num::Float(y)) => compare_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => compare_int_float(y, x).map(Ordering::reverse),
    }
}

/// Compares an integer from a JSON number (so |i| <= 2^64) with a float, exactly.
fn compare_int_float(i: i128, f: f64) -> Option<Ordering> {
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_POW_64 {
        return Some(Ordering::Less);
    }
    if f <= -TWO_POW_64 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // |whole| < 2^64 and integral, so the cast is exact.
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(f - whole)),
        unequal => Some(unequal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(filter: Value) -> Filter {
        Filter::parse(&filter).unwrap_or_else(|e| panic!("{filter} should parse: {e}"))
    }

    fn matches(filter: Value, doc: &Value) -> bool {
        parse(filter).matches(doc)
    }

    fn reject(filter: Value) -> FilterError {
        match Filter::parse(&filter) {
            Ok(parsed) => panic!("{filter} should be rejected, got {parsed:?}"),
            Err(e) => e,
        }
    }

    fn assert_rejected_at(filter: Value, path: &str, message_part: &str) {
        let e = reject(filter);
        assert_eq!(e.path, path, "{e}");
        assert!(e.message.contains(message_part), "{e}");
    }

    fn doc() -> Value {
        json!({
            "topic": "order.created",
            "metadata": {"region": "eu-west", "tier": 2},
            "data": {
                "status": "done",
                "score": 15,
                "ratio": 0.5,
                "note": null,
                "flags": {"vip": true},
                "items": [{"id": 7, "sku": "A-1"}, {"id": 9}],
                "tags": ["a", "b"],
                "0": "zero-key"
            }
        })
    }

    // --- matching -------------------------------------------------------

    #[test]
    fn empty_filter_matches_everything() {
        assert!(matches(json!({}), &doc()));
        assert!(matches(json!({}), &json!(null)));
    }

    #[test]
    fn literal_value_is_shorthand_for_eq() {
        assert!(matches(json!({"data.status": "done"}), &doc()));
        assert!(!matches(json!({"data.status": "pending"}), &doc()));
        assert_eq!(
            parse(json!({"data.status": "done"})),
            parse(json!({"data.status": {"$eq": "done"}}))
        );
    }

    #[test]
    fn eq_compares_numbers_numerically() {
        assert!(matches(json!({"data.score": 15.0}), &doc()));
        assert!(matches(json!({"data.score": {"$eq": 15}}), &doc()));
        assert!(matches(json!({"data.ratio": 0.5}), &doc()));
        assert!(matches(json!({"x": 0}), &json!({"x": -0.0})));
        assert!(matches(json!({"x": 1}), &json!({"x": 1.0})));
        assert!(!matches(json!({"x": 1}), &json!({"x": 1.5})));
        assert!(!matches(json!({"x": 1}), &json!({"x": "1"})));
    }

    #[test]
    fn eq_is_deep_for_arrays_and_objects() {
        assert!(matches(json!({"data.tags": ["a", "b"]}), &doc()));
        assert!(!matches(json!({"data.tags": ["b", "a"]}), &doc()));
        assert!(!matches(json!({"data.tags": ["a"]}), &doc()));
        assert!(matches(
            json!({"data.items": {"$eq": [{"id": 7.0, "sku": "A-1"}, {"id": 9}]}}),
            &doc()
        ));
        assert!(!matches(
            json!({"data.items.1": {"id": 9, "sku": null}}),
            &doc()
        ));
    }

    #[test]
    fn object_without_operator_keys_is_a_literal_compared_deeply() {
        assert!(matches(json!({"data.flags": {"vip": true}}), &doc()));
        assert!(!matches(json!({"data.flags": {"vip": false}}), &doc()));
        assert!(!matches(json!({"data.flags": {}}), &doc()));
        assert!(matches(json!({"x": {}}), &json!({"x": {}})));
    }

    #[test]
    fn explicit_eq_operand_is_always_a_literal_even_with_dollar_keys() {
        let weird = json!({"x": {"$gt": 1}});
        assert!(matches(json!({"x": {"$eq": {"$gt": 1}}}), &weird));
        assert!(!matches(
            json!({"x": {"$eq": {"$gt": 1}}}),
            &json!({"x": 2})
        ));
    }

    #[test]
    fn eq_does_not_match_a_missing_field_even_against_null() {
        assert!(!matches(json!({"data.nope": null}), &doc()));
        assert!(matches(json!({"data.note": null}), &doc()));
    }

    #[test]
    fn ne_matches_different_values_and_missing_fields() {
        assert!(matches(json!({"data.status": {"$ne": "pending"}}), &doc()));
        assert!(!matches(json!({"data.status": {"$ne": "done"}}), &doc()));
        assert!(!matches(json!({"data.score": {"$ne": 15.0}}), &doc()));
        assert!(matches(json!({"data.nope": {"$ne": "done"}}), &doc()));
        assert!(matches(json!({"data.status": {"$ne": 1}}), &doc()));
    }

    #[test]
    fn ordering_operators_compare_numbers_numerically() {
        let d = doc();
        assert!(matches(json!({"data.score": {"$gt": 14.5}}), &d));
        assert!(!matches(json!({"data.score": {"$gt": 15}}), &d));
        assert!(matches(json!({"data.score": {"$gte": 15.0}}), &d));
        assert!(matches(json!({"data.score": {"$lt": 100}}), &d));
        assert!(!matches(json!({"data.score": {"$lt": 15}}), &d));
        assert!(matches(json!({"data.score": {"$lte": 15}}), &d));
        assert!(matches(json!({"data.ratio": {"$gt": 0, "$lt": 1}}), &d));
        assert!(matches(json!({"x": {"$lt": -1}}), &json!({"x": -2.5})));
        assert!(matches(json!({"x": {"$gt": -1}}), &json!({"x": u64::MAX})));
    }

    #[test]
    fn large_integers_compare_exactly_against_floats() {
        let two_pow_53 = 9_007_199_254_740_992_u64;
        let above = json!({"x": two_pow_53 + 1});
        assert!(matches(
            json!({"x": {"$gt": 9_007_199_254_740_992.0}}),
            &above
        ));
        assert!(!matches(json!({"x": 9_007_199_254_740_992.0}), &above));
        assert!(matches(
            json!({"x": 9_007_199_254_740_992.0}),
            &json!({"x": two_pow_53})
        ));
        assert!(matches(
            json!({"x": {"$lt": 1e300}}),
            &json!({"x": u64::MAX})
        ));
        assert!(matches(
            json!({"x": {"$gt": -1e300}}),
            &json!({"x": i64::MIN})
        ));
        assert!(matches(json!({"x": {"$gt": i64::MIN}}), &json!({"x": 0.5})));
        assert!(!matches(json!({"x": {"$gt": 1}}), &json!({"x": 0.5})));
        assert!(matches(json!({"x": {"$lt": 1}}), &json!({"x": 0.5})));
        assert!(matches(json!({"x": {"$lt": -1}}), &json!({"x": -1.5})));
    }

    #[test]
    fn ordering_operators_compare_strings_lexicographically() {
        let d = doc();
        assert!(matches(json!({"topic": {"$gt": "order"}}), &d));
        assert!(matches(json!({"topic": {"$lt": "order.d"}}), &d));
        assert!(matches(
            json!({"topic": {"$gte": "order.created", "$lte": "order.created"}}),
            &d
        ));
        assert!(!matches(json!({"topic": {"$gt": "p"}}), &d));
        assert!(matches(json!({"x": {"$lt": "b"}}), &json!({"x": "B"})));
    }

    #[test]
    fn ordering_operators_are_false_on_type_mismatch_or_missing_field() {
        let d = doc();
        for op in ["$gt", "$gte", "$lt", "$lte"] {
            assert!(!matches(json!({"data.status": {op: 1}}), &d), "{op}");
            assert!(!matches(json!({"data.score": {op: "15"}}), &d), "{op}");
            assert!(!matches(json!({"data.note": {op: 0}}), &d), "{op}");
            assert!(!matches(json!({"data.tags": {op: "a"}}), &d), "{op}");
            assert!(!matches(json!({"data.nope": {op: 0}}), &d), "{op}");
        }
    }

    #[test]
    fn in_matches_when_the_field_equals_any_element() {
        let d = doc();
        assert!(matches(
            json!({"data.status": {"$in": ["pending", "done"]}}),
            &d
        ));
        assert!(!matches(json!({"data.status": {"$in": ["pending"]}}), &d));
        assert!(!matches(json!({"data.status": {"$in": []}}), &d));
        assert!(matches(json!({"data.score": {"$in": [1, 15.0]}}), &d));
        assert!(matches(json!({"data.tags": {"$in": [["a", "b"]]}}), &d));
        assert!(!matches(json!({"data.nope": {"$in": [null]}}), &d));
    }

    #[test]
    fn nin_matches_when_the_field_equals_no_element_or_is_missing() {
        let d = doc();
        assert!(matches(
            json!({"data.status": {"$nin": ["pending", "failed"]}}),
            &d
        ));
        assert!(!matches(
            json!({"data.status": {"$nin": ["pending", "done"]}}),
            &d
        ));
        assert!(!matches(json!({"data.score": {"$nin": [15.0]}}), &d));
        assert!(matches(json!({"data.status": {"$nin": []}}), &d));
        assert!(matches(json!({"data.nope": {"$nin": ["done"]}}), &d));
    }

    #[test]
    fn exists_checks_presence_and_treats_null_as_present() {
        let d = doc();
        assert!(matches(json!({"data.note": {"$exists": true}}), &d));
        assert!(!matches(json!({"data.note": {"$exists": false}}), &d));
        assert!(matches(json!({"data.nope": {"$exists": false}}), &d));
        assert!(!matches(json!({"data.nope": {"$exists": true}}), &d));
        assert!(matches(json!({"data.items.1.id": {"$exists": true}}), &d));
        assert!(matches(json!({"data.items.2": {"$exists": false}}), &d));
    }

    #[test]
    fn starts_with_requires_a_string_field_with_that_prefix() {
        let d = doc();
        assert!(matches(json!({"topic": {"$startsWith": "order."}}), &d));
        assert!(matches(json!({"topic": {"$startsWith": ""}}), &d));
        assert!(!matches(json!({"topic": {"$startsWith": "user."}}), &d));
        assert!(!matches(
            json!({"topic": {"$startsWith": "order.created.x"}}),
            &d
        ));
        assert!(!matches(json!({"data.score": {"$startsWith": "1"}}), &d));
        assert!(!matches(json!({"data.tags": {"$startsWith": "a"}}), &d));
        assert!(!matches(json!({"data.nope": {"$startsWith": ""}}), &d));
    }

    #[test]
    fn all_operators_on_one_field_must_hold() {
        let d = doc();
        assert!(matches(json!({"data.score": {"$gte": 10, "$lt": 20}}), &d));
        assert!(!matches(json!({"data.score": {"$gte": 10, "$lt": 15}}), &d));
        assert!(matches(
            json!({"data.status": {"$exists": true, "$ne": "failed", "$startsWith": "do"}}),
            &d
        ));
    }

    #[test]
    fn several_keys_in_one_object_are_implicitly_anded() {
        let d = doc();
        assert!(matches(
            json!({"topic": "order.created", "metadata.tier": 2}),
            &d
        ));
        assert!(!matches(
            json!({"topic": "order.created", "metadata.tier": 3}),
            &d
        ));
        assert!(!matches(
            json!({"topic": "order.created", "$or": [{"data.score": 1}]}),
            &d
        ));
    }

    #[test]
    fn nested_and_or_not_combine_as_expected() {
        let d = doc();
        let filter = json!({
            "$and": [
                {"topic": {"$startsWith": "order."}},
                {"$or": [{"metadata.region": "us-east"}, {"data.score": {"$gt": 10}}]},
                {"$not": {"data.status": "failed"}}
            ]
        });
        assert!(matches(filter, &d));
        assert!(!matches(json!({"$not": {"data.status": "done"}}), &d));
        assert!(!matches(
            json!({"$or": [{"data.status": "a"}, {"data.status": "b"}]}),
            &d
        ));
        assert!(matches(
            json!({"$not": {"$not": {"data.status": "done"}}}),
            &d
        ));
        assert!(!matches(
            json!({"$and": [{"data.score": 15}, {"data.status": "x"}]}),
            &d
        ));
        assert!(matches(
            json!({"$not": {"$and": [{"data.score": 15}, {"data.status": "x"}]}}),
            &d
        ));
        assert!(matches(json!({"$or": [{}, {"data.status": "x"}]}), &d));
        assert!(!matches(json!({"$not": {}}), &d));
    }

    #[test]
    fn numeric_segments_index_arrays() {
        let d = doc();
        assert!(matches(json!({"data.items.0.id": 7}), &d));
        assert!(matches(json!({"data.items.1.id": 9}), &d));
        assert!(matches(
            json!({"data.items.0.sku": {"$startsWith": "A-"}}),
            &d
        ));
        assert!(matches(json!({"data.tags.1": "b"}), &d));
        assert!(!matches(json!({"data.items.2.id": {"$exists": true}}), &d));
    }

    #[test]
    fn numeric_segments_on_objects_are_plain_keys() {
        assert!(matches(json!({"data.0": "zero-key"}), &doc()));
    }

    #[test]
    fn non_canonical_indexes_do_not_address_array_elements() {
        let d = doc();
        for path in [
            "data.tags.01",
            "data.tags.+1",
            "data.tags.-1",
            "data.tags.1e0",
            "data.tags.x",
        ] {
            assert!(!matches(json!({path: {"$exists": true}}), &d), "{path}");
        }
        let huge = "data.tags.99999999999999999999999999";
        assert!(!matches(json!({huge: {"$exists": true}}), &d));
    }

    #[test]
    fn arrays_are_not_traversed_implicitly() {
        let d = doc();
        assert!(!matches(json!({"data.tags": "a"}), &d));
        assert!(!matches(json!({"data.items.id": 7}), &d));
    }

    #[test]
    fn paths_through_scalars_or_null_count_as_missing() {
        let d = doc();
        assert!(!matches(
            json!({"data.status.length": {"$exists": true}}),
            &d
        ));
        assert!(!matches(json!({"data.note.x": {"$exists": true}}), &d));
        assert!(matches(json!({"data.score.0": {"$ne": 1}}), &d));
        assert!(!matches(json!({"topic": "x"}), &json!("not an object")));
    }

    #[test]
    fn matches_event_agrees_with_matching_the_built_document() {
        let metadata = json!({"region": "eu-west", "tier": 2});
        let data = json!({"status": "done", "items": [{"id": 1}]});
        let full = json!({"topic": "order.created", "metadata": metadata, "data": data});
        let filters = [
            json!({"topic": "order.created", "metadata.region": "eu-west"}),
            json!({"data.items.0.id": 1, "metadata.tier": {"$gte": 2}}),
            json!({"topic": {"$startsWith": "user."}}),
            json!({"other": {"$exists": false}}),
            json!({"other": {"$exists": true}}),
            json!({"data": {"status": "done", "items": [{"id": 1.0}]}}),
            json!({"topic.0": {"$exists": false}}),
        ];
        for filter in filters {
            let parsed = parse(filter.clone());
            assert_eq!(
                parsed.matches_event("order.created", &metadata, &data),
                parsed.matches(&full),
                "{filter}"
            );
        }
        assert!(parse(json!({"data.status": "done"})).matches_event("t", &json!({}), &data));
    }

    // --- validation -----------------------------------------------------

    #[test]
    fn non_object_filter_is_rejected_at_the_root() {
        for value in [
            json!(null),
            json!([]),
            json!("topic"),
            json!(1),
            json!(true),
        ] {
            assert_rejected_at(value, "", "must be a JSON object");
        }
    }

    #[test]
    fn unknown_operator_is_rejected_with_its_path() {
        assert_rejected_at(
            json!({"$and": [{"topic": "x"}, {"data.score": {"$gte": 1, "$between": [1, 2]}}]}),
            "$and[1].data.score.$between",
            "unknown operator `$between`",
        );
        assert_rejected_at(
            json!({"x": {"$regex": "a.*"}}),
            "x.$regex",
            "unknown operator",
        );
    }

    #[test]
    fn unknown_logical_operator_is_rejected_with_its_path() {
        assert_rejected_at(
            json!({"$nor": [{"a": 1}]}),
            "$nor",
            "unknown operator `$nor`",
        );
        assert_rejected_at(
            json!({"$not": {"$xor": []}}),
            "$not.$xor",
            "unknown operator",
        );
    }

    #[test]
    fn comparison_operator_at_filter_level_is_rejected_with_a_hint() {
        assert_rejected_at(json!({"$gt": 1}), "$gt", "compares a field");
        assert_rejected_at(
            json!({"$or": [{"$exists": true}]}),
            "$or[0].$exists",
            "compares a field",
        );
    }

    #[test]
    fn logical_operator_inside_field_condition_is_rejected() {
        assert_rejected_at(
            json!({"data.score": {"$not": {"$gt": 1}}}),
            "data.score.$not",
            "combines whole filters",
        );
        assert_rejected_at(
            json!({"x": {"$or": [1, 2]}}),
            "x.$or",
            "combines whole filters",
        );
    }

    #[test]
    fn condition_object_mixing_operators_and_plain_keys_is_rejected() {
        assert_rejected_at(
            json!({"$or": [{"data.job": {"$exists": true, "status": "done"}}]}),
            "$or[0].data.job",
            "only `$` operators",
        );
    }

    #[test]
    fn and_and_or_require_a_non_empty_array() {
        for op in ["$and", "$or"] {
            for bad in [json!([]), json!({"a": 1}), json!("a"), json!(null)] {
                assert_rejected_at(json!({op: bad}), op, "non-empty array of filters");
            }
        }
        assert_rejected_at(
            json!({"$not": {"$and": []}}),
            "$not.$and",
            "non-empty array",
        );
    }

    #[test]
    fn and_and_or_elements_must_be_filter_objects() {
        assert_rejected_at(
            json!({"$or": [{"a": 1}, "a", {"b": 2}]}),
            "$or[1]",
            "elements must be filter objects",
        );
        assert_rejected_at(json!({"$and": [[{"a": 1}]]}), "$and[0]", "filter objects");
    }

    #[test]
    fn not_requires_a_single_filter_object() {
        for bad in [json!([{"a": 1}]), json!(true), json!(null)] {
            assert_rejected_at(
                json!({"$not": bad}),
                "$not",
                "`$not` expects a filter object",
            );
        }
    }

    #[test]
    fn in_and_nin_require_an_array() {
        assert_rejected_at(
            json!({"x": {"$in": "a"}}),
            "x.$in",
            "`$in` expects an array",
        );
        assert_rejected_at(
            json!({"x": {"$nin": {"a": 1}}}),
            "x.$nin",
            "`$nin` expects an array",
        );
    }

    #[test]
    fn exists_requires_a_boolean() {
        for bad in [json!(1), json!("true"), json!(null)] {
            assert_rejected_at(
                json!({"x": {"$exists": bad}}),
                "x.$exists",
                "expects a boolean",
            );
        }
    }

    #[test]
    fn starts_with_requires_a_string() {
        for bad in [json!(1), json!(["a"]), json!(null)] {
            assert_rejected_at(
                json!({"x": {"$startsWith": bad}}),
                "x.$startsWith",
                "expects a string",
            );
        }
    }

    #[test]
    fn ordering_operators_reject_objects_arrays_booleans_and_null() {
        for op in ["$gt", "$gte", "$lt", "$lte"] {
            for bad in [json!({}), json!([1]), json!(true), json!(null)] {
                let path = format!("$and[0].data.score.{op}");
                assert_rejected_at(
                    json!({"$and": [{"data.score": {op: bad}}]}),
                    &path,
                    "expects a number or a string",
                );
            }
        }
    }

    #[test]
    fn empty_field_path_is_rejected() {
        assert_rejected_at(json!({"": 1}), "", "must not be empty");
        assert_rejected_at(json!({"$or": [{"": 1}]}), "$or[0].", "must not be empty");
    }

    #[test]
    fn empty_path_segment_is_rejected() {
        for path in ["data..x", ".data", "data.", "."] {
            assert_rejected_at(json!({path: 1}), path, "empty segment");
        }
        assert_rejected_at(
            json!({"$not": {"a..b": {"$gt": 1}}}),
            "$not.a..b",
            "`a..b` has an empty segment",
        );
    }

    #[test]
    fn error_display_names_the_location() {
        let e = reject(json!({"$and": [{"a": 1}, {"b": {"$in": 3}}]}));
        assert_eq!(e.to_string(), "`$in` expects an array at `$and[1].b.$in`");
    }

    // --- limits ---------------------------------------------------------

    /// Wraps `inner` in `levels` `$not`s; each adds one nesting level.
    /// Built by moving values, as `json!` would serialize (deep-copy) `acc` each time.
    fn nest_nots(inner: Value, levels: usize) -> Value {
        (0..levels).fold(inner, |acc, _| {
            Value::Object(Map::from_iter([("$not".to_owned(), acc)]))
        })
    }

    #[test]
    fn nesting_up_to_max_depth_is_accepted() {
        // Top level plus MAX_DEPTH - 1 nested filters, holding a literal condition.
        let filter = nest_nots(json!({"x": 1}), MAX_DEPTH - 1);
        let even_negations = (MAX_DEPTH - 1).is_multiple_of(2);
        assert_eq!(matches(filter, &json!({"x": 1})), even_negations);
        // The operator object is the MAX_DEPTH-th level here.
        parse(nest_nots(json!({"x": {"$gt": 1}}), MAX_DEPTH - 2));
        let or_chain = (0..MAX_DEPTH - 1).fold(json!({"x": 1}), |acc, _| json!({"$or": [acc]}));
        assert!(matches(or_chain, &json!({"x": 1})));
    }

    #[test]
    fn nesting_beyond_max_depth_is_rejected_with_its_path() {
        let e = reject(nest_nots(json!({"x": 1}), MAX_DEPTH));
        assert_eq!(e.path, ["$not"; MAX_DEPTH].join("."));
        assert!(e.message.contains("nested more than 8 levels"), "{e}");

        let e = reject((0..MAX_DEPTH).fold(json!({"x": 1}), |acc, _| json!({"$and": [acc]})));
        assert_eq!(e.path, ["$and[0]"; MAX_DEPTH].join("."));
    }

    #[test]
    fn operator_object_counts_as_a_nesting_level() {
        let e = reject(nest_nots(json!({"x": {"$gt": 1}}), MAX_DEPTH - 1));
        assert_eq!(e.path, format!("{}.x", ["$not"; MAX_DEPTH - 1].join(".")));
        assert!(e.message.contains("nested"), "{e}");
    }

    #[test]
    fn deep_literal_operands_do_not_count_towards_depth() {
        let deep_literal = (0..20).fold(json!(1), |acc, _| json!({"k": acc}));
        let d = json!({"x": deep_literal.clone()});
        assert!(matches(json!({"x": deep_literal.clone()}), &d));
        assert!(matches(json!({"x": {"$in": [deep_literal]}}), &d));
    }

    #[test]
    fn absurdly_deep_filters_are_rejected_without_exhausting_the_stack() {
        let filter = nest_nots(json!({}), 2_000);
        assert!(Filter::parse(&filter).is_err());
        // Dropping a deeply nested `Value` recurses too; leak it rather than test serde_json.
        std::mem::forget(filter);
    }

    /// `n` literal conditions; zero-padded keys keep iteration order equal to
    /// insertion order whether or not serde_json's `preserve_order` is enabled.
    fn conditions(n: usize) -> Value {
        Value::Object((0..n).map(|i| (format!("f{i:02}"), json!(i))).collect())
    }

    #[test]
    fn max_conditions_are_accepted() {
        let filter = conditions(MAX_CONDITIONS);
        assert!(matches(filter.clone(), &filter));
        assert!(!matches(filter, &json!({"f00": 0})));
        // 21 fields x 3 operators = 63, plus one `$and` = 64.
        let ops = json!({"$gte": 0, "$lte": 9, "$ne": 3});
        let fields: Map<String, Value> = (0..21).map(|i| (format!("g{i}"), ops.clone())).collect();
        parse(json!({"$and": [Value::Object(fields)]}));
    }

    #[test]
    fn one_condition_too_many_is_rejected_at_the_condition_that_overflows() {
        let e = reject(conditions(MAX_CONDITIONS + 1));
        assert_eq!(e.path, format!("f{MAX_CONDITIONS}"));
        assert!(e.message.contains("more than 64 conditions"), "{e}");
    }

    #[test]
    fn each_operator_in_a_condition_object_counts() {
        let ops = json!({"$gte": 0, "$lte": 9});
        let fields: Map<String, Value> = (0..MAX_CONDITIONS / 2)
            .map(|i| (format!("g{i:02}"), ops.clone()))
            .collect();
        parse(Value::Object(fields.clone()));
        let mut more = fields;
        more.insert("h".into(), json!(1));
        assert_rejected_at(Value::Object(more), "h", "conditions");
    }

    #[test]
    fn logical_operators_and_empty_sub_filters_count_as_conditions() {
        // 63 empty `{}` elements + the `$or` itself = 64: accepted.
        let empties = vec![json!({}); MAX_CONDITIONS - 1];
        assert!(matches(json!({"$or": empties.clone()}), &json!(null)));
        let mut too_many = empties;
        too_many.push(json!({}));
        assert_rejected_at(
            json!({"$or": too_many}),
            &format!("$or[{}]", MAX_CONDITIONS - 1),
            "conditions",
        );
        // `$and` (1) + 31 x (`$not` + comparison) (62) + one more comparison = 64.
        let nots = vec![json!({"$not": {"a": 1}}); MAX_CONDITIONS / 2 - 1];
        parse(json!({"$and": nots.clone(), "z": 1}));
        let mut more = nots;
        more.push(json!({"$not": {"a": 1}}));
        assert_rejected_at(
            json!({"$and": more}),
            &format!("$and[{}].$not.a", MAX_CONDITIONS / 2 - 1),
            "conditions",
        );
    }

    // --- properties -----------------------------------------------------

    /// A deliberately naive evaluator over the raw filter JSON, sharing no code
    /// with the implementation above. Assumes the filter is valid.
    mod reference {
        use serde_json::Value;

        pub fn matches(filter: &Value, doc: &Value) -> bool {
            let filter = filter.as_object().expect("filter is an object");
            for (key, operand) in filter {
                let ok = if key == "$and" {
                    operand.as_array().unwrap().iter().all(|f| matches(f, doc))
                } else if key == "$or" {
                    operand.as_array().unwrap().iter().any(|f| matches(f, doc))
                } else if key == "$not" {
                    !matches(operand, doc)
                } else {
                    field_holds(get(doc, key), operand)
                };
                if !ok {
                    return false;
                }
            }
            true
        }

        fn get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
            let mut current = doc;
            for part in path.split('.') {
                current = match current {
                    Value::Object(map) => map.get(part)?,
                    Value::Array(items) => {
                        let digits = part.chars().all(|c| c.is_ascii_digit());
                        let leading_zero = part.len() > 1 && part.starts_with('0');
                        if part.is_empty() || !digits || leading_zero {
                            return None;
                        }
                        items.get(part.parse::<usize>().ok()?)?
                    }
                    _ => return None,
                };
            }
            Some(current)
        }

        fn field_holds(value: Option<&Value>, condition: &Value) -> bool {
            if let Value::Object(ops) = condition
                && ops.keys().any(|k| k.starts_with('$'))
            {
                return ops.iter().all(|(op, arg)| op_holds(value, op, arg));
            }
            op_holds(value, "$eq", condition)
        }

        fn op_holds(value: Option<&Value>, op: &str, arg: &Value) -> bool {
            match op {
                "$eq" => value.is_some() && equal(value.unwrap(), arg),
                "$ne" => value.is_none() || !equal(value.unwrap(), arg),
                "$in" => {
                    value.is_some()
                        && arg
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|a| equal(value.unwrap(), a))
                }
                "$nin" => {
                    value.is_none()
                        || !arg
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|a| equal(value.unwrap(), a))
                }
                "$exists" => value.is_some() == arg.as_bool().unwrap(),
                "$startsWith" => match value {
                    Some(Value::String(s)) => s.starts_with(arg.as_str().unwrap()),
                    _ => false,
                },
                "$gt" | "$gte" | "$lt" | "$lte" => {
                    let ordering = match (value, arg) {
                        (Some(Value::Number(a)), Value::Number(b)) => {
                            a.as_f64().unwrap().partial_cmp(&b.as_f64().unwrap())
                        }
                        (Some(Value::String(a)), Value::String(b)) => Some(a.cmp(b)),
                        _ => None,
                    };
                    match ordering {
                        None => false,
                        Some(o) => match op {
                            "$gt" => o.is_gt(),
                            "$gte" => o.is_ge(),
                            "$lt" => o.is_lt(),
                            _ => o.is_le(),
                        },
                    }
                }
                other => panic!("reference evaluator got invalid operator {other}"),
            }
        }

        fn equal(a: &Value, b: &Value) -> bool {
            match (a, b) {
                (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
                (Value::Array(x), Value::Array(y)) => {
                    x.len() == y.len() && (0..x.len()).all(|i| equal(&x[i], &y[i]))
                }
                (Value::Object(x), Value::Object(y)) => {
                    x.len() == y.len() && x.keys().all(|k| y.contains_key(k) && equal(&x[k], &y[k]))
                }
                _ => a == b,
            }
        }

        /// Condition count as documented on `MAX_CONDITIONS`.
        pub fn conditions(filter: &Value) -> usize {
            let mut total = 0;
            for (key, operand) in filter.as_object().unwrap() {
                if key == "$and" || key == "$or" {
                    total += 1;
                    for sub in operand.as_array().unwrap() {
                        total += conditions(sub).max(1);
                    }
                } else if key == "$not" {
                    total += 1 + conditions(operand).max(1);
                } else {
                    total += match operand {
                        Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => ops.len(),
                        _ => 1,
                    };
                }
            }
            total
        }
    }

    mod strategies {
        use proptest::collection::{btree_map, vec};
        use proptest::option;
        use proptest::prelude::*;
        use proptest::sample::select;
        use serde_json::{Map, Value, json};

        const WORDS: &[&str] = &[
            "done",
            "pending",
            "order.created",
            "order.paid",
            "user.signup",
            "eu-west",
            "",
        ];
        const PREFIXES: &[&str] = &["order.", "ord", "user", "", "done", "eu", "zzz"];
        const PATHS: &[&str] = &[
            "topic",
            "metadata.region",
            "metadata.tier",
            "data.status",
            "data.score",
            "data.job",
            "data.job.status",
            "data.items",
            "data.items.0.id",
            "data.items.1.id",
            "data.items.01.id",
            "data.tags.0",
            "data.score.0",
            "data.missing",
        ];

        pub fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                1 => Just(Value::Null),
                1 => any::<bool>().prop_map(Value::from),
                4 => (-1i64..=5).prop_map(Value::from),
                2 => select(&[1.0, 2.0, 2.5, 5.0, -0.5][..]).prop_map(Value::from),
                4 => select(WORDS).prop_map(Value::from),
            ]
        }

        /// Small values, including arrays and objects, for deep-equality operands.
        pub fn value() -> impl Strategy<Value = Value> {
            scalar().prop_recursive(2, 8, 3, |inner| {
                prop_oneof![
                    vec(inner.clone(), 0..3).prop_map(Value::Array),
                    btree_map(select(&["status", "id", "n"][..]), inner, 0..3).prop_map(|m| {
                        Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    }),
                ]
            })
        }

        pub fn document() -> impl Strategy<Value = Value> {
            // Fields are usually present so conditions often see comparable values.
            let present = 0.8;
            let metadata = (
                option::weighted(present, select(&["eu-west", "us-east"][..])),
                option::weighted(present, 0i64..=4),
            );
            let word = || select(WORDS).prop_map(Value::from);
            let data = (
                option::weighted(present, prop_oneof![4 => word(), 1 => scalar()]),
                option::weighted(
                    present,
                    prop_oneof![4 => (0i64..=4).prop_map(Value::from), 1 => scalar()],
                ),
                option::weighted(present, prop_oneof![3 => word(), 1 => scalar()]),
                option::weighted(
                    present,
                    vec((0i64..=4).prop_map(|id| json!({"id": id})), 0..4),
                ),
                option::weighted(present, vec(select(WORDS), 0..3)),
            );
            (select(WORDS), metadata, data).prop_map(
                |(topic, (region, tier), (status, score, job, items, tags))| {
                    let mut m = Map::new();
                    if let Some(r) = region {
                        m.insert("region".into(), r.into());
                    }
                    if let Some(t) = tier {
                        m.insert("tier".into(), t.into());
                    }
                    let mut d = Map::new();
                    let fields = [
                        ("status", status),
                        ("score", score),
                        ("job", job.map(|s| json!({"status": s}))),
                        ("items", items.map(Value::Array)),
                        ("tags", tags.map(|t| json!(t))),
                    ];
                    for (key, v) in fields {
                        if let Some(v) = v {
                            d.insert(key.into(), v);
                        }
                    }
                    json!({"topic": topic, "metadata": m, "data": d})
                },
            )
        }

        const NUMBER_PATHS: &[&str] = &[
            "metadata.tier",
            "data.score",
            "data.items.0.id",
            "data.items.1.id",
        ];
        const STRING_PATHS: &[&str] = &[
            "topic",
            "metadata.region",
            "data.status",
            "data.job.status",
            "data.tags.0",
        ];

        fn number() -> BoxedStrategy<Value> {
            prop_oneof![
                3 => (0i64..=4).prop_map(Value::from),
                1 => select(&[1.0, 2.0, 2.5][..]).prop_map(Value::from),
            ]
            .boxed()
        }

        fn string() -> BoxedStrategy<Value> {
            select(WORDS).prop_map(Value::from).boxed()
        }

        /// An operator whose operands are drawn from `operands`, so that
        /// comparisons often meet values of the same type (and equal values).
        fn operator(operands: BoxedStrategy<Value>) -> impl Strategy<Value = (String, Value)> {
            let orderable = operands
                .clone()
                .prop_filter("orderable", |v| v.is_number() || v.is_string());
            prop_oneof![
                2 => operands.clone().prop_map(|v| ("$eq".to_owned(), v)),
                2 => operands.clone().prop_map(|v| ("$ne".to_owned(), v)),
                4 => (select(&["$gt", "$gte", "$lt", "$lte"][..]), orderable)
                    .prop_map(|(op, v)| (op.to_owned(), v)),
                3 => (select(&["$in", "$nin"][..]), vec(operands, 0..4))
                    .prop_map(|(op, vs)| (op.to_owned(), Value::Array(vs))),
                1 => any::<bool>().prop_map(|b| ("$exists".to_owned(), Value::Bool(b))),
                2 => select(PREFIXES).prop_map(|p| ("$startsWith".to_owned(), p.into())),
            ]
        }

        fn condition(operands: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
            prop_oneof![
                2 => operands.clone(),
                5 => vec(operator(operands), 1..3)
                    .prop_map(|ops| Value::Object(ops.into_iter().collect())),
            ]
        }

        fn field() -> impl Strategy<Value = (&'static str, Value)> {
            prop_oneof![
                3 => (select(NUMBER_PATHS), condition(number())),
                3 => (select(STRING_PATHS), condition(string())),
                // Any path with any operand: type mismatches, deep equality, odd paths.
                2 => (select(PATHS), condition(value().boxed())),
            ]
        }

        fn fields(size: std::ops::Range<usize>) -> impl Strategy<Value = Map<String, Value>> {
            vec(field(), size)
                .prop_map(|fs| fs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        }

        /// Valid filters at most 4 filter levels deep (5 with operator objects).
        pub fn filter() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![1 => Just(json!({})), 8 => fields(1..3).prop_map(Value::Object)];
            leaf.prop_recursive(3, 24, 3, |inner| {
                prop_oneof![
                    vec(inner.clone(), 1..4).prop_map(|fs| json!({"$and": fs})),
                    vec(inner.clone(), 1..4).prop_map(|fs| json!({"$or": fs})),
                    inner.clone().prop_map(|f| json!({"$not": f})),
                    (inner, fields(1..2)).prop_map(|(mut f, extra)| {
                        f.as_object_mut().unwrap().extend(extra);
                        f
                    }),
                ]
            })
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                select(
                    &[
                        "$and",
                        "$or",
                        "$not",
                        "$eq",
                        "$ne",
                        "$gt",
                        "$gte",
                        "$lt",
                        "$lte",
                        "$in",
                        "$nin",
                        "$exists",
                        "$startsWith",
                        "$bogus",
                        "$",
                        "",
                        ".",
                        "a..b",
                        "data",
                        "data.items.0",
                        "topic",
                    ][..]
                )
                .prop_map(str::to_owned),
                "[a-z0-9$.]{0,6}",
            ]
        }

        /// Arbitrary JSON biased towards filter-like keys, to reach deep into the parser.
        pub fn arbitrary_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,8}".prop_map(Value::from),
                scalar(),
            ];
            leaf.prop_recursive(10, 96, 6, |inner| {
                prop_oneof![
                    1 => vec(inner.clone(), 0..6).prop_map(Value::Array),
                    3 => btree_map(key(), inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn matches_agrees_with_the_reference_evaluator(
            filter in strategies::filter(),
            docs in proptest::collection::vec(strategies::document(), 4..8),
        ) {
            let parsed = Filter::parse(&filter);
            let within_cap = reference::conditions(&filter) <= MAX_CONDITIONS;
            prop_assert_eq!(parsed.is_ok(), within_cap, "{:?}", parsed);
            if let Ok(parsed) = parsed {
                for doc in &docs {
                    prop_assert_eq!(parsed.matches(doc), reference::matches(&filter, doc), "doc: {}", doc);
                    let event = parsed.matches_event(
                        doc["topic"].as_str().unwrap(),
                        &doc["metadata"],
                        &doc["data"],
                    );
                    prop_assert_eq!(event, parsed.matches(doc));
                }
            }
        }

        #[test]
        fn parse_never_panics_and_accepted_filters_match_like_the_reference(
            value in strategies::arbitrary_json(),
            doc in strategies::document(),
        ) {
            if let Ok(parsed) = Filter::parse(&value) {
                prop_assert_eq!(parsed.matches(&doc), reference::matches(&value, &doc));
                prop_assert!(reference::conditions(&value) <= MAX_CONDITIONS);
            }
        }

        #[test]
        fn field_condition_operands_never_panic(
            path in "[a-z0-9.]{0,8}",
            condition in strategies::arbitrary_json(),
            doc in strategies::document(),
        ) {
            let filter = json!({ path: condition });
            if let Ok(parsed) = Filter::parse(&filter) {
                prop_assert_eq!(parsed.matches(&doc), reference::matches(&filter, &doc));
            }
        }
    }
}
