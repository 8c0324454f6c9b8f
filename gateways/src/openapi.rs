//! The OpenAPI 3.1 document at `GET /api/openapi.json`, generated from the
//! route table itself.
//!
//! Routes are declared once, through [`Routes`]: the same function
//! registers them with actix ([`Actix`]) and describes them ([`Document`]),
//! so a route cannot be served without being documented. Each operation is
//! described from its handler's *signature*: every argument type
//! implements [`ApiArg`] and says what it contributes (a JSON body and its
//! schema, path and query parameters, the authentication it demands, the
//! project permission it checks, the error statuses it can answer). A
//! handler whose body type changes changes the document with it; a new
//! extractor does not compile until it says what it documents.
//!
//! Schemas come from `schemars` (already in the tree for MCP tools): it
//! emits JSON Schema 2020-12, which is OpenAPI 3.1's own dialect, and reads
//! the same serde attributes the handlers deserialize with. What the
//! signature cannot say (a `201` or `204` success, a typed success body,
//! a non-JSON response) the route table says with [`RouteDoc`]'s methods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Responder, web};
use domain::ErrorCode;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::auth::{Auth, AuthStale, MaybeAuth, Permission, ProjectAuth, ProjectRead, SessionAuth};
use crate::extract::{Json, OptionalJson};

/// Somewhere routes go: actix's configuration, or the document.
pub trait Routes {
    /// Registers `handler` for `method` at `path` (actix syntax, after the
    /// current prefix).
    fn route<F, Args>(&mut self, method: Method, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static;

    /// Registers `handler` for every method; the document shows it as
    /// `POST` (MCP's streamable HTTP: its `GET` is a long-lived stream).
    fn any<F, Args>(&mut self, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static;

    /// Runs `f` with every path prefixed by `prefix`.
    fn prefixed(&mut self, prefix: &str, f: impl FnOnce(&mut Self));

    fn get<F, Args>(&mut self, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::GET, path, handler)
    }

    fn post<F, Args>(&mut self, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::POST, path, handler)
    }

    fn put<F, Args>(&mut self, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PUT, path, handler)
    }

    fn patch<F, Args>(&mut self, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PATCH, path, handler)
    }

    fn delete<F, Args>(&mut self, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::DELETE, path, handler)
    }
}

/// Registers routes with actix.
pub struct Actix<'a> {
    cfg: &'a mut web::ServiceConfig,
    prefix: String,
    /// Every route, in registration order, until [`Actix::finish`].
    routes: Vec<(String, actix_web::Route)>,
}

impl<'a> Actix<'a> {
    pub fn new(cfg: &'a mut web::ServiceConfig) -> Self {
        Self {
            cfg,
            prefix: String::new(),
            routes: Vec::new(),
        }
    }

    /// Registers the collected routes as a tree of scopes
    /// ([`RouteTree`]).
    pub fn finish(self) {
        for node in RouteTree::build(self.routes) {
            match node {
                RouteTree::Route(path, route) => {
                    self.cfg.route(&path, route);
                }
                RouteTree::Scope(scope) => {
                    self.cfg.service(scope);
                }
            }
        }
    }
}

impl Routes for Actix<'_> {
    fn route<F, Args>(&mut self, method: Method, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let path = format!("{}{path}", self.prefix);
        self.routes.push((path, web::method(method).to(handler)));
        RouteDoc(None)
    }

    fn any<F, Args>(&mut self, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let path = format!("{}{path}", self.prefix);
        self.routes.push((path, web::route().to(handler)));
        RouteDoc(None)
    }

    fn prefixed(&mut self, prefix: &str, f: impl FnOnce(&mut Self)) {
        let inner = format!("{}{prefix}", self.prefix);
        let outer = std::mem::replace(&mut self.prefix, inner);
        f(self);
        self.prefix = outer;
    }
}

