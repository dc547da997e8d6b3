//! The HTTP API (JSON, multipart uploads, server-sent events) and the page, on axum.
//! Every route is listed in the README's "Web UI" section.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use neural_style::run::memory::{Budget, available_memory, fit};
use neural_style::{Error as LibError, Image, Inputs, LossWeights, Network, Plan, TransferConfig};
use serde::Serialize;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;

use crate::access::{AccessName, AccessTokens, Client, HostRule};
use crate::jobs::{JobError, JobView, Jobs, valid_id};
#[cfg(feature = "queue")]
use crate::queue::{RemoteJobs, Upload};
use crate::settings::{JobSettings, Limits, STYLE_STRENGTH_RANGE};

/// Where jobs run: in this process, or on workers of the queue across machines.
#[derive(Clone)]
pub enum Backend {
    /// The server's own queue and worker threads.
    Embedded(Arc<Jobs>),
    /// The engine's queue; workers anywhere run the jobs (`serve --queue`).
    #[cfg(feature = "queue")]
    Remote(Arc<RemoteJobs>),
}

impl Backend {
    /// Whether the jobs go to the queue across machines.
    fn is_remote(&self) -> bool {
        match self {
            Self::Embedded(_) => false,
            #[cfg(feature = "queue")]
            Self::Remote(_) => true,
        }
    }

    async fn view(&self, owner: &str, id: &str) -> Result<Option<JobView>, JobError> {
        match self {
            Self::Embedded(jobs) => Ok(jobs.view(owner, id)),
            #[cfg(feature = "queue")]
            Self::Remote(jobs) => jobs.view(owner, id).await,
        }
    }

    async fn list(&self, owner: &str) -> Result<Vec<JobView>, JobError> {
        match self {
            Self::Embedded(jobs) => Ok(jobs.list(owner)),
            #[cfg(feature = "queue")]
            Self::Remote(jobs) => jobs.list(owner).await,
        }
    }

