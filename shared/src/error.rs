//! Typed errors. AWS SDK errors keep their source and are classified as retryable
//! (throttling, timeouts, 5xx, network) or permanent (validation, missing object, denied).

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// A configuration problem found at cold start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    #[error("invalid value for {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A failed AWS call, with its operation, error code and whether retrying can help.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed ({code}): {message}")]
pub struct AwsError {
    pub operation: &'static str,
    /// The service error code (`NoSuchKey`, `ConditionalCheckFailedException`, ...) or the
    /// transport failure kind (`timeout`, `dispatch`, ...).
    pub code: String,
    pub message: String,
    pub retryable: bool,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

impl AwsError {
    /// Classifies an SDK error of any service.
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let message = DisplayErrorContext(&err).to_string();
        let (code, retryable) = match &err {
            SdkError::TimeoutError(_) => ("timeout".to_string(), true),
            SdkError::DispatchFailure(_) => ("dispatch".to_string(), true),
            SdkError::ResponseError(_) => ("response".to_string(), true),
            SdkError::ConstructionFailure(_) => ("construction".to_string(), false),
            SdkError::ServiceError(se) => {
                let code = se.err().code().unwrap_or("Unknown").to_string();
                let retryable = RETRYABLE_CODES.contains(&code.as_str());
                (code, retryable)
            }
            _ => ("unknown".to_string(), true),
        };
        AwsError { operation, code, message, retryable, source: Box::new(err) }
    }

    /// Whether the service answered with this error code.
    pub fn is_code(&self, code: &str) -> bool {
        self.code == code
    }
}

/// Shorthand for `map_err(|e| AwsError::from_sdk(op, e))`.
pub trait SdkResultExt<T> {
    fn aws(self, operation: &'static str) -> Result<T, AwsError>;
}

impl<T, E, R> SdkResultExt<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    fn aws(self, operation: &'static str) -> Result<T, AwsError> {
        self.map_err(|e| AwsError::from_sdk(operation, e))
    }
}