/// The routes as nested scopes by leading path segment.
///
/// actix matches a request against its services in registration order, and
/// a route with a dynamic segment is a regex: registered flat, a request to
/// a task ran the regex of every dynamic route before it (a profile of
/// saturated `PATCH`es put that at 4 % of the machine's CPU). Under a scope
/// it is matched against the scope's prefix first, and only the scope's
/// own routes after that.
///
/// The tree matches exactly what the flat list matched: at one level, the
/// routes are split by their next segment only when no request can match
/// routes of two of the groups, i.e. when every group's segment is literal
/// (two different literals never match one request), or when there is one
/// group and its segment is a single-segment parameter. Any other level
/// keeps its routes flat, in their order. A request that enters a scope
/// and matches none of its routes gets the app's default service, which
/// is what the flat list answered too: no route outside the scope could
/// have matched it.
enum RouteTree {
    Route(String, actix_web::Route),
    Scope(actix_web::Scope),
}

impl RouteTree {
    fn build(routes: Vec<(String, actix_web::Route)>) -> Vec<RouteTree> {
        let mut groups: Vec<(String, Vec<(String, actix_web::Route)>)> = Vec::new();
        let mut roots = Vec::new();
        for (path, route) in routes {
            let Some((segment, rest)) = split_segment(&path) else {
                roots.push((path, route));
                continue;
            };
            let (segment, rest) = (segment.to_owned(), rest.to_owned());
            match groups.iter_mut().find(|(s, _)| *s == segment) {
                Some((_, group)) => group.push((rest, route)),
                None => groups.push((segment, vec![(rest, route)])),
            }
        }
        let literal = |s: &str| !s.contains(['{', '}', ':', '*']);
        let parameter = |s: &str| {
            s.starts_with('{') && s.ends_with('}') && !s[1..s.len() - 1].contains(['{', ':'])
        };
        let split = groups.iter().all(|(s, _)| literal(s))
            || (groups.len() == 1 && parameter(&groups[0].0));
        if !split {
            // Flat, in the original order.
            let mut flat = roots;
            for (segment, group) in groups {
                flat.extend(
                    group
                        .into_iter()
                        .map(|(rest, route)| (format!("/{segment}{rest}"), route)),
                );
            }
            return flat
                .into_iter()
                .map(|(path, route)| RouteTree::Route(path, route))
                .collect();
        }
        let mut out: Vec<RouteTree> = roots
            .into_iter()
            .map(|(path, route)| RouteTree::Route(path, route))
            .collect();
        for (segment, group) in groups {
            let mut scope = web::scope(&format!("/{segment}"));
            for node in RouteTree::build(group) {
                scope = match node {
                    RouteTree::Route(path, route) => scope.route(&path, route),
                    RouteTree::Scope(inner) => scope.service(inner),
                };
            }
            out.push(RouteTree::Scope(scope));
        }
        out
    }
}

/// `/a/b/c` → `("a", "/b/c")`; `/a` → `("a", "")`; `""` → `None`. A
/// segment holding a regex parameter (`{tail:.*}`) is not split further:
/// its pattern may span the rest of the path.
fn split_segment(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return None;
    }
    match rest.find('/') {
        Some(i) => Some((&rest[..i], &rest[i..])),
        None => Some((rest, "")),
    }
}

/// How an operation authenticates, as far as its extractors say.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Authn {
    /// No credentials read.
    None,
    /// Credentials read if present (public projects, GraphQL).
    Optional,
    /// Any credential: cookie, Bearer JWT or API key.
    Required,
    /// A session only (cookie or Bearer JWT), no API key.
    Session,
}

/// One operation being described.
pub struct Operation {
    method: Method,
    path: String,
    handler: &'static str,
    path_types: Vec<Value>,
    query: Vec<Value>,
    body: Option<Value>,
    authn: Authn,
    permission: Option<&'static str>,
    errors: BTreeSet<u16>,
    success: Success,
    also_as: Vec<&'static str>,
}

enum Success {
    /// The seeds' envelope `{success, data}`, with this status.
    Envelope { status: u16, data: Value },
    /// `204`, no body.
    NoContent,
    /// This status and no body.
    Empty { status: u16 },
    /// Something else than the envelope (health checks, metrics, files).
    Raw {
        status: u16,
        content_type: &'static str,
        schema: Value,
    },
}

