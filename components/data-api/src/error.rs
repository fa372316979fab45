//! API errors and how they become JSON responses: `{"error": "<message>", "code": "<code>"}`.
//!
//! Every error carries a [`RefusalCode`] (`wattlet_survey`), the one list of machine-readable
//! codes that clients branch on; the code also sets the HTTP status, so a code always arrives
//! with the same status.

use serde_json::json;
use wattlet_survey::RefusalCode;

use crate::http::{Response, json_response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A refusal: the code says why (and sets the status), the message says it to people.
    #[error("{message}")]
    Refused { code: RefusalCode, message: String },
    /// 405: the path exists, the method does not (answered with `allow`).
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// 500 `internal`: the database failed (details are logged, not returned).
    #[error("database error: {0}")]
    Database(String),
    /// 500 `internal`: something the component itself needs is missing (e.g. the admin token
    /// variable).
    #[error("{0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn refused(code: RefusalCode, message: impl Into<String>) -> Self {
        ApiError::Refused {
            code,
            message: message.into(),
        }
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::refused(RefusalCode::NotFound, message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::refused(RefusalCode::Conflict, message)
    }

    pub fn code(&self) -> RefusalCode {
        match self {
            ApiError::Refused { code, .. } => *code,
            ApiError::MethodNotAllowed { .. } => RefusalCode::MethodNotAllowed,
            ApiError::Database(_) | ApiError::Internal(_) => RefusalCode::Internal,
        }
    }

    pub fn into_response(self) -> Response {
        let code = self.code();
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
        let mut response = json_response(
            code.status(),
            &json!({ "error": message, "code": code.as_str() }),
        );
        match &self {
            ApiError::MethodNotAllowed { allow } => response.set_header("allow", allow),
            _ if matches!(code, RefusalCode::InvalidToken | RefusalCode::TokenRevoked) => {
                response.set_header("www-authenticate", "Bearer realm=\"wattlet\"")
            }
            _ => {}
        }
        response
    }
}
