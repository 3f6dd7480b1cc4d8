//! Who is asking, and what they may see and do: principals, roles, and the one place the rules
//! of access are written.
//!
//! Every read and write of the core takes a [`Principal`]. The gateway works out who the caller
//! is (an API key, a JWT, a client certificate) and hands the principal to the adapter, which
//! passes it on; the core applies the rules below. Because the rules live here and not in the
//! adapters, no protocol can forget them: a list, a stream, a GraphQL nested field and a gRPC call
//! all go through the same checks.
//!
//! The rules:
//! - `admin` may do everything.
//! - `customer` is bound to one customer: it reads, creates and cancels that customer's orders
//!   and reads that customer's record. Anything that belongs to another customer answers
//!   *not found*, exactly as an id that never existed does, so ids cannot be probed. Other
//!   writes (changing an order, deleting it, creating customers) are *forbidden*.
//! - `readonly` reads everything and writes nothing.
//! - Everyone may read the product catalog.

use std::fmt;
use std::sync::Arc;

use super::error::{DomainError, DomainResult};
use super::model::{CustomerId, Order};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Only this customer's orders (read, create, cancel) and record.
    Customer(CustomerId),
    /// Every read, no write.
    Readonly,
}

impl Role {
    /// The role's name in configuration and tokens: `admin`, `customer` or `readonly`.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Customer(_) => "customer",
            Role::Readonly => "readonly",
        }
    }

    /// The customer this role is bound to, if any.
    pub fn customer(&self) -> Option<CustomerId> {
        match self {
            Role::Customer(id) => Some(*id),
            _ => None,
        }
    }

    /// Builds a role from its name and, for `customer`, the customer it is bound to.
    pub fn parse(name: &str, customer: Option<&str>) -> Result<Self, String> {
        let customer = customer.map(str::trim).filter(|c| !c.is_empty());
        match (name.trim(), customer) {
            ("admin", None) => Ok(Role::Admin),
            ("readonly", None) => Ok(Role::Readonly),
            ("customer", Some(id)) => CustomerId::parse(id)
                .map(Role::Customer)
                .map_err(|_| format!("customer id '{id}' is not a valid id")),
            ("customer", None) => {
                Err("role 'customer' needs the customer id it is bound to".into())
            }
            ("admin" | "readonly", Some(_)) => Err(format!(
                "role '{}' is not bound to a customer; only 'customer' takes a customer id",
                name.trim()
            )),
            (other, _) => Err(format!(
                "unknown role '{other}'; roles: admin, customer, readonly"
            )),
        }
    }
}

/// An authenticated caller: a name for logs and a role for the rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Who it is: an API key's name, a token's subject, a certificate's common name.
    pub name: Arc<str>,
    /// What it may do.
    pub role: Role,
    /// When the credential it came from stops being valid (a token's `exp`); `None` for
    /// credentials without an end (API keys, certificates). Long-lived streams and sessions end
    /// then, rather than outliving the token.
    pub valid_until: Option<std::time::SystemTime>,
    /// How to tell that the credential was withdrawn before then (a revoked access token);
    /// `None` for credentials that cannot be revoked. Streams and sessions end then too.
    pub revocable: Option<Revocable>,
}

/// Where withdrawn credentials are listed: implemented by the token service, read here so
/// that every session of every protocol ends the same way when its token is revoked.
pub trait Revocations: Send + Sync {
    /// True once the credential `id` has been revoked.
    fn is_revoked(&self, id: &str) -> bool;
    /// A receiver that sees a change after every revocation.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// A credential that can be withdrawn: its id (a token's `jti`) and the list to look in.
#[derive(Clone)]
pub struct Revocable {
    id: Arc<str>,
    list: Arc<dyn Revocations>,
}

impl Revocable {
    /// The credential `id`, looked up in `list`.
    pub fn new(id: impl Into<Arc<str>>, list: Arc<dyn Revocations>) -> Self {
        Self {
            id: id.into(),
            list,
        }
    }

    /// True once it has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.list.is_revoked(&self.id)
    }

    /// Completes once it has been revoked.
    pub async fn revoked(&self) {
        // Subscribed before looking, so a revocation in between is not missed.
        let mut changes = self.list.changes();
        while !self.is_revoked() {
            if changes.changed().await.is_err() {
                // The list is gone (the server is stopping): nothing will be revoked now.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl std::fmt::Debug for Revocable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Revocable").field(&self.id).finish()
    }
}

impl PartialEq for Revocable {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Revocable {}

impl std::hash::Hash for Revocable {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// Why a credential stopped being valid while a session was using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapse {
    /// Its time ran out.
    Expired,
    /// It was revoked.
    Revoked,
}

impl Lapse {
    /// What a client is told when its session ends for this reason.
    pub fn message(self) -> &'static str {
        match self {
            Lapse::Expired => "the access token expired",
            Lapse::Revoked => "the access token was revoked",
        }
    }
}

/// The kinds of change the rules distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create an order.
    CreateOrder,
    /// Cancel an order.
    CancelOrder,
    /// Change an order's customer, items or status, or add items.
    ChangeOrder,
    /// Delete an order.
    DeleteOrder,
    /// Create a customer.
    CreateCustomer,
    /// Register, change or remove webhook endpoints, and read their deliveries.
    ManageWebhooks,
    /// See and set the faults injected for teaching (`gateway::chaos`).
    ConfigureChaos,
}

impl Principal {
    /// A principal called `name` with `role`.
    pub fn new(name: impl Into<Arc<str>>, role: Role) -> Self {
        Self {
            name: name.into(),
            role,
            valid_until: None,
            revocable: None,
        }
    }

