//! `TestApp`: the real actix `App` in-process on a fresh, migrated
//! database (one per test, from `#[sqlx::test]`), seeded like `paca serve`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, test, web};
use commands::{AuthConfig, Commands};
use eventstore::EventStore;
use gateways::AppState;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct TestApp<S> {
    pub service: S,
    pub pool: PgPool,
    /// The same write side the app uses, for tests that drive commands
    /// directly.
    pub commands: Commands,
}

pub async fn pool(options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.options([("search_path", "rm,public")]))
        .await
        .unwrap()
}

pub async fn app(
    options: PgConnectOptions,
) -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
> {
    let pool = pool(options).await;
    let store = EventStore::builder(pool.clone())
        .upcasters(commands::upcasters())
        .projector(Arc::new(commands::write_index::WriteIndex))
        .projector(Arc::new(projections::ReadModelProjector))
        .build();
    projections::ensure_ready(&store).await.unwrap();
    let commands = Commands::new(
        store,
        AuthConfig {
            jwt_secret: "test-secret".into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(3600),
            refresh_session_ttl: Duration::from_secs(600),
            cookie_secure: false,
            agent_api_key: None,
        },
    )
    .await
    .unwrap();
    commands.seed_global_roles().await.unwrap();
    commands.seed_admin("admin", ADMIN_PASSWORD).await.unwrap();
    let state = web::Data::new(AppState::new(commands.clone(), 10));
    let service = test::init_service(
        App::new()
            .wrap(from_fn(gateways::edge))
            .configure(gateways::configure(state)),
    )
    .await;
    TestApp {
        service,
        pool,
        commands,
    }
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub cookies: Vec<(String, String)>,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error_code"].as_str().unwrap_or("")
    }
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
}

impl<S, B> TestApp<S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(path);
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        if let Some(token) = token {
            req = if token.starts_with("paca_") {
                req.insert_header(("X-API-Key", token))
            } else {
                req.insert_header(("Authorization", format!("Bearer {token}")))
            };
        }
        if let Some(body) = body {
            req = req.set_json(body);
        }
        let res = test::call_service(&self.service, req.to_request()).await;
        let status = res.status().as_u16();
        let cookies = res
            .response()
            .cookies()
            .map(|c| (c.name().to_owned(), c.value().to_owned()))
            .collect();
        let bytes = test::read_body(res).await;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            cookies,
        }
    }

    /// Logs in and returns the access JWT from the cookie.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let reply = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(reply.status, 200, "login failed: {}", reply.body);
        reply
            .cookies
            .iter()
            .find(|(name, _)| name == "access_token")
            .map(|(_, v)| v.clone())
            .expect("access_token cookie")
    }

    pub async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates a project named `name` as `token`; its id.
    pub async fn create_project(&self, token: &str, name: &str) -> String {
        let body = serde_json::json!({ "name": name });
        let r = self
            .call("POST", "/api/v1/projects", Some(token), Some(body))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.data()["id"].as_str().unwrap().to_owned()
    }

    /// Creates a task titled `title` in `project` as `token`; its id.
    pub async fn create_task(&self, token: &str, project: &str, title: &str) -> String {
        let body = serde_json::json!({ "title": title });
        let path = format!("/api/v1/projects/{project}/tasks");
        let r = self.call("POST", &path, Some(token), Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.data()["id"].as_str().unwrap().to_owned()
    }

    /// Creates a user through the admin API and completes the forced
    /// password change; returns (user id, token).
    pub async fn user(&self, admin: &str, username: &str) -> (String, String) {
        let reply = self
            .call(
                "POST",
                "/api/v1/admin/users",
                Some(admin),
                Some(serde_json::json!({"username": username, "password": "initial-pass", "full_name": username})),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let id = reply.data()["id"].as_str().unwrap().to_owned();
        let token = self.login(username, "initial-pass").await;
        let reply = self
            .call(
                "PATCH",
                "/api/v1/users/me/password",
                Some(&token),
                Some(serde_json::json!({"current_password": "initial-pass", "new_password": "fresh-pass-1"})),
            )
            .await;
        assert_eq!(reply.status, 204, "{}", reply.body);
        (id, self.login(username, "fresh-pass-1").await)
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}