impl Operation {
    pub fn authenticate(&mut self, authn: Authn) {
        self.authn = self.authn.max(authn);
        self.errors.insert(401);
        if authn != Authn::Optional {
            // A password change pending, or an API key where only a
            // session is accepted.
            self.errors.insert(403);
        }
    }

    pub fn require_permission(&mut self, permission: &'static str) {
        self.permission = Some(permission);
        self.errors.extend([403, 404]);
    }

    /// A required JSON body of this schema (for extractors of their own).
    pub fn json_body(&mut self, schema: Value) {
        self.body = Some(json!({
            "required": true,
            "content": {"application/json": {"schema": schema}},
        }));
        self.errors.insert(400);
    }

    /// What any JSON body can meet: validation (400), an id it names that
    /// does not exist (404), a name already taken or a concurrent change
    /// (409), the size limit (413).
    fn body_errors(&mut self) {
        self.errors.extend([400, 404, 409, 413]);
    }

    pub fn error(&mut self, status: u16) {
        self.errors.insert(status);
    }
}

/// What one handler argument contributes to its operation.
pub trait ApiArg {
    fn document(op: &mut Operation, generator: &mut SchemaGenerator);
}

/// A handler whose every argument is an [`ApiArg`].
pub trait Documented<Args> {
    fn document(op: &mut Operation, generator: &mut SchemaGenerator);
}

macro_rules! documented {
    ($($arg:ident),*) => {
        impl<Func, Fut, $($arg,)*> Documented<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Fut,
            $($arg: ApiArg,)*
        {
            #[allow(unused_variables)]
            fn document(op: &mut Operation, generator: &mut SchemaGenerator) {
                $(<$arg as ApiArg>::document(op, generator);)*
            }
        }
    };
}

documented!();
documented!(A);
documented!(A, B);
documented!(A, B, C);
documented!(A, B, C, D);
documented!(A, B, C, D, E);
documented!(A, B, C, D, E, G);
documented!(A, B, C, D, E, G, H);
documented!(A, B, C, D, E, G, H, I);

impl<T: ?Sized> ApiArg for web::Data<T> {
    fn document(_: &mut Operation, _: &mut SchemaGenerator) {}
}

impl ApiArg for HttpRequest {
    fn document(_: &mut Operation, _: &mut SchemaGenerator) {}
}

impl ApiArg for web::Payload {
    fn document(_: &mut Operation, _: &mut SchemaGenerator) {}
}

impl ApiArg for web::Bytes {
    fn document(_: &mut Operation, _: &mut SchemaGenerator) {}
}

impl<T: JsonSchema> ApiArg for Json<T> {
    fn document(op: &mut Operation, generator: &mut SchemaGenerator) {
        op.body = Some(json!({
            "required": true,
            "content": {"application/json": {"schema": generator.subschema_for::<T>()}},
        }));
        op.body_errors();
    }
}

impl<T: JsonSchema> ApiArg for OptionalJson<T> {
    fn document(op: &mut Operation, generator: &mut SchemaGenerator) {
        op.body = Some(json!({
            "required": false,
            "content": {"application/json": {"schema": generator.subschema_for::<T>()}},
        }));
        op.body_errors();
    }
}

impl<T: JsonSchema> ApiArg for web::Query<T> {
    fn document(op: &mut Operation, generator: &mut SchemaGenerator) {
        let schema = generator.root_schema_for::<T>();
        let required: BTreeSet<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (name, property) in properties {
            op.query.push(json!({
                "name": name,
                "in": "query",
                "required": required.contains(name.as_str()),
                "schema": without_null(property.clone()),
            }));
        }
        op.errors.insert(400);
    }
}

/// A query string has no `null`: an absent parameter is the `None`.
fn without_null(mut schema: Value) -> Value {
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            schema["type"] = only;
        }
    }
    if let Some(Value::Array(variants)) = schema.get_mut("anyOf") {
        variants.retain(|v| v.get("type").and_then(Value::as_str) != Some("null"));
        if variants.len() == 1 {
            return variants[0].clone();
        }
    }
    schema
}

