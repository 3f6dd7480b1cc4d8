//! The `polyport.orders.v1.Orders` service: each RPC parses its message into a domain command,
//! calls the core, and converts back. Streams run in a task that feeds a small bounded channel,
//! so a slow reader makes the task wait (HTTP/2 flow control reaches all the way back) instead
//! of making the server buffer without bound; the task stops when the client goes away or its
//! deadline passes.

use std::pin::pin;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::{convert, deadline, pb, watch};
use crate::domain::Core;
use crate::domain::command::{
    AddItem, CancelOrder, Command, CreateOrder, CreateOrders, UpdateOrder,
};
use crate::domain::core::{BulkElement, ORDER_SORT_FIELDS, customer_ref};
use crate::domain::model::{CustomerId, OrderId, ProductId};
use crate::domain::pagination::{Limit, PageRequest, Position, SortSpec};
use crate::domain::{
    Expect, FieldViolation, Lapse, NewItem, NewOrder, OrderChanges, OrderFilter, Principal,
};
use crate::gateway::ApiError;
use crate::gateway::error::grpc as status;
use crate::gateway::error::kind;
use crate::gateway::idempotency::Executed;
use crate::gateway::trace::TraceId;
use crate::protocols::AppState;
use crate::protocols::state::StreamGuard;

/// Messages a stream may have queued for a slow reader before its producer waits.
const STREAM_BUFFER: usize = 16;

/// The service, over the shared application state.
#[derive(Clone)]
pub struct OrdersService {
    app: AppState,
}

impl OrdersService {
    /// Takes a stream place (`push.max_streams` covers every protocol's streams).
    fn admit(&self, cx: &CallContext) -> Result<StreamGuard, Status> {
        crate::protocols::push::admit(&self.app, Some(&cx.who), cx.peer).map_err(|e| cx.fail(e))
    }

    /// A service over `app`.
    pub fn new(app: AppState) -> Self {
        Self { app }
    }

    /// Runs `command` once per `idempotency-key` metadata value of `who`: the one place gRPC
    /// binds idempotency (unary calls and session commands alike).
    fn execute<C: Command>(
        &self,
        who: &Principal,
        key: Option<&str>,
        command: &C,
    ) -> Result<Executed<C::Output>, ApiError> {
        self.app
            .idempotency
            .execute(&self.app.core, who, key, command)
    }
}

/// What every call needs from its request besides the message.
struct CallContext {
    /// The caller, put on the request by the gate.
    who: Principal,
    trace_id: Option<TraceId>,
    deadline: Option<Instant>,
    idempotency_key: Option<String>,
    /// The client's address: the rate limiter's key when authentication is off.
    peer: Option<std::net::IpAddr>,
}

impl CallContext {
    fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        let trace_id = request.extensions().get::<TraceId>().cloned();
        let who = crate::gateway::auth::principal_of(request.extensions())
            .map_err(|e| status::from_api(&e, trace_id.as_ref()))?;
        let context = Self {
            who,
            deadline: deadline::from_metadata(request.metadata()),
            idempotency_key: request
                .metadata()
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap_or_default().to_owned()),
            peer: request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
            trace_id,
        };
        if context.deadline.is_some_and(|at| at <= Instant::now()) {
            return Err(context.fail(ApiError::new(
                &kind::DEADLINE_EXCEEDED,
                "the deadline passed before the call started",
            )));
        }
        Ok(context)
    }

    fn fail(&self, error: impl Into<ApiError>) -> Status {
        status::from_api(&error.into(), self.trace_id.as_ref())
    }

    /// A unary reply; replays of an idempotent write say so in `idempotent-replayed` metadata.
    fn reply<T>(&self, message: T, replayed: bool) -> Response<T> {
        let mut response = Response::new(message);
        if replayed {
            response
                .metadata_mut()
                .insert("idempotent-replayed", MetadataValue::from_static("true"));
        }
        response
    }
}