    async fn watch(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<tokio::sync::watch::Receiver<u64>>, JobError> {
        match self {
            Self::Embedded(jobs) => Ok(jobs.watch(owner, id)),
            #[cfg(feature = "queue")]
            Self::Remote(jobs) => jobs.watch(owner, id).await,
        }
    }

    async fn preview(&self, owner: &str, id: &str) -> Result<Option<Vec<u8>>, JobError> {
        match self {
            Self::Embedded(jobs) => Ok(jobs.preview(owner, id).map(|j| j.as_ref().clone())),
            #[cfg(feature = "queue")]
            Self::Remote(jobs) => jobs.preview(owner, id).await,
        }
    }

    async fn result(&self, owner: &str, id: &str) -> Result<Option<Vec<u8>>, JobError> {
        match self {
            Self::Embedded(jobs) => match jobs.result(owner, id) {
                Some(path) => Ok(tokio::fs::read(&path).await.ok()),
                None => Ok(None),
            },
            #[cfg(feature = "queue")]
            Self::Remote(jobs) => jobs.result(owner, id).await,
        }
    }

    async fn stop(&self, owner: &str, id: &str) -> Result<JobView, JobError> {
        match self {
            Self::Embedded(jobs) => jobs.stop(owner, id),
            #[cfg(feature = "queue")]
            Self::Remote(jobs) => jobs.stop(owner, id).await,
        }
    }

    async fn remove(&self, owner: &str, id: &str) -> Result<(), JobError> {
        match self {
            Self::Embedded(jobs) => jobs.remove(owner, id),
            #[cfg(feature = "queue")]
            Self::Remote(jobs) => jobs.remove(owner, id).await,
        }
    }
}

/// A job's plan from a client's settings and images: `base` with the settings applied,
/// the images shrunk to what the job uses, fitted into this machine's memory (by tiles or
/// a shorter history when it must). The error is the client's, in words. The server
/// makes it to check a job before queueing it; a worker of the queue across machines
/// makes it again from the same uploads.
pub(crate) fn plan_job(
    net: &Network,
    base: &TransferConfig,
    default_style: f32,
    limits: &Limits,
    settings: &JobSettings,
    content: Image,
    styles: Vec<Image>,
) -> Result<Plan, String> {
    let config = settings
        .to_config(base, default_style, styles.len(), limits)
        .map_err(|e| e.to_string())?;
    plan_with(net, &config, Some(settings.size), content, styles)
}

/// A job's plan from a checked configuration; `longest`: the images are first shrunk to
/// about twice what the job uses (a web job's size).
pub(crate) fn plan_with(
    net: &Network,
    config: &neural_style::CheckedConfig,
    longest: Option<u32>,
    content: Image,
    styles: Vec<Image>,
) -> Result<Plan, String> {
    let shrink = |image: Image, scale: f32| match longest {
        Some(side) => fit_for_job(image, (side as f32 * scale).ceil() as u32),
        None => image,
    };
    let style_scale = config.get().style_scale;
    let inputs = Inputs {
        content: Some(shrink(content, 1.0)),
        styles: styles.into_iter().map(|i| shrink(i, style_scale)).collect(),
        ..Inputs::default()
    };
    let plan = Plan::new(config, net, inputs).map_err(|e| e.to_string())?;
    // A size larger than memory goes by tiles (or with a shorter history), as on the
    // command line; one that fits in no way is refused now, not killed later.
    match Budget::new(available_memory(), None) {
        Some(budget) => fit(plan, budget).map(|(p, _)| p).map_err(|e| e.to_string()),
        None => Ok(plan),
    }
}

/// The page: plain HTML, CSS and JavaScript, no build step.
const PAGE: &str = include_str!("../static/index.html");

/// What the handlers share.
pub struct AppState {
    /// The queue.
    pub jobs: Backend,
    /// The network (for its input convention and description).
    pub net: Arc<Network>,
    /// The server's base settings; each job's settings are applied on top.
    pub base: TransferConfig,
    /// The loss weights of `base` on the network (style strength 0).
    pub default_weights: LossWeights,
    /// What clients may ask for.
    pub limits: Limits,
    /// Uploads decoded at once (each may take up to ~16 bytes a pixel).
    pub decoding: Semaphore,
    /// The `Host` names answered.
    pub hosts: HostRule,
    /// The API's access tokens.
    pub access: AccessTokens,
    /// Most jobs one client (access token, else browser) may have waiting; 0: no limit.
    pub max_per_client: usize,
}

/// An error answer: a status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
        }
        (
            self.status,
            Json(Body {
                error: &self.message,
            }),
        )
            .into_response()
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let status = match e {
            JobError::QueueFull(_) | JobError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            JobError::NotFound(_) => StatusCode::NOT_FOUND,
            JobError::NotFinished(_) => StatusCode::CONFLICT,
            JobError::Engine(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router: the page, the API, and the limits on requests; every request passes the
/// host and origin rules of [`crate::access`] first.
pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let body_limit = state.limits.max_upload_bytes;
    let timed = Router::new()
        .route("/", get(page))
        .route("/api/info", get(info))
        .route(crate::access::ACCESS_PATH, post(access))
        .route("/api/jobs", post(submit).get(list))
        .route("/api/jobs/{id}", get(job).delete(remove))
        .route("/api/jobs/{id}/stop", post(stop))
        .route("/api/jobs/{id}/preview", get(preview))
        .route("/api/jobs/{id}/result", get(result))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ));
    // The event stream lasts as long as its job, so it has no request timeout.
    Router::new()
        .route("/api/jobs/{id}/events", get(events))
        .merge(timed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::access::guard,
        ))
        .with_state(state)
}

