//! API errors and how they become JSON responses (`{"error": "<message>"}`).

use serde_json::json;
use spin_sdk::http::Response;
use spin_sdk::sqlite::Error as SqliteError;

use crate::json_response;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the message says what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no client identity (the request did not come over mutual TLS).
    #[error("{0}")]
    Unauthorized(String),
    /// 401: no valid administrator bearer token (answered with `www-authenticate: Bearer`).
    #[error("{0}")]
    BadBearer(String),
    /// 403: the caller is known not to be allowed (unknown or revoked device, foreign meter, no
    /// consent).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource, or one the caller may not know exists.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// 409: the request conflicts with the stored state.
    #[error("{0}")]
    Conflict(String),
    /// 500: the database failed (details are logged, not returned).
    #[error("database error: {0}")]
    Database(String),
    /// 500: something the component itself needs is missing (e.g. the admin token variable).
    #[error("{0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<SqliteError> for ApiError {
    fn from(e: SqliteError) -> Self {
        ApiError::Database(sqlite_error_text(&e))
    }
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) | ApiError::BadBearer(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict(_) => 409,
            ApiError::Database(_) | ApiError::Internal(_) => 500,
        }
    }

    pub fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Database(detail) => {
                eprintln!("wattlet-data-api: database error: {detail}");
                "internal database error".to_owned()
            }
            ApiError::Internal(detail) => {
                eprintln!("wattlet-data-api: {detail}");
                detail.clone()
            }
            other => other.to_string(),
        };
        let mut response = json_response(status, &json!({ "error": message }));
        match &self {
            ApiError::MethodNotAllowed { allow } => response.set_header("allow", *allow),
            ApiError::BadBearer(_) => {
                response.set_header("www-authenticate", "Bearer realm=\"wattlet\"")
            }
            _ => {}
        }
        response
    }
}

/// The WIT name of a `fermyon:spin/sqlite@2.0.0` error (`access-denied`, `io: <message>`, ...).
pub fn sqlite_error_text(e: &SqliteError) -> String {
    match e {
        SqliteError::NoSuchDatabase => "no-such-database".to_owned(),
        SqliteError::AccessDenied => "access-denied".to_owned(),
        SqliteError::InvalidConnection => "invalid-connection".to_owned(),
        SqliteError::DatabaseFull => "database-full".to_owned(),
        SqliteError::Io(message) => format!("io: {message}"),
    }
}
