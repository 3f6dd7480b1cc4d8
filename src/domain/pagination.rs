//! Pagination shared by every list on every protocol: sort specs, limits, signed cursors, and
//! the one function that picks a page.
//!
//! Keyset (cursor) pagination is the default: the cursor carries the sort-key values and id of the
//! last row served, and the next page is "rows strictly after that key". Rows inserted meanwhile
//! land before or after the key, so no row is skipped or served twice, and the cost does not grow
//! with depth. Offset pagination is accepted for comparison and is the anti-pattern: every page
//! re-walks `offset` rows, and an insert before the offset shifts rows into the next page twice.
//!
//! A cursor is `base64url(json).base64url(hmac)`: opaque to clients, and a tampered or foreign
//! cursor fails the HMAC check and is refused rather than silently misread.

use std::cmp::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::FieldViolation;

/// One sort-key value of a row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortValue {
    /// Numbers, timestamps (as microseconds) and statuses (as their life-cycle rank).
    Int(i64),
    /// Names and emails.
    Text(String),
}

/// One term of a sort spec: a field and a direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortTerm {
    /// The field, one of the list's sortable fields.
    pub field: &'static str,
    /// `-field` sorts descending.
    pub descending: bool,
}

/// A parsed `sort=-created_at,total_cents`. Ties are always broken by id, ascending, so the
/// order is total and keyset pagination is exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortSpec {
    terms: Vec<SortTerm>,
}

impl SortSpec {
    /// Sorting by id alone, the default of every list.
    pub fn by_id() -> Self {
        Self { terms: Vec::new() }
    }

    /// Parses a comma-separated spec against the fields this list can sort by.
    pub fn parse(raw: &str, sortable: &[&'static str]) -> Result<Self, FieldViolation> {
        let mut terms = Vec::new();
        for part in raw.split(',').map(str::trim) {
            let (descending, name) = match part.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, part.strip_prefix('+').unwrap_or(part)),
            };
            let field = sortable.iter().find(|f| **f == name).ok_or_else(|| {
                FieldViolation::new(
                    "sort",
                    format!(
                        "cannot sort by '{part}'; sortable fields: {}",
                        sortable.join(", ")
                    ),
                )
            })?;
            if terms.iter().any(|t: &SortTerm| t.field == *field) {
                return Err(FieldViolation::new(
                    "sort",
                    format!("'{name}' appears twice"),
                ));
            }
            terms.push(SortTerm { field, descending });
        }
        // `id` ascending is the implicit tie-breaker; spelling it out changes nothing.
        if matches!(
            terms.last(),
            Some(SortTerm {
                field: "id",
                descending: false
            })
        ) {
            terms.pop();
        }
        Ok(Self { terms })
    }

    /// The opposite order, for paging backwards (`last`/`before`): every term flipped, and the
    /// id tie-breaker made explicit and descending.
    pub fn reversed(&self) -> Self {
        let mut terms: Vec<SortTerm> = self
            .terms
            .iter()
            .map(|t| SortTerm {
                field: t.field,
                descending: !t.descending,
            })
            .collect();
        match terms.last_mut() {
            // Already ends with an explicit id term: flipping it was enough.
            Some(last) if last.field == "id" => {}
            _ => terms.push(SortTerm {
                field: "id",
                descending: true,
            }),
        }
        // Reversing "-id" gives "id", the implicit default.
        if matches!(
            terms.as_slice(),
            [SortTerm {
                field: "id",
                descending: false
            }]
        ) {
            terms.clear();
        }
        Self { terms }
    }

    /// The terms, without the implicit id tie-breaker.
    pub fn terms(&self) -> &[SortTerm] {
        &self.terms
    }

    /// True when rows come in plain id order, which a store can serve from its ordered index.
    pub fn is_by_id(&self) -> bool {
        self.terms.is_empty()
    }

    /// The canonical text form, stored in cursors so a cursor is only used with its own sort.
    pub fn canonical(&self) -> String {
        self.terms
            .iter()
            .map(|t| format!("{}{}", if t.descending { "-" } else { "" }, t.field))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Compares two rows' keys under this spec, then by id.
    pub fn compare(&self, a: &RowKey, b: &RowKey) -> Ordering {
        for (i, term) in self.terms.iter().enumerate() {
            let ord = a.values[i].cmp(&b.values[i]);
            let ord = if term.descending { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        a.id.cmp(&b.id)
    }
}

/// A row's position in a sorted list: its sort-key values (one per term) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKey {
    /// One value per sort term.
    pub values: Vec<SortValue>,
    /// The row's id, the tie-breaker.
    pub id: u64,
}

impl RowKey {
    /// The key of row `id` in a list sorted by `sort`, reading each term's value with `value`.
    pub fn of(sort: &SortSpec, id: u64, mut value: impl FnMut(&str) -> SortValue) -> Self {
        Self {
            values: sort.terms().iter().map(|term| value(term.field)).collect(),
            id,
        }
    }
}

/// How many rows a page holds: 1 to the configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(usize);

impl Limit {
    /// Parses `?limit=`; outside `1..=max` is a violation of `limit`.
    pub fn parse(raw: &str, max: usize) -> Result<Self, FieldViolation> {
        raw.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .map(Limit)
            .ok_or_else(|| {
                FieldViolation::new("limit", format!("must be an integer from 1 to {max}"))
            })
    }

    /// A limit already known to be in range (defaults from configuration).
    pub fn new(n: usize) -> Self {
        Self(n.max(1))
    }

    /// The count.
    pub fn get(self) -> usize {
        self.0
    }
}

/// Page sizes (`pagination.default_limit` and `pagination.max_limit`): one rule for every
/// protocol's page request (REST `?limit=`, GraphQL `first`/`last`, gRPC `page_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Used when a request names no size.
    pub default: usize,
    /// The largest accepted.
    pub max: usize,
}

