//! The ids of webhook endpoints (`ep_<n>`) and deliveries (`msg_<n>`), parsed once where a
//! request names one and written back in the same form.
//!
//! An id has one spelling: `ep_01` and `ep_+1` name nothing, as the domain's own ids do, so the
//! text a client sends is the text it is given back.

use std::fmt;

use crate::domain::DomainError;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $resource:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) struct $name(u64);

        impl $name {
            /// The resource name used in errors.
            pub(crate) const RESOURCE: &'static str = $resource;

            /// The `n`th one issued (from 1).
            pub(crate) fn issued(n: u64) -> Self {
                Self(n)
            }

            /// Parses the wire form; anything else is *not found*, as an id never issued is.
            pub(crate) fn parse(raw: &str) -> Result<Self, DomainError> {
                raw.strip_prefix($prefix)
                    .filter(|digits| !digits.starts_with(['0', '+']))
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .map(Self)
                    .ok_or_else(|| DomainError::not_found($resource, raw))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

prefixed_id!(
    /// A registered endpoint: `ep_<n>`.
    EndpointId,
    "ep_",
    "webhook endpoint"
);

prefixed_id!(
    /// One message to one endpoint: `msg_<n>`, sent as the `webhook-id` of every attempt.
    DeliveryId,
    "msg_",
    "webhook delivery"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_parses_from_its_wire_form_only_and_displays_it_back() {
        for wire in ["ep_1", "ep_42", "ep_18446744073709551615"] {
            assert_eq!(EndpointId::parse(wire).unwrap().to_string(), wire);
        }
        assert_eq!(DeliveryId::parse("msg_7").unwrap(), DeliveryId::issued(7));
        assert_eq!(DeliveryId::issued(7).to_string(), "msg_7");
        for other in [
            "", "ep_", "ep_0", "ep_01", "ep_+1", "ep_-1", "ep_1x", "ep_ 1", "we_1", "1", "msg_1",
        ] {
            assert!(EndpointId::parse(other).is_err(), "{other:?}");
        }
        assert!(DeliveryId::parse("ep_1").is_err());
    }

    #[test]
    fn an_id_that_does_not_parse_is_not_found_under_the_text_sent() {
        assert_eq!(
            EndpointId::parse("we_1").unwrap_err(),
            DomainError::not_found(EndpointId::RESOURCE, "we_1")
        );
    }
}
