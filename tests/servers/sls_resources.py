"""The SLS test server's resource calls (tests/servers/sls.py routes them here): logstores, MetricStores and
indexes, as the SDK (aliyun-log-python-sdk 0.9.52, logclient.py) sends them and Alibaba's API reference documents
their answers. Requests are checked exactly (method, path, Content-Type, JSON body fields and types); errors come
in SLS's shape `{"errorCode", "errorMessage"}` with the documented codes:

    POST /logstores                        CreateLogStore  {logstoreName, ttl, shardCount, ...; telemetryType
                                           "Metrics" for a MetricStore}; 400 LogStoreAlreadyExist
    GET  /logstores/{ls}                   GetLogStore     404 LogStoreNotExist
    POST /logstores/{ls}/substores         CreateSubStore  the MetricStore's `prom` substore (create_metric_store)
    POST /logstores/{ls}/index             CreateIndex     {line?, keys?}; 400 IndexAlreadyExist
    PUT  /logstores/{ls}/index             UpdateIndex     replaces the whole index; 400 IndexConfigNotExist
    GET  /logstores/{ls}/index             GetIndex        400 IndexConfigNotExist
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")  # 3-63: lowercase, digits, - and _, not at the ends
_INDEX_TYPES = {"text", "long", "double", "json"}

Answer = tuple[int, dict[str, str], bytes]


def error(status: int, code: str, message: str) -> Answer:
    return status, {}, json.dumps({"errorCode": code, "errorMessage": message}).encode()


def ok(body: Any = None) -> Answer:
    return 200, {}, (json.dumps(body).encode() if body is not None else b"")


@dataclass
class Resources:
    logstores: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (project, name) -> meta
    indexes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    substores: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path): what changed things

    def handle(
        self, project: str, method: str, parts: list[str], headers: dict[str, str], body: bytes
    ) -> Answer | None:
        """The answer, or None when the request is not one of these calls."""
        if parts == ["logstores"] and method == "POST":
            return self._json(headers, body, lambda req: self._create_logstore(project, req))
        if len(parts) == 2 and parts[0] == "logstores" and method == "GET":
            return self._get_logstore(project, parts[1])
        if len(parts) == 3 and parts[0] == "logstores" and parts[2] == "substores" and method == "POST":
            return self._json(headers, body, lambda req: self._create_substore(project, parts[1], req))
        if len(parts) == 3 and parts[0] == "logstores" and parts[2] == "index":
            if method == "GET":
                return self._get_index(project, parts[1])
            if method in ("POST", "PUT"):
                return self._json(headers, body, lambda req: self._put_index(project, parts[1], req, method == "POST"))
        return None

    def is_metricstore(self, project: str, name: str) -> bool:
        meta = self.logstores.get((project, name))
        return bool(meta and meta.get("telemetryType") == "Metrics" and (project, name) in self.substores)

    # --- logstores ---------------------------------------------------------------------------------------------
    @staticmethod
    def _json(headers: dict[str, str], body: bytes, then) -> Answer:
        if not headers.get("content-type", "").startswith("application/json"):
            return error(
                400, "ParameterInvalid", f"Content-Type {headers.get('content-type')!r}, want application/json"
            )
        try:
            req = json.loads(body)
        except ValueError as e:
            return error(400, "PostBodyInvalid", f"body is not JSON: {e}")
        if not isinstance(req, dict):
            return error(400, "PostBodyInvalid", "body is not a JSON object")
        return then(req)

    def _create_logstore(self, project: str, req: dict[str, Any]) -> Answer:
        name, ttl, shards = req.get("logstoreName"), req.get("ttl"), req.get("shardCount")
        if not isinstance(name, str) or not _NAME.match(name):
            return error(400, "LogStoreInfoInvalid", f"invalid logstoreName {name!r}")
        if not isinstance(ttl, int) or not (1 <= ttl <= 3650):
            return error(400, "LogStoreInfoInvalid", f"ttl must be an integer from 1 to 3650, got {ttl!r}")
        if not isinstance(shards, int) or not (1 <= shards <= 256):
            return error(400, "LogStoreInfoInvalid", f"shardCount must be an integer from 1 to 256, got {shards!r}")
        if req.get("telemetryType", "") not in ("", "None", "Metrics", "Event"):
            return error(400, "LogStoreInfoInvalid", f"invalid telemetryType {req['telemetryType']!r}")
        if (project, name) in self.logstores:
            return error(400, "LogStoreAlreadyExist", f"logstore {name} already exist")
        now = int(time.time())
        self.logstores[(project, name)] = {
            "logstoreName": name,
            "ttl": ttl,
            "shardCount": shards,
            "enable_tracking": bool(req.get("enable_tracking", False)),
            "autoSplit": bool(req.get("autoSplit", True)),
            "maxSplitShard": int(req.get("maxSplitShard", 64)),
            "appendMeta": bool(req.get("appendMeta", False)),
            "telemetryType": req.get("telemetryType", "") or "None",
            "mode": "standard",
            "createTime": now,
            "lastModifyTime": now,
        }
        self.calls.append(("POST", "/logstores"))
        return ok()

    def _get_logstore(self, project: str, name: str) -> Answer:
        meta = self.logstores.get((project, name))
        if meta is None:
            return error(404, "LogStoreNotExist", f"logstore {name} does not exist")
        return ok(meta)

    def _create_substore(self, project: str, name: str, req: dict[str, Any]) -> Answer:
        if (project, name) not in self.logstores:
            return error(404, "LogStoreNotExist", f"logstore {name} does not exist")
        keys = req.get("keys")
        if req.get("name") != "prom" or not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            return error(400, "ParameterInvalid", "a MetricStore's substore is `prom` with a list of keys")
        for k in ("ttl", "sortedKeyCount", "timeIndex"):
            if not isinstance(req.get(k), int):
                return error(400, "ParameterInvalid", f"{k} must be an integer")
        self.substores[(project, name)] = req
        self.calls.append(("POST", f"/logstores/{name}/substores"))
        return ok()

    # --- indexes -----------------------------------------------------------------------------------------------
    def _get_index(self, project: str, name: str) -> Answer:
        if (project, name) not in self.logstores:
            return error(404, "LogStoreNotExist", f"logstore {name} does not exist")
        index = self.indexes.get((project, name))
        if index is None:
            return error(400, "IndexConfigNotExist", "logstore without index config")
        return ok(index)

    def _put_index(self, project: str, name: str, req: dict[str, Any], create: bool) -> Answer:
        if (project, name) not in self.logstores:
            return error(404, "LogStoreNotExist", f"logstore {name} does not exist")
        exists = (project, name) in self.indexes
        if create and exists:
            return error(400, "IndexAlreadyExist", f"index of logstore {name} already exists")
        if not create and not exists:
            return error(400, "IndexConfigNotExist", "logstore without index config")
        problem = _check_index(req)
        if problem:
            return error(400, "ParameterInvalid", problem)
        index = {k: v for k, v in req.items() if k in ("line", "keys", "log_reduce", "max_text_len")}
        index.update(
            {
                "index_mode": "v2",
                "storage": "pg",
                "ttl": self.logstores[(project, name)]["ttl"],
                "lastModifyTime": int(time.time()),
            }
        )
        self.indexes[(project, name)] = index
        self.calls.append(("POST" if create else "PUT", f"/logstores/{name}/index"))
        return ok()


def _check_index(req: dict[str, Any]) -> str | None:
    """CreateIndex's rules: line and/or keys; text keys and the line need a token list; known types only."""
    if "line" not in req and "keys" not in req:
        return "the index needs `line`, `keys` or both"
    line = req.get("line")
    if line is not None and (
        not isinstance(line, dict) or not isinstance(line.get("token"), list) or not line["token"]
    ):
        return "line.token must be a non-empty list of delimiters"
    for key, spec in (req.get("keys") or {}).items():
        if not isinstance(spec, dict) or spec.get("type") not in _INDEX_TYPES:
            return f"keys.{key}.type must be one of {sorted(_INDEX_TYPES)}"
        if spec["type"] == "text" and not isinstance(spec.get("token"), list):
            return f"keys.{key}.token must be a list for a text key"
        if "doc_value" in spec and not isinstance(spec["doc_value"], bool):
            return f"keys.{key}.doc_value must be a boolean"
        if any(len(t) != 1 for t in spec.get("token") or []):
            return f"keys.{key}.token: each delimiter is one character"
    return None
