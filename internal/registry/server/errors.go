package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/berth-dev/berth/internal/errdefs"
)

// ErrorCode is one of the distribution spec's error codes.
type ErrorCode string

// The spec's codes, and the HTTP status each is sent with unless an Error
// says otherwise (a chunk out of order is BLOB_UPLOAD_INVALID with 416).
const (
	CodeBlobUnknown         ErrorCode = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   ErrorCode = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   ErrorCode = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       ErrorCode = "DIGEST_INVALID"
	CodeManifestBlobUnknown ErrorCode = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     ErrorCode = "MANIFEST_INVALID"
	CodeManifestUnknown     ErrorCode = "MANIFEST_UNKNOWN"
	CodeNameInvalid         ErrorCode = "NAME_INVALID"
	CodeNameUnknown         ErrorCode = "NAME_UNKNOWN"
	CodeSizeInvalid         ErrorCode = "SIZE_INVALID"
	CodeUnauthorized        ErrorCode = "UNAUTHORIZED"
	CodeDenied              ErrorCode = "DENIED"
	CodeUnsupported         ErrorCode = "UNSUPPORTED"
	CodeTooManyRequests     ErrorCode = "TOOMANYREQUESTS"
	// CodeUnknown is distribution's code for a server fault; the spec has
	// none, and clients treat any 5xx alike.
	CodeUnknown ErrorCode = "UNKNOWN"
)

var codeStatus = map[ErrorCode]int{
	CodeBlobUnknown:         http.StatusNotFound,
	CodeBlobUploadInvalid:   http.StatusBadRequest,
	CodeBlobUploadUnknown:   http.StatusNotFound,
	CodeDigestInvalid:       http.StatusBadRequest,
	CodeManifestBlobUnknown: http.StatusBadRequest,
	CodeManifestInvalid:     http.StatusBadRequest,
	CodeManifestUnknown:     http.StatusNotFound,
	CodeNameInvalid:         http.StatusBadRequest,
	CodeNameUnknown:         http.StatusNotFound,
	CodeSizeInvalid:         http.StatusBadRequest,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeDenied:              http.StatusForbidden,
	CodeUnsupported:         http.StatusMethodNotAllowed,
	CodeTooManyRequests:     http.StatusTooManyRequests,
	CodeUnknown:             http.StatusInternalServerError,
}

// Error is an error as the API reports it: a spec code, a message, an
// optional detail, the HTTP status (0: the code's usual one) and headers
// to send with it (WWW-Authenticate for UNAUTHORIZED, Range for a 416).
// An Authorizer returns these.
type Error struct {
	Code    ErrorCode
	Message string
	Detail  any
	Status  int
	Header  http.Header
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

func (e *Error) status() int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := codeStatus[e.Code]; ok {
		return s
	}
	return http.StatusBadRequest
}

// apiError builds an Error from err's text.
func apiError(code ErrorCode, err error) *Error {
	return &Error{Code: code, Message: userText(err)}
}

// userText is err's message without the class suffix errdefs wraps in
// (": invalid argument"), which means nothing to a registry client.
func userText(err error) string {
	msg := err.Error()
	for _, class := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrAlreadyExists,
		errdefs.ErrConflict, errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable, errdefs.ErrNotImplemented} {
		if errors.Is(err, class) {
			if n := len(msg) - len(class.Error()) - 2; n > 0 && msg[n:] == ": "+class.Error() {
				msg = msg[:n]
			}
		}
	}
	return msg
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message,omitempty"`
	Detail  any       `json:"detail,omitempty"`
}

// writeErrors sends one or more errors as the spec's JSON document, with
// the first one's status and headers.
func writeErrors(w http.ResponseWriter, r *http.Request, errs ...*Error) {
	first := errs[0]
	for k, vs := range first.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	body := errorBody{}
	for _, e := range errs {
		body.Errors = append(body.Errors, errorEntry{Code: e.Code, Message: e.Message, Detail: e.Detail})
	}
	data, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Del("Docker-Content-Digest")
	w.WriteHeader(first.status())
	if r.Method != http.MethodHead {
		w.Write(data)
	}
}
