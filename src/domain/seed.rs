//! Demo data: a product catalog, some customers and orders, so a new user's first curl shows
//! something; and a bulk preload of N orders for load tests.
//!
//! Seed data is written straight into the store before the server starts: it is not in the event
//! log (no client was there to see it happen), and it is deterministic, so workshop instructions
//! can say "order 3 is paid" and be right.

use std::time::{Duration, SystemTime};

use super::model::{
    Cancellation, Customer, Item, ItemId, Order, OrderStatus, Product, ProductId, Quantity,
};
use super::store::Store;

const PRODUCTS: &[(&str, i64)] = &[
    ("Espresso beans, 1 kg", 2_450),
    ("Pour-over kettle", 5_900),
    ("Burr grinder", 12_900),
    ("Ceramic dripper", 2_200),
    ("Paper filters, 100", 650),
    ("Milk frother", 3_400),
    ("Travel mug", 1_990),
    ("Digital scale", 2_750),
    ("Cold brew jar", 2_100),
    ("Tamper", 1_800),
    ("Knock box", 1_500),
    ("Moka pot", 3_200),
    ("French press", 2_900),
    ("Cleaning tablets", 990),
    ("Descaler", 1_250),
    ("Latte art pitcher", 1_650),
    ("Green tea, 100 g", 890),
    ("Chai spice mix", 760),
    ("Oat milk, 1 l", 299),
    ("Biscotti, 12", 550),
    ("Gift card", 2_500),
    ("Barista course", 9_900),
    ("Espresso cups, set of 4", 2_400),
    ("Storage canister", 1_700),
];

const CUSTOMERS: &[(&str, &str)] = &[
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Alan Turing", "alan@example.com"),
    ("Katherine Johnson", "katherine@example.com"),
    ("Edsger Dijkstra", "edsger@example.com"),
    ("Barbara Liskov", "barbara@example.com"),
    ("Ken Thompson", "ken@example.com"),
    ("Margaret Hamilton", "margaret@example.com"),
];

/// The demo orders' statuses, in id order: a mix so that filters have something to show.
const STATUSES: &[OrderStatus] = &[
    OrderStatus::Pending,
    OrderStatus::Paid,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
    OrderStatus::Cancelled,
    OrderStatus::Paid,
    OrderStatus::Pending,
    OrderStatus::Delivered,
];

/// Loads the catalog, the customers, and `orders` orders (the demo default is 24).
pub fn load(store: &dyn Store, orders: usize) {
    load_catalog(store);
    for (name, email) in CUSTOMERS {
        let customer = Customer {
            id: store.next_customer_id(),
            name: (*name).to_owned(),
            email: (*email).to_owned(),
        };
        store
            .insert_customer(customer)
            .expect("demo emails are unique and the store starts empty");
    }
    preload_orders(store, orders);
}

/// Loads only the product catalog (used with `--no-demo-data` off for customers and orders,
/// and by tests that need products).
pub fn load_catalog(store: &dyn Store) {
    for (i, (name, price_cents)) in PRODUCTS.iter().enumerate() {
        store.put_product(Product {
            id: ProductId(i as u64 + 1),
            name: (*name).to_owned(),
            price_cents: *price_cents,
            currency: "USD".to_owned(),
        });
    }
}

/// Inserts `n` deterministic orders, spread over the past `n` minutes. 100 000 take well under a
/// second in a release build.
pub fn preload_orders(store: &dyn Store, n: usize) {
    let customers = store.customers();
    let products = store.products();
    if customers.is_empty() || products.is_empty() {
        return;
    }
    let now = SystemTime::now();
    // A small linear congruential generator: deterministic, dependency-free, good enough for
    // picking demo products.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % bound
    };
    for i in 0..n {
        let created_at = now - Duration::from_secs(60 * (n - i) as u64);
        let items: Vec<Item> = (0..1 + next(4))
            .map(|j| {
                let product = &products[next(products.len())];
                Item {
                    id: ItemId(j as u64 + 1),
                    product_id: product.id,
                    quantity: Quantity::parse(1 + next(3) as i64).expect("1..=3 is a quantity"),
                    unit_price_cents: product.price_cents,
                }
            })
            .collect();
        let status = STATUSES[i % STATUSES.len()];
        let order = Order {
            id: store.next_order_id(),
            customer_id: customers[i % customers.len()].id,
            status,
            next_item_id: items.len() as u64 + 1,
            items,
            currency: "USD".to_owned(),
            created_at,
            updated_at: created_at,
            // One version per step of the life cycle the order went through.
            version: match status {
                OrderStatus::Pending => 1,
                OrderStatus::Paid | OrderStatus::Cancelled => 2,
                OrderStatus::Shipped => 3,
                OrderStatus::Delivered => 4,
            },
            cancellation: (status == OrderStatus::Cancelled).then(|| Cancellation {
                reason: Some("changed my mind".to_owned()),
                cancelled_at: created_at,
            }),
        };
        store.insert_order(order, &mut |_| {});
    }
}