fn expect(version: Option<u64>) -> Expect {
    version.map_or(Expect::Any, |v| Expect::OneOf(vec![v]))
}

fn order_id(raw: &str, field: &str) -> Result<OrderId, ApiError> {
    if raw.is_empty() {
        return Err(FieldViolation::new(field, "is required").into());
    }
    Ok(OrderId::parse(raw)?)
}

/// An error as a message, for bulk summaries and sessions.
fn error_message(error: &ApiError) -> pb::Error {
    pb::Error {
        code: crate::gateway::error::grpc_code_name(error.kind.grpc),
        message: error.detail.clone(),
        r#type: error.kind.type_uri(),
        field_violations: error
            .violations
            .iter()
            .map(|v| pb::FieldViolation {
                field: v.field.clone(),
                description: v.message.clone(),
            })
            .collect(),
    }
}

// ---- the operations, shared by unary calls and sessions ----

impl OrdersService {
    fn create(
        &self,
        who: &Principal,
        request: &pb::CreateOrderRequest,
        key: Option<&str>,
    ) -> Result<(pb::Order, bool), ApiError> {
        let command = NewOrder::parse(
            &request.customer_id,
            request
                .items
                .iter()
                .map(|i| (i.product_id.as_str(), i.quantity)),
        )
        .map_err(ApiError::invalid)?;
        // The same command as REST's POST /v1/orders: one key, one order.
        let executed = self.execute(who, key, &CreateOrder(command))?;
        Ok((convert::order(&executed.output), executed.replayed))
    }

    fn update(
        &self,
        who: &Principal,
        request: &pb::UpdateOrderRequest,
        key: Option<&str>,
    ) -> Result<(pb::Order, bool), ApiError> {
        let id = order_id(&request.id, "id")?;
        let fields = request.order.clone().unwrap_or_default();
        let paths: Vec<String> = match &request.update_mask {
            Some(mask) if !mask.paths.is_empty() => mask.paths.clone(),
            _ => [
                (!fields.customer_id.is_empty()).then_some("customer_id"),
                (!fields.status.is_empty()).then_some("status"),
                (!fields.items.is_empty()).then_some("items"),
            ]
            .into_iter()
            .flatten()
            .map(str::to_owned)
            .collect(),
        };
        let mut violations = Vec::new();
        let mut changes = OrderChanges::default();
        for path in &paths {
            match path.as_str() {
                "customer_id" => match customer_ref(&fields.customer_id, "order.customer_id") {
                    Ok(c) => changes.customer_id = Some(c),
                    Err(v) => violations.push(v),
                },
                "status" => match fields.status.parse() {
                    Ok(s) => changes.status = Some(s),
                    Err(v) => violations.push(FieldViolation {
                        field: "order.status".into(),
                        ..v
                    }),
                },
                "items" => {
                    changes.items =
                        Some(convert::new_items(&fields.items, "order", &mut violations));
                }
                other => violations.push(FieldViolation::new(
                    "update_mask",
                    format!("cannot update '{other}'; updatable: customer_id, status, items"),
                )),
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid(violations));
        }
        let expect = expect(request.expected_version);
        // The same command as REST's PATCH /v1/orders/{id}.
        let command = UpdateOrder {
            id,
            changes,
            expect,
        };
        // The core names the fields of the order ("customer_id"); here they sit in `order`.
        let executed = self.execute(who, key, &command).map_err(|mut error| {
            error.violations = error
                .violations
                .into_iter()
                .map(|v| convert::under("order", v))
                .collect();
            error
        })?;
        Ok((convert::order(&executed.output), executed.replayed))
    }

    fn cancel(
        &self,
        who: &Principal,
        request: &pb::CancelOrderRequest,
        key: Option<&str>,
    ) -> Result<(pb::Order, bool), ApiError> {
        let id = order_id(&request.id, "id")?;
        let reason = (!request.reason.is_empty()).then(|| request.reason.clone());
        let expect = expect(request.expected_version);
        let executed = self.execute(who, key, &CancelOrder { id, reason, expect })?;
        Ok((convert::order(&executed.output), executed.replayed))
    }