impl Default for PageLimits {
    fn default() -> Self {
        Self {
            default: 20,
            max: 100,
        }
    }
}

impl PageLimits {
    /// The page size a request asked for, or the default when it asked for none. A size
    /// outside `1..=max` is a violation of `field` (the protocol's name for it).
    pub fn limit(&self, requested: Option<i64>, field: &str) -> Result<Limit, FieldViolation> {
        match requested {
            None => Ok(Limit::new(self.default)),
            Some(n) if n >= 1 && (n as u64) <= self.max as u64 => Ok(Limit(n as usize)),
            Some(_) => Err(self.violation(field)),
        }
    }

    /// Like [`PageLimits::limit`], for a size still in text form (a query parameter).
    pub fn parse(&self, raw: Option<&str>, field: &str) -> Result<Limit, FieldViolation> {
        match raw {
            None => Ok(Limit::new(self.default)),
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .map_err(|_| self.violation(field))
                .and_then(|n| self.limit(Some(n), field)),
        }
    }

    fn violation(&self, field: &str) -> FieldViolation {
        FieldViolation::new(field, format!("must be an integer from 1 to {}", self.max))
    }
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The first page.
    Start,
    /// Strictly after this row (from a cursor).
    After(RowKey),
    /// After skipping this many rows (offset pagination, the anti-pattern).
    Offset(usize),
}

/// Everything needed to pick one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// The order of rows.
    pub sort: SortSpec,
    /// Where to start.
    pub position: Position,
    /// How many rows at most.
    pub limit: Limit,
}

/// One page of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows, in order.
    pub rows: Vec<T>,
    /// The key of the last row, when more rows follow: the next page starts after it.
    pub next: Option<RowKey>,
}

impl<T> Page<T> {
    /// True when another page follows.
    pub fn has_more(&self) -> bool {
        self.next.is_some()
    }

    /// The same page with each row converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            rows: self.rows.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// Picks the page `request` asks for from `rows` (any order), returning the ids of the page's
/// rows in order, and the key to continue after when more rows follow.
///
/// Cost: one pass plus a partial selection, O(n) for n rows; the keyset fast path for plain id
/// order lives in the store, which can walk its ordered index from the cursor instead.
pub fn select_page(rows: impl Iterator<Item = RowKey>, request: &PageRequest) -> Page<u64> {
    let sort = &request.sort;
    let (skip, after) = match &request.position {
        Position::Start => (0, None),
        Position::After(key) => (0, Some(key)),
        Position::Offset(n) => (*n, None),
    };
    let mut candidates: Vec<RowKey> = rows
        .filter(|row| after.is_none_or(|a| sort.compare(row, a) == Ordering::Greater))
        .collect();
    // We need rows [skip, skip + limit] (one extra to know whether more follow).
    let wanted = skip.saturating_add(request.limit.get()).saturating_add(1);
    if candidates.len() > wanted {
        candidates.select_nth_unstable_by(wanted - 1, |a, b| sort.compare(a, b));
        candidates.truncate(wanted);
    }
    candidates.sort_unstable_by(|a, b| sort.compare(a, b));
    page_from_sorted(candidates.into_iter().skip(skip), request.limit)
}

/// Takes up to `limit` rows from rows already in order, noting whether more follow.
pub fn page_from_sorted(mut rows: impl Iterator<Item = RowKey>, limit: Limit) -> Page<u64> {
    let mut page: Vec<RowKey> = rows.by_ref().take(limit.get()).collect();
    let next = match rows.next() {
        Some(_) => page.last().cloned(),
        None => None,
    };
    Page {
        rows: page.drain(..).map(|row| row.id).collect(),
        next,
    }
}

/// Why a cursor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorError {
    /// Not ours: malformed, tampered with, or signed by another key (e.g. before a restart).
    Invalid,
    /// Ours, but made for another sort order.
    WrongSort,
    /// Ours, but made for another list (a customers cursor sent to the orders list).
    WrongList,
}

