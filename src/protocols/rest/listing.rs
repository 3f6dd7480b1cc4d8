//! List endpoints: one set of query parameters and one envelope for every collection.
//!
//! ```text
//! ?limit=20                   page size, 1..=max (default 20, max 100)
//! ?cursor=...                 continue after the last page (opaque, signed)
//! ?offset=40                  skip rows instead: accepted for comparison, the anti-pattern
//! ?sort=-created_at,total_cents   `-` = descending; ties broken by id
//! ?fields=id,status           sparse fieldsets
//! ?include=customer,items     side-loading (where the collection has relations)
//! ?status=paid&customer_id=7  filters (where the collection has them)
//! ```
//!
//! Response: `{"data": [...], "next_cursor": "..." | null, "has_more": bool}`. Unknown parameters
//! are refused with 400 rather than ignored, so `?stauts=paid` does not quietly return everything.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::domain::FieldViolation;
use crate::domain::pagination::{
    CursorCodec, Limit, Page, PageLimits, PageRequest, Position, SortSpec,
};
use crate::gateway::ApiError;
use crate::protocols::rest::{Caching, JsonResponse};
use axum::response::{IntoResponse, Response};

/// What one collection supports.
pub struct ListSpec {
    /// The list's name, bound into its cursors so they are not reused on another list.
    pub name: &'static str,
    /// Fields `?sort=` accepts.
    pub sortable: &'static [&'static str],
    /// Fields `?fields=` accepts (the representation's keys).
    pub fields: &'static [&'static str],
    /// Relations `?include=` accepts.
    pub includes: &'static [&'static str],
    /// Filter parameters accepted.
    pub filters: &'static [&'static str],
}

/// A parsed list request.
#[derive(Debug)]
pub struct ListParams {
    /// The list's name, for its cursors.
    pub list: &'static str,
    /// Which page.
    pub page: PageRequest,
    /// `?fields=`, when given.
    pub fields: Option<Vec<String>>,
    /// `?include=` relations.
    pub include: Vec<String>,
    /// Filter values by parameter name, still raw: the endpoint parses them.
    pub filters: BTreeMap<String, String>,
}

impl ListParams {
    /// True when `?include=` names `relation`.
    pub fn includes(&self, relation: &str) -> bool {
        includes_relation(&self.include, relation)
    }
}

const COMMON: &[&str] = &["limit", "cursor", "offset", "sort", "fields", "include"];

/// Parses the query pairs of a list request against `spec`, reporting every bad parameter.
pub fn parse(
    pairs: Vec<(String, String)>,
    spec: &ListSpec,
    limits: PageLimits,
    cursors: &CursorCodec,
) -> Result<ListParams, ApiError> {
    let mut violations = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in pairs {
        let known = COMMON.contains(&name.as_str()) || spec.filters.contains(&name.as_str());
        if !known {
            let mut accepted: Vec<&str> = COMMON.to_vec();
            if spec.includes.is_empty() {
                accepted.retain(|p| *p != "include");
            }
            accepted.extend(spec.filters);
            violations.push(FieldViolation::new(
                name.clone(),
                format!("unknown parameter; this list takes {}", accepted.join(", ")),
            ));
        } else if seen.insert(name.clone(), value).is_some() {
            violations.push(FieldViolation::new(name, "given more than once"));
        }
    }

    let limit = limits
        .parse(seen.remove("limit").as_deref(), "limit")
        .unwrap_or_else(|v| {
            violations.push(v);
            Limit::new(limits.default)
        });
    let sort = match seen.remove("sort") {
        Some(raw) => SortSpec::parse(&raw, spec.sortable).unwrap_or_else(|v| {
            violations.push(v);
            SortSpec::by_id()
        }),
        None => SortSpec::by_id(),
    };
    let position = match (seen.remove("cursor"), seen.remove("offset")) {
        (Some(_), Some(_)) => {
            violations.push(FieldViolation::new(
                "offset",
                "cannot be combined with cursor; use one or the other",
            ));
            Position::Start
        }
        (Some(cursor), None) => match cursors.decode(spec.name, &cursor, &sort) {
            Ok(key) => Position::After(key),
            Err(e) => {
                violations.push(e.violation());
                Position::Start
            }
        },
        (None, Some(offset)) => match offset.trim().parse::<usize>() {
            Ok(n) if n <= 10_000_000 => Position::Offset(n),
            _ => {
                violations.push(FieldViolation::new(
                    "offset",
                    "must be an integer from 0 to 10000000",
                ));
                Position::Start
            }
        },
        (None, None) => Position::Start,
    };
    let fields = seen.remove("fields").map(|raw| {
        let names = split_list(&raw);
        for name in &names {
            if !spec.fields.contains(&name.as_str()) {
                violations.push(FieldViolation::new(
                    "fields",
                    format!("unknown field '{name}'; fields: {}", spec.fields.join(", ")),
                ));
            }
        }
        names
    });
    let include = seen
        .remove("include")
        .map(|raw| includes(&raw, spec.includes, "list", &mut violations))
        .unwrap_or_default();
    if !violations.is_empty() {
        return Err(ApiError::invalid(violations));
    }
    Ok(ListParams {
        list: spec.name,
        page: PageRequest {
            sort,
            position,
            limit,
        },
        fields,
        include,
        filters: seen,
    })
}

