//! The entities of the order domain and the value types that make bad states unrepresentable.
//!
//! "Parse, don't validate": a `Quantity` or an `OrderStatus` is built by one `parse` that returns
//! an error; past that point the value is known to be good and no adapter checks it again.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use super::error::{DomainError, FieldViolation};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $resource:literal) => {
        $(#[$doc])*
        ///
        /// On every wire it is a string; the in-memory store issues increasing integers, so
        /// `/v1/orders/12` reads naturally, but clients must treat ids as opaque.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// The resource name used in errors.
            pub const RESOURCE: &'static str = $resource;

            /// Parses an id taken from a path or a body. An id that is not one of ours
            /// simply names nothing, so the error is `NotFound`, not a validation error.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                raw.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0 && !raw.starts_with('0') && !raw.starts_with('+'))
                    .map($name)
                    .ok_or_else(|| DomainError::not_found($resource, raw))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Identifies an order.
    OrderId,
    "order"
);
id_type!(
    /// Identifies a customer.
    CustomerId,
    "customer"
);
id_type!(
    /// Identifies a product.
    ProductId,
    "product"
);
id_type!(
    /// Identifies an item within its order.
    ItemId,
    "item"
);

/// How many of a product an item holds: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity one item may hold.
    pub const MAX: u32 = 1_000;

    /// Accepts 1..=MAX; anything else (zero, negative, huge) is a violation of `quantity`.
    pub fn parse(n: i64) -> Result<Self, FieldViolation> {
        if (1..=i64::from(Self::MAX)).contains(&n) {
            Ok(Self(n as u32))
        } else {
            Err(FieldViolation::new(
                "quantity",
                format!("must be between 1 and {}", Self::MAX),
            ))
        }
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Where an order is in its life.
///
/// ```text
/// pending -> paid -> shipped -> delivered
///    \________\_____-> cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrderStatus {
    /// Created, not yet paid; the only state in which items may change.
    Pending,
    /// Paid, not yet shipped.
    Paid,
    /// Handed to the carrier.
    Shipped,
    /// Received by the customer; final.
    Delivered,
    /// Cancelled before shipping; final.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [OrderStatus; 5] = [
        Self::Pending,
        Self::Paid,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// The lowercase name used on every wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    /// The one place the life cycle is written down.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Paid)
                | (Paid, Shipped)
                | (Shipped, Delivered)
                | (Pending, Cancelled)
                | (Paid, Cancelled)
        )
    }
}

impl FromStr for OrderStatus {
    type Err = FieldViolation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                FieldViolation::new(
                    "status",
                    "must be one of pending, paid, shipped, delivered, cancelled",
                )
            })
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that can be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Its id.
    pub id: ProductId,
    /// Display name.
    pub name: String,
    /// Price of one unit, in the currency's minor unit (cents).
    pub price_cents: i64,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
}

/// Someone who places orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Its id.
    pub id: CustomerId,
    /// Display name.
    pub name: String,
    /// Unique (case-insensitively) among customers.
    pub email: String,
}

/// One line of an order: a product, how many, and the unit price when it was added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Unique within its order.
    pub id: ItemId,
    /// What was ordered.
    pub product_id: ProductId,
    /// How many.
    pub quantity: Quantity,
    /// The product's price when the item was added (later price changes do not touch it).
    pub unit_price_cents: i64,
}

impl Item {
    /// `quantity * unit_price_cents`.
    pub fn line_total_cents(&self) -> i64 {
        i64::from(self.quantity.get()) * self.unit_price_cents
    }
}

/// Why and when an order was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    /// The reason the client gave, if any.
    pub reason: Option<String>,
    /// When the cancellation was made.
    pub cancelled_at: SystemTime,
}

/// An order. Its total is never stored: [`Order::total_cents`] derives it from the items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its id.
    pub id: OrderId,
    /// Who placed it.
    pub customer_id: CustomerId,
    /// Where it is in its life cycle.
    pub status: OrderStatus,
    /// Its lines; never empty.
    pub items: Vec<Item>,
    /// ISO 4217 code shared by every item.
    pub currency: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it last changed.
    pub updated_at: SystemTime,
    /// Starts at 1 and grows by one on every change: the basis of ETags and optimistic concurrency.
    pub version: u64,
    /// Set once the order is cancelled.
    pub cancellation: Option<Cancellation>,
    /// The id the next added item will get.
    pub next_item_id: u64,
}

impl Order {
    /// The largest number of items one order may hold.
    pub const MAX_ITEMS: usize = 100;

    /// The sum of the items' line totals.
    pub fn total_cents(&self) -> i64 {
        self.items.iter().map(Item::line_total_cents).sum()
    }

    /// The item with this id, if the order has it.
    pub fn item(&self, id: ItemId) -> Option<&Item> {
        self.items.iter().find(|item| item.id == id)
    }
}

#[cfg(test)]
impl Order {
    /// A pending order with no items, for unit tests that need one to exist.
    pub(crate) fn sample(id: u64, customer: u64, at: SystemTime) -> Self {
        Self {
            id: OrderId(id),
            customer_id: CustomerId(customer),
            status: OrderStatus::Pending,
            items: Vec::new(),
            currency: "USD".into(),
            created_at: at,
            updated_at: at,
            version: 1,
            cancellation: None,
            next_item_id: 1,
        }
    }
}