/// `GET /`: the page; a browser without a client token gets one as a cookie.
async fn page(headers: axum::http::HeaderMap) -> Response {
    let mut response = Html(PAGE).into_response();
    if crate::access::token_of(&headers).is_none() {
        let cookie = crate::access::cookie(&crate::access::new_token());
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /api/access`: `{"token": "..."}` from the page's access-token box; a token the
/// server has is kept in an `HttpOnly` cookie (204), so that the page and its event
/// streams carry it; any other gets 401.
async fn access(
    State(s): State<Arc<AppState>>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Response> {
    let given = body["token"].as_str().unwrap_or_default();
    if s.access.name_of_token(given).is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this access token is not one of the server's",
        ));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, crate::access::access_cookie(given));
    Ok(response)
}

/// `GET /api/info`: the network, the defaults (with the loss weights that style strength 0
/// means on this network) and the limits.
async fn info(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "network": format!("{} ({})", s.net.info.arch, s.net.convention),
        "defaults": JobSettings::default(),
        "loss_weights": s.default_weights,
        "limits": s.limits,
        "style_strength_range": STYLE_STRENGTH_RANGE,
    }))
}

/// Finds a job's id in the URL: anything else than our 16 hex digits is simply not found.
fn checked_id(id: &str) -> ApiResult<&str> {
    if valid_id(id) {
        Ok(id)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such job"))
    }
}

/// Decodes one uploaded image within the limits: not an image (by its content, or by a
/// declared non-image type) is 415, too many pixels 413, damaged 422.
async fn decode_upload(
    s: &AppState,
    field: &str,
    content_type: Option<&str>,
    bytes: Vec<u8>,
) -> ApiResult<Image> {
    let declared_other =
        content_type.is_some_and(|t| !(t.starts_with("image/") || t == "application/octet-stream"));
    if declared_other || image::guess_format(&bytes).is_err() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{field}: not an image (accepted: PNG, JPEG, GIF, WebP, BMP, TIFF and the other formats the decoder knows by their signature)"
            ),
        ));
    }
    let _permit = s
        .decoding
        .acquire()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    let max = s.limits.max_input_pixels;
    let limits = s.limits;
    let name = field.to_string();
    // Decoded and shrunk under the permit, off the async threads: no job uses more than
    // twice the largest size (see `fit_for_job`), so nothing larger is kept.
    let decoded = tokio::task::spawn_blocking(move || limits.decode_upload(&bytes, &name))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "decoder failed"))?;
    decoded.map_err(|e| match e {
        LibError::TooManyPixels { width, height, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{field}: image is {width}x{height}: more than the {max} pixels allowed"),
        ),
        other => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
    })
}

/// Shrinks an upload that is much larger than the job will use, so that queued jobs hold
/// little memory (the run resizes its inputs to the output size anyway).
fn fit_for_job(image: Image, longest: u32) -> Image {
    if image.width.max(image.height) > 2 * longest {
        image.resized_to_longest(2 * longest)
    } else {
        image
    }
}

/// A job's form, read from its multipart body as it streams in: the settings, the photo and
/// the styles (decoded, within the server's limits), and, for the queue across machines,
/// the uploads as sent. A body that is not multipart gets axum's own refusal.
struct JobForm {
    settings: JobSettings,
    content: Image,
    styles: Vec<Image>,
    /// The photo as sent (kept only for the queue across machines).
    content_bytes: Vec<u8>,
    /// The styles as sent (likewise).
    style_bytes: Vec<Vec<u8>>,
}

impl axum::extract::FromRequest<Arc<AppState>> for JobForm {
    type Rejection = Response;

    async fn from_request(
        req: axum::extract::Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let form = Multipart::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Self::read(state, form)
            .await
            .map_err(IntoResponse::into_response)
    }
}

impl JobForm {
    async fn read(s: &AppState, mut form: Multipart) -> ApiResult<Self> {
        let mut settings = JobSettings::default();
        let mut content = None;
        let mut styles = Vec::new();
        let remote = s.jobs.is_remote();
        let mut content_bytes = Vec::new();
        let mut style_bytes = Vec::new();
        while let Some(field) = form.next_field().await.map_err(|e| upload_error(s, e))? {
            let name = field.name().unwrap_or_default().to_string();
            let content_type = field.content_type().map(str::to_string);
            match name.as_str() {
                "settings" => {
                    let text = field.text().await.map_err(|e| upload_error(s, e))?;
                    settings = serde_json::from_str(&text).map_err(|e| {
                        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("settings: {e}"))
                    })?;
                }
                "content" | "style" => {
                    if name == "style" && styles.len() >= s.limits.max_styles {
                        return Err(ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            format!("at most {} style images", s.limits.max_styles),
                        ));
                    }
                    let bytes = field
                        .bytes()
                        .await
                        .map_err(|e| upload_error(s, e))?
                        .to_vec();
                    let kept = if remote { bytes.clone() } else { Vec::new() };
                    let image = decode_upload(s, &name, content_type.as_deref(), bytes).await?;
                    if name == "content" {
                        content = Some(image);
                        content_bytes = kept;
                    } else {
                        styles.push(image);
                        style_bytes.push(kept);
                    }
                }
                other => {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "unknown form field `{}` (expected content, style, settings)",
                            crate::access::echo(other)
                        ),
                    ));
                }
            }
        }
        let content = content.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "content: a photo is needed",
            )
        })?;
        if styles.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "style: at least one style image is needed",
            ));
        }
        Ok(Self {
            settings,
            content,
            styles,
            content_bytes,
            style_bytes,
        })
    }
}

/// A body that could not be read: too large (413, saying the limit), or cut or malformed
/// (400: the client's fault, not the 500 the extractor reports).
fn upload_error(s: &AppState, e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        let message = format!(
            "the upload is larger than the {} MB allowed",
            s.limits.max_upload_bytes >> 20
        );
        return ApiError::new(status, message);
    }
    let status = if status.is_server_error() {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, format!("bad upload: {}", e.body_text()))
}

/// `POST /api/jobs`: multipart with `content` (one image), `style` (one or more images)
/// and `settings` (JSON, optional). Answers 201 with the job.
// Without the queue, the uploads as sent and the idempotency key go unread.
#[cfg_attr(not(feature = "queue"), allow(unused_variables, unused_assignments))]
async fn submit(
    State(s): State<Arc<AppState>>,
    Client(owner): Client,
    access: Option<axum::Extension<AccessName>>,
    headers: axum::http::HeaderMap,
    form: JobForm,
) -> ApiResult<(StatusCode, [(header::HeaderName, String); 1], Json<JobView>)> {
    let JobForm {
        settings,
        content,
        styles,
        content_bytes,
        style_bytes,
    } = form;
    let plan = plan_job(
        &s.net,
        &s.base,
        s.default_weights.style,
        &s.limits,
        &settings,
        content,
        styles,
    )
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    // A client's share of the queue: its access token's, else its own.
    let limit_name = match access {
        Some(axum::Extension(AccessName(name))) => format!("token:{name}"),
        None => format!("client:{owner}"),
    };
    let limit = (limit_name.as_str(), s.max_per_client);
    let view = match &s.jobs {
        Backend::Embedded(jobs) => jobs.submit(&owner, settings, plan, limit)?,
        #[cfg(feature = "queue")]
        Backend::Remote(jobs) => {
            // Checked here; the worker makes the plan again from the same uploads.
            drop(plan);
            let key = idempotency_key(&headers)?;
            let upload = Upload {
                settings,
                config: None,
                content: content_bytes,
                styles: style_bytes,
            };
            jobs.submit(&owner, upload, key, limit).await?
        }
    };
    let location = format!("/api/jobs/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    ))
}

#[cfg(feature = "queue")]
/// The `Idempotency-Key` header of a submission: a retried request with the same key gets
/// the first job back instead of a second one.
fn idempotency_key(headers: &axum::http::HeaderMap) -> ApiResult<Option<&str>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key))
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key: 1 to 128 visible ASCII characters",
        )),
    }
}

/// `GET /api/jobs`: every job of this client, newest first (the gallery is those with a
/// result).
async fn list(
    State(s): State<Arc<AppState>>,
    Client(owner): Client,
) -> ApiResult<Json<Vec<JobView>>> {
    Ok(Json(s.jobs.list(&owner).await?))
}

/// `GET /api/jobs/{id}`.
async fn job(
    State(s): State<Arc<AppState>>,
    Client(owner): Client,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<JobView>> {
    let id = checked_id(&id)?;
    s.jobs
        .view(&owner, id)
        .await?
        .map(Json)
        .ok_or_else(|| JobError::NotFound(id.into()).into())
}

/// `POST /api/jobs/{id}/stop`: a running job stops at its next evaluation and keeps its
/// best image; a queued one is cancelled.
async fn stop(
    State(s): State<Arc<AppState>>,
    Client(owner): Client,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let id = checked_id(&id)?;
    Ok((StatusCode::ACCEPTED, Json(s.jobs.stop(&owner, id).await?)))
}

/// `DELETE /api/jobs/{id}`: forget a finished job and delete its files.
async fn remove(
    State(s): State<Arc<AppState>>,
    Client(owner): Client,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    let id = checked_id(&id)?;
    s.jobs.remove(&owner, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/jobs/{id}/preview`: the latest intermediate image, JPEG.
async fn preview(
    State(s): State<Arc<AppState>>,
    Client(owner): Client,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Response> {
    let id = checked_id(&id)?;
    let jpeg = s
        .jobs
        .preview(&owner, id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no preview yet"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from(jpeg),
    )
        .into_response())
}

/// `GET /api/jobs/{id}/result`: the finished image, PNG, as a download.
async fn result(
    State(s): State<Arc<AppState>>,
    Client(owner): Client,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Response> {
    let id = checked_id(&id)?;
    let bytes = s
        .jobs
        .result(&owner, id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no result (yet)"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"neural-style-{id}.png\""),
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}

/// `GET /api/jobs/{id}/events`: server-sent events, one `job` event with the job's JSON
/// at once and after every change (a few per second at most), ending once it has finished.
async fn events(
    State(s): State<Arc<AppState>>,
    Client(owner): Client,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let id = checked_id(&id)?.to_string();
    let rx = s
        .jobs
        .watch(&owner, &id)
        .await?
        .ok_or_else(|| ApiError::from(JobError::NotFound(id.clone())))?;
    let jobs = s.jobs.clone();
    // State: the receiver, and whether the final view has been sent.
    let stream = futures_util::stream::unfold((rx, true, false), move |(mut rx, first, done)| {
        let jobs = jobs.clone();
        let id = id.clone();
        let owner = owner.clone();
        async move {
            if done {
                return None;
            }
            if !first && rx.changed().await.is_err() {
                return None;
            }
            rx.borrow_and_update();
            let view = jobs.view(&owner, &id).await.ok().flatten()?;
            let finished = view.status.is_final();
            let event = SseEvent::default()
                .event("job")
                .json_data(&view)
                .unwrap_or_else(|_| SseEvent::default().comment("unserialisable"));
            Some((Ok(event), (rx, false, finished)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