    fn get(&self, who: &Principal, request: &pb::GetOrderRequest) -> Result<pb::Order, ApiError> {
        let order = self.app.core.order(who, order_id(&request.id, "id")?)?;
        Ok(convert::order(&order))
    }
}

#[tonic::async_trait]
impl pb::orders_server::Orders for OrdersService {
    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let cx = CallContext::of(&request)?;
        let order = self
            .get(&cx.who, request.get_ref())
            .map_err(|e| cx.fail(e))?;
        Ok(cx.reply(order, false))
    }

    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let cx = CallContext::of(&request)?;
        let (order, replayed) = self
            .create(&cx.who, request.get_ref(), cx.idempotency_key.as_deref())
            .map_err(|e| cx.fail(e))?;
        Ok(cx.reply(order, replayed))
    }

    async fn update_order(
        &self,
        request: Request<pb::UpdateOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let cx = CallContext::of(&request)?;
        let (order, replayed) = self
            .update(&cx.who, request.get_ref(), cx.idempotency_key.as_deref())
            .map_err(|e| cx.fail(e))?;
        Ok(cx.reply(order, replayed))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let cx = CallContext::of(&request)?;
        let (order, replayed) = self
            .cancel(&cx.who, request.get_ref(), cx.idempotency_key.as_deref())
            .map_err(|e| cx.fail(e))?;
        Ok(cx.reply(order, replayed))
    }

    async fn delete_order(
        &self,
        request: Request<pb::DeleteOrderRequest>,
    ) -> Result<Response<pb::DeleteOrderResponse>, Status> {
        let cx = CallContext::of(&request)?;
        let message = request.get_ref();
        let run = || -> Result<_, ApiError> {
            let id = order_id(&message.id, "id")?;
            Ok(self
                .app
                .core
                .delete_order(&cx.who, id, &expect(message.expected_version))?)
        };
        let order = run().map_err(|e| cx.fail(e))?;
        Ok(cx.reply(
            pb::DeleteOrderResponse {
                order: Some(convert::order(&order)),
            },
            false,
        ))
    }

    async fn add_item(
        &self,
        request: Request<pb::AddItemRequest>,
    ) -> Result<Response<pb::AddItemResponse>, Status> {
        let cx = CallContext::of(&request)?;
        let message = request.get_ref();
        let run = || -> Result<_, ApiError> {
            let id = order_id(&message.order_id, "order_id")?;
            let item =
                NewItem::parse(&message.product_id, message.quantity).map_err(ApiError::invalid)?;
            let expect = expect(message.expected_version);
            // The same command as REST's POST /v1/orders/{id}/items.
            let command = AddItem {
                order: id,
                item,
                expect,
            };
            let executed = self.execute(&cx.who, cx.idempotency_key.as_deref(), &command)?;
            let (order, item_id) = &executed.output;
            Ok((
                pb::AddItemResponse {
                    order: Some(convert::order(order)),
                    item: order.item(*item_id).map(convert::item),
                },
                executed.replayed,
            ))
        };
        let (response, replayed) = run().map_err(|e| cx.fail(e))?;
        Ok(cx.reply(response, replayed))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let cx = CallContext::of(&request)?;
        let id = &request.get_ref().id;
        let customer = CustomerId::parse(id)
            .and_then(|id| self.app.core.customer(&cx.who, id))
            .map_err(|e| cx.fail(e))?;
        Ok(cx.reply(convert::customer(&customer), false))
    }

    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let cx = CallContext::of(&request)?;
        let id = &request.get_ref().id;
        let product = ProductId::parse(id)
            .and_then(|id| self.app.core.product(id))
            .map_err(|e| cx.fail(e))?;
        Ok(cx.reply(convert::product(&product), false))
    }

    type ListOrdersStream = ReceiverStream<Result<pb::Order, Status>>;

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<Self::ListOrdersStream>, Status> {
        let cx = CallContext::of(&request)?;
        let message = request.into_inner();
        let mut violations = Vec::new();
        let filter = OrderFilter::parse(Some(&message.status), Some(&message.customer_id))
            .unwrap_or_else(|v| {
                violations.push(v);
                OrderFilter::default()
            });
        let sort = if message.sort.is_empty() {
            SortSpec::by_id()
        } else {
            SortSpec::parse(&message.sort, ORDER_SORT_FIELDS).unwrap_or_else(|v| {
                violations.push(v);
                SortSpec::by_id()
            })
        };
        if !violations.is_empty() {
            return Err(cx.fail(ApiError::invalid(violations)));
        }
        let limit = if message.limit == 0 {
            usize::MAX
        } else {
            message.limit as usize
        };

        let streaming = self.admit(&cx)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let app = self.app.clone();
        tokio::spawn(async move {
            let _streaming = streaming;
            let produce = async {
                let mut sent = 0usize;
                if !sort.is_by_id() {
                    // Any other order needs every match sorted: do it once, then stream the
                    // snapshot (rather than re-sorting the whole store for every page).
                    let everything = PageRequest {
                        sort: sort.clone(),
                        position: Position::Start,
                        limit: Limit::new(limit),
                    };
                    for id in app.core.order_ids(&cx.who, &filter, &everything).rows {
                        // An order deleted since the snapshot is skipped.
                        let Ok(order) = app.core.order(&cx.who, OrderId(id)) else {
                            continue;
                        };
                        if tx.send(Ok(convert::order(&order))).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
                let mut position = Position::Start;
                loop {
                    // Keyset pages along the id index, each the core's page maximum
                    // (`pagination.max_limit`, as REST's and GraphQL's largest page): each page
                    // is a short read, and a long list never holds the store while the client
                    // is slow.
                    let request = PageRequest {
                        sort: sort.clone(),
                        position,
                        limit: Limit::new(app.page_limits().max),
                    };
                    let page = app.core.list_orders(&cx.who, &filter, &request);
                    for order in &page.rows {
                        if sent == limit || tx.send(Ok(convert::order(order))).await.is_err() {
                            return;
                        }
                        sent += 1;
                    }
                    match page.next {
                        Some(key) if sent < limit => position = Position::After(key),
                        _ => return,
                    }
                }
            };
            run_until_deadline(&app, produce, &cx, &tx).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type WatchOrdersStream = ReceiverStream<Result<pb::WatchOrdersResponse, Status>>;

    async fn watch_orders(
        &self,
        request: Request<pb::WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        let cx = CallContext::of(&request)?;
        let message = request.into_inner();
        let filter = watch::filter(&message).map_err(|e| cx.fail(e))?;
        let streaming = self.admit(&cx)?;
        // "From now on" is fixed when the call is answered, not when the task gets to run.
        let after = message
            .after_seq
            .or(Some(self.app.core.events().last_seq()));
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let app = self.app.clone();
        tokio::spawn(async move {
            let _streaming = streaming;
            let follow = watch::follow(&app, &cx.who, after, &filter, |item| {
                let tx = &tx;
                async move {
                    let kind = match item {
                        watch::Item::Event(e) => pb::watch_orders_response::Kind::Event(*e),
                        watch::Item::Missed(m) => pb::watch_orders_response::Kind::Missed(m),
                    };
                    tx.send(Ok(pb::WatchOrdersResponse { kind: Some(kind) }))
                        .await
                        .is_ok()
                }
            });
            run_until_deadline(&app, follow, &cx, &tx).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn bulk_create_orders(
        &self,
        request: Request<Streaming<pb::CreateOrderRequest>>,
    ) -> Result<Response<pb::BulkCreateOrdersResponse>, Status> {
        let cx = CallContext::of(&request)?;
        let mut inbound = request.into_inner();
        // The orders are read first (at most MAX_BULK_ORDERS: the core's one bulk rule, the
        // same as REST's), then created as one command, so an idempotency key covers the whole
        // stream like REST's POST /v1/orders/bulk.
        let mut commands: Vec<BulkElement> = Vec::new();
        let read_all = async {
            while let Some(message) = inbound
                .message()
                .await
                .map_err(|e| status::from_codec(e, cx.trace_id.as_ref()))?
            {
                Core::check_bulk_size(commands.len() + 1).map_err(|e| cx.fail(e))?;
                commands.push(NewOrder::parse(
                    &message.customer_id,
                    message
                        .items
                        .iter()
                        .map(|i| (i.product_id.as_str(), i.quantity)),
                ));
            }
            Ok::<(), Status>(())
        };
        tokio::select! {
            read = read_all => read?,
            () = deadline::passed(cx.deadline) => {
                return Err(cx.fail(ApiError::new(
                    &kind::DEADLINE_EXCEEDED,
                    "the deadline passed while reading the stream",
                )));
            }
        }
        let executed = self
            .execute(
                &cx.who,
                cx.idempotency_key.as_deref(),
                &CreateOrders(commands),
            )
            .map_err(|e| cx.fail(e))?;
        let mut summary = pb::BulkCreateOrdersResponse::default();
        for (index, result) in executed.output.iter().enumerate() {
            let result = match result {
                Ok(order) => {
                    summary.created += 1;
                    pb::bulk_create_result::Result::Order(convert::order(order))
                }
                Err(error) => {
                    summary.failed += 1;
                    pb::bulk_create_result::Result::Error(error_message(&error.clone().into()))
                }
            };
            summary.results.push(pb::BulkCreateResult {
                index: index as u32,
                result: Some(result),
            });
        }
        Ok(cx.reply(summary, executed.replayed))
    }

    type OrderSessionStream = ReceiverStream<Result<pb::SessionMessage, Status>>;

    async fn order_session(
        &self,
        request: Request<Streaming<pb::SessionCommand>>,
    ) -> Result<Response<Self::OrderSessionStream>, Status> {
        let cx = CallContext::of(&request)?;
        let mut inbound = request.into_inner();
        let streaming = self.admit(&cx)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let service = self.clone();
        tokio::spawn(async move {
            let _streaming = streaming;
            let mut watcher: Option<tokio::task::JoinHandle<()>> = None;
            let session = async {
                // Commands until the client half-closes; a subscribed session keeps streaming
                // events after that, until the client cancels or its deadline passes. Each
                // command counts against the caller's rate limit, as a request would: the first
                // one over it gets an error message, a second one ends the call with
                // RESOURCE_EXHAUSTED.
                let mut limited = false;
                loop {
                    let command = match inbound.message().await {
                        Ok(Some(command)) => command,
                        Ok(None) => break,
                        Err(error) => {
                            let _ = tx
                                .send(Err(status::from_codec(error, cx.trace_id.as_ref())))
                                .await;
                            return;
                        }
                    };
                    if let Some(lapse) = cx.who.lapse() {
                        let lapsed = ApiError::new(&kind::UNAUTHENTICATED, lapse.message());
                        let _ = tx.send(Err(cx.fail(lapsed))).await;
                        return;
                    }
                    let decision = service.app.gate.charge(Some(&cx.who), cx.peer);
                    if !decision.allowed {
                        let error = crate::gateway::gate::rate_limited(&decision);
                        if limited {
                            let _ = tx.send(Err(cx.fail(error))).await;
                            return;
                        }
                        limited = true;
                        let reply = pb::SessionMessage {
                            id: command.id,
                            kind: Some(pb::session_message::Kind::Error(error_message(&error))),
                        };
                        if tx.send(Ok(reply)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    limited = false;
                    let reply = service.session_command(&cx.who, command, &tx, &mut watcher);
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
                if watcher.is_some() {
                    tx.closed().await;
                }
            };
            run_until_deadline(&service.app, session, &cx, &tx).await;
            if let Some(watcher) = watcher {
                watcher.abort();
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl OrdersService {
    /// Runs one session command and returns its answer. `subscribe` (re)starts the session's
    /// event feed, which shares the outbound channel.
    fn session_command(
        &self,
        who: &Principal,
        command: pb::SessionCommand,
        tx: &mpsc::Sender<Result<pb::SessionMessage, Status>>,
        watcher: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> pb::SessionMessage {
        use pb::session_command::Command;
        use pb::session_message::Kind;
        let result: Result<Kind, ApiError> = match command.command {
            Some(Command::GetOrder(r)) => self.get(who, &r).map(Kind::Order),
            Some(Command::CreateOrder(r)) => {
                self.create(who, &r, None).map(|(o, _)| Kind::Order(o))
            }
            Some(Command::UpdateOrder(r)) => {
                self.update(who, &r, None).map(|(o, _)| Kind::Order(o))
            }
            Some(Command::CancelOrder(r)) => {
                self.cancel(who, &r, None).map(|(o, _)| Kind::Order(o))
            }
            Some(Command::Subscribe(r)) => watch::filter(&r).map(|filter| {
                if let Some(old) = watcher.take() {
                    old.abort();
                }
                let last_seq = self.app.core.events().last_seq();
                let app = self.app.clone();
                let tx = tx.clone();
                let who = who.clone();
                *watcher = Some(tokio::spawn(async move {
                    let after = r.after_seq.or(Some(last_seq));
                    watch::follow(&app, &who, after, &filter, |item| {
                        let tx = &tx;
                        async move {
                            let kind = match item {
                                watch::Item::Event(e) => Kind::Event(*e),
                                watch::Item::Missed(m) => Kind::Missed(m),
                            };
                            let message = pb::SessionMessage {
                                id: String::new(),
                                kind: Some(kind),
                            };
                            tx.send(Ok(message)).await.is_ok()
                        }
                    })
                    .await;
                }));
                Kind::Subscribed(pb::Subscribed { last_seq })
            }),
            None => Err(FieldViolation::new("command", "is required").into()),
        };
        pb::SessionMessage {
            id: command.id,
            kind: Some(result.unwrap_or_else(|error| Kind::Error(error_message(&error)))),
        }
    }
}

/// Runs a stream's producer until it finishes, the client goes away, the deadline passes
/// (the stream ends with DEADLINE_EXCEEDED), the caller's token expires or is revoked
/// (UNAUTHENTICATED) or the server shuts down (UNAVAILABLE: reconnect, resuming after the last
/// seq seen). Dropping the producer stops its work: nothing continues for a call nobody waits
/// for.
async fn run_until_deadline<T>(
    app: &AppState,
    produce: impl std::future::Future<Output = ()>,
    cx: &CallContext,
    tx: &mpsc::Sender<Result<T, Status>>,
) {
    let produce = pin!(produce);
    // try_send for the final status: a reader too slow to take it has a full queue, and the
    // stream is cut either way.
    let lapsed = |lapse: Lapse| {
        let lapsed = ApiError::new(&kind::UNAUTHENTICATED, lapse.message());
        let _ = tx.try_send(Err(cx.fail(lapsed)));
    };
    tokio::select! {
        // A feed also ends by itself when the token lapses: say why, not just "done".
        () = produce => if let Some(lapse) = cx.who.lapse() {
            lapsed(lapse);
        },
        lapse = cx.who.lapsed() => lapsed(lapse),
        () = tx.closed() => {}
        () = deadline::passed(cx.deadline) => {
            let passed = ApiError::new(&kind::DEADLINE_EXCEEDED, "the call's deadline passed");
            let _ = tx.try_send(Err(cx.fail(passed)));
        }
        () = app.drained() => {
            let draining = ApiError::new(&kind::UNAVAILABLE, "the server is shutting down; reconnect");
            let _ = tx.try_send(Err(cx.fail(draining)));
        }
    }
}
