//! What a GraphQL document costs to run, counted on the parsed document before it is validated
//! or run: the one cost model behind `graphql.max_complexity`.
//!
//! Every selected field costs 1, `__typename` included, and so does every directive. A
//! connection (a field that takes `first`: `orders`, `products`) costs what it selects once per
//! item it may return: the size asked for (the resolver refuses one over the maximum, so it is
//! counted as asked) or the configured default page. Fields reached through fragments cost what
//! they would cost written out in place.
//!
//! Why not async-graphql's own `limit_complexity`: its visitor skips `__typename` and directives,
//! so 48 000 `__typename` aliases in one query cost nothing there (a 1 MB answer), and it walks
//! every fragment spread again, as do its validation and its recursion-depth check, so a few
//! fragments that each spread the next one twice make it visit 2^n fields. Here each fragment
//! is priced once and remembered, so pricing is linear in the document, and a document over the
//! bound is refused before anything else walks it. The same walk refuses nesting deeper than
//! [`MAX_NESTING`], which async-graphql would only find by walking every spread.
//!
//! The walk needs the schema's shape (which type each field returns, which fields take `first`):
//! it reads it from the SDL, the public form of the schema, once when the schema is built.

use std::collections::HashMap;

use async_graphql::parser::types::{
    BaseType, ExecutableDocument, Field, OperationType, Selection, SelectionSet, ServiceDocument,
    Type, TypeKind, TypeSystemDefinition, VariableDefinition,
};
use async_graphql::parser::{Positioned, parse_schema};
use async_graphql::{Value, Variables};

/// The deepest nesting of selection sets (fields, fragment spreads and inline fragments) a
/// document may have: async-graphql's own default (`SchemaBuilder::limit_recursive_depth`),
/// checked here in linear time before its own check walks every spread.
pub const MAX_NESTING: usize = 32;

/// Why a document is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It costs more than the bound.
    TooCostly {
        /// What it costs (saturating).
        cost: usize,
        /// The bound (`graphql.max_complexity`).
        max: usize,
    },
    /// Its selection sets nest deeper than [`MAX_NESTING`].
    TooDeep,
    /// A fragment spreads itself, directly or through others.
    Cycle(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooCostly { cost, max } => write!(
                f,
                "the query is too complex: it costs {cost}, over the {max} this server runs \
                 (graphql.max_complexity; every field, __typename and directive costs 1, and \
                 a connection counts what it selects once per item of its page)"
            ),
            Refusal::TooDeep => write!(
                f,
                "the query is nested too deep: more than {MAX_NESTING} levels of selections \
                 and fragments"
            ),
            Refusal::Cycle(name) => {
                write!(f, "fragment `{name}` spreads itself, so it never ends")
            }
        }
    }
}

/// The cost model with its bound: what [`Pricing::price`] needs of the schema and the config.
pub struct Pricing {
    shape: Shape,
    max: usize,
    default_page: usize,
}

impl Pricing {
    /// Prices documents against the schema described by `sdl`, refusing those that cost more
    /// than `max`; a connection without a size counts `default_page` items.
    pub fn new(sdl: &str, max: usize, default_page: usize) -> Self {
        Self {
            shape: Shape::of(sdl),
            max,
            default_page,
        }
    }

    /// What `document` costs with `variables` (every operation in it, an upper bound of what
    /// runs), or why it is refused.
    pub fn price(
        &self,
        document: &ExecutableDocument,
        variables: &Variables,
    ) -> Result<usize, Refusal> {
        let mut total: usize = 0;
        for (_, operation) in document.operations.iter() {
            let operation = &operation.node;
            let root = self.shape.root(operation.ty);
            let mut walk = Walk {
                pricing: self,
                document,
                variables,
                definitions: &operation.variable_definitions,
                fragments: HashMap::new(),
            };
            let (cost, _) = walk.set(&operation.selection_set.node, root, 0)?;
            total = total
                .saturating_add(cost)
                .saturating_add(operation.directives.len());
            if total > self.max {
                return Err(Refusal::TooCostly {
                    cost: total,
                    max: self.max,
                });
            }
        }
        Ok(total)
    }
}

/// A fragment's price once known: its cost, and how deep its selections nest below it.
#[derive(Clone, Copy)]
enum Priced {
    Walking,
    Done { cost: usize, height: usize },
}

/// One operation's walk; fragments are priced once per operation (their variables are the
/// operation's).
struct Walk<'a> {
    pricing: &'a Pricing,
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    definitions: &'a [Positioned<VariableDefinition>],
    fragments: HashMap<&'a str, Priced>,
}