/// True when `include` names `relation` itself or a path through it (`items.product`
/// includes `items`).
pub fn includes_relation(include: &[String], relation: &str) -> bool {
    include.iter().any(|r| {
        r == relation
            || r.strip_prefix(relation)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The relations `raw` names (`customer,items.product`), each checked against `allowed`.
fn includes(
    raw: &str,
    allowed: &[&str],
    what: &str,
    violations: &mut Vec<FieldViolation>,
) -> Vec<String> {
    let names = split_list(raw);
    for name in &names {
        if !allowed.contains(&name.as_str()) {
            violations.push(FieldViolation::new(
                "include",
                if allowed.is_empty() {
                    format!("this {what} has no relations to include")
                } else {
                    format!("cannot include '{name}'; relations: {}", allowed.join(", "))
                },
            ));
        }
    }
    names
}

/// The query of a request for one resource: at most `include`, with relations from
/// `allowed` (an endpoint with none takes no parameter at all). As on lists, an unknown
/// parameter is a 400, not ignored. Returns the relations to include.
pub fn parse_single(
    pairs: Vec<(String, String)>,
    allowed: &[&str],
) -> Result<Vec<String>, ApiError> {
    let mut violations = Vec::new();
    let mut include: Option<String> = None;
    for (name, value) in pairs {
        if name == "include" && !allowed.is_empty() {
            if include.replace(value).is_some() {
                violations.push(FieldViolation::new(name, "given more than once"));
            }
        } else {
            let takes = if allowed.is_empty() {
                "this endpoint takes no parameters".to_owned()
            } else {
                "this endpoint takes include".to_owned()
            };
            violations.push(FieldViolation::new(
                name,
                format!("unknown parameter; {takes}"),
            ));
        }
    }
    let names = include
        .map(|raw| includes(&raw, allowed, "resource", &mut violations))
        .unwrap_or_default();
    if violations.is_empty() {
        Ok(names)
    } else {
        Err(ApiError::invalid(violations))
    }
}

/// An endpoint that takes no query parameter: anything in the query string is a 400 naming it.
#[derive(Debug, Clone, Copy)]
pub struct NoParameters;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for NoParameters {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let pairs = url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        parse_single(pairs, &[]).map(|_| NoParameters)
    }
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Keeps only the requested top-level fields of a representation (plus side-loaded relations).
pub fn sparse(mut object: Map<String, Value>, params: &ListParams) -> Value {
    if let Some(fields) = &params.fields {
        object.retain(|key, _| fields.contains(key) || params.includes(key));
    }
    Value::Object(object)
}

/// The list response for `page`: the envelope
/// `{"data": [...], "next_cursor": ..., "has_more": ...}`, each row as its wire type `wire`
/// gives it, cut to `?fields=`.
pub fn respond_sparse<T, W: serde::Serialize>(
    page: &Page<T>,
    params: &ListParams,
    cursors: &CursorCodec,
    caching: Caching,
    wire: impl Fn(&T) -> W,
) -> Response {
    respond(page, params, cursors, caching, |row| {
        sparse(to_object(&wire(row)), params)
    })
}

/// A wire type as a JSON object, for sparse fieldsets.
pub fn to_object(value: &impl serde::Serialize) -> serde_json::Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("wire types serialize to JSON objects"),
    }
}

/// Like [`respond_sparse`], with each row rendered by `row` (for rows that need more than
/// their wire type: side-loads).
pub fn respond<T>(
    page: &Page<T>,
    params: &ListParams,
    cursors: &CursorCodec,
    caching: Caching,
    row: impl FnMut(&T) -> Value,
) -> Response {
    let body = serde_json::json!({
        "data": page.rows.iter().map(row).collect::<Vec<_>>(),
        "next_cursor": page.next.as_ref().map(|key| cursors.encode(params.list, &params.page.sort, key)),
        "has_more": page.has_more(),
    });
    JsonResponse::ok(&body).caching(caching).into_response()
}
