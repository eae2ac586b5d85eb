//! What can go wrong in the shim, and the one place each failure becomes a `CK_RV`.
//!
//! Every exported function returns `Result<(), Error>` inside the FFI boundary; the boundary
//! turns it into a return code with [`From<Error> for CK_RV`](#impl-From<Error>-for-u64). The
//! match there has no wildcard arm, so a new variant cannot go unmapped.

use cryptoki_sys::*;
use signerd_client::{Refusal, Rpc};

/// A failed PKCS#11 call, in the shim's terms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call before `C_Initialize` (or after `C_Finalize`).
    #[error("the library is not initialized (call C_Initialize first)")]
    NotInitialized,
    /// `C_Initialize` twice without `C_Finalize`.
    #[error("the library is already initialized")]
    AlreadyInitialized,
    /// `C_Initialize` asked for application locking only, which the shim cannot honour.
    #[error("the application asked for its own locking callbacks without CKF_OS_LOCKING_OK")]
    CantLock,
    /// `C_Initialize` forbade the library to start threads; the shim needs its I/O thread.
    #[error("the shim needs its own I/O thread (CKF_LIBRARY_CANT_CREATE_OS_THREADS is set)")]
    NeedToCreateThreads,
    /// The legacy parallel-function calls.
    #[error("sessions are never parallel")]
    FunctionNotParallel,
    /// A null pointer, a reserved field that is set, or a length that cannot be right.
    #[error("bad arguments: {0}")]
    ArgumentsBad(&'static str),
    /// A function or feature the shim does not offer.
    #[error("not supported by the signerd shim")]
    FunctionNotSupported,
    /// No slot with that ID.
    #[error("no slot {0}")]
    SlotIdInvalid(CK_SLOT_ID),
    /// The slot exists but signerd cannot be reached or has no token there.
    #[error("token not present: {0}")]
    TokenNotPresent(String),
    /// signerd (or the way to it) failed; the message says why.
    #[error("signerd unreachable or failing: {0}")]
    DeviceError(String),
    /// An RO session was asked for while the SO is logged in.
    #[error("the SO is logged in; only read-write sessions can be opened")]
    SessionReadWriteSoExists,
    /// No open session with that handle.
    #[error("no session with that handle")]
    SessionHandleInvalid,
    /// `C_OpenSession` without `CKF_SERIAL_SESSION`.
    #[error("sessions must be serial (CKF_SERIAL_SESSION)")]
    SessionParallelNotSupported,
    /// A write in a read-only session.
    #[error("the session is read-only")]
    SessionReadOnly,
    /// SO login while read-only sessions are open.
    #[error("a read-only session is open; the SO cannot log in")]
    SessionReadOnlyExists,
    /// No object with that handle (or it was destroyed).
    #[error("no object with that handle")]
    ObjectHandleInvalid,
    /// The handle given to `C_SignInit` is not a usable key.
    #[error("not a signing key")]
    KeyHandleInvalid,
    /// The key may not be used for this operation (e.g. verifying with a private key).
    #[error("the key cannot be used for this function: {0}")]
    KeyFunctionNotPermitted(&'static str),
    /// The signature does not verify.
    #[error("the signature is invalid")]
    SignatureInvalid,
    /// The signature has the wrong length for the key.
    #[error("the signature has the wrong length for the key")]
    SignatureLenRange,
    /// The key's type does not fit the mechanism.
    #[error("the key type does not fit the mechanism")]
    KeyTypeInconsistent,
    /// A mechanism the shim does not offer for this call.
    #[error("mechanism {0:#x} is not supported here")]
    MechanismInvalid(CK_MECHANISM_TYPE),
    /// The mechanism parameters are wrong for it.
    #[error("bad mechanism parameters: {0}")]
    MechanismParamInvalid(&'static str),
    /// An operation of this kind is already running in the session.
    #[error("an operation is already active in the session")]
    OperationActive,
    /// No operation of this kind was started in the session.
    #[error("no operation was initialized in the session")]
    OperationNotInitialized,
    /// The call needs a logged-in user.
    #[error("log in first")]
    UserNotLoggedIn,
    /// `C_Login` as the user who is already logged in.
    #[error("already logged in")]
    UserAlreadyLoggedIn,
    /// `C_Login` while the other user type is logged in.
    #[error("another user type is logged in")]
    UserAnotherAlreadyLoggedIn,
    /// A user type other than CKU_USER and CKU_SO.
    #[error("user type {0} is not supported")]
    UserTypeInvalid(CK_USER_TYPE),
    /// signerd refused the PIN.
    #[error("PIN refused by signerd")]
    PinIncorrect,
    /// Some requested attributes are sensitive (the others were returned).
    #[error("attribute is sensitive")]
    AttributeSensitive,
    /// Some requested attributes do not exist on the object (the others were returned).
    #[error("attribute type invalid for the object")]
    AttributeTypeInvalid,
    /// A template holds a value the shim cannot use.
    #[error("attribute value invalid: {0}")]
    AttributeValueInvalid(String),
    /// A template lacks an attribute the shim needs.
    #[error("template incomplete: {0}")]
    TemplateIncomplete(&'static str),
    /// A template contradicts itself or the call.
    #[error("template inconsistent: {0}")]
    TemplateInconsistent(String),
    /// An output buffer is too small; its needed length was written.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// Input data too long (or empty) for the operation.
    #[error("data length out of range: {0}")]
    DataLenRange(&'static str),
    /// The key size is not one signerd makes.
    #[error("key size out of range: {0}")]
    KeySizeRange(String),
    /// A curve (CKA_EC_PARAMS) signerd does not support.
    #[error("curve not supported")]
    CurveNotSupported,
    /// signerd answered with an error the call cannot recover from.
    #[error("signerd refused {call}: {message}")]
    Refused {
        /// The admin RPC.
        call: Rpc,
        /// What signerd said.
        message: String,
    },
    /// signerd says the object (or key) is gone.
    #[error("signerd does not know the object ({call})")]
    NotFound {
        /// The admin RPC.
        call: Rpc,
    },
    /// The object cannot be changed or destroyed this way; the message says why.
    #[error("action prohibited: {0}")]
    ActionProhibited(&'static str),
    /// A lock was poisoned by a panic in another call.
    #[error("internal state lock poisoned by an earlier panic")]
    LockPoisoned,
    /// An invariant of the shim broke; the message says which.
    #[error("internal error: {0}")]
    General(String),
}

impl<T> From<std::sync::PoisonError<T>> for Error {
    fn from(_: std::sync::PoisonError<T>) -> Self {
        Error::LockPoisoned
    }
}

/// The one mapping from shim errors to PKCS#11 return codes.
impl From<Error> for CK_RV {
    fn from(e: Error) -> CK_RV {
        match e {
            Error::NotInitialized => CKR_CRYPTOKI_NOT_INITIALIZED,
            Error::AlreadyInitialized => CKR_CRYPTOKI_ALREADY_INITIALIZED,
            Error::CantLock => CKR_CANT_LOCK,
            Error::NeedToCreateThreads => CKR_NEED_TO_CREATE_THREADS,
            Error::FunctionNotParallel => CKR_FUNCTION_NOT_PARALLEL,
            Error::ArgumentsBad(_) => CKR_ARGUMENTS_BAD,
            Error::FunctionNotSupported => CKR_FUNCTION_NOT_SUPPORTED,
            Error::SlotIdInvalid(_) => CKR_SLOT_ID_INVALID,
            Error::TokenNotPresent(_) => CKR_TOKEN_NOT_PRESENT,
            Error::DeviceError(_) => CKR_DEVICE_ERROR,
            Error::SessionHandleInvalid => CKR_SESSION_HANDLE_INVALID,
            Error::SessionParallelNotSupported => CKR_SESSION_PARALLEL_NOT_SUPPORTED,
            Error::SessionReadOnly => CKR_SESSION_READ_ONLY,
            Error::SessionReadOnlyExists => CKR_SESSION_READ_ONLY_EXISTS,
            Error::SessionReadWriteSoExists => CKR_SESSION_READ_WRITE_SO_EXISTS,
            Error::ObjectHandleInvalid => CKR_OBJECT_HANDLE_INVALID,
            Error::KeyHandleInvalid => CKR_KEY_HANDLE_INVALID,
            Error::KeyTypeInconsistent => CKR_KEY_TYPE_INCONSISTENT,
            Error::KeyFunctionNotPermitted(_) => CKR_KEY_FUNCTION_NOT_PERMITTED,
            Error::SignatureInvalid => CKR_SIGNATURE_INVALID,
            Error::SignatureLenRange => CKR_SIGNATURE_LEN_RANGE,
            Error::MechanismInvalid(_) => CKR_MECHANISM_INVALID,
            Error::MechanismParamInvalid(_) => CKR_MECHANISM_PARAM_INVALID,
            Error::OperationActive => CKR_OPERATION_ACTIVE,
            Error::OperationNotInitialized => CKR_OPERATION_NOT_INITIALIZED,
            Error::UserNotLoggedIn => CKR_USER_NOT_LOGGED_IN,
            Error::UserAlreadyLoggedIn => CKR_USER_ALREADY_LOGGED_IN,
            Error::UserAnotherAlreadyLoggedIn => CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            Error::UserTypeInvalid(_) => CKR_USER_TYPE_INVALID,
            Error::PinIncorrect => CKR_PIN_INCORRECT,
            Error::AttributeSensitive => CKR_ATTRIBUTE_SENSITIVE,
            Error::AttributeTypeInvalid => CKR_ATTRIBUTE_TYPE_INVALID,
            Error::AttributeValueInvalid(_) => CKR_ATTRIBUTE_VALUE_INVALID,
            Error::TemplateIncomplete(_) => CKR_TEMPLATE_INCOMPLETE,
            Error::TemplateInconsistent(_) => CKR_TEMPLATE_INCONSISTENT,
            Error::BufferTooSmall => CKR_BUFFER_TOO_SMALL,
            Error::DataLenRange(_) => CKR_DATA_LEN_RANGE,
            Error::KeySizeRange(_) => CKR_KEY_SIZE_RANGE,
            Error::CurveNotSupported => CKR_CURVE_NOT_SUPPORTED,
            Error::Refused { .. } => CKR_FUNCTION_FAILED,
            Error::NotFound { call: Rpc::Sign } => CKR_KEY_HANDLE_INVALID,
            Error::NotFound { .. } => CKR_OBJECT_HANDLE_INVALID,
            Error::ActionProhibited(_) => CKR_ACTION_PROHIBITED,
            Error::LockPoisoned => CKR_GENERAL_ERROR,
            Error::General(_) => CKR_GENERAL_ERROR,
        }
    }
}

impl Error {
    /// What the admin client's answer to `rpc` means for the PKCS#11 caller.
    pub fn from_client(rpc: Rpc, error: signerd_client::Error) -> Error {
        use signerd_client::Error as Client;
        match error {
            Client::Setup(_)
            | Client::NotReached { .. }
            | Client::ConnectionLost { .. }
            | Client::TimedOut { .. } => Error::DeviceError(format!("{rpc}: {error}")),
            Client::Refused {
                refusal,
                code,
                message,
                ..
            } => match refusal {
                Refusal::PermissionDenied if rpc == Rpc::Login => Error::PinIncorrect,
                Refusal::NotFound => Error::NotFound { call: rpc },
                Refusal::AlreadyExists => Error::TemplateInconsistent(message),
                Refusal::Unimplemented => Error::DeviceError(format!(
                    "signerd does not serve {rpc} (an older signerd without the admin API?): {message}"
                )),
                Refusal::PermissionDenied => Error::Refused {
                    call: rpc,
                    message: format!(
                        "{message} (is this user allowed on signerd's admin socket?)"
                    ),
                },
                Refusal::InvalidArgument => Error::Refused { call: rpc, message },
                Refusal::FailedPrecondition
                | Refusal::Unavailable
                | Refusal::ResourceExhausted
                | Refusal::Failed => {
                    Error::DeviceError(format!("{rpc}: signerd says {code:?}: {message}"))
                }
            },
        }
    }

    /// Whether the failure is worth a log line above debug level: the host only sees a code,
    /// so anything about signerd itself must be said in the log.
    pub fn is_noteworthy(&self) -> bool {
        matches!(
            self,
            Error::TokenNotPresent(_)
                | Error::DeviceError(_)
                | Error::Refused { .. }
                | Error::LockPoisoned
                | Error::General(_)
                | Error::PinIncorrect
        )
    }

    /// Whether the code is one of the "answered, but" results of `C_GetAttributeValue` and
    /// `C_Sign` (the outputs were written).
    pub fn is_soft(&self) -> bool {
        matches!(
            self,
            Error::AttributeSensitive | Error::AttributeTypeInvalid | Error::BufferTooSmall
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_pkcs11_ones() {
        assert_eq!(CK_RV::from(Error::NotInitialized), 0x190);
        assert_eq!(CK_RV::from(Error::BufferTooSmall), 0x150);
        assert_eq!(CK_RV::from(Error::UserNotLoggedIn), 0x101);
        assert_eq!(CK_RV::from(Error::DeviceError("x".into())), 0x30);
        assert_eq!(CK_RV::from(Error::TokenNotPresent("x".into())), 0xe0);
        assert_eq!(CK_RV::from(Error::NotFound { call: Rpc::Sign }), 0x60);
        assert_eq!(
            CK_RV::from(Error::NotFound {
                call: Rpc::DestroyObject
            }),
            0x82
        );
        assert_eq!(CK_RV::from(Error::LockPoisoned), CKR_GENERAL_ERROR);
    }

    fn answered(rpc: Rpc, refusal: Refusal) -> signerd_client::Error {
        signerd_client::Error::Refused {
            rpc,
            refusal,
            code: tonic::Code::Unknown,
            message: "why".into(),
        }
    }

    #[test]
    fn client_answers_become_the_codes_a_pkcs11_caller_expects() {
        let code = |rpc, e| CK_RV::from(Error::from_client(rpc, e));
        assert_eq!(
            code(Rpc::Login, answered(Rpc::Login, Refusal::PermissionDenied)),
            CKR_PIN_INCORRECT
        );
        assert_eq!(
            code(Rpc::Sign, answered(Rpc::Sign, Refusal::PermissionDenied)),
            CKR_FUNCTION_FAILED
        );
        assert_eq!(
            code(Rpc::Sign, answered(Rpc::Sign, Refusal::NotFound)),
            CKR_KEY_HANDLE_INVALID
        );
        assert_eq!(
            code(
                Rpc::DestroyObject,
                answered(Rpc::DestroyObject, Refusal::NotFound)
            ),
            CKR_OBJECT_HANDLE_INVALID
        );
        assert_eq!(
            code(Rpc::Sign, answered(Rpc::Sign, Refusal::Unavailable)),
            CKR_DEVICE_ERROR
        );
        let unreachable = signerd_client::Error::NotReached {
            target: "unix:/run/signerd/admin.sock".into(),
            source: "Connection refused".into(),
        };
        let e = Error::from_client(Rpc::Sign, unreachable);
        assert_eq!(
            e.to_string(),
            "signerd unreachable or failing: Sign: cannot reach signerd at \
             unix:/run/signerd/admin.sock: Connection refused"
        );
        assert_eq!(CK_RV::from(e), CKR_DEVICE_ERROR);
    }
}
