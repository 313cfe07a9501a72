"""Errors of the local workspace's REST API, in the shape Databricks sends them."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An API error: the HTTP status and the body ``{"error_code": ..., "message": ...}``."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}