/// The schema of one `{name}` segment.
pub trait PathSegment {
    fn schema() -> Value;
}

impl PathSegment for Uuid {
    fn schema() -> Value {
        json!({"type": "string", "format": "uuid"})
    }
}

impl PathSegment for String {
    fn schema() -> Value {
        json!({"type": "string"})
    }
}

impl PathSegment for i64 {
    fn schema() -> Value {
        json!({"type": "integer", "format": "int64"})
    }
}

/// The schemas of a `web::Path`'s segments, in order.
pub trait PathSegments {
    fn schemas() -> Vec<Value>;
}

impl<A: PathSegment> PathSegments for A {
    fn schemas() -> Vec<Value> {
        vec![A::schema()]
    }
}

impl<A: PathSegment, B: PathSegment> PathSegments for (A, B) {
    fn schemas() -> Vec<Value> {
        vec![A::schema(), B::schema()]
    }
}

impl<A: PathSegment, B: PathSegment, C: PathSegment> PathSegments for (A, B, C) {
    fn schemas() -> Vec<Value> {
        vec![A::schema(), B::schema(), C::schema()]
    }
}

impl<T: PathSegments> ApiArg for web::Path<T> {
    fn document(op: &mut Operation, _: &mut SchemaGenerator) {
        op.path_types = T::schemas();
        // A segment that does not parse is a 400; a well-formed id of
        // nothing is a 404.
        op.errors.extend([400, 404]);
    }
}

impl ApiArg for Auth {
    fn document(op: &mut Operation, _: &mut SchemaGenerator) {
        op.authenticate(Authn::Required);
    }
}

impl ApiArg for AuthStale {
    fn document(op: &mut Operation, _: &mut SchemaGenerator) {
        op.authenticate(Authn::Required);
    }
}

impl ApiArg for SessionAuth {
    fn document(op: &mut Operation, _: &mut SchemaGenerator) {
        op.authenticate(Authn::Session);
    }
}

impl ApiArg for MaybeAuth {
    fn document(op: &mut Operation, _: &mut SchemaGenerator) {
        op.authenticate(Authn::Optional);
    }
}

impl<P: Permission> ApiArg for ProjectAuth<P> {
    fn document(op: &mut Operation, _: &mut SchemaGenerator) {
        op.authenticate(Authn::Required);
        op.require_permission(P::NAME);
        op.errors.insert(400);
    }
}

impl<P: Permission> ApiArg for ProjectRead<P> {
    fn document(op: &mut Operation, _: &mut SchemaGenerator) {
        // Anonymous callers read public projects.
        op.authenticate(Authn::Optional);
        op.require_permission(P::NAME);
        op.errors.insert(400);
    }
}

/// Adjusts the operation a route registered (a no-op for actix).
pub struct RouteDoc<'a>(Option<(&'a mut Operation, &'a mut SchemaGenerator)>);