impl<'a> Walk<'a> {
    /// The cost of `set`, selected on type `on` (unknown: `None`) at nesting `depth`, and how
    /// deep it nests below itself.
    fn set(
        &mut self,
        set: &'a SelectionSet,
        on: Option<&'a str>,
        depth: usize,
    ) -> Result<(usize, usize), Refusal> {
        if depth > MAX_NESTING {
            return Err(Refusal::TooDeep);
        }
        let (mut cost, mut height) = (0usize, 0usize);
        for selection in &set.items {
            let (item, below) = match &selection.node {
                Selection::Field(field) => self.field(&field.node, on, depth)?,
                Selection::InlineFragment(fragment) => {
                    let fragment = &fragment.node;
                    let on = match &fragment.type_condition {
                        Some(condition) => Some(condition.node.on.node.as_str()),
                        None => on,
                    };
                    let (inner, below) = self.set(&fragment.selection_set.node, on, depth + 1)?;
                    (inner.saturating_add(fragment.directives.len()), below + 1)
                }
                Selection::FragmentSpread(spread) => {
                    let spread = &spread.node;
                    let (inner, below) =
                        self.fragment(spread.fragment_name.node.as_str(), depth)?;
                    (inner.saturating_add(spread.directives.len()), below)
                }
            };
            cost = cost.saturating_add(item);
            height = height.max(below);
            // Past the bound the exact figure does not matter: stop adding.
            if cost > self.pricing.max {
                return Err(Refusal::TooCostly {
                    cost,
                    max: self.pricing.max,
                });
            }
        }
        Ok((cost, height))
    }

    /// A field: 1 plus its directives plus its selections, or for a connection its
    /// selections once per item of its page (and its directives).
    fn field(
        &mut self,
        field: &'a Field,
        on: Option<&'a str>,
        depth: usize,
    ) -> Result<(usize, usize), Refusal> {
        let shape = on.and_then(|ty| self.pricing.shape.field(ty, field.name.node.as_str()));
        let (children, below) = if field.selection_set.node.items.is_empty() {
            (0, 0)
        } else {
            let (cost, below) = self.set(
                &field.selection_set.node,
                shape.map(|s| s.ty.as_str()),
                depth + 1,
            )?;
            (cost, below + 1)
        };
        let cost = match shape {
            Some(shape) if shape.paged => self.page_size(field).saturating_mul(children),
            _ => children.saturating_add(1),
        };
        Ok((cost.saturating_add(field.directives.len()), below))
    }

    /// A spread of fragment `name` in a selection set at `depth`: priced the first time,
    /// remembered after.
    fn fragment(&mut self, name: &'a str, depth: usize) -> Result<(usize, usize), Refusal> {
        let priced = match self.fragments.get(name) {
            Some(Priced::Walking) => return Err(Refusal::Cycle(name.to_owned())),
            Some(done) => *done,
            None => {
                // An unknown fragment costs nothing here; validation refuses it.
                let Some(fragment) = self.document.fragments.get(name) else {
                    return Ok((0, 0));
                };
                let fragment = &fragment.node;
                self.fragments.insert(name, Priced::Walking);
                let on = Some(fragment.type_condition.node.on.node.as_str());
                let (cost, height) = self.set(&fragment.selection_set.node, on, depth + 1)?;
                let done = Priced::Done {
                    cost: cost.saturating_add(fragment.directives.len()),
                    height,
                };
                self.fragments.insert(name, done);
                done
            }
        };
        let Priced::Done { cost, height } = priced else {
            unreachable!("a fragment still being walked returned above")
        };
        if depth + 1 + height > MAX_NESTING {
            return Err(Refusal::TooDeep);
        }
        Ok((cost, height + 1))
    }

    /// The items a connection field may return: `first` (or `last`) as given, at least 1, or
    /// the default page when neither is.
    fn page_size(&self, field: &Field) -> usize {
        let asked = ["first", "last"].into_iter().find_map(|name| {
            let value = field.get_argument(name)?.node.clone();
            let value = value
                .into_const_with(|variable| Ok::<_, ()>(self.variable(&variable)))
                .ok()?;
            match value {
                Value::Number(n) => n.as_i64(),
                _ => None,
            }
        });
        asked.map_or(self.pricing.default_page, |n| {
            usize::try_from(n.max(1)).unwrap_or(usize::MAX)
        })
    }

    /// Variable `name`'s value: as sent, or its default.
    fn variable(&self, name: &str) -> Value {
        self.variables.get(name).cloned().unwrap_or_else(|| {
            self.definitions
                .iter()
                .find(|d| d.node.name.node == name)
                .and_then(|d| d.node.default_value.as_ref())
                .map_or(Value::Null, |v| v.node.clone())
        })
    }
}

/// What the walk knows of the schema: the root types, and each object type's fields.
struct Shape {
    roots: [Option<String>; 3],
    types: HashMap<String, HashMap<String, FieldShape>>,
}

/// One field of an object type.
struct FieldShape {
    /// The named type it returns (lists unwrapped).
    ty: String,
    /// It takes `first`: it returns a page.
    paged: bool,
}

