//! DataLoaders: batch the customer and product look-ups of one request.
//!
//! Every `customer` or `product` field resolved while executing a request asks its loader; the
//! loader collects the ids asked for until the request's task yields, and makes one core
//! look-up for all of them. It waits no longer ([`BATCH_WINDOW`] is zero): the fields of one
//! selection resolve in one turn of the request's task, so a batch is whole when that turn
//! ends, and the store answers at once. (async-graphql's default, 1 ms, suits a database; here
//! it was pure latency, and a timer per batch.)
//! Every request and every GraphQL-over-WebSocket connection has them, so a resolver need not
//! fall back to single look-ups.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use async_graphql::Data;
use async_graphql::dataloader::{DataLoader, Loader};

use crate::domain::model::{Customer, CustomerId, Product, ProductId};
use crate::domain::{Core, Principal};

/// Puts one loader of each kind into `data`, the data of a request (or of a WebSocket
/// connection, for the operations it carries), looking up as `who`.
pub fn insert(data: &mut Data, core: &Arc<Core>, who: &Principal) {
    data.insert(
        DataLoader::new(CustomerLoader(Arc::clone(core), who.clone()), tokio::spawn)
            .delay(BATCH_WINDOW),
    );
    data.insert(DataLoader::new(ProductLoader(Arc::clone(core)), tokio::spawn).delay(BATCH_WINDOW));
}

/// How long a loader waits for more ids once its task runs: not at all (see the module).
const BATCH_WINDOW: std::time::Duration = std::time::Duration::ZERO;

/// Loads customers by id, in batches, as the request's caller may see them.
pub struct CustomerLoader(pub Arc<Core>, pub Principal);

impl Loader<CustomerId> for CustomerLoader {
    type Value = Customer;
    type Error = Infallible;

    async fn load(&self, ids: &[CustomerId]) -> Result<HashMap<CustomerId, Customer>, Infallible> {
        Ok(self
            .0
            .customers_by_ids(&self.1, ids)
            .into_iter()
            .map(|c| (c.id, c))
            .collect())
    }
}

/// Loads products by id, in batches.
pub struct ProductLoader(pub Arc<Core>);

impl Loader<ProductId> for ProductLoader {
    type Value = Product;
    type Error = Infallible;

    async fn load(&self, ids: &[ProductId]) -> Result<HashMap<ProductId, Product>, Infallible> {
        Ok(self
            .0
            .products_by_ids(ids)
            .into_iter()
            .map(|p| (p.id, p))
            .collect())
    }
}