impl RouteDoc<'_> {
    /// Succeeds with `201 Created` and the envelope.
    pub fn created(self) -> Self {
        self.success(|op, _| {
            let data = envelope_data(&op.success);
            op.success = Success::Envelope { status: 201, data };
        })
    }

    /// Succeeds with `200` and the envelope (a `DELETE` that answers what
    /// it removed).
    pub fn ok(self) -> Self {
        self.success(|op, _| {
            let data = envelope_data(&op.success);
            op.success = Success::Envelope { status: 200, data };
        })
    }

    /// Succeeds with `200` and no body.
    pub fn empty(self) -> Self {
        self.success(|op, _| op.success = Success::Empty { status: 200 })
    }

    /// Succeeds with `204 No Content`.
    pub fn no_content(self) -> Self {
        self.success(|op, _| op.success = Success::NoContent)
    }

    /// The envelope's `data` is a `T`.
    pub fn returns<T: JsonSchema>(self) -> Self {
        self.success(|op, generator| {
            let data = generator.subschema_for::<T>().to_value();
            set_data(op, data);
        })
    }

    /// `data` is a bare list of `T` (the lists Paca answers unwrapped).
    pub fn returns_list<T: JsonSchema>(self) -> Self {
        self.returns::<Vec<T>>()
    }

    /// `data` is `{"items": [T], ...}`: the paging fields beside `items`
    /// (`total`, `page`, `next_cursor`, ...) differ per route, so the
    /// schema leaves them open.
    pub fn returns_items<T: JsonSchema>(self) -> Self {
        self.returns_field::<Vec<T>>("items")
    }

    /// `data` is an object whose `name` is a `T`, for the `json!` wrappers
    /// around a view (`{"plugins": [...]}`, `{"conversation": {...}}`);
    /// other members stay open.
    pub fn returns_field<T: JsonSchema>(self, name: &'static str) -> Self {
        self.success(|op, generator| {
            let field = generator.subschema_for::<T>().to_value();
            let data = json!({
                "type": "object",
                "required": [name],
                "properties": {name: field},
            });
            set_data(op, data);
        })
    }

    /// `data` is a `T` with members added beside it (`extra`, an object
    /// schema): a view a handler extends with `json!` (a minted key's
    /// secret, a chat session's first conversation).
    pub fn returns_plus<T: JsonSchema>(self, extra: Value) -> Self {
        self.success(|op, generator| {
            let view = generator.subschema_for::<T>().to_value();
            set_data(op, json!({"allOf": [view, extra]}));
        })
    }

    /// `data` is `{"message": "..."}` (deletions and fire-and-forget
    /// commands that have nothing else to answer).
    pub fn returns_message(self) -> Self {
        self.returns_json(json!({
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": "string"}},
        }))
    }

    /// `data` is this hand-written schema: for bodies a handler builds with
    /// `json!` from parts that have no Rust type of their own.
    pub fn returns_json(self, data: Value) -> Self {
        self.success(|op, _| set_data(op, data))
    }

    /// Answers something other than the envelope.
    pub fn raw(self, content_type: &'static str, schema: Value) -> Self {
        self.success(|op, _| {
            op.success = Success::Raw {
                status: 200,
                content_type,
                schema,
            }
        })
    }

    /// The success body can also come as `content_type`.
    pub fn or_as(self, content_type: &'static str) -> Self {
        self.success(|op, _| op.also_as.push(content_type))
    }

    /// Can also answer `status` (an error the signature does not show).
    pub fn error(self, status: u16) -> Self {
        self.success(|op, _| op.error(status))
    }

    fn success(mut self, f: impl FnOnce(&mut Operation, &mut SchemaGenerator)) -> Self {
        if let Some((op, generator)) = self.0.as_mut() {
            f(op, generator);
        }
        self
    }
}

/// Types the envelope's `data`, keeping a `201` already set; anything but
/// the envelope becomes a `200` envelope.
fn set_data(op: &mut Operation, data: Value) {
    match &mut op.success {
        Success::Envelope { data: d, .. } => *d = data,
        other => *other = Success::Envelope { status: 200, data },
    }
}

fn envelope_data(success: &Success) -> Value {
    match success {
        Success::Envelope { data, .. } => data.clone(),
        _ => json!({}),
    }
}

/// Collects the document.
pub struct Document {
    prefix: String,
    operations: Vec<Operation>,
    generator: SchemaGenerator,
}

impl Default for Document {
    fn default() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "#/components/schemas/".into();
            s.meta_schema = None;
        });
        Self {
            prefix: String::new(),
            operations: Vec::new(),
            generator: settings.into_generator(),
        }
    }
}

impl Routes for Document {
    fn route<F, Args>(&mut self, method: Method, path: &str, _: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let success = match method {
            Method::DELETE => Success::NoContent,
            _ => Success::Envelope {
                status: 200,
                data: json!({}),
            },
        };
        let mut op = Operation {
            method,
            path: format!("{}{path}", self.prefix),
            handler: std::any::type_name::<F>(),
            path_types: Vec::new(),
            query: Vec::new(),
            body: None,
            authn: Authn::None,
            permission: None,
            errors: BTreeSet::new(),
            success,
            also_as: Vec::new(),
        };
        F::document(&mut op, &mut self.generator);
        self.operations.push(op);
        let op = self.operations.last_mut().expect("just pushed");
        RouteDoc(Some((op, &mut self.generator)))
    }