    /// The same principal, whose credential may be withdrawn before it expires.
    pub fn revocable(self, revocable: Revocable) -> Self {
        Self {
            revocable: Some(revocable),
            ..self
        }
    }

    /// Whether the credential has stopped being valid, and why (`None`: it is still valid).
    pub fn lapse(&self) -> Option<Lapse> {
        if self.expired() {
            Some(Lapse::Expired)
        } else if self.revocable.as_ref().is_some_and(Revocable::is_revoked) {
            Some(Lapse::Revoked)
        } else {
            None
        }
    }

    /// Completes when the credential stops being valid, saying why; never, for a credential
    /// without an end. Every long-lived stream and session of this principal selects on it.
    pub async fn lapsed(&self) -> Lapse {
        let expiry = async {
            match self.valid_until {
                Some(until) => {
                    let left = until
                        .duration_since(std::time::SystemTime::now())
                        .unwrap_or_default();
                    tokio::time::sleep(left).await;
                }
                None => std::future::pending().await,
            }
        };
        let revoked = async {
            match &self.revocable {
                Some(revocable) => revocable.revoked().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = expiry => Lapse::Expired,
            () = revoked => Lapse::Revoked,
        }
    }

    /// True for a credential that can stop being valid while a session uses it.
    pub fn can_lapse(&self) -> bool {
        self.valid_until.is_some() || self.revocable.is_some()
    }

    /// The same principal, whose credential stops being valid at `at`.
    pub fn valid_until(self, at: std::time::SystemTime) -> Self {
        Self {
            valid_until: Some(at),
            ..self
        }
    }

    /// True once the credential has expired.
    pub fn expired(&self) -> bool {
        self.valid_until
            .is_some_and(|at| at <= std::time::SystemTime::now())
    }

    /// The server itself (the webhook worker following the event log): an admin.
    pub fn system() -> Self {
        Self::new("system", Role::Admin)
    }

    /// The customer this principal is bound to, if any.
    pub fn customer(&self) -> Option<CustomerId> {
        self.role.customer()
    }

    /// Whether this principal may see `customer`'s records and orders.
    pub fn sees_customer(&self, customer: CustomerId) -> bool {
        self.customer().is_none_or(|own| own == customer)
    }

    /// Whether this principal may see `order`.
    pub fn sees(&self, order: &Order) -> bool {
        self.sees_customer(order.customer_id)
    }

    /// `Ok` if this principal may take `action` (on something it can see; visibility is
    /// checked first, so another customer's order is *not found*, never *forbidden*).
    pub fn may(&self, action: Action) -> DomainResult<()> {
        let allowed = matches!(
            (self.role, action),
            (Role::Admin, _) | (Role::Customer(_), Action::CreateOrder | Action::CancelOrder)
        );
        if allowed {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "role '{}' may not {action}",
                self.role.name()
            )))
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::CreateOrder => "create orders",
            Action::CancelOrder => "cancel orders",
            Action::ChangeOrder => "change orders",
            Action::DeleteOrder => "delete orders",
            Action::CreateCustomer => "create customers",
            Action::ManageWebhooks => "manage webhooks",
            Action::ConfigureChaos => "configure chaos",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_their_names_and_a_customer_only_with_customer() {
        assert_eq!(Role::parse("admin", None), Ok(Role::Admin));
        assert_eq!(Role::parse("readonly", Some("")), Ok(Role::Readonly));
        assert_eq!(
            Role::parse("customer", Some("3")),
            Ok(Role::Customer(CustomerId(3)))
        );
        assert!(Role::parse("customer", None).is_err());
        assert!(Role::parse("admin", Some("3")).is_err());
        assert!(Role::parse("root", None).is_err());
    }

    #[test]
    fn each_role_may_take_exactly_its_actions() {
        let actions = [
            Action::CreateOrder,
            Action::CancelOrder,
            Action::ChangeOrder,
            Action::DeleteOrder,
            Action::CreateCustomer,
            Action::ManageWebhooks,
        ];
        let allowed = |role| {
            let who = Principal::new("p", role);
            actions
                .iter()
                .filter(|a| who.may(**a).is_ok())
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(Role::Admin), actions);
        assert_eq!(
            allowed(Role::Customer(CustomerId(1))),
            [Action::CreateOrder, Action::CancelOrder]
        );
        assert_eq!(allowed(Role::Readonly), []);
    }

    #[test]
    fn a_customer_sees_only_its_own_customer() {
        let who = Principal::new("c", Role::Customer(CustomerId(2)));
        assert!(who.sees_customer(CustomerId(2)));
        assert!(!who.sees_customer(CustomerId(3)));
        assert!(Principal::new("r", Role::Readonly).sees_customer(CustomerId(3)));
    }
}