impl CursorError {
    /// The violation reported to the client.
    pub fn violation(self) -> FieldViolation {
        match self {
            Self::Invalid => FieldViolation::new(
                "cursor",
                "is not a cursor this server issued (malformed, modified, or from before a restart)",
            ),
            Self::WrongSort => FieldViolation::new(
                "cursor",
                "was issued for a different sort order; send the same sort as the first page",
            ),
            Self::WrongList => FieldViolation::new("cursor", "was issued for a different list"),
        }
    }
}

/// Turns row keys into signed, opaque cursor strings and back.
///
/// The key comes from configuration, or is random per process: then cursors do not survive a
/// restart (they are answered with a clear 400). Several instances behind a load balancer must
/// share a configured key.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl CursorCodec {
    const TAG_LEN: usize = 16;

    /// A codec signing with `key`.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn tag(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac.finalize().into_bytes()[..Self::TAG_LEN].to_vec()
    }

    /// The cursor for continuing the list named `list` after `key` under `sort`.
    pub fn encode(&self, list: &str, sort: &SortSpec, key: &RowKey) -> String {
        let values: Vec<serde_json::Value> = key
            .values
            .iter()
            .map(|v| match v {
                SortValue::Int(n) => serde_json::Value::from(*n),
                SortValue::Text(s) => serde_json::Value::from(s.as_str()),
            })
            .collect();
        let payload =
            serde_json::json!({ "l": list, "s": sort.canonical(), "k": values, "id": key.id });
        let payload = payload.to_string().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.tag(&payload))
        )
    }

    /// The row key inside `cursor`, if this codec signed it for the list `list` under `sort`.
    pub fn decode(&self, list: &str, cursor: &str, sort: &SortSpec) -> Result<RowKey, CursorError> {
        let (payload, tag) = cursor.split_once('.').ok_or(CursorError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CursorError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CursorError::Invalid)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&payload);
        mac.verify_truncated_left(&tag)
            .map_err(|_| CursorError::Invalid)?;
        if tag.len() != Self::TAG_LEN {
            return Err(CursorError::Invalid);
        }
        let json: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|_| CursorError::Invalid)?;
        if json["l"].as_str() != Some(list) {
            return Err(CursorError::WrongList);
        }
        if json["s"].as_str() != Some(sort.canonical().as_str()) {
            return Err(CursorError::WrongSort);
        }
        let id = json["id"].as_u64().ok_or(CursorError::Invalid)?;
        let values = json["k"]
            .as_array()
            .ok_or(CursorError::Invalid)?
            .iter()
            .map(|v| match v {
                serde_json::Value::Number(n) => n.as_i64().map(SortValue::Int),
                serde_json::Value::String(s) => Some(SortValue::Text(s.clone())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or(CursorError::Invalid)?;
        if values.len() != sort.terms().len() {
            return Err(CursorError::Invalid);
        }
        Ok(RowKey { values, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SORTABLE: &[&str] = &["id", "created_at", "total_cents", "status"];

    fn rows(pairs: &[(i64, u64)]) -> Vec<RowKey> {
        pairs
            .iter()
            .map(|(v, id)| RowKey {
                values: vec![SortValue::Int(*v)],
                id: *id,
            })
            .collect()
    }

    fn request(sort: &str, position: Position, limit: usize) -> PageRequest {
        PageRequest {
            sort: SortSpec::parse(sort, SORTABLE).unwrap(),
            position,
            limit: Limit::new(limit),
        }
    }

    #[test]
    fn sort_specs_parse_directions_and_reject_unknown_or_repeated_fields() {
        let spec = SortSpec::parse("-created_at,total_cents", SORTABLE).unwrap();
        assert_eq!(spec.canonical(), "-created_at,total_cents");
        assert!(SortSpec::parse("id", SORTABLE).unwrap().is_by_id());
        for bad in ["colour", "", "created_at,-created_at", "--id"] {
            let err = SortSpec::parse(bad, SORTABLE).unwrap_err();
            assert_eq!(err.field, "sort", "{bad}");
        }
    }

    #[test]
    fn a_reversed_sort_orders_rows_exactly_backwards() {
        let data = [(5, 1), (3, 2), (5, 3), (1, 4)];
        for spec in ["", "-total_cents", "total_cents", "-id"] {
            let sort = if spec.is_empty() {
                SortSpec::by_id()
            } else {
                SortSpec::parse(spec, SORTABLE).unwrap()
            };
            let key = |sort: &SortSpec, (v, id): (i64, u64)| RowKey {
                values: sort
                    .terms()
                    .iter()
                    .map(|t| SortValue::Int(if t.field == "id" { id as i64 } else { v }))
                    .collect(),
                id,
            };
            let reversed = sort.reversed();
            let mut forward: Vec<u64> = data.iter().map(|d| d.1).collect();
            forward.sort_by(|a, b| {
                let find = |id: &u64| *data.iter().find(|d| d.1 == *id).unwrap();
                sort.compare(&key(&sort, find(a)), &key(&sort, find(b)))
            });
            let mut backward: Vec<u64> = data.iter().map(|d| d.1).collect();
            backward.sort_by(|a, b| {
                let find = |id: &u64| *data.iter().find(|d| d.1 == *id).unwrap();
                reversed.compare(&key(&reversed, find(a)), &key(&reversed, find(b)))
            });
            backward.reverse();
            assert_eq!(forward, backward, "{spec}");
        }
    }

    #[test]
    fn limits_outside_one_to_max_are_refused() {
        assert_eq!(Limit::parse("100", 100).unwrap().get(), 100);
        for bad in ["0", "101", "-1", "ten", "1e3", ""] {
            assert!(Limit::parse(bad, 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_follow_the_sort_with_id_as_tie_breaker() {
        let all = rows(&[(5, 1), (3, 2), (5, 3), (1, 4), (3, 5)]);
        let page = select_page(
            all.clone().into_iter(),
            &request("-total_cents", Position::Start, 3),
        );
        assert_eq!(page.rows, vec![1, 3, 2]);
        let next = page.next.expect("more rows follow");
        let page = select_page(
            all.into_iter(),
            &request("-total_cents", Position::After(next), 3),
        );
        assert_eq!(page.rows, vec![5, 4]);
        assert!(!page.has_more());
    }

    #[test]
    fn offset_pages_skip_rows() {
        let all = rows(&[(1, 1), (2, 2), (3, 3), (4, 4)]);
        let page = select_page(
            all.into_iter(),
            &request("total_cents", Position::Offset(1), 2),
        );
        assert_eq!(page.rows, vec![2, 3]);
        assert!(page.has_more());
    }

    #[test]
    fn cursors_round_trip_and_tampering_is_detected() {
        let codec = CursorCodec::new(b"k1");
        let sort = SortSpec::parse("-total_cents", SORTABLE).unwrap();
        let key = RowKey {
            values: vec![SortValue::Int(1200)],
            id: 7,
        };
        let cursor = codec.encode("orders", &sort, &key);
        assert_eq!(codec.decode("orders", &cursor, &sort), Ok(key.clone()));

        let other_sort = SortSpec::by_id();
        assert_eq!(
            codec.decode("orders", &cursor, &other_sort),
            Err(CursorError::WrongSort)
        );
        assert_eq!(
            CursorCodec::new(b"k2").decode("orders", &cursor, &sort),
            Err(CursorError::Invalid)
        );
        // Flip one character of the payload: the signature no longer matches.
        let mut tampered = cursor.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            codec.decode("orders", &tampered, &sort),
            Err(CursorError::Invalid)
        );
        for junk in ["", ".", "abc", "abc.def", "💥.💥"] {
            assert_eq!(
                codec.decode("orders", junk, &sort),
                Err(CursorError::Invalid),
                "{junk}"
            );
        }
    }
}