    fn any<F, Args>(&mut self, path: &str, handler: F) -> RouteDoc<'_>
    where
        F: Handler<Args> + Documented<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::POST, path, handler)
    }

    fn prefixed(&mut self, prefix: &str, f: impl FnOnce(&mut Self)) {
        let inner = format!("{}{prefix}", self.prefix);
        let outer = std::mem::replace(&mut self.prefix, inner);
        f(self);
        self.prefix = outer;
    }
}

/// `/projects/{project_id}/files/{path:.*}` → the OpenAPI path and the
/// parameter names in order.
fn openapi_path(path: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(path.len());
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let inner = &rest[open + 1..close];
        let name = inner.split(':').next().unwrap_or(inner);
        out.push('{');
        out.push_str(name);
        out.push('}');
        names.push(name.to_owned());
        rest = &rest[(close + 1).min(rest.len())..];
    }
    out.push_str(rest);
    (out, names)
}

/// `gateways::rest::sprints::create` → (`sprints_create`, `sprints`).
fn operation_id(handler: &str) -> (String, String) {
    let short = handler
        .trim_start_matches("gateways::")
        .trim_start_matches("rest::");
    let parts: Vec<&str> = short.split("::").collect();
    let tag = if parts.len() > 1 { parts[0] } else { "server" };
    (parts.join("_"), tag.to_owned())
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "The request is malformed or fails validation",
        401 => "No valid credentials",
        403 => "Not allowed (permission, pending password change, or wrong credential kind)",
        404 => "Not found, or not visible to the caller",
        405 => "Method not allowed",
        406 => "The Accept header excludes every type the route answers",
        409 => "Conflict with the current state (If-Match, a duplicate, a concurrent write)",
        413 => "The body is larger than the route accepts",
        415 => "Unsupported media type",
        422 => "Semantically invalid",
        429 => "Too many requests; see Retry-After",
        503 => "PostgreSQL is unavailable; retry",
        _ => "Error",
    }
}

impl Document {
    /// The OpenAPI 3.1 document of everything routed so far.
    pub fn finish(mut self) -> Value {
        let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for op in &self.operations {
            let (path, names) = openapi_path(&op.path);
            let (id, tag) = operation_id(op.handler);
            let mut parameters: Vec<Value> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let schema = op.path_types.get(i).cloned().unwrap_or_else(|| {
                        if name == "project_id" {
                            Uuid::schema()
                        } else {
                            String::schema()
                        }
                    });
                    json!({"name": name, "in": "path", "required": true, "schema": schema})
                })
                .collect();
            parameters.extend(op.query.iter().cloned());

