"""ApiError: an error answered with a real ``metav1.Status`` body (test harness).

Re-exported by :mod:`kubesim.store`; admission hooks raise it to reject a request with an
exact message (e.g. ``ApiError.internal(...)`` or ``ApiError(400, "BadRequest", msg)``).
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict | None = None, status: str = "Failure"):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        self.status_word = status

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": self.status_word,
                "message": self.message}
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body

    def __repr__(self):
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"

    # ---- constructors mirroring k8s.io/apimachinery/pkg/api/errors ----------------------
    @staticmethod
    def _gr(rt) -> str:
        """'deployments.apps' / 'pods' from a ResourceType or a plain string."""
        if rt is None:
            return ""
        if isinstance(rt, str):
            return rt
        return rt.key

    @staticmethod
    def _details(rt, name) -> dict:
        d = {}
        if name:
            d["name"] = name
        if rt is not None and not isinstance(rt, str):
            if rt.group:
                d["group"] = rt.group
            d["kind"] = rt.plural
        elif isinstance(rt, str) and rt:
            plural, _, group = rt.partition(".")
            if group:
                d["group"] = group
            d["kind"] = plural
        return d

    @classmethod
    def not_found(cls, rt, name: str) -> "ApiError":
        gr = cls._gr(rt)
        msg = f'{gr} "{name}" not found' if name else f"{gr} not found"
        return cls(404, "NotFound", msg, cls._details(rt, name))

    @classmethod
    def already_exists(cls, rt, name: str) -> "ApiError":
        return cls(409, "AlreadyExists", f'{cls._gr(rt)} "{name}" already exists', cls._details(rt, name))

    @classmethod
    def conflict(cls, rt, name: str, why: str = "the object has been modified; please apply your changes "
                                              "to the latest version and try again") -> "ApiError":
        return cls(409, "Conflict", f'Operation cannot be fulfilled on {cls._gr(rt)} "{name}": {why}',
                   cls._details(rt, name))

    @classmethod
    def invalid(cls, rt, name: str, causes: list) -> "ApiError":
        """causes: list of (field, reason_word, value_or_None, detail).  reason_word is one of
        Required / Invalid / Forbidden / Duplicate / NotSupported / TooLong."""
        kind = rt.kind if rt is not None and not isinstance(rt, str) else str(rt)
        group = rt.group if rt is not None and not isinstance(rt, str) else ""
        qual = f"{kind}.{group}" if group else kind
        parts, cs = [], []
        for field, word, value, detail in causes:
            if word == "Required":
                text = "Required value" + (f": {detail}" if detail else "")
                reason = "FieldValueRequired"
            elif word == "Forbidden":
                text = "Forbidden" + (f": {detail}" if detail else "")
                reason = "FieldValueForbidden"
            elif word == "Duplicate":
                text = f"Duplicate value: {_go(value)}"
                reason = "FieldValueDuplicate"
            elif word == "NotSupported":
                text = f"Unsupported value: {_go(value)}" + (f": {detail}" if detail else "")
                reason = "FieldValueNotSupported"
            else:
                text = f"Invalid value: {_go(value)}" + (f": {detail}" if detail else "")
                reason = "FieldValueInvalid"
            parts.append(f"{field}: {text}")
            cs.append({"reason": reason, "message": text, "field": field})
        if len(parts) == 1:
            msg = f'{qual} "{name}" is invalid: {parts[0]}'
        else:
            msg = f'{qual} "{name}" is invalid: [{", ".join(parts)}]'
        details = {"name": name} if name else {}
        if group:
            details["group"] = group
        details["kind"] = kind
        details["causes"] = cs
        return cls(422, "Invalid", msg, details)

    @classmethod
    def bad_request(cls, message: str) -> "ApiError":
        return cls(400, "BadRequest", message)

    @classmethod
    def forbidden(cls, rt, name: str, why: str) -> "ApiError":
        gr = cls._gr(rt)
        subject = f'{gr} "{name}"' if name else gr
        return cls(403, "Forbidden", f"{subject} is forbidden: {why}", cls._details(rt, name))

    @classmethod
    def method_not_allowed(cls) -> "ApiError":
        return cls(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                   {})

    @classmethod
    def unsupported_media_type(cls, ctype: str, accepted: list) -> "ApiError":
        return cls(415, "UnsupportedMediaType",
                   f"the body of the request was in an unknown format - accepted media types include: "
                   f"{', '.join(accepted)}", {})

    @classmethod
    def internal(cls, message: str) -> "ApiError":
        return cls(500, "InternalError", f"Internal error occurred: {message}",
                   {"causes": [{"message": message}]})

    @classmethod
    def expired(cls, message: str) -> "ApiError":
        return cls(410, "Expired", message)

    @classmethod
    def unauthorized(cls) -> "ApiError":
        return cls(401, "Unauthorized", "Unauthorized")


def _go(value) -> str:
    """Approximate Go's %#v-ish rendering used in field errors."""
    if isinstance(value, str):
        return '"' + value + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    return str(value)
