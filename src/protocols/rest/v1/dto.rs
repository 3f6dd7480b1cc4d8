//! The v1 wire types: what REST v1 clients send and receive, and the hand-written conversions
//! to and from the domain.
//!
//! Field names are snake_case and ids are strings; the other JSON protocols use the same names.
//! Request types refuse unknown fields, so a typo (`quantiy`) is a 400, not a silent default.

use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::core::customer_ref;
use crate::domain::model::{Customer, CustomerId, Order, OrderStatus, Product};
use crate::domain::{FieldViolation, NewCustomer, NewItem, NewOrder, OrderChanges};
pub use crate::wire::{CancellationV1, ItemV1, OrderV1, timestamp};

/// The cancellation resource: `POST /v1/orders/{id}/cancellations` creates it,
/// `GET /v1/orders/{id}/cancellation` reads it.
#[derive(Debug, Serialize)]
pub struct CancellationResourceV1 {
    /// The cancelled order's id.
    pub order_id: String,
    /// As given, or null.
    pub reason: Option<String>,
    /// RFC 3339.
    pub cancelled_at: String,
    /// The order after cancelling.
    pub order: OrderV1,
}

impl CancellationResourceV1 {
    /// The resource for a cancelled order, if it is one.
    pub fn of(order: &Order) -> Option<Self> {
        let c = order.cancellation.as_ref()?;
        Some(Self {
            order_id: order.id.to_string(),
            reason: c.reason.clone(),
            cancelled_at: timestamp(c.cancelled_at),
            order: OrderV1::from(order),
        })
    }
}

/// A customer.
#[derive(Debug, Serialize)]
pub struct CustomerV1 {
    /// Opaque id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unique email.
    pub email: String,
}

impl From<&Customer> for CustomerV1 {
    fn from(c: &Customer) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name.clone(),
            email: c.email.clone(),
        }
    }
}

/// A product.
#[derive(Debug, Serialize)]
pub struct ProductV1 {
    /// Opaque id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unit price in cents.
    pub price_cents: i64,
    /// ISO 4217.
    pub currency: String,
}

impl From<&Product> for ProductV1 {
    fn from(p: &Product) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.name.clone(),
            price_cents: p.price_cents,
            currency: p.currency.clone(),
        }
    }
}

// ---- requests ----

/// `{"product_id": "3", "quantity": 2}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItemV1 {
    /// An existing product.
    pub product_id: String,
    /// 1 to 1000.
    pub quantity: i64,
}

fn items_into_domain(items: &[NewItemV1], violations: &mut Vec<FieldViolation>) -> Vec<NewItem> {
    NewItem::parse_all(
        items.iter().map(|i| (i.product_id.as_str(), i.quantity)),
        violations,
    )
}

fn customer(raw: &str, violations: &mut Vec<FieldViolation>) -> Option<CustomerId> {
    customer_ref(raw, "customer_id")
        .map_err(|v| violations.push(v))
        .ok()
}

fn status(raw: &str, violations: &mut Vec<FieldViolation>) -> Option<OrderStatus> {
    raw.parse().map_err(|v| violations.push(v)).ok()
}

/// `POST /v1/orders` and each element of `POST /v1/orders/bulk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderV1 {
    /// An existing customer.
    pub customer_id: String,
    /// 1 to 100 items.
    pub items: Vec<NewItemV1>,
}

impl CreateOrderV1 {
    /// The domain command, or every field that is wrong.
    pub fn into_domain(self) -> Result<NewOrder, Vec<FieldViolation>> {
        NewOrder::parse(
            &self.customer_id,
            self.items
                .iter()
                .map(|i| (i.product_id.as_str(), i.quantity)),
        )
    }
}

/// `PUT /v1/orders/{id}`: every writable field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceOrderV1 {
    /// An existing customer.
    pub customer_id: String,
    /// The status, following the life cycle.
    pub status: String,
    /// 1 to 100 items, replacing the current ones.
    pub items: Vec<NewItemV1>,
}

impl ReplaceOrderV1 {
    /// The domain change setting every field.
    pub fn into_domain(self) -> Result<OrderChanges, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let customer_id = customer(&self.customer_id, &mut violations);
        let status = status(&self.status, &mut violations);
        let items = items_into_domain(&self.items, &mut violations);
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(OrderChanges {
            customer_id,
            status,
            items: Some(items),
        })
    }
}

/// `PATCH /v1/orders/{id}` (JSON merge patch): any subset of the writable fields. `null` would
/// mean "remove", and none of them can be removed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchOrderV1 {
    /// A new customer.
    #[serde(default, deserialize_with = "present")]
    pub customer_id: Option<Option<String>>,
    /// A new status.
    #[serde(default, deserialize_with = "present")]
    pub status: Option<Option<String>>,
    /// New items replacing the current ones (merge patch replaces arrays whole).
    #[serde(default, deserialize_with = "present")]
    pub items: Option<Option<Vec<NewItemV1>>>,
}

/// Distinguishes a field given as `null` (`Some(None)`) from a field left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

impl PatchOrderV1 {
    /// The domain change, or every field that is wrong.
    pub fn into_domain(self) -> Result<OrderChanges, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut required = |name: &str, given: bool| {
            if !given {
                violations.push(FieldViolation::new(name, "cannot be removed (null)"));
            }
        };
        required("customer_id", !matches!(self.customer_id, Some(None)));
        required("status", !matches!(self.status, Some(None)));
        required("items", !matches!(self.items, Some(None)));
        let customer_id = self
            .customer_id
            .flatten()
            .and_then(|raw| customer(&raw, &mut violations));
        let status = self
            .status
            .flatten()
            .and_then(|raw| status(&raw, &mut violations));
        let items = self
            .items
            .flatten()
            .map(|items| items_into_domain(&items, &mut violations));
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(OrderChanges {
            customer_id,
            status,
            items,
        })
    }
}

/// `POST /v1/orders/{id}/cancellations`; the body is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelV1 {
    /// Why, at most 500 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/orders/bulk`: each element is parsed on its own, so one bad element fails alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkV1 {
    /// Up to 100 `CreateOrderV1` objects.
    pub orders: Vec<serde_json::Value>,
}

/// `POST /v1/customers`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCustomerV1 {
    /// 1 to 200 characters.
    pub name: String,
    /// Unique email.
    pub email: String,
}

impl From<NewCustomerV1> for NewCustomer {
    fn from(c: NewCustomerV1) -> Self {
        Self {
            name: c.name,
            email: c.email,
        }
    }
}