            let mut responses = Map::new();
            match &op.success {
                Success::Envelope { status, data } => {
                    responses.insert(
                        status.to_string(),
                        json!({
                            "description": status_text(*status),
                            "content": {"application/json": {"schema": {
                                "type": "object",
                                "required": ["success", "data"],
                                "properties": {
                                    "success": {"const": true},
                                    "data": data,
                                    "request_id": {"type": "string"},
                                },
                            }}},
                        }),
                    );
                }
                Success::NoContent => {
                    responses.insert("204".into(), json!({"description": status_text(204)}));
                }
                Success::Empty { status } => {
                    responses.insert(
                        status.to_string(),
                        json!({"description": status_text(*status)}),
                    );
                }
                Success::Raw {
                    status,
                    content_type,
                    schema,
                } => {
                    responses.insert(
                        status.to_string(),
                        json!({
                            "description": status_text(*status),
                            "content": {*content_type: {"schema": schema}},
                        }),
                    );
                }
            }
            for content_type in &op.also_as {
                for response in responses.values_mut() {
                    let schema = response["content"]
                        .as_object()
                        .and_then(|c| c.values().next())
                        .cloned();
                    if let Some(schema) = schema {
                        response["content"][*content_type] = schema;
                    }
                }
            }
            let mut errors = op.errors.clone();
            if op.method != Method::GET && !names.is_empty() {
                // A write to an existing resource: If-Match, or a concurrent
                // change.
                errors.insert(409);
            }
            // Any route can meet a database outage.
            errors.insert(503);
            for status in errors {
                let codes: Vec<&str> = ErrorCode::ALL
                    .iter()
                    .filter(|c| c.http_status() == status)
                    .map(|c| c.as_str())
                    .collect();
                assert!(!codes.is_empty(), "no error code answers {status}");
                responses.insert(
                    status.to_string(),
                    json!({
                        "description": status_text(status),
                        "content": {"application/json": {"schema": {
                            "allOf": [{"$ref": "#/components/schemas/Error"}],
                            "properties": {"error_code": {"enum": codes}},
                        }}},
                    }),
                );
            }

            let mut operation = json!({
                "operationId": id,
                "tags": [tag],
                "parameters": parameters,
                "responses": responses,
            });
            if let Some(body) = &op.body {
                operation["requestBody"] = body.clone();
            }
            operation["security"] = match op.authn {
                Authn::None => json!([]),
                Authn::Optional => {
                    json!([{}, {"bearer": []}, {"cookie": []}, {"apiKey": []}, {"apiKeyHeader": []}])
                }
                Authn::Required => {
                    json!([{"bearer": []}, {"cookie": []}, {"apiKey": []}, {"apiKeyHeader": []}])
                }
                Authn::Session => json!([{"bearer": []}, {"cookie": []}]),
            };
            if let Some(permission) = op.permission {
                operation["x-permission"] = json!(permission);
            }
            paths
                .entry(path)
                .or_default()
                .insert(op.method.as_str().to_ascii_lowercase(), operation);
        }

        let mut schemas = self.generator.take_definitions(true);
        schemas.insert(
            "Error".into(),
            json!({
                "type": "object",
                "description": "The seeds' error envelope.",
                "required": ["success", "error_code", "error"],
                "properties": {
                    "success": {"const": false},
                    "error_code": {"type": "string"},
                    "error": {"type": "string", "description": "A message for humans"},
                    "request_id": {"type": "string"},
                },
            }),
        );
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Paca-RS API",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Generated from the server's route table and handler signatures.",
            },
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                    "cookie": {"type": "apiKey", "in": "cookie", "name": "access_token"},
                    "apiKey": {
                        "type": "apiKey", "in": "header", "name": "Authorization",
                        "description": "`ApiKey <key>`",
                    },
                    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                },
            },
        })
    }
}

/// The document of [`crate::routes`], built once per process.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = Document::default();
        crate::routes(&mut doc);
        doc.finish()
    })
}

/// `GET /api/healthz`'s body.
pub fn health_schema() -> Value {
    json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}})
}