impl Shape {
    /// The shape described by `sdl`. The SDL is the schema's own (`PolyportSchema::sdl`), so it
    /// parses; were it not to, every field would be priced as a plain field.
    fn of(sdl: &str) -> Self {
        let document = parse_schema(sdl).unwrap_or(ServiceDocument {
            definitions: Vec::new(),
        });
        let mut shape = Shape {
            roots: [None, None, None],
            types: HashMap::new(),
        };
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Schema(schema) => {
                    let schema = schema.node;
                    let name =
                        |n: Option<Positioned<async_graphql::Name>>| n.map(|n| n.node.to_string());
                    shape.roots = [
                        name(schema.query),
                        name(schema.mutation),
                        name(schema.subscription),
                    ];
                }
                TypeSystemDefinition::Type(ty) => {
                    let ty = ty.node;
                    let fields = match ty.kind {
                        TypeKind::Object(object) => object.fields,
                        TypeKind::Interface(interface) => interface.fields,
                        _ => continue,
                    };
                    let fields = fields
                        .into_iter()
                        .map(|field| {
                            let field = field.node;
                            let shape = FieldShape {
                                ty: named(&field.ty.node).to_owned(),
                                paged: field.arguments.iter().any(|a| a.node.name.node == "first"),
                            };
                            (field.name.node.to_string(), shape)
                        })
                        .collect();
                    shape.types.insert(ty.name.node.to_string(), fields);
                }
                TypeSystemDefinition::Directive(_) => {}
            }
        }
        shape
    }

    /// The root type of an operation of type `ty`.
    fn root(&self, ty: OperationType) -> Option<&str> {
        let index = match ty {
            OperationType::Query => 0,
            OperationType::Mutation => 1,
            OperationType::Subscription => 2,
        };
        self.roots[index].as_deref()
    }

    fn field(&self, ty: &str, name: &str) -> Option<&FieldShape> {
        self.types.get(ty)?.get(name)
    }
}

/// The named type inside `ty`'s lists and non-null marks.
fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(inner) => named(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    const SDL: &str = "
        type Query { orders(first: Int, last: Int): OrderConnection! order: Order }
        type OrderConnection { nodes: [Order!]! }
        type Order { id: ID! customer: Customer }
        type Customer { orders(first: Int): OrderConnection! }
        schema { query: Query }
    ";

    fn price(query: &str, variables: serde_json::Value) -> Result<usize, Refusal> {
        let pricing = Pricing::new(SDL, 1_000, 20);
        let document = parse_query(query).expect("parses");
        pricing.price(&document, &Variables::from_json(variables))
    }

    #[test]
    fn fields_typenames_and_directives_each_cost_one_and_pages_multiply() {
        let cases: &[(&str, serde_json::Value, usize)] = &[
            ("{ order { id } }", serde_json::json!({}), 2),
            (
                "{ a: __typename b: __typename c: __typename }",
                serde_json::json!({}),
                3,
            ),
            (
                "{ order { id @skip(if: false) @include(if: true) } }",
                serde_json::json!({}),
                4,
            ),
            (
                "{ orders(first: 5) { nodes { id __typename } } }",
                serde_json::json!({}),
                15,
            ),
            (
                "{ orders(last: 5) { nodes { id } } }",
                serde_json::json!({}),
                10,
            ),
            // No size: the default page, 20.
            ("{ orders { nodes { id } } }", serde_json::json!({}), 40),
            (
                "query($n: Int) { orders(first: $n) { nodes { id } } }",
                serde_json::json!({ "n": 3 }),
                6,
            ),
            (
                "query($n: Int = 4) { orders(first: $n) { nodes { id } } }",
                serde_json::json!({}),
                8,
            ),
            (
                "{ ...F ...F } fragment F on Query { order { id } }",
                serde_json::json!({}),
                4,
            ),
            (
                "{ orders(first: 2) { nodes { ... on Order { id customer { orders(first: 3) { nodes { id } } } } } } }",
                serde_json::json!({}),
                // 2 x (nodes 1 + id 1 + customer 1 + 3 x (nodes 1 + id 1)).
                18,
            ),
        ];
        for (query, variables, expected) in cases {
            assert_eq!(price(query, variables.clone()), Ok(*expected), "{query}");
        }
    }

    #[test]
    fn a_fragment_spread_twice_per_level_is_priced_once_per_level_and_refused() {
        // Each level doubles the fields; written out, 2^30 of them.
        let mut query = String::from("{ ...F30 } fragment F0 on Query { __typename }");
        for i in 1..=30 {
            query.push_str(&format!(
                " fragment F{i} on Query {{ ...F{j} ...F{j} }}",
                j = i - 1
            ));
        }
        assert!(matches!(
            price(&query, serde_json::json!({})),
            Err(Refusal::TooCostly { .. })
        ));
    }

    #[test]
    fn nesting_through_fragments_and_cycles_are_refused() {
        let mut chain = String::from("{ ...F0 }");
        for i in 0..40 {
            chain.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        chain.push_str(" fragment F40 on Query { __typename }");
        assert_eq!(price(&chain, serde_json::json!({})), Err(Refusal::TooDeep));
        assert_eq!(
            price(
                "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
                serde_json::json!({})
            ),
            Err(Refusal::Cycle("A".into()))
        );
    }
}