/// `GET /api/openapi.json`.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_translate_actix_patterns() {
        assert_eq!(
            openapi_path("/plugins/{name}/{path:.*}"),
            (
                "/plugins/{name}/{path}".to_owned(),
                vec!["name".to_owned(), "path".to_owned()]
            )
        );
        assert_eq!(
            openapi_path("/api/healthz"),
            ("/api/healthz".into(), vec![])
        );
    }

    #[test]
    fn every_operation_is_unique_and_described() {
        let doc = document();
        let mut ids = BTreeSet::new();
        let mut count = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                count += 1;
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "{id} twice ({method} {path})");
                assert!(!op["responses"].as_object().unwrap().is_empty());
                // Every `{name}` in the path is a declared parameter.
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                let (_, names) = openapi_path(path);
                assert_eq!(declared.len(), names.len(), "{method} {path}");
            }
        }
        assert!(count > 100, "only {count} operations");
        // Two body types of one name get `Name2` from schemars: each is
        // renamed after its resource instead (`TaskPatchBody`).
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(
                !name.ends_with(|c: char| c.is_ascii_digit()),
                "schema {name}: rename the type (#[schemars(rename = ...)])"
            );
        }
        // Success bodies are typed from the read model's views. Handlers
        // merge fields into some views (`plugin_summaries`), so no schema
        // may close its properties.
        let task = &doc["paths"]["/api/v1/projects/{project_id}/tasks/{task_id}"]["get"];
        let data = &task["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
            ["data"];
        assert_eq!(data["$ref"], "#/components/schemas/TaskView");
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            assert!(
                schema.get("additionalProperties") != Some(&json!(false)),
                "schema {name} forbids the fields handlers add"
            );
        }
        // Every `$ref` resolves.
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }

    /// The route tree answers every request as the flat list did: the
    /// same route (by its full pattern), the same fall-through between
    /// routes whose segments may overlap, the default service otherwise.
    #[actix_web::test]
    async fn route_tree_matches_like_the_flat_list() {
        use actix_web::{App, test};

        async fn which(req: HttpRequest) -> HttpResponse {
            HttpResponse::Ok().body(req.match_pattern().unwrap_or_default())
        }
        async fn missing() -> HttpResponse {
            HttpResponse::NotFound().body("default")
        }
        let app = test::init_service(
            App::new()
                .configure(|cfg| {
                    let mut r = Actix::new(cfg);
                    r.prefixed("/api/v1", |r| {
                        r.get("/projects", which);
                        r.get("/projects/{project_id}", which);
                        r.patch("/projects/{project_id}/tasks/{task_id}", which);
                        r.get("/projects/{project_id}/tasks/{task_id}", which);
                        // A parameter and a literal at one level: flat, in order.
                        r.get("/things/{thing}", which);
                        r.get("/things/special", which);
                        r.post("/things/special", which);
                        r.any("/plugins/{plugin_id}/{tail:.*}", which);
                    });
                    r.get("/api/healthz", which);
                    r.get("/files/{name}/{path:.*}", which);
                    r.finish();
                })
                .route("/api-docs", web::get().to(which))
                .default_service(web::to(missing)),
        )
        .await;
        let project = "/api/v1/projects/{project_id}";
        for (method, path, expected) in [
            (Method::GET, "/api/v1/projects", "/api/v1/projects"),
            (Method::GET, "/api/v1/projects/p1", project),
            (
                Method::PATCH,
                "/api/v1/projects/p1/tasks/t1",
                "/api/v1/projects/{project_id}/tasks/{task_id}",
            ),
            (
                Method::GET,
                "/api/v1/projects/p1/tasks/t1",
                "/api/v1/projects/{project_id}/tasks/{task_id}",
            ),
            (
                Method::GET,
                "/api/v1/things/special",
                "/api/v1/things/{thing}",
            ),
            (
                Method::POST,
                "/api/v1/things/special",
                "/api/v1/things/special",
            ),
            (
                Method::DELETE,
                "/api/v1/plugins/x/a/b",
                "/api/v1/plugins/{plugin_id}/{tail:.*}",
            ),
            (Method::GET, "/api/healthz", "/api/healthz"),
            (Method::GET, "/files/a/b/c", "/files/{name}/{path:.*}"),
            // Outside every scope: the services registered after the tree.
            (Method::GET, "/api-docs", "/api-docs"),
            // No route: the default service, as before.
            (Method::PUT, "/api/v1/projects/p1/tasks/t1", "default"),
            (Method::GET, "/api/v1/projects/p1/nothing", "default"),
            (Method::GET, "/api/v1/projects/", "default"),
            (Method::GET, "/api/v1/plugins/x", "default"),
            (Method::GET, "/api/healthz/extra", "default"),
        ] {
            let req = test::TestRequest::default()
                .method(method.clone())
                .uri(path)
                .to_request();
            let body = test::call_and_read_body(&app, req).await;
            assert_eq!(
                std::str::from_utf8(&body).unwrap(),
                expected,
                "{method} {path}"
            );
        }
    }
}
